"""Building a checkout again, apart from everything the caller has, for audits.

Two users: `modelseal rebuild` (one commit, checked out fresh, built once and compared with a
published artifact) and `modelseal reproduce` behind `pants reproduce` (the working tree, copied
twice, built twice and compared). Both run the checkout's own `./pants`, so the rebuild uses the
Pants, plugin and locks of the commit being audited, never the caller's.

A rebuild is made to be honest rather than fast: no local or remote process cache is read or
written, pantsd is not used, and signing uses a throw-away development keyring (an auditor does not
hold the publisher's keys; signatures are not compared). Named caches (downloaded wheels) are
shared: their contents are checked against the lock's hashes on every use.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
from collections import deque
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from modelseal.errors import EXIT_NOT_REPRODUCED, ModelsealError, SpecError

# Options that make a build an audit build. Key options are set empty so that the checkout's
# release keys (which the auditor does not have) give way to a development keyring; a generated
# layout may carry any validity (it is signature-bearing, so not compared), which lets old commits
# whose layout would have expired by now still build.
# Audits compare tars, which `package` writes only on request (`[modelseal].archive`). As an
# environment variable, not an option: a commit whose plugin predates the option (and always wrote
# the tar) ignores it, where an unknown command-line option would fail the build.
ARCHIVE_ENV = {"PANTS_MODELSEAL_ARCHIVE": "true"}
AUDIT_OPTIONS = (
    "--no-pantsd",
    "--no-local-cache",
    "--no-remote-cache-read",
    "--no-remote-cache-write",
    "--no-remote-execution",
    "--modelseal-owner-key=",
    "--modelseal-train-key=",
    "--modelseal-package-key=",
    "--modelseal-sign-key=",
    "--modelseal-thresholds={}",
    "--modelseal-layout-validity-days=36500",
)

# Variables of the caller that would change what the checkout builds or how: Pants options and
# config, an explicit SOURCE_DATE_EPOCH (a rebuild uses the commit's time, as the build does), and
# what the caller's own ./pants exported.
_DROPPED_PREFIXES = ("PANTS_", "MODELSEAL_")
_DROPPED = ("SOURCE_DATE_EPOCH", "PEX_ROOT", "PEX_PYTHON", "PEX_PYTHON_PATH", "PYTHONPATH")


class RebuildError(ModelsealError):
    """The rebuild itself could not be done: not the artifact's fault, nor proof of a mismatch."""


class NotReproducedError(ModelsealError):
    """The rebuild finished and its outputs differ from the published ones."""

    exit_code = EXIT_NOT_REPRODUCED


def git(repo: str, *args: str) -> str:
    result = subprocess.run(
        ["git", "-C", repo, *args], capture_output=True, text=True, check=False
    )
    if result.returncode != 0:
        raise RebuildError(
            what=f"`git {' '.join(args)}` failed: {result.stderr.strip() or result.returncode}",
            where=repo,
            remedy="pass --repo with a git checkout that holds the commit",
        )
    return result.stdout.strip()


def resolve_commit(repo: str, revision: str) -> str:
    try:
        return git(repo, "rev-parse", "--verify", "--quiet", f"{revision}^{{commit}}")
    except RebuildError:
        raise SpecError(
            what=f"no commit {revision!r} in this repository",
            where=repo,
            remedy="pass --commit with a commit id, tag or branch the repository holds "
            "(`git fetch` it first)",
        ) from None


def check_out(repo: str, commit: str, destination: str) -> str:
    """A new clone of `repo` at `commit` in `destination`: only what the commit holds. A clone, not
    a worktree, so that nothing of the caller's checkout (uncommitted changes, untracked or
    ignored files, hooks, config) can be seen. Objects are shared read-only with `repo`."""
    git(repo, "clone", "--quiet", "--shared", "--no-checkout", ".", destination)
    git(destination, "-c", "advice.detachedHead=false", "checkout", "--quiet", "--detach", commit)
    return destination


def snapshot_worktree(repo: str, destination: str) -> str:
    """A copy of the working tree of `repo` as it is now (tracked files with their changes, and
    untracked files that are not ignored), with HEAD's history, for `reproduce`."""
    check_out(repo, "HEAD", destination)
    changed = git(repo, "ls-files", "-z", "--modified", "--others", "--exclude-standard")
    for relative in filter(None, changed.split("\0")):
        source = os.path.join(repo, relative)
        target = os.path.join(destination, relative)
        if os.path.lexists(target):
            os.remove(target)
        if os.path.lexists(source):  # otherwise deleted in the working tree
            os.makedirs(os.path.dirname(target), exist_ok=True)
            shutil.copy2(source, target, follow_symlinks=False)
    return destination


