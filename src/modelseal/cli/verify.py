"""`modelseal verify` and `modelseal run`: the commands a deployment host runs.

`verify` prints one line per check (or a JSON report with `--json`) and exits with the failed
check's code (docs/verification.md). `run` verifies the same way and only then starts the PEX,
from the very files that were verified, so there is no window in which a verified tar and an
unverified extraction could differ.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import shutil
import signal
import subprocess
import sys
import tempfile
from collections.abc import Callable, Iterator, Mapping, Sequence

from modelseal.cli.distribute import local_copy, oci_arguments
from modelseal.cli.passthrough import split_passthrough
from modelseal.errors import EXIT_OK, ModelsealError, SpecError
from modelseal.format.canonical import canonical_json
from modelseal.format.safe_extract import (
    DEFAULT_LIMITS,
    Limits,
    copy_verified,
    remove_tree,
)
from modelseal.keys.core import PublicKey
from modelseal.verify.checks import (
    Report,
    TerminalProgress,
    VerifyOptions,
    default_progress,
    verified_bundle,
)
from modelseal.verify.policy import Policy
from modelseal.verify.report import failure_json

__all__ = [
    "child_environment",
    "extract",
    "extract_arguments",
    "run",
    "run_arguments",
    "split_passthrough",
    "verify",
    "verify_arguments",
]

# Keys, the policy and the revocation list are small: read at most this much of each.
MAX_CONFIG_SIZE = 1024 * 1024

# What changes the code a Python process or a PEX loads, removed from `run`'s child
# (docs/verification.md lists them): pex's own settings, the interpreter's, and the dynamic
# loader's. PEX_ROOT is then set to a new empty directory; PYTHONNOUSERSITE keeps the user's
# site-packages (and their .pth files) out.
SCRUBBED_PREFIXES = ("PEX_", "__PEX_", "PYTHON", "LD_", "DYLD_")


def verify_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "bundle",
        metavar="BUNDLE_OR_TAR",
        help="a bundle directory, its .tar, or oci://HOST/REPOSITORY@sha256:DIGEST in a registry",
    )
    parser.add_argument(
        "--trust", required=True, metavar="OWNER.pub", help="the layout owner's public key"
    )
    parser.add_argument(
        "--release-key",
        metavar="RELEASE.pub",
        help="pin: model.sig must be signed by this key (it must also be one the layout "
        "authorizes for the sign step, which is all that is required without this option)",
    )
    parser.add_argument("--policy", metavar="FILE", help="a modelseal.policy/v1 JSON file")
    parser.add_argument(
        "--revocations", metavar="FILE", help="a modelseal.revocations/v1 list of revoked key ids"
    )
    parser.add_argument(
        "--json",
        action="store_true",
        help="print the modelseal.report/v1 JSON document (docs/verification.md): on stdout for "
        "verify, on stderr for run (whose stdout is the model's), before the model starts",
    )
    parser.add_argument(
        "--allow-development",
        action="store_true",
        help='accept "trust": "development" bundles (testing only)',
    )
    for option, limit, what in (
        ("--max-member-size", DEFAULT_LIMITS.max_member_size, "largest file accepted in a tar"),
        ("--max-total-size", DEFAULT_LIMITS.max_total_size, "largest bundle accepted"),
    ):
        parser.add_argument(
            option, type=int, default=limit, metavar="BYTES", help=f"{what} (default {limit})"
        )
    oci_arguments(parser)


    parser.add_argument(
        "--python",
        metavar="PATH",
        default=None,
        help="the interpreter that runs the model, checked against the bundle's runtime "
        "(default: python3 on PATH, else the one running modelseal)",
    )


def model_python(args: argparse.Namespace) -> str:
    return str(args.python or shutil.which("python3") or sys.executable)


def run_arguments(parser: argparse.ArgumentParser) -> None:
    verify_arguments(parser)
    parser.usage = (
        "modelseal run BUNDLE_OR_TAR --trust OWNER.pub --release-key RELEASE.pub [options] "
        "-- predict|info [ARGS...]"
    )
    parser.epilog = (
        "Arguments after `--` go to the model's PEX: `-- predict` (JSON on stdin, predictions "
        "on stdout) or `-- info` (the manifest)."
    )


def _read(path: str, what: str) -> bytes:
    with open(path, "rb") as f:
        data = f.read(MAX_CONFIG_SIZE + 1)
    if len(data) > MAX_CONFIG_SIZE:
        raise SpecError(
            what=f"the {what} is larger than {MAX_CONFIG_SIZE} bytes",
            where=path,
            remedy=f"pass the {what} file itself",
        )
    return data


def _options(args: argparse.Namespace, progress: TerminalProgress | None) -> VerifyOptions:
    """Read every input the checks trust before any check runs: a bad key or policy file is a
    usage problem (exit 3 or 5), not a verdict on the bundle."""
    from modelseal.signing.provenance import load_revocations

    owner = PublicKey.from_pem(_read(args.trust, "owner key"), source=args.trust)
    release = None
    if args.release_key:
        pinned = _read(args.release_key, "release key")
        release = PublicKey.from_pem(pinned, source=args.release_key)
    policy = None
    if args.policy:
        policy = Policy.from_bytes(_read(args.policy, "policy"), source=args.policy)
    revoked: frozenset[str] = frozenset()
    if args.revocations:
        revoked = load_revocations(_read(args.revocations, "revocation list"), args.revocations)
    if args.max_member_size < 0 or args.max_total_size < 0:
        raise SpecError(
            what="size limits must not be negative",
            where="--max-member-size/--max-total-size",
            remedy="pass a number of bytes",
        )
    return VerifyOptions(
        owner=owner,
        release=release,
        policy=policy,
        policy_source=args.policy or "policy",
        revoked=revoked,
        allow_development=args.allow_development,
        limits=Limits(
            max_member_size=args.max_member_size,
            max_total_size=args.max_total_size,
            max_members=DEFAULT_LIMITS.max_members,
        ),
        progress=progress,
        python=model_python(args),
    )


def _artifact(path: str, oci_digest: str | None = None) -> tuple[str, str | None]:
    """(kind, sha256) of the artifact as the user named it: a tar's own digest (what a registry or
    release page publishes), None for a directory, whose files the report's manifest digest and
    model.sig cover instead. Read once more for the report only: the checks hash the extracted
    files."""
    if os.path.isdir(path):
        return "directory", None
    if os.path.isfile(path):
        from modelseal.format.digests import sha256_file

        return "tar", sha256_file(path)[0]
    return "missing", None


def _document(
    report: Report, args: argparse.Namespace, command: str, oci_digest: str | None = None
) -> dict[str, object]:
    kind, digest = _artifact(args.bundle, oci_digest)
    return report.to_json(command=command, path=args.bundle, kind=kind, sha256=digest)


def _input_failure(
    error: ModelsealError | OSError, args: argparse.Namespace, command: str
) -> tuple[dict[str, object], int]:
    """The report for a failure before the checks ran (arguments, key, policy, I/O): no check
    ran, and `failure.check` is "input"."""
    if isinstance(error, OSError):
        where = str(error.filename or "")
        error = ModelsealError(
            what=str(error.strerror or error),
            where=where,
            remedy="check the file and its permissions",
        )
    document = _document(Report(), args, command)
    document["failure"] = failure_json(error, "input")
    return document, error.exit_code


def _emit(document: dict[str, object], *, to_stderr: bool) -> None:
    """One canonical JSON line: on stdout for `verify`; on stderr for `run`, whose stdout is the
    model's."""
    stream = sys.stderr.buffer if to_stderr else sys.stdout.buffer
    sys.stdout.flush()
    stream.write(canonical_json(document))
    stream.flush()


