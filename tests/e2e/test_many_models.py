"""Many models: 25 generated `model_artifact` targets; one model of each kind the generator makes
(`one_of_each_kind`) packages in one `./pants package` (Pants runs them in parallel), every bundle
verifies, two predict what their weights say, and `pants dependents` names exactly the models, of
all 25, a changed dataset or lock alters, as computed from the generator's map (models.json)
without asking Pants. One more model, with a weight above Pants' large-file size, is packaged twice
around an in-place rewrite of that weight (issue #17's `modelseal intake`).

In the packaged workspace of conftest.py (`builds`: its clone, environment and pantsd), since
this test is about the graph and parallel packaging, not isolation: the four Pants runs reuse the
pantsd the first build of `::` started, with the graph and the locks' PEXes it memoized, instead of
starting Pants in a clone of their own. The generated models are untracked (generated/ is
ignored), and the module removes them and their bundles when it ends, so the workspace's other
tests (`pants verify ::`, the byte comparison of the two builds' dist/) see it as it was. Signing
is never cached, so every bundle is signed again on every run."""

from __future__ import annotations

import hashlib
import json
import shutil
import subprocess
import tarfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from e2e.repo import Builds, run_pants

# 25: every kind the generator makes is there (both resolves, numpy, a dataset used directly and
# through the shared training, models with no dataset; the first model trained in the build is the
# 25th), and each query's answer is a proper subset (asserted below). The queries read the graph of
# all 25; only one model of each kind is packaged (on an empty cache each packaged model is a PEX
# build, and the other 19 are of kinds already packaged). The scale figures (50 and more models
# packaged at once) are bench/run's (docs/benchmarks.md).
COUNT = 25
OUT = "generated/many"
INPUTS = {"x": [[1.0, -2.0, 0.5, 3.0], [0.0, 0.25, -1.5, 2.0]]}


def expected_prediction(weights: dict[str, Any]) -> list[float]:
    return [
        sum(w * x for w, x in zip(weights["w"], row)) + weights["b"] for row in INPUTS["x"]
    ]


def kind(model: dict[str, Any]) -> tuple[str, bool, bool, bool]:
    """What makes a generated model's build differ: its resolve, whether it needs numpy, whether it
    names a dataset, whether it is trained in the build."""
    return (model["resolve"], bool(model["requirements"]), model["dataset"] is not None,
            model["trained"])