def clean_environment(environ: Mapping[str, str], **overrides: str) -> dict[str, str]:
    env = {
        name: value
        for name, value in environ.items()
        if not name.startswith(_DROPPED_PREFIXES) and name not in _DROPPED
    }
    env.update(overrides)
    return env


@dataclass(frozen=True)
class Build:
    """One `./pants package` run of a checkout."""

    checkout: str
    targets: tuple[str, ...]
    env: Mapping[str, str]
    log: str
    umask: int = 0o022


def run_package(build: Build, label: str) -> None:
    """Package the targets in the checkout with AUDIT_OPTIONS, writing Pants' output to the log
    and echoing it, prefixed, on stderr so that long builds show progress."""
    launcher = os.path.join(build.checkout, "pants")
    if not os.path.isfile(launcher):
        raise RebuildError(
            what="the checkout has no ./pants launcher",
            where=build.checkout,
            remedy="rebuild a commit of a modelseal workspace (one with ./pants at its root)",
        )
    argv = [launcher, *AUDIT_OPTIONS, "package", *build.targets]
    print(f"[{label}] ./pants package {' '.join(build.targets)}  (log: {build.log})",
          file=sys.stderr, flush=True)
    with open(build.log, "w", encoding="utf-8") as log:
        process = subprocess.Popen(
            argv, cwd=build.checkout, env={**build.env, **ARCHIVE_ENV}, umask=build.umask,
            stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
            text=True, errors="replace",
        )
        assert process.stdout is not None
        tail: deque[str] = deque(maxlen=15)
        for line in process.stdout:
            log.write(line)
            tail.append(line.rstrip())
            print(f"[{label}] {line.rstrip()}", file=sys.stderr, flush=True)
        code = process.wait()
    if code != 0:
        raise RebuildError(
            what=f"`./pants package` failed with exit code {code}:\n  " + "\n  ".join(tail),
            where=build.checkout,
            remedy=f"read the whole output in {build.log}; a commit that does not build cannot "
            "be reproduced",
        )


def find_output(checkout: str, file_name: str) -> str:
    """The one file called `file_name` that the build wrote below dist/."""
    found = []
    for directory, _, files in os.walk(os.path.join(checkout, "dist")):
        if file_name in files:
            found.append(os.path.join(directory, file_name))
    if len(found) != 1:
        raise RebuildError(
            what=f"the build wrote {len(found)} files named {file_name}, not one",
            where=os.path.join(checkout, "dist"),
            remedy="check that --target names the model_artifact that produced the published "
            "artifact (its name and version must match)",
        )
    return found[0]


def bundle_tars(dist: str) -> dict[str, str]:
    """Each bundle tar below `dist` (a tar beside a directory of the same name holding a
    manifest.json), keyed by its path relative to `dist`."""
    tars = {}
    for directory, _, files in os.walk(dist):
        for name in files:
            if name.endswith(".tar"):
                bundle_dir = os.path.join(directory, name[: -len(".tar")])
                if os.path.isfile(os.path.join(bundle_dir, "manifest.json")):
                    path = os.path.join(directory, name)
                    tars[os.path.relpath(path, dist)] = path
    return tars


def diffoscope_reports(expected: str, found: str, report_dir: str) -> list[str]:
    """Write diffoscope's text and HTML reports of two bundle tars (signatures left out) into
    `report_dir`; the paths written, or [] when diffoscope is not installed."""
    diffoscope = shutil.which("diffoscope")
    if diffoscope is None:
        return []
    text = os.path.join(report_dir, "diffoscope.txt")
    html = os.path.join(report_dir, "diffoscope.html")
    result = subprocess.run(
        [diffoscope, "--text", text, "--html", html,
         "--exclude", "*/model.sig", "--exclude", "*/provenance/*", expected, found],
        stdin=subprocess.DEVNULL, capture_output=True, text=True, check=False,
    )
    if result.returncode not in (0, 1):  # 1: differences found; anything else: diffoscope failed
        raise RebuildError(
            what=f"diffoscope failed (exit code {result.returncode}): {result.stderr.strip()}",
            where=report_dir,
            remedy="the comparison above stands; run diffoscope by hand for the detailed report",
        )
    return [path for path in (text, html) if os.path.exists(path)]


def scratch_directory(prefix: str) -> str:
    return tempfile.mkdtemp(prefix=prefix)


def remove(paths: Iterable[str]) -> None:
    for path in paths:
        shutil.rmtree(path, ignore_errors=True)
