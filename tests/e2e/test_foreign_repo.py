"""modelseal in a repository that is not this one: the plugin and the tool installed from the wheels
this build produced, nothing else of modelseal's (tests/e2e/foreign.py writes the repository).

The wheels come from `MODELSEAL_WHEELS` when set (a directory, e.g. a copy of dist/ after
`./pants package src/modelseal:wheel rules/modelseal_pants:wheel`), else from the first of the two
`./pants package ::` builds in conftest.py. Then, on the same wheels, modelseal installed by pip
with no index (`pip install --no-index --find-links DIR modelseal`) into new virtualenvs of
CPython 3.9 and 3.13 verifies the bundle.

The tool comes from the repository's own resolve, whose lock foreign.py derives from the wheel
(`tool_lock`), not from the lock the plugin wheel ships: that one pins the wheel of the last
`build-support/tool-lock` run, which `build-support/tool-lock --check` checks as a release step.
`pants reproduce` (two builds from nothing, no pantsd, no process cache) builds the two
pure-Python models only, the smallest that prove its points (issue 6; this was
test_reproduce.py, on clones of modelseal, merged here to save two uncached builds): it works in a
repository with its own launcher and layout, passes a deterministic model with an uncommitted file
(it builds the working tree), and names what differs in one whose training is random, with
diffoscope's report.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import signal
import subprocess
import tarfile
from pathlib import Path

import pytest
from e2e.audit import require_diffoscope
from e2e.foreign import bootstrap_venv, make_repo, wheel_version
from e2e.repo import reference_tools, shared_cache, source_repo

from core.interpreters import find_python

BUNDLE = "ml.vision.edges/model/edges-1.2.0"
# The numpy model: what this test packages, verifies and rebuilds dirty. The two pure-Python models
# are built by `pants reproduce` only (twice, from nothing): packaging them here as well, with
# `::`, would add their PEX builds and the noise model's training to the run and prove nothing new.
EDGES = "ml/vision/edges:model"
NOT_REPRODUCED = 7


@pytest.fixture(scope="module")
def wheels(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Path:
    given = os.environ.get("MODELSEAL_WHEELS")
    source = Path(given) if given else request.getfixturevalue("builds").first
    # Only the two wheels: the foreign repository must not see anything else modelseal built.
    found = []
    for wheel in ("modelseal-*-py3-none-any.whl", "modelseal_pants-*-py3-none-any.whl"):
        matches = sorted(source.glob(wheel))
        assert len(matches) == 1, f"expected one {wheel} in {source}, found {matches}"
        found.append(matches[0])
    # Named by the wheels' digest: `[python-repos].find_links` is part of the plugin resolve's
    # cache key, so other wheels of the same version can never be replayed from Pants' cache.
    digest = hashlib.sha256(b"".join(hashlib.sha256(w.read_bytes()).digest() for w in found))
    out = tmp_path_factory.getbasetemp() / f"wheels-{digest.hexdigest()[:16]}"
    out.mkdir(exist_ok=True)
    for wheel_path in found:
        shutil.copy(wheel_path, out)
    return out


def python(minor: int) -> str:
    found = find_python(minor)
    assert found, f"this test needs CPython 3.{minor}"
    return found


def pants(repo: Path, env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    """One Pants run in the foreign repository. Its pantsd (one per repository) serves every run
    of this test, so the plugin is loaded once; `pants reproduce` still runs each of its two
    builds in a fresh Pants with no cache."""
    return subprocess.run(
        [str(repo / "pants"), *args],
        cwd=repo, env=env, capture_output=True, text=True, timeout=1800,
    )


def stop_pantsd(repo: Path) -> None:
    """Stop the pantsd this test started (its pid file is under the repository's .pids/)."""
    for pid_file in repo.glob(".pids/*/pantsd/pid"):
        try:
            os.kill(int(pid_file.read_text().strip()), signal.SIGTERM)
        except (ProcessLookupError, ValueError):
            pass


def test_foreign_repository(wheels: Path, tmp_path: Path) -> None:
    require_diffoscope()
    source = Path(source_repo())
    repo = make_repo(tmp_path / "vision", wheels, source, bootstrap_venv(source))
    env = {
        "PATH": os.environ["PATH"],
        "HOME": str(tmp_path / "home"),
        # Pants' named caches, local store and the bootstrap are shared: what is under test is
        # this repository's configuration and the installed wheels, not a cold download.
        "XDG_CACHE_HOME": shared_cache(),
        "XDG_DATA_HOME": str(tmp_path / "data"),
    }
    if "PYENV_ROOT" in os.environ:
        env["PYENV_ROOT"] = os.environ["PYENV_ROOT"]
    (tmp_path / "home").mkdir()
    keyring = tmp_path / "data" / "modelseal" / "dev-keyring"
    try:
        check_foreign_repository(repo, env, keyring, wheel_version(wheels))
    finally:
        stop_pantsd(repo)
    check_reference_tools(repo / "dist" / f"{BUNDLE}.tar", keyring, tmp_path / "unpacked")
    check_wheel_installs(wheels, repo, repo / "dist" / f"{BUNDLE}.tar", keyring, tmp_path)


def check_foreign_repository(
    repo: Path, env: dict[str, str], keyring: Path, version: str
) -> None:
    # The wheels' directory is named by their digest (`[python-repos].find_links` names it), so
    # the plugin resolve cannot be a cache hit of other wheels of the same version.
    packaged = pants(repo, env, "package", EDGES)
    assert packaged.returncode == 0, packaged.stderr[-5000:]
    bundle = repo / "dist" / BUNDLE
    manifest = json.loads((bundle / "manifest.json").read_text())
    # The tool that wrote it is the modelseal wheel's (the repository's tool resolve installs it).
    assert manifest["build"]["modelseal_version"] == version, manifest["build"]
    assert manifest["name"] == "edges", manifest
    assert manifest["runtime"]["interpreter_constraints"] == ["CPython==3.11.*"], manifest
    assert (manifest["build"]["dirty"], manifest["build"]["dirty_sha256"]) == (False, "")
    assert "work tree differs" not in packaged.stderr
    image = json.dumps({"image": [[0, 0, 0, 0], [0, 9, 9, 0], [0, 9, 9, 0], [0, 0, 0, 0]]})
    predicted = subprocess.run(
        [python(11), str(bundle / "model.pex"), "predict"],
        input=image, capture_output=True, text=True,
    )
    assert predicted.returncode == 0, predicted.stderr
    assert json.loads(predicted.stdout) == {"edges": [[45.0, 45.0], [45.0, 45.0]]}
    # CPython 3.12 has no numpy wheel in this model.pex: one line, exit 8, although python3.11 is
    # on PATH (pex alone would re-execute under it).
    wrong = subprocess.run(
        [python(12), str(bundle / "model.pex"), "predict"], input=image,
        capture_output=True, text=True,
        env={**env, "PATH": os.pathsep.join([os.path.dirname(python(11)), env["PATH"]])},
    )
    assert (wrong.returncode, wrong.stdout) == (8, ""), wrong.stderr
    assert len(wrong.stderr.splitlines()) == 1, wrong.stderr
    assert "needs CPython 3.11" in wrong.stderr, wrong.stderr

    verified = pants(repo, env, "verify", EDGES)
    assert verified.returncode == 0, verified.stderr[-5000:]
    assert "edges" in verified.stdout + verified.stderr

    helped = pants(repo, env, "help", "model_artifact")
    assert helped.returncode == 0, helped.stderr[-3000:]
    assert "resolve" in helped.stdout and "source root" in helped.stdout, helped.stdout

    check_reproduce(repo, env)

    # A development build from a dirty work tree says so once and records the difference.
    (repo / "ml" / "vision" / "edges" / "NOTES.md").write_text("not committed yet\n")
    dirty = pants(repo, env, "package", EDGES)
    assert dirty.returncode == 0, dirty.stderr[-5000:]
    assert dirty.stderr.count("The work tree differs from the commit") == 1, dirty.stderr
    untracked = subprocess.run(
        ["git", "-C", str(repo), "ls-files", "-z", "--others", "--exclude-standard"],
        check=True, capture_output=True,
    ).stdout
    expected = hashlib.sha256(b"\0untracked\0" + untracked).hexdigest()  # no tracked change
    build = json.loads((bundle / "manifest.json").read_text())["build"]
    assert (build["dirty"], build["dirty_sha256"]) == (True, expected), build
    (repo / "ml" / "vision" / "edges" / "NOTES.md").unlink()


def check_reproduce(repo: Path, env: dict[str, str]) -> None:
    """`pants reproduce` passes the deterministic model and names what differs in the other."""
    # An uncommitted change is part of what is reproduced: the goal builds the working tree.
    extra = repo / "ml" / "vision" / "threshold" / "extra.json"
    extra.write_text('{"not committed": "yet"}\n')
    reproduced = pants(repo, env, "reproduce", "ml/vision/threshold:model", "ml/vision/noise:model")
    extra.unlink()
    output = reproduced.stdout + reproduced.stderr
    assert reproduced.returncode == NOT_REPRODUCED, output[-5000:]
    assert "✓ ml.vision.threshold/model/threshold-0.1.0.tar:" in reproduced.stdout, output[-5000:]
    assert "files identical in both builds" in reproduced.stdout, reproduced.stdout
    assert "✕ ml.vision.noise/model/noise-0.1.0.tar: not reproducible" in reproduced.stdout
    assert "weights/noise.bin: first build sha256" in reproduced.stdout
    assert "1 of 2 bundle(s) differ between two builds" in reproduced.stderr

    report = repo / "dist" / "reproduce"
    threshold = json.loads((report / "ml.vision.threshold_model_threshold-0.1.0.json").read_text())
    assert threshold["reproduced"] is True
    assert "weights/extra.json" in threshold["compared"]
    noise = json.loads((report / "ml.vision.noise_model_noise-0.1.0.json").read_text())
    assert noise["reproduced"] is False
    paths = {d["path"] for d in noise["differences"]}
    # The training step's random output, and the manifest that records its digest.
    assert paths == {"weights/noise.bin", "manifest.json"}, noise["differences"]
    diffoscope = report / "ml.vision.noise_model_noise-0.1.0" / "diffoscope.txt"
    assert "noise.bin" in diffoscope.read_text()


def check_reference_tools(tar_path: Path, keyring: Path, unpacked: Path) -> None:
    """in-toto-verify and model_signing accept the bundle."""
    tools = reference_tools()
    with tarfile.open(tar_path) as tar:
        tar.extractall(unpacked)  # The archive this test's build just wrote.
    unpacked_bundle = unpacked / Path(BUNDLE).name
    in_toto = subprocess.run(
        [str(tools / "in-toto-verify"), "--layout", "provenance/root.layout",
         "--verification-keys", str(keyring / "owner.pub"), "--link-dir", "provenance"],
        cwd=unpacked_bundle, capture_output=True, text=True,
    )
    assert in_toto.returncode == 0, in_toto.stdout + in_toto.stderr
    signed = subprocess.run(
        [str(tools / "model_signing"), "verify", "key", str(unpacked_bundle),
         "--signature", str(unpacked_bundle / "model.sig"),
         "--public_key", str(keyring / "release.pub")],
        capture_output=True, text=True,
    )
    assert signed.returncode == 0, signed.stdout + signed.stderr


def check_wheel_installs(
    wheels: Path, repo: Path, tar_path: Path, keyring: Path, tmp_path: Path
) -> None:
    """The modelseal wheel, installed with no index from a directory, verifies the bundle."""
    for minor in (9, 13):
        version = f"3.{minor}"
        wheelhouse = tmp_path / f"wheelhouse-{version}"
        shutil.copytree(wheels, wheelhouse)
        venv = tmp_path / f"venv-{version}"
        subprocess.run([python(minor), "-m", "venv", str(venv)], check=True)
        pip = [str(venv / "bin" / "python"), "-m", "pip", "--disable-pip-version-check", "-q"]
        # Its dependencies, pinned by hash by the tool lock (this interpreter's files).
        lock = repo / "3rdparty" / "modelseal-lock.txt"
        subprocess.run(
            [*pip, "download", "--only-binary=:all:", "--require-hashes", "--no-deps",
             "--find-links", str(wheels), "-r", str(lock), "-d", str(wheelhouse)],
            check=True,
        )
        subprocess.run(
            [*pip, "install", "--no-index", "--find-links", str(wheelhouse), "modelseal"],
            check=True,
        )
        checked = subprocess.run(
            [str(venv / "bin" / "modelseal"), "verify", str(tar_path),
             "--trust", str(keyring / "owner.pub"), "--release-key", str(keyring / "release.pub"),
             "--allow-development"],
            capture_output=True, text=True,
        )
        assert checked.returncode == 0, f"CPython {version}: {checked.stdout}{checked.stderr}"
