"""`modelseal rebuild` and `modelseal reproduce`: the auditor's commands (docs/reproducibility.md).

`rebuild` answers "did this commit produce this published artifact?"; `reproduce` (what `pants
reproduce` runs) answers "does this working tree build the same bytes twice?". Both build with the
checkout's own ./pants (modelseal.audit.rebuild) and compare with modelseal.audit.compare.
"""

from __future__ import annotations

import argparse
import datetime
import os
import sys
from contextlib import ExitStack

from modelseal.audit.compare import Comparison, compare_opened, opened_bundle, render
from modelseal.audit.rebuild import (
    Build,
    NotReproducedError,
    RebuildError,
    bundle_tars,
    check_out,
    clean_environment,
    diffoscope_reports,
    find_output,
    git,
    remove,
    resolve_commit,
    run_package,
    scratch_directory,
    snapshot_worktree,
)
from modelseal.errors import EXIT_FAILURE, EXIT_OK, SpecError
from modelseal.format.atomic import write_atomic
from modelseal.format.canonical import canonical_json
from modelseal.format.digests import sha256_file
from modelseal.format.safe_extract import scan_tar
from modelseal.keys.core import REFERENCE_HELP, generate_private_key, write_key_pair
from modelseal.keys.reference import load_signer
from modelseal.signing.attestation import Reproduction, sign_statement, statement

STATEMENT_FILE = "statement.intoto.json"


def _data_home() -> str:
    return os.environ.get("XDG_DATA_HOME") or os.path.join(os.path.expanduser("~"), ".local/share")


def _cache_home() -> str:
    return os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")


def _development_auditor_key() -> str:
    """The per-user development key that signs statements when no --key is given."""
    keyring = os.path.join(_data_home(), "modelseal", "dev-keyring")
    path = os.path.join(keyring, "auditor.pem")
    if not os.path.exists(path):
        os.makedirs(keyring, mode=0o700, exist_ok=True)
        write_key_pair(generate_private_key("ecdsa-p256"), path, None)
        print(f"modelseal: created the development key {path}", file=sys.stderr)
    return f"file:{path}"


def rebuild_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--commit", required=True, metavar="REV", help="the commit to rebuild")
    parser.add_argument(
        "--target", required=True, metavar="ADDRESS",
        help="the model_artifact that produced the artifact, e.g. examples/iris:model",
    )
    parser.add_argument(
        "--against", required=True, metavar="PUBLISHED.tar", help="the published bundle tar"
    )
    parser.add_argument(
        "--repo", default=".", metavar="PATH",
        help="the git repository holding the commit (default: the current directory)",
    )
    parser.add_argument(
        "--report", metavar="DIR",
        help="where to write comparison.json, the statement, the build log and diffoscope's "
        "reports (default: ./modelseal-rebuild-<commit>)",
    )
    parser.add_argument(
        "--key", metavar="REF",
        help="the auditor's key, which signs the statement; " + REFERENCE_HELP
        + " (default: a per-user development key)",
    )
    parser.add_argument(
        "--keep", action="store_true", help="keep the temporary checkout, for inspection"
    )


def _write_json(path: str, document: object) -> None:
    write_atomic(path, canonical_json(document) + b"\n")


def _git_top(path: str, option: str, remedy: str) -> str:
    """The top of the git working tree at `path`; SpecError (exit 3) naming the option when
    `path` is not in one: a wrong argument, not a failed rebuild."""
    if not os.path.isdir(path):
        raise SpecError(what="no such directory", where=f"{option} {path}", remedy=remedy)
    try:
        return git(os.path.abspath(path), "rev-parse", "--show-toplevel")
    except RebuildError:
        raise SpecError(
            what="not a git checkout", where=f"{option} {path}", remedy=remedy
        ) from None


def rebuild(args: argparse.Namespace) -> int:
    if os.path.isdir(args.against):
        raise SpecError(
            what="a directory: rebuild compares the published archive, byte for byte",
            where=f"--against {args.against}",
            remedy="pass the bundle's .tar (`pants package` writes it next to the directory); "
            "to compare two directories, use `modelseal reproduce`",
        )
    if not os.path.isfile(args.against):
        raise SpecError(what="no such file", where=f"--against {args.against}",
                        remedy="pass the published bundle .tar")
    top = scan_tar(args.against).top  # refuses an unsafe or malformed tar before any work
    repo = _git_top(args.repo, "--repo", "run rebuild inside a git clone of the model's "
                    "repository, or pass --repo with one")
    commit = resolve_commit(repo, args.commit)
    report = os.path.abspath(args.report or f"modelseal-rebuild-{commit[:12]}")
    os.makedirs(report, exist_ok=True)
    key = args.key or _development_auditor_key()
    scratch = scratch_directory("modelseal-rebuild-")
    try:
        checkout = check_out(repo, commit, os.path.join(scratch, "checkout"))
        print(f"[rebuild] commit {commit} checked out in {checkout}", file=sys.stderr)
        env = clean_environment(
            os.environ, XDG_DATA_HOME=os.path.join(scratch, "data"), XDG_CACHE_HOME=_cache_home()
        )
        run_package(Build(checkout, (args.target,), env, os.path.join(report, "pants.log")),
                    "rebuild")
        rebuilt = find_output(checkout, f"{top}.tar")
        with ExitStack() as stack:
            published_bundle = stack.enter_context(opened_bundle(args.against))
            rebuilt_bundle = stack.enter_context(opened_bundle(rebuilt))
            comparison = compare_opened(published_bundle, rebuilt_bundle)
        artifact_sha256, _ = sha256_file(args.against)
        _write_json(os.path.join(report, "comparison.json"), {
            "artifact": {"name": os.path.basename(args.against), "sha256": artifact_sha256},
            "commit": commit, "target": args.target, **comparison.to_json(),
        })
        sys.stdout.write(render(comparison))
        if not comparison.reproduced:
            return _not_reproduced(comparison, args.against, rebuilt, report, commit)
        reproduction = Reproduction(
            artifact_name=os.path.basename(args.against),
            artifact_sha256=artifact_sha256,
            repository=repo,
            commit=commit,
            target=args.target,
            reproduced=True,
            compared=comparison.compared,
            not_compared=comparison.not_compared,
            time_verified=datetime.datetime.now(datetime.timezone.utc).strftime(
                "%Y-%m-%dT%H:%M:%SZ"),
        )
        with load_signer(key) as signer:
            envelope = sign_statement(statement(reproduction, signer.key_id), signer)
            write_atomic(os.path.join(report, "auditor.pub"), signer.public_key_pem)
            key_id = signer.key_id
        path = os.path.join(report, STATEMENT_FILE)
        write_atomic(path, envelope + b"\n")
        print(f"reproduced: {os.path.basename(args.against)} (sha256 {artifact_sha256}) from "
              f"commit {commit}, target {args.target}")
        print(f"statement: {path} (signed by key {key_id[:16]}; its public key: "
              f"{os.path.join(report, 'auditor.pub')})")
        return EXIT_OK
    finally:
        if args.keep:
            print(f"[rebuild] kept {scratch}", file=sys.stderr)
        else:
            remove([scratch])


