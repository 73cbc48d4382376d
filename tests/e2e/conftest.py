"""Two real `./pants --no-local-cache package ::` builds of HEAD, shared by the e2e tests: they
differ in checkout path, HOME, user, TZ, LANG, umask and whether SOURCE_DATE_EPOCH is set, and
share one development keyring (signatures are deterministic for the same key)."""

from __future__ import annotations

import os

import pytest
from e2e.repo import Builds, clone, commit_time, run_pants, shared_cache


@pytest.fixture(scope="session")
def builds(tmp_path_factory: pytest.TempPathFactory) -> Builds:
    root = tmp_path_factory.mktemp("builds")
    first = clone(root / "a" / "repo")
    second = clone(root / "elsewhere" / "deeper" / "checkout")
    data_home = root / "data"
    base = {
        "PATH": os.environ["PATH"],
        "XDG_CACHE_HOME": shared_cache(),
        "XDG_DATA_HOME": str(data_home),
    }
    if "PYENV_ROOT" in os.environ:
        base["PYENV_ROOT"] = os.environ["PYENV_ROOT"]
    (root / "home-a").mkdir()
    (root / "home-b").mkdir()
    runs = [
        (first, {**base, "HOME": str(root / "home-a"), "TZ": "UTC", "LANG": "C.UTF-8",
                 "USER": "alice"}, 0o022),
        (second, {**base, "HOME": str(root / "home-b"), "TZ": "Pacific/Kiritimati",
                  "LANG": "de_DE.UTF-8", "USER": "bob",
                  "SOURCE_DATE_EPOCH": commit_time(second)}, 0o077),
    ]
    for repo, env, umask in runs:
        # Every process runs again: a cache hit would prove nothing about reproducibility.
        result = run_pants(repo, "--no-local-cache", "package", "::", env=env, umask=umask)
        assert result.returncode == 0, result.stderr[-5000:]
    return Builds(
        first / "dist", second / "dist", data_home / "modelseal" / "dev-keyring", runs[0][1]
    )
