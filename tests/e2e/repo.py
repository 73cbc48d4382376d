"""Clones of the repository under test, and real ./pants runs in them."""

from __future__ import annotations

import hashlib
import os
import subprocess
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


def run_pants(
    repo: Path, *args: str, env: dict[str, str], umask: int = 0o022
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(repo / "pants"), "--no-pantsd", *args],
        cwd=repo, env=env, umask=umask, capture_output=True, text=True, timeout=1800,
    )


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


def reference_tools() -> Path:
    """The bin directory of in-toto and model_signing, installed from 3rdparty/reftools."""
    out = subprocess.run(
        ["bash", "build-support/reference-tools"], check=True, capture_output=True, text=True
    ).stdout
    return Path(out.strip())