def _print_report(report: Report, *, quiet: bool = False) -> None:
    """The text report on stdout; with `quiet` (for `run`, whose stdout is the model's) only the
    failure, on stderr."""
    for check in report.checks:
        if check.ok and not quiet:
            print(f"ok      {check.name}: {check.detail}")
    if report.failure is not None:
        print(f"modelseal: error: {report.failure.check}: {report.failure}", file=sys.stderr)
    elif report.manifest is not None and not quiet:
        manifest = report.manifest
        print(f"verified {manifest.name} {manifest.version} ({manifest.trust})")
    sys.stdout.flush()


class _Signalled(BaseException):
    """SIGTERM (or SIGINT) during verify, run or extract: unwinds like an exception, so the
    private directory is removed (and `run`'s child killed) before the process exits."""

    def __init__(self, number: int) -> None:
        super().__init__(number)
        self.number = number


@contextlib.contextmanager
def _signals_unwind() -> Iterator[None]:
    def handler(number: int, frame: object) -> None:
        raise _Signalled(number)

    previous = {n: signal.signal(n, handler) for n in (signal.SIGTERM, signal.SIGINT)}
    try:
        yield
    finally:
        for number, old in previous.items():
            signal.signal(number, old)


def verify_then(
    args: argparse.Namespace, then: Callable[[str], int], destination: str | None = None
) -> int:
    """Verify, then call `then` with the verified directory (`modelseal pull` moves it); an
    oci:// artifact is fetched under `destination` (a private directory by default)."""
    return _verify_then(args, None, lambda report: then(report.bundle_dir), destination)


def _verify_then(
    args: argparse.Namespace,
    command: Sequence[str] | None,
    then: Callable[[Report], int] | None = None,
    destination: str | None = None,
) -> int:
    try:
        with _signals_unwind():
            return _verify_then_inner(args, command, then, destination)
    except _Signalled as s:
        name = signal.Signals(s.number).name
        print(f"modelseal: error: stopped by {name}; nothing was kept", file=sys.stderr)
        return 128 + s.number