def one_of_each_kind(models: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The first model of each kind, in the generator's order."""
    first: dict[tuple[str, bool, bool, bool], dict[str, Any]] = {}
    for model in models:
        first.setdefault(kind(model), model)
    return list(first.values())


def models_in(output: str) -> set[str]:
    """The generated model_artifact addresses among the lines Pants printed."""
    return {
        line.strip() for line in output.splitlines()
        if line.startswith(f"{OUT}/") and line.strip().endswith(":model")
    }


@pytest.fixture(scope="module")
def workspace(builds: Builds) -> Iterator[tuple[Path, dict[str, str], dict]]:
    # The packaged workspace (conftest.py): the modelseal tool and the locks' PEXes are built and
    # memoized in its pantsd, so only the generated models are built here.
    repo = builds.first.parent
    env = builds.first_env
    before = set((repo / "dist").iterdir())
    generated = subprocess.run(
        ["build-support/gen-models", "--count", str(COUNT), "--out", OUT],
        cwd=repo, env=env, capture_output=True, text=True,
    )
    assert generated.returncode == 0, generated.stderr
    index = json.loads((repo / OUT / "models.json").read_text())
    assert len(index["models"]) == COUNT
    # Generated, never committed: the clone's work tree stays clean.
    status = subprocess.run(["git", "status", "--porcelain"], cwd=repo, capture_output=True,
                            text=True, check=True)
    assert status.stdout == ""
    try:
        yield repo, env, index
    finally:
        shutil.rmtree(repo / OUT)
        for added in set((repo / "dist").iterdir()) - before:
            if added.is_dir():
                shutil.rmtree(added)
            else:
                added.unlink()


def test_many_models_package_in_parallel_verify_and_predict(workspace: tuple) -> None:
    repo, env, index = workspace
    packaged = one_of_each_kind(index["models"])
    # Both resolves, numpy, a dataset and none, trained in the build: every kind is packaged.
    assert {kind(m)[0] for m in packaged} == {"models", "python-default"}
    assert any(m["requirements"] for m in packaged) and any(m["trained"] for m in packaged)
    assert {kind(m)[2] for m in packaged} == {True, False}
    assert len(packaged) < COUNT
    started = time.monotonic()
    # One session: `verify` checks the very bundles `package` wrote (signed once).
    result = run_pants(repo, "package", "verify", *(m["address"] for m in packaged), env=env,
                       pantsd=True)
    elapsed = time.monotonic() - started
    assert result.returncode == 0, result.stderr[-5000:]
    print(f"package + verify of {len(packaged)} models: {elapsed:.0f} s")
    verified = [line for line in result.stdout.splitlines() if line.startswith("✓ ")]
    assert len(verified) == len(packaged), result.stdout

    locks = {
        path: hashlib.sha256((repo / path).read_bytes()).hexdigest()
        for path in {m["lock"] for m in index["models"]}
    }
    for model in packaged:
        bundle = repo / "dist" / model["bundle"]
        manifest = json.loads((bundle / "manifest.json").read_text())
        assert manifest["name"] == model["model_name"], model["name"]
        assert manifest["build"]["lock_sha256"] == locks[model["lock"]], model["name"]
        dataset = model["dataset"]
        assert manifest["lineage"]["datasets"] == (
            {f"{dataset}.csv": "sha256:" + index["datasets"][dataset]["sha256"]} if dataset else {}
        )
        assert (bundle / "model.sig").is_file() and (bundle / "weights/weights.json").is_file()
        with tarfile.open(f"{bundle}.tar") as tar:
            assert f"{bundle.name}/manifest.json" in tar.getnames()

    python = shutil.which("python3.11")
    assert python, "CPython 3.11 runs the models"
    # A model trained in the build (standard library only) and one that computes with numpy.
    trained = next(m for m in packaged if m["trained"])
    with_numpy = next(m for m in packaged if m["requirements"])
    manifest = json.loads((repo / "dist" / trained["bundle"] / "manifest.json").read_text())
    assert manifest["lineage"]["training"]["address"] == f"{OUT}/datasets:train_d0"
    for model in (trained, with_numpy):
        predicted = subprocess.run(
            [python, str(repo / "dist" / model["bundle"] / "model.pex"), "predict"],
            input=json.dumps(INPUTS), capture_output=True, text=True, env=env,
        )
        assert predicted.returncode == 0, predicted.stderr
        assert json.loads(predicted.stdout)["y"] == pytest.approx(
            expected_prediction(model["weights"]), abs=1e-6
        ), model["name"]


def test_dependents_of_a_dataset_are_the_models_using_it(workspace: tuple) -> None:
    repo, env, index = workspace
    # d0: some models depend on it directly (a `resources` target), the trained ones only
    # through their `model_training` target (a dependency the plugin infers from `training`).
    dataset = "d0"
    result = run_pants(repo, "dependents", "--transitive", index["datasets"][dataset]["path"],
                       env=env, pantsd=True)
    assert result.returncode == 0, result.stderr[-3000:]
    expected = {m["address"] for m in index["models"] if m["dataset"] == dataset}
    trained = {m["address"] for m in index["models"] if m["trained"]}
    assert trained and trained < expected and len(expected) < COUNT
    assert models_in(result.stdout) == expected


def test_a_changed_lock_entry_names_every_model_of_that_resolve(workspace: tuple) -> None:
    """Pants 2.17 maps a lock file to one synthetic target per resolve: a changed entry (here
    numpy's pin) names the lock, every requirement of the resolve, and (through the plugin's
    inferred dependency) every model of the resolve, whose manifest records the lock's digest
    even when its PEX holds no third-party package. Models of other resolves are not named. The
    narrower question "who imports numpy" is `dependents` of the requirement target."""
    repo, env, index = workspace
    lock = repo / "3rdparty/models/lock.txt"
    original = lock.read_text()
    changed = original.replace("\nnumpy==", "\nnumpy==0.0.0+changed.", 1)
    assert changed != original
    lock.write_text(changed)
    try:
        result = run_pants(repo, "--changed-since=HEAD", "--changed-dependents=transitive", "list",
                           env=env, pantsd=True)
    finally:
        lock.write_text(original)
    assert result.returncode == 0, result.stderr[-3000:]
    in_resolve = {m["address"] for m in index["models"] if m["resolve"] == "models"}
    assert 0 < len(in_resolve) < COUNT
    assert models_in(result.stdout) == in_resolve

    numpy = "3rdparty/models:reqs#numpy"
    result = run_pants(repo, "dependents", "--transitive", numpy, env=env, pantsd=True)
    assert result.returncode == 0, result.stderr[-3000:]
    importers = {m["address"] for m in index["models"] if numpy in m["requirements"]}
    assert importers and importers < in_resolve
    assert models_in(result.stdout) == importers


LARGE = "generated/large"
LARGE_HANDLER = '''"""Answers with its weight's first bytes: what was packaged is what it reads."""

import os


def load(weights_dir):
    with open(os.path.join(weights_dir, "shard.bin"), "rb") as f:
        return f.read(16).hex()


def predict(model, inputs):
    return {"head": model}
'''
LARGE_BUILD = '''python_sources(name="lib")

model_artifact(
    name="model",
    model_name="large",
    version="1.0.0",
    entry_point="large.handler",
    dependencies=[":lib"],
    weights=["shard.bin", "config.json"],
    license="Apache-2.0",
)
'''


def test_large_weights_changed_in_place_are_read_again(workspace: tuple) -> None:
    """A weight of more than Pants' large-file size reaches the bundle through `modelseal intake`
    (rules/modelseal_pants/workspace_files.py), in a real `./pants` with its pantsd: the bundle
    holds its bytes and verifies, and after the file is rewritten in place (same size, same
    path, other bytes) the next `package` records and ships the new bytes."""
    repo, env, _ = workspace
    directory = repo / LARGE
    directory.mkdir(parents=True)
    try:
        (directory / "handler.py").write_text(LARGE_HANDLER)
        (directory / "BUILD").write_text(LARGE_BUILD)
        (directory / "config.json").write_text("{}\n")
        bundle = repo / "dist" / "generated.large" / "model" / "large-1.0.0"
        for seed in (b"first", b"retrained"):
            shard = b"".join(hashlib.sha256(seed + i.to_bytes(4, "big")).digest()
                             for i in range(32 * 1024))  # 1 MiB
            (directory / "shard.bin").write_bytes(shard)
            result = run_pants(repo, "package", "verify", f"{LARGE}:model", env=env, pantsd=True)
            assert result.returncode == 0, result.stderr[-5000:]
            assert (bundle / "weights" / "shard.bin").read_bytes() == shard
            manifest = json.loads((bundle / "manifest.json").read_text())
            entry = next(e for e in manifest["files"] if e["path"] == "weights/shard.bin")
            assert entry["sha256"] == hashlib.sha256(shard).hexdigest()
            predicted = subprocess.run(
                [shutil.which("python3.11") or "python3.11", str(bundle / "model.pex"),
                 "predict"], input="{}", capture_output=True, text=True, env=env,
            )
            assert predicted.returncode == 0, predicted.stderr
            assert json.loads(predicted.stdout) == {"head": shard[:16].hex()}
    finally:
        shutil.rmtree(directory)
        shutil.rmtree(repo / "dist" / "generated.large", ignore_errors=True)