def _not_reproduced(
    comparison: Comparison, expected: str, found: str, report: str, label: str
) -> int:
    reports = diffoscope_reports(expected, found, report)
    if reports:
        print("diffoscope: " + ", ".join(reports))
    else:
        print("diffoscope is not installed: no detailed report (install the diffoscope package)")
    names = ", ".join(d.path for d in comparison.differences)
    raise NotReproducedError(
        what=f"not reproduced: {len(comparison.differences)} file(s) differ ({names})",
        where=f"{expected} vs {label}",
        remedy=f"read {report} (comparison.json"
        + (", diffoscope.txt, diffoscope.html" if reports else "")
        + "); a differing model.pex usually means a different lock or tool version",
    )


def reproduce_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("targets", nargs="+", metavar="ADDRESS", help="model_artifact targets")
    parser.add_argument(
        "--workspace", default=".", metavar="DIR",
        help="the git working tree to build (its current state, uncommitted changes included)",
    )
    parser.add_argument(
        "--report", metavar="DIR",
        help="where to write each comparison and diffoscope's reports (default: "
        "WORKSPACE/dist/reproduce)",
    )


def reproduce(args: argparse.Namespace) -> int:
    workspace = _git_top(args.workspace, "--workspace", "pass --workspace with the directory "
                         "of a git checkout of the repository (reproduce builds its working tree)")
    report = os.path.abspath(args.report or os.path.join(workspace, "dist", "reproduce"))
    os.makedirs(report, exist_ok=True)
    scratch = scratch_directory("modelseal-reproduce-")
    try:
        # Two builds that share nothing a build should not depend on: the path (and its depth),
        # HOME, the time zone, the locale, the user and the umask all differ.
        variants = [
            ("first", os.path.join(scratch, "a", "ws"), "UTC", "C.UTF-8", "alice", 0o022),
            ("second", os.path.join(scratch, "b", "elsewhere", "ws"), "Pacific/Kiritimati",
             "de_DE.UTF-8", "bob", 0o077),
        ]
        dists = []
        for label, checkout, tz, lang, user, umask in variants:
            snapshot_worktree(workspace, checkout)
            home = os.path.join(os.path.dirname(checkout), "home")
            os.makedirs(home)
            env = clean_environment(
                os.environ, HOME=home, TZ=tz, LANG=lang, USER=user,
                XDG_DATA_HOME=os.path.join(scratch, "data"), XDG_CACHE_HOME=_cache_home(),
            )
            log = os.path.join(report, f"{label}.log")
            run_package(Build(checkout, tuple(args.targets), env, log, umask), label)
            dists.append(os.path.join(checkout, "dist"))
        return _compare_dists(dists[0], dists[1], report)
    finally:
        remove([scratch])


def _compare_dists(first: str, second: str, report: str) -> int:
    first_tars, second_tars = bundle_tars(first), bundle_tars(second)
    if not first_tars:
        raise SpecError(what="the build wrote no model bundle", where=first,
                        remedy="name model_artifact targets")
    failed = []
    for relative in sorted(set(first_tars) | set(second_tars)):
        if relative not in first_tars or relative not in second_tars:
            print(f"✕ {relative}: built only once")
            failed.append(relative)
            continue
        with ExitStack() as stack:
            a = stack.enter_context(opened_bundle(first_tars[relative]))
            b = stack.enter_context(opened_bundle(second_tars[relative]))
            comparison = compare_opened(a, b)
        name = relative.replace(os.sep, "_")[: -len(".tar")]
        _write_json(os.path.join(report, f"{name}.json"), comparison.to_json())
        if comparison.reproduced:
            print(f"✓ {relative}: {len(comparison.compared)} files identical in both builds")
            continue
        failed.append(relative)
        print(f"✕ {relative}: not reproducible")
        sys.stdout.write(render(comparison, "first build", "second build"))
        directory = os.path.join(report, name)
        os.makedirs(directory, exist_ok=True)
        for path in diffoscope_reports(first_tars[relative], second_tars[relative], directory):
            print(f"  diffoscope: {path}")
    if failed:
        print(f"{len(failed)} of {len(set(first_tars) | set(second_tars))} bundle(s) differ "
              f"between two builds; reports in {report}", file=sys.stderr)
        return NotReproducedError.exit_code
    return EXIT_OK if first_tars else EXIT_FAILURE