def _verify_then_inner(
    args: argparse.Namespace,
    command: Sequence[str] | None,
    then: Callable[[Report], int] | None,
    destination: str | None = None,
) -> int:
    name = "verify" if command is None else "run"
    if then is not None:
        name = "extract"
    progress = None if args.json else default_progress()
    try:
        options = _options(args, progress)
        with local_copy(args, options.limits, destination) as (path, oci_digest), \
                verified_bundle(path, options) as report:
            if progress is not None:
                progress.close()
            if args.json:
                document = _document(report, args, name, oci_digest)
                _emit(document, to_stderr=command is not None)
            else:
                _print_report(report, quiet=command is not None)
            if command is not None and report.ok:
                # A tar's verified copy sits in a private scratch directory: PEX_ROOT goes there.
                is_tar = os.path.isfile(path) or oci_digest is not None
                scratch = os.path.dirname(report.bundle_dir) if is_tar else None
                return _run_pex(report, command, model_python(args), scratch)
            if then is not None and report.ok:
                return then(report)
            return EXIT_OK if report.failure is None else report.failure.exit_code
    except (ModelsealError, OSError) as e:
        if not args.json:
            raise  # cli.main prints it as one line, with the error's exit code.
        document, code = _input_failure(e, args, name)
        _emit(document, to_stderr=command is not None)
        return code
    finally:
        if progress is not None:
            progress.close()


def _run_pex(
    report: Report, command: Sequence[str], python: str, scratch: str | None = None
) -> int:
    """Run the verified PEX with `command`, stdin, stdout and stderr passed through; its code
    (128 + N when a signal N ended it, as shells report it)."""
    manifest = report.manifest
    assert manifest is not None
    pex = os.path.join(report.bundle_dir, *manifest.runtime.pex.split("/"))
    sys.stdout.flush()
    # A new, empty PEX_ROOT: pex unpacks into $PEX_ROOT/unzipped_pexes/<hash from PEX-INFO>
    # and trusts what it finds there, so a shared cache filled by a forged PEX with the same
    # PEX-INFO would run instead of the verified bytes.
    pex_root = tempfile.mkdtemp(prefix="modelseal-pex-root-", dir=scratch)
    try:
        env = child_environment(os.environ, pex_root)
        completed = subprocess.run([python, pex, *command], cwd=report.bundle_dir, env=env)
    finally:
        remove_tree(pex_root)
    code = completed.returncode
    return 128 - code if code < 0 else code


def child_environment(environ: Mapping[str, str], pex_root: str) -> dict[str, str]:
    """`environ` without what changes the code Python or pex loads (SCRUBBED_PREFIXES), with
    PEX_ROOT set to `pex_root` and the user's site-packages off."""
    env = {k: v for k, v in environ.items() if not k.upper().startswith(SCRUBBED_PREFIXES)}
    env["PEX_ROOT"] = pex_root
    env["PYTHONNOUSERSITE"] = "1"
    return env


def verify(args: argparse.Namespace) -> int:
    return _verify_then(args, None)


def extract_arguments(parser: argparse.ArgumentParser) -> None:
    verify_arguments(parser)
    parser.add_argument(
        "directory", metavar="DIR", help="where to write the verified bundle (DIR/<name>-<version>)"
    )


def extract(args: argparse.Namespace) -> int:
    """Verify the tar, then write out exactly the verified bytes: the safe `tar xf`."""
    if not os.path.isfile(args.bundle):
        raise SpecError(
            what="not a bundle tar",
            where=args.bundle,
            remedy="pass the .tar that `pants package` wrote (a directory needs no extraction)",
        )
    return _verify_then(args, None, lambda report: _write_out(report, args.directory))


def _write_out(report: Report, directory: str) -> int:
    """Copy the verified private copy into `directory/<top>`, hashing every byte copied against
    the digests the checks used; a temporary directory renamed into place, so nothing half
    written remains."""
    source = report.bundle_dir
    target = os.path.join(directory, os.path.basename(source))
    if os.path.lexists(target):
        raise SpecError(
            what="already exists", where=target, remedy="remove it or extract somewhere else"
        )
    os.makedirs(directory, exist_ok=True)
    staging = tempfile.mkdtemp(prefix=".modelseal-extract-", dir=directory)
    try:
        copy_verified(source, os.path.join(staging, "bundle"), report.digests)
        os.rename(os.path.join(staging, "bundle"), target)
    finally:
        remove_tree(staging)
    print(f"modelseal: extracted to {target}", file=sys.stderr)
    return EXIT_OK


def run(args: argparse.Namespace) -> int:
    command: list[str] = list(getattr(args, "passthrough", []))
    if not command:
        raise SpecError(
            what="nothing to run",
            where="run",
            remedy="add the model's command after `--`, e.g. `-- predict` or `-- info`",
        )
    return _verify_then(args, command)
