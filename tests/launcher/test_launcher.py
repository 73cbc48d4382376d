"""End-to-end tests of ./pants (the bootstrap launcher) and 3rdparty/lock, on copies of them.

Each scenario starts from an empty cache (XDG_CACHE_HOME in a temporary directory), as on a fresh
machine. Only pip's download cache is shared with the caller, to spare the registry.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import statistics
import subprocess
import time
from pathlib import Path

import pytest
import tomllib

LAUNCHER_FILES = (
    "pants",
    "build-support/find-python.sh",
    "3rdparty/pants/lock.txt",
    "3rdparty/pants/pex-tool.lock",
)
MINIMAL_PANTS_TOML = '[GLOBAL]\npants_version = "2.17.1"\n'


def outer_pip_cache() -> str:
    if os.environ.get("PIP_CACHE_DIR"):
        return os.environ["PIP_CACHE_DIR"]
    cache = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.environ["HOME"], ".cache")
    return os.path.join(cache, "pip")


def make_repo(root: Path) -> Path:
    repo = root / "repo"
    for rel in LAUNCHER_FILES:
        (repo / rel).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(rel, repo / rel)
    (repo / "pants.toml").write_text(MINIMAL_PANTS_TOML)
    return repo


def fresh_env(root: Path, **overrides: str) -> dict[str, str]:
    (root / "home").mkdir(exist_ok=True)
    env = {
        "PATH": os.environ["PATH"],
        "HOME": str(root / "home"),
        "XDG_CACHE_HOME": str(root / "cache"),
        "PIP_CACHE_DIR": outer_pip_cache(),
        "PYENV_ROOT": os.environ.get("PYENV_ROOT", os.path.join(os.environ["HOME"], ".pyenv")),
    }
    env.update(overrides)
    return env


def venvs(root: Path) -> list[Path]:
    return sorted((root / "cache" / "modelseal" / "bootstrap").glob("pants-*"))


def pants(repo: Path, env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(repo / "pants"), "--no-pantsd", *args],
        cwd=repo, env=env, capture_output=True, text=True, timeout=600,
    )


def test_without_python39_one_clear_line(tmp_path: Path) -> None:
    repo = make_repo(tmp_path)
    (tmp_path / "no-pyenv").mkdir()
    env = fresh_env(tmp_path, PATH="/usr/bin:/bin", PYENV_ROOT=str(tmp_path / "no-pyenv"))
    result = pants(repo, env, "--version")
    assert result.returncode != 0
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert "CPython 3.9 is required" in lines[0]
    assert "pyenv install 3.9" in lines[0]
    assert not venvs(tmp_path)


def bootstrap_only(repo: Path, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    """The launcher up to the point where it would exec Pants: it prints the venv's path. Each
    Pants start costs about 7 s of CPU; one `--version` below proves a rebuilt venv runs Pants."""
    return subprocess.run([str(repo / "pants")], cwd=repo,
                          env={**env, "MODELSEAL_BOOTSTRAP_ONLY": "1"},
                          capture_output=True, text=True, timeout=600)


def pinned_pex_tool_sha256() -> str:
    """The pex tool's digest pinned in the repository's pants.toml ([pex-cli].known_versions)."""
    with open("pants.toml", "rb") as config:
        known = tomllib.load(config)["pex-cli"]["known_versions"]
    return str(known[0].split("|")[2])


def test_racing_launches_on_an_empty_cache_both_succeed(tmp_path: Path) -> None:
    """Three bootstraps from nothing (the race, the repaired venv, the changed lock): what the
    launcher must get right on a fresh or damaged cache. Pants itself starts once."""
    repo = make_repo(tmp_path)
    env = fresh_env(tmp_path)
    quick = {**env, "MODELSEAL_BOOTSTRAP_ONLY": "1"}
    racers = [
        subprocess.Popen([str(repo / "pants")], cwd=repo, env=quick, stdout=subprocess.PIPE,
                         stderr=subprocess.PIPE, text=True)
        for _ in range(2)
    ]
    outputs = [racer.communicate(timeout=600) for racer in racers]
    for racer, (_, err) in zip(racers, outputs):
        assert racer.returncode == 0, err
    assert len(venvs(tmp_path)) == 1
    venv = venvs(tmp_path)[0]
    # Both got the one venv; one of them waited for the other instead of building a second.
    assert [out.strip() for out, _ in outputs] == [str(venv)] * 2
    assert any("waiting for it to finish" in err for _, err in outputs)
    assert not list((tmp_path / "cache" / "modelseal" / "bootstrap").glob(".building-*"))
    # The pex tool PEX is byte-identical to the one pants.toml pins (Pants refuses any other).
    pex_tool = (venv / "pex-tool" / "pex-2.1.148.pex").read_bytes()
    assert hashlib.sha256(pex_tool).hexdigest() == pinned_pex_tool_sha256()

    # Already bootstrapped, the launcher adds well under 0.2 s before Pants starts.
    timings = []
    for _ in range(7):
        start = time.perf_counter()
        done = bootstrap_only(repo, env)
        timings.append(time.perf_counter() - start)
        assert done.returncode == 0, done.stderr
        assert done.stderr == ""
    assert statistics.median(timings) < 0.2, timings

    # A file deleted from the venv is noticed, and the venv rebuilt, by the next launch, which
    # then runs Pants from it.
    victim = venv / "lib" / "python3.9" / "site-packages" / "pants" / "version.py"
    victim.unlink()
    repaired = pants(repo, env, "--version")
    assert repaired.returncode == 0, repaired.stderr
    assert "incomplete or damaged; rebuilding" in repaired.stderr
    assert repaired.stdout.strip() == "2.17.1"
    assert victim.is_file()
    assert venvs(tmp_path) == [venv]

    # A changed lock gets a venv of its own, built from nothing.
    with open(repo / "3rdparty" / "pants" / "lock.txt", "a") as lock:
        lock.write("# a change to the lock\n")
    relocked = bootstrap_only(repo, env)
    assert relocked.returncode == 0, relocked.stderr
    assert "[1/4] creating a virtualenv" in relocked.stderr
    assert len(venvs(tmp_path)) == 2
    assert relocked.stdout.strip() in {str(v) for v in venvs(tmp_path)} - {str(venv)}


@pytest.mark.parametrize("lock", ["pants/requirements.in", "python/requirements.in"])
def test_lock_check_notices_an_edited_requirements_file(tmp_path: Path, lock: str) -> None:
    shutil.copytree("3rdparty", tmp_path / "3rdparty")
    check = [str(tmp_path / "3rdparty" / "lock"), "--check"]
    clean = subprocess.run(check, capture_output=True, text=True)
    assert clean.returncode == 0, clean.stderr
    with open(tmp_path / "3rdparty" / lock, "a") as requirements:
        requirements.write("six\n")
    stale = subprocess.run(check, capture_output=True, text=True)
    assert stale.returncode == 1
    assert f"3rdparty/{lock.replace('requirements.in', 'lock.txt')} is out of date" in stale.stderr
