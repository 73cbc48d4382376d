"""Two real `./pants package` builds of HEAD, shared by the e2e tests: they differ in checkout
path, HOME, user, TZ, LANG, umask and whether SOURCE_DATE_EPOCH is set, and share one development
keyring (signatures are deterministic for the same key).

The first build (`::`) is the packaged workspace every e2e test may reuse (its dist/, its repo, its
environment: `Builds`): it reads and writes the shared local process cache, so the tests after it
(and their clones) find the modelseal tool, the locks and the examples already built. The second
build reads no cache and writes none: every process runs again, so that comparing what both wrote
proves reproducibility (on an empty cache, the first runs every process too). It builds only
`REPRODUCED`, the smallest set that proves the point: the sentiment example (a model.pex for four
platforms, an evaluation run before signing, nested weights of several kinds, its tar) and the two
wheels. Not rebuilt, to save their CPU (issue 12): the 20-platform modelseal.pex (about 150 CPU-s
uncached; a Pants `pex_binary` built by the same pex tool, lock and complete platforms as model.pex,
no modelseal rule of its own), iris (its sklearn training is reproduced by `.ci/run`'s `./pants
reproduce examples::`, two uncached builds of both examples), tests/arm64's x86_64-only copy of
sentiment and build-support's derive_platforms.pex. Both builds run at once.

The first build's cache hits need the outer run's environment where Pants puts it into a
process's key: Pants passes `[subprocess-environment].env_vars` (LANG, LC_CTYPE, LC_ALL,
SSL_CERT_FILE, SSL_CERT_DIR by default) from the caller to every PEX process, so a build that
dropped SSL_CERT_FILE or set another LANG missed every PEX the outer `./pants test ::` had built
(the 20-platform modelseal.pex, the locks, the examples): 297 CPU-s for the first build after
such a run, 80 CPU-s with them passed through (docs/development.md, "Session 8"). The first
build therefore takes them from the caller (`repo.caller_process_env`: the outer Pants gives them
to this pytest process; the audit workspace, tests/e2e/audit.py, does the same); the second build,
which reads no cache, still runs under another LANG (and no LC_* of the caller's, which would
override it).

The first build starts a pantsd in its workspace, so that later runs there (`pants verify ::`)
skip Pants' start-up and find the bundles it memoized; the second runs without one, like every
build that is about a fresh process. The pantsd is ended when the session ends."""

from __future__ import annotations

import os
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from e2e.repo import (
    Builds,
    caller_process_env,
    clone,
    commit_time,
    run_pants,
    shared_cache,
    stop_pantsd,
)

# What the uncached second build packages (see the module's docstring).
REPRODUCED = ("examples/sentiment:model", "src/modelseal:wheel", "rules/modelseal_pants:wheel")
# The second build's locale: another than the first's, whatever the caller's is.
OTHER_LANGS = ("de_DE.UTF-8", "fr_FR.UTF-8")


@pytest.fixture(scope="session")
def builds(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Builds]:
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
    # The caller's locale and certificates, as the outer Pants passed them: the same cache keys.
    caller = caller_process_env()
    first_env = {**base, **caller, "HOME": str(root / "home-a"), "TZ": "UTC", "USER": "alice"}
    lang = next(other for other in OTHER_LANGS if other != caller.get("LANG"))
    second_env = {**base, **{k: v for k, v in caller.items() if k.startswith("SSL_")},
                  "HOME": str(root / "home-b"), "TZ": "Pacific/Kiritimati", "LANG": lang,
                  "USER": "bob", "SOURCE_DATE_EPOCH": commit_time(second)}
    # The shared keyring is made on first use, under a lock (modelseal dev-keyring).
    try:
        yield build_both(first, second, first_env, second_env, data_home)
    finally:
        stop_pantsd(first)


def build_both(
    first: Path, second: Path, first_env: dict[str, str], second_env: dict[str, str],
    data_home: Path,
) -> Builds:
    with ThreadPoolExecutor(2) as pool:
        runs = [
            pool.submit(run_pants, first, "package", "::", env=first_env, umask=0o022,
                        pantsd=True),
            # Every process runs again: a cache hit would prove nothing about reproducibility.
            pool.submit(run_pants, second, "--no-local-cache", "package", *REPRODUCED,
                        env=second_env, umask=0o077),
        ]
        for run in runs:
            result = run.result()
            assert result.returncode == 0, result.stderr[-5000:]
    return Builds(first / "dist", second / "dist", data_home / "modelseal" / "dev-keyring",
                  first_env)
