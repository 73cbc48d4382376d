"""Two real `./pants package ::` builds of HEAD, shared by the e2e tests: they differ in checkout
path, HOME, user, TZ, LANG, umask and whether SOURCE_DATE_EPOCH is set, and share one development
keyring (signatures are deterministic for the same key).

The first build is the packaged workspace every e2e test may reuse (its dist/, its repo, its
environment: `Builds`): it reads and writes the shared local process cache, so the tests after it
(and their clones) find the modelseal tool, the locks and the examples already built. The second
build reads no cache and writes none: every process runs again, so that comparing the two proves
reproducibility (on an empty cache, the first runs every process too). Both run at once: each
leaves a core idle for much of its run."""

from __future__ import annotations

import os
from concurrent.futures import ThreadPoolExecutor

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
    first_env = {**base, "HOME": str(root / "home-a"), "TZ": "UTC", "LANG": "C.UTF-8",
                 "USER": "alice"}
    second_env = {**base, "HOME": str(root / "home-b"), "TZ": "Pacific/Kiritimati",
                  "LANG": "de_DE.UTF-8", "USER": "bob", "SOURCE_DATE_EPOCH": commit_time(second)}
    # The shared keyring is made on first use, under a lock (modelseal dev-keyring).
    with ThreadPoolExecutor(2) as pool:
        runs = [
            pool.submit(run_pants, first, "package", "::", env=first_env, umask=0o022),
            # Every process runs again: a cache hit would prove nothing about reproducibility.
            pool.submit(run_pants, second, "--no-local-cache", "package", "::", env=second_env,
                        umask=0o077),
        ]
        for run in runs:
            result = run.result()
            assert result.returncode == 0, result.stderr[-5000:]
    return Builds(first / "dist", second / "dist", data_home / "modelseal" / "dev-keyring",
                  first_env)
