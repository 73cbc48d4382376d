"""Clones of the repository under test, and real ./pants runs in them."""

from __future__ import annotations

import contextlib
import hashlib
import os
import signal
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path


def source_repo() -> str:
    root = os.environ.get("MODELSEAL_BUILDROOT")
    assert root, "run the end-to-end tests through ./pants, which exports MODELSEAL_BUILDROOT"
    return root


def clone(destination: Path, source: Path | None = None) -> Path:
    """A clone of HEAD (of `source`, by default the repository under test): what an auditor or CI
    checks out, without the caller's uncommitted work."""
    destination.parent.mkdir(parents=True, exist_ok=True)
    subprocess.run(["git", "clone", "--quiet", str(source or source_repo()), str(destination)],
                   check=True)
    return destination


def commit_time(repo: Path) -> str:
    return subprocess.run(
        ["git", "-C", str(repo), "log", "-1", "--format=%ct"],
        check=True, capture_output=True, text=True,
    ).stdout.strip()


def shared_cache() -> str:
    return os.environ.get("XDG_CACHE_HOME") or os.path.join(os.environ["HOME"], ".cache")


# Pants 2.17's `[subprocess-environment].env_vars` default: Pants passes these from its caller to
# every PEX process, so they are part of each process's cache key.
PASSED_THROUGH = ("LANG", "LC_CTYPE", "LC_ALL", "SSL_CERT_FILE", "SSL_CERT_DIR")


def caller_process_env() -> dict[str, str]:
    """The locale and certificate variables of this pytest process, as the outer `./pants test`
    passed them: a nested build that sets them the same way finds, in the shared local cache, the
    PEXes the outer run built (the modelseal tool, the locks' installs) instead of building them
    again."""
    return {name: os.environ[name] for name in PASSED_THROUGH if name in os.environ}


# The e2e tests read and compare the bundles' tars, which `package` writes only on request.
ARCHIVE_ENV = {"PANTS_MODELSEAL_ARCHIVE": "true"}


def run_pants(
    repo: Path, *args: str, env: dict[str, str], umask: int = 0o022, pantsd: bool = False
) -> subprocess.CompletedProcess[str]:
    """`./pants ARGS` in `repo`. Each run without pantsd starts Pants afresh: on this project
    that is 20-50 s of CPU (the rule graph) before any work. `pantsd=True` for a series of runs in
    one workspace that is not about a fresh process: the first starts a pantsd, the others reuse
    it (and what it memoized, signatures included); the fixture that made the workspace ends it
    with `stop_pantsd`."""
    return subprocess.run(
        [str(repo / "pants"), *(() if pantsd else ("--no-pantsd",)), *args],
        cwd=repo, env={**env, **ARCHIVE_ENV}, umask=umask, capture_output=True, text=True,
        timeout=1800,
    )


def stop_pantsd(repo: Path) -> None:
    """End the pantsd that `run_pants(..., pantsd=True)` started in `repo` (by the pid it wrote
    under .pids/), and wait for it to exit."""
    for pid_file in repo.glob(".pids/*/pantsd/pid"):
        try:
            pid = int(pid_file.read_text().strip())
            os.kill(pid, signal.SIGTERM)
        except (ValueError, ProcessLookupError, OSError):
            continue
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            try:
                os.kill(pid, 0)
            except ProcessLookupError:
                break
            time.sleep(0.2)
        else:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)


def tree_digests(root: Path) -> dict[str, str]:
    """Every file under root (relative path -> sha256), read in chunks."""
    digests = {}
    for path in sorted(root.rglob("*")):
        if path.is_file():
            sha = hashlib.sha256()
            with open(path, "rb") as f:
                for chunk in iter(lambda: f.read(1 << 20), b""):
                    sha.update(chunk)
            digests[path.relative_to(root).as_posix()] = sha.hexdigest()
    return digests


@dataclass(frozen=True)
class Builds:
    """The outputs of the two builds in conftest.py."""

    first: Path  # dist/ of the first build
    second: Path
    keyring: Path  # the development keyring both builds signed with
    first_env: dict[str, str]  # the environment of the first build, to run ./pants there again


def packaged_tool() -> Path:
    """modelseal.pex as Pants packaged it for this test run (`runtime_package_dependencies` in
    tests/e2e/BUILD): for the tests that need the tool but not the `builds` workspace, so that
    they run in a batch of their own, beside the one that builds `::`."""
    pex = Path("modelseal.pex").absolute()
    assert pex.is_file(), (
        "no modelseal.pex in the test's sandbox: list src/modelseal:modelseal in the test's "
        "runtime_package_dependencies (tests/e2e/BUILD)"
    )
    return pex


def reference_tools() -> Path:
    """The bin directory of in-toto and model_signing, installed from 3rdparty/reftools."""
    out = subprocess.run(
        ["bash", "build-support/reference-tools"], check=True, capture_output=True, text=True
    ).stdout
    return Path(out.strip())
