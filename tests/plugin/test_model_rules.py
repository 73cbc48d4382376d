"""RuleRunner tests of the modelseal rules: real Pants rules, real PEX builds, the real tool."""

from __future__ import annotations

import base64
import hashlib
import io
import json
import os
import subprocess
import sys
import tarfile
from pathlib import Path

import pytest
from pants.build_graph.address import Address
from pants.core.goals.package import Package
from pants.engine.fs import DigestContents
from pants.engine.internals.scheduler import ExecutionError
from pants.testutil.rule_runner import RuleRunner

from modelseal_pants.build_info import (
    FALLBACK_EPOCH,
    BuildInfo,
    BuildInfoRequest,
    WorktreeChecked,
    WorktreeCheckRequest,
)
from modelseal_pants.signing import PublicKeys, PublicKeysRequest
from modelseal_pants.tool import RuntimeSources, RuntimeSourcesRequest
from modelseal_pants.training import TrainedModel, TrainModelRequest
from plugin.runner import INHERIT, contents, options, package, write_model

TRAIN = '''\
import os


def train(data_dir, output_dir, seed, hyperparameters):
    with open(os.path.join(data_dir, "data", "numbers.txt")) as f:
        numbers = [float(line) for line in f]
    os.makedirs(os.path.join(output_dir, "nested"))
    with open(os.path.join(output_dir, "nested", "scale.txt"), "w") as f:
        f.write(str(sum(numbers) * hyperparameters["factor"] + seed))
    return {"count": len(numbers)}
'''


def test_package_writes_no_tar_unless_asked(rule_runner: RuleRunner, tmp_path: Path) -> None:
    """The tar is a second read, hash and write of every weight: by default `package` writes
    only the bundle directory; `[modelseal].archive` asks for the tar of every model."""
    write_model(rule_runner)
    built = package(rule_runner)
    assert [a.relpath for a in built.artifacts] == ["models.toy/model/toy-1.2.3"]
    files = contents(rule_runner, built)
    assert not [path for path in files if path.endswith(".tar")]
    assert "models.toy/model/toy-1.2.3/model.sig" in files
    rule_runner.set_options([*options(), "--modelseal-archive"],
                            env={"XDG_DATA_HOME": str(tmp_path)}, env_inherit=INHERIT)
    with_tar = package(rule_runner)
    assert [a.relpath for a in with_tar.artifacts] == [
        "models.toy/model/toy-1.2.3",
        "models.toy/model/toy-1.2.3.tar",
    ]
    tarred = contents(rule_runner, with_tar)
    assert {p: c for p, c in tarred.items() if not p.endswith(".tar")} == files


def test_package_writes_bundle_and_tar(rule_runner: RuleRunner) -> None:
    write_model(rule_runner, archive="True")
    built = package(rule_runner)
    assert [a.relpath for a in built.artifacts] == [
        "models.toy/model/toy-1.2.3",
        "models.toy/model/toy-1.2.3.tar",
    ]
    files = contents(rule_runner, built)
    prefix = "models.toy/model/toy-1.2.3/"
    provenance = sorted(p[len(prefix):] for p in files if p.startswith(f"{prefix}provenance/"))
    assert [p.split(".")[0] for p in provenance] == [
        "provenance/build", "provenance/package", "provenance/root", "provenance/sbom",
        "provenance/sign",
    ]
    assert set(files) == {
        f"{prefix}manifest.json",
        f"{prefix}model.pex",
        f"{prefix}model.sig",
        f"{prefix}weights/README.md",
        f"{prefix}weights/nested/scale.txt",
        *(prefix + p for p in provenance),
        "models.toy/model/toy-1.2.3.tar",
    }
    manifest = json.loads(files[f"{prefix}manifest.json"])
    by_path = {entry["path"]: entry for entry in manifest["files"]}
    # The digests Pants held are the digests of the bytes in the bundle.
    for path, entry in by_path.items():
        data = files[prefix + path]
        assert entry == {"path": path, "sha256": hashlib.sha256(data).hexdigest(),
                         "size": len(data)}
    assert manifest["name"] == "toy" and manifest["version"] == "1.2.3"
    assert manifest["trust"] == "development"  # no keys configured: the development keyring
    assert manifest["metrics"] == {"accuracy": 0.5}
    assert manifest["build"]["source_date_epoch"] == FALLBACK_EPOCH  # not a git checkout
    lock = Path(rule_runner.build_root, "lock.txt").read_bytes()
    assert manifest["build"]["lock_sha256"] == hashlib.sha256(lock).hexdigest()

    with tarfile.open(fileobj=io.BytesIO(files["models.toy/model/toy-1.2.3.tar"])) as tar:
        members = tar.getmembers()
    assert [m.name for m in members] == sorted(m.name for m in members)
    assert {(m.uid, m.gid, m.uname, m.gname, m.mtime) for m in members} == {
        (0, 0, "", "", FALLBACK_EPOCH)
    }

    rule_runner.write_digest(built.digest)
    bundle = Path(rule_runner.build_root, prefix)
    predicted = subprocess.run(
        [sys.executable, str(bundle / "model.pex"), "predict"],
        input='{"values": [1, 2]}', capture_output=True, text=True,
    )
    assert predicted.returncode == 0, predicted.stderr
    assert json.loads(predicted.stdout) == {"scaled": [2.5, 5.0]}


def test_training_feeds_the_artifact(rule_runner: RuleRunner) -> None:
    write_model(rule_runner, weights="[]", training="':train'", metrics="{}")
    rule_runner.write_files(
        {
            "models/toy/BUILD": Path(rule_runner.build_root, "models/toy/BUILD").read_text()
            + "model_training(name='train', entry_point='toy.train:train', "
            "data=['data/numbers.txt'], dependencies=['models/toy/train.py'], seed=1, "
            "hyperparameters={'factor': 2}, outputs=['nested/scale.txt'])\n",
            "models/toy/train.py": TRAIN,
            "models/toy/data/numbers.txt": "1\n2\n3\n",
        }
    )
    trained = rule_runner.request(
        TrainedModel, [TrainModelRequest(Address("models/toy", target_name="train"), "test")]
    )
    assert dict(trained.metrics) == {"count": 3}
    outputs = {c.path: c.content for c in rule_runner.request(DigestContents, [trained.outputs])}
    assert outputs == {"nested/scale.txt": b"13.0"}  # (1 + 2 + 3) * 2 + seed 1

    files = contents(rule_runner, package(rule_runner))
    manifest = json.loads(files["models.toy/model/toy-1.2.3/manifest.json"])
    assert manifest["metrics"] == {"count": 3}
    assert manifest["lineage"]["training"]["address"] == "models/toy:train"
    assert manifest["lineage"]["hyperparameters"] == {"factor": 2}
    assert files["models.toy/model/toy-1.2.3/weights/nested/scale.txt"] == b"13.0"
    train_links = [p for p in files if p.startswith("models.toy/model/toy-1.2.3/provenance/train.")]
    assert len(train_links) == 1
    link = json.loads(files[train_links[0]])["signed"]
    assert sorted(link["materials"]) == [
        "data/data/numbers.txt", "hyperparameters.json", "lock.txt", "models/toy/train.py"
    ]
    assert sorted(link["products"]) == ["metrics.json", "weights/nested/scale.txt"]
    assert link["environment"]["interpreter"].startswith("CPython 3.9")


def test_runtime_sources_are_stdlib_modules(rule_runner: RuleRunner) -> None:
    runtime = rule_runner.request(RuntimeSources, [RuntimeSourcesRequest()])
    paths = {c.path for c in rule_runner.request(DigestContents, [runtime.digest])}
    assert {
        "modelseal/embedded/runtime.py",
        "modelseal/embedded/training.py",
        "modelseal/format/manifest.py",
    } <= paths
    assert "modelseal/cli/main.py" not in paths


def test_source_date_epoch_from_the_environment(rule_runner: RuleRunner) -> None:
    env = {"SOURCE_DATE_EPOCH": "1700000000"}
    rule_runner.set_options(options(), env=env, env_inherit=INHERIT)
    assert rule_runner.request(BuildInfo, [BuildInfoRequest()]).source_date_epoch == 1700000000
    env = {"SOURCE_DATE_EPOCH": "yesterday"}
    rule_runner.set_options(options(), env=env, env_inherit=INHERIT)
    with pytest.raises(ExecutionError, match="SOURCE_DATE_EPOCH must be a whole number"):
        rule_runner.request(BuildInfo, [BuildInfoRequest()])


def git(root: str, *args: str) -> bytes:
    env = {
        "PATH": os.environ["PATH"], "HOME": root,
        "GIT_AUTHOR_NAME": "t", "GIT_AUTHOR_EMAIL": "t@example.com",
        "GIT_COMMITTER_NAME": "t", "GIT_COMMITTER_EMAIL": "t@example.com",
        "GIT_AUTHOR_DATE": "2026-01-02T03:04:05Z", "GIT_COMMITTER_DATE": "2026-01-02T03:04:05Z",
    }
    return subprocess.run(
        ["git", "-C", root, *args], check=True, capture_output=True, env=env
    ).stdout


def test_a_dirty_work_tree_is_recorded(rule_runner: RuleRunner) -> None:
    root = rule_runner.build_root
    write_model(rule_runner)
    Path(root, ".gitignore").write_text("/.pants.d/\n/dist/\n/.pids/\n")
    git(root, "init", "--quiet")
    git(root, "add", "-A")
    git(root, "commit", "--quiet", "-m", "models")
    clean = rule_runner.request(BuildInfo, [BuildInfoRequest()])
    assert clean.commit == git(root, "rev-parse", "HEAD").decode().strip()
    assert (clean.dirty, clean.dirty_sha256) == (False, "")
    assert clean.source_date_epoch == 1767323045  # the commit's time, 2026-01-02T03:04:05Z

    # A changed tracked file and a new untracked one.
    Path(root, "models/toy/nested/scale.txt").write_text("3.5")
    Path(root, "models/toy/notes.txt").write_text("not committed\n")
    rule_runner.set_options(options(), env_inherit=INHERIT)  # a new session: git runs again
    dirty = rule_runner.request(BuildInfo, [BuildInfoRequest()])
    expected = hashlib.sha256(
        git(root, "diff", "--no-ext-diff", "--no-color", "--binary", "HEAD")
        + b"\0untracked\0"
        + git(root, "ls-files", "-z", "--others", "--exclude-standard")
    ).hexdigest()
    assert (dirty.dirty, dirty.dirty_sha256) == (True, expected)
    assert b"models/toy/notes.txt" in git(root, "ls-files", "-z", "--others", "--exclude-standard")


def test_release_builds_refuse_a_dirty_work_tree(rule_runner: RuleRunner, tmp_path: Path) -> None:
    digest = "ab" * 32
    release = WorktreeCheckRequest(dirty=True, dirty_sha256=digest, development=False)
    with pytest.raises(ExecutionError, match="allow_dirty") as failure:
        rule_runner.request(WorktreeChecked, [release])
    assert "uncommitted changes or untracked files" in str(failure.value)
    # Clean release builds, development builds (a warning) and explicitly allowed ones pass.
    assert rule_runner.request(
        WorktreeChecked, [WorktreeCheckRequest(dirty=False, dirty_sha256="", development=False)]
    ) == WorktreeChecked()
    development = WorktreeCheckRequest(dirty=True, dirty_sha256=digest, development=True)
    assert rule_runner.request(WorktreeChecked, [development]) == WorktreeChecked()
    rule_runner.set_options(
        [*options(), "--modelseal-allow-dirty"],
        env={"XDG_DATA_HOME": str(tmp_path)}, env_inherit=INHERIT,
    )
    assert rule_runner.request(WorktreeChecked, [release]) == WorktreeChecked()


def assert_package_fails(rule_runner: RuleRunner, *expected: str) -> None:
    with pytest.raises(ExecutionError) as failure:
        rule_runner.run_goal_rule(Package, args=[*options(), "models/toy:model"],
                                  env_inherit=INHERIT)
    message = str(failure.value)
    for text in expected:
        assert text in message
    assert not Path(rule_runner.build_root, "dist").exists()


def test_glob_that_matches_nothing(rule_runner: RuleRunner) -> None:
    write_model(rule_runner, weights="['*.safetensors']")
    assert_package_fails(rule_runner, "models/toy:model", "weights", "*.safetensors")


def test_missing_weight_file(rule_runner: RuleRunner) -> None:
    write_model(rule_runner, weights="['nested/scale.txt', 'missing.bin']")
    assert_package_fails(rule_runner, "models/toy:model", "weights", "missing.bin")


def test_weight_outside_the_target_directory(rule_runner: RuleRunner) -> None:
    write_model(rule_runner, weights="['../elsewhere.bin']")
    rule_runner.write_files({"models/elsewhere.bin": "x"})
    assert_package_fails(
        rule_runner, "models/toy:model", "'weights'", "current directory or subdirectories"
    )


def test_symlinked_weight(rule_runner: RuleRunner) -> None:
    write_model(rule_runner, weights="['nested/scale.txt', 'link.txt']")
    os.symlink("nested/scale.txt", os.path.join(rule_runner.build_root, "models/toy/link.txt"))
    assert_package_fails(rule_runner, "models/toy:model", "'weights'", "link.txt", "symbolic link")


def test_non_numeric_metric(rule_runner: RuleRunner) -> None:
    write_model(rule_runner, metrics="{'accuracy': 'high'}")
    assert_package_fails(rule_runner, "models/toy:model", "'metrics'", "'accuracy'", "'high'")


def test_entry_point_that_does_not_exist(rule_runner: RuleRunner) -> None:
    write_model(rule_runner, entry_point="'toy.no_such_handler'")
    assert_package_fails(
        rule_runner, "models/toy:model", "'entry_point'", "'toy.no_such_handler'"
    )


def test_malformed_entry_point(rule_runner: RuleRunner) -> None:
    write_model(rule_runner, entry_point="'toy/handler.py'")
    assert_package_fails(rule_runner, "models/toy:model", "'entry_point'", "package.module")


def test_a_layout_that_would_already_have_expired(rule_runner: RuleRunner, tmp_path: Path) -> None:
    write_model(rule_runner)
    # A commit from 2001 with the default one-year layout validity.
    rule_runner.set_options(
        options(validity_days=365),
        env={"XDG_DATA_HOME": str(tmp_path), "SOURCE_DATE_EPOCH": "1000000000"},
        env_inherit=INHERIT,
    )
    with pytest.raises(ExecutionError, match="would have expired on 2002-09-09"):
        package(rule_runner)


def test_a_revoked_key_is_refused(rule_runner: RuleRunner, tmp_path: Path) -> None:
    write_model(rule_runner)
    publics = rule_runner.request(PublicKeys, [PublicKeysRequest()])
    pems = {c.path: c.content for c in rule_runner.request(DigestContents, [publics.digest])}
    # A key id is the sha256 of the DER public key, which is what the PEM's base64 body holds.
    body = "".join(
        line for line in pems["keys/release.pub"].decode().splitlines() if "-----" not in line
    )
    revoked = hashlib.sha256(base64.b64decode(body)).hexdigest()
    rule_runner.write_files(
        {
            "revoked.json": json.dumps(
                {"revoked": [revoked], "schema": "modelseal.revocations/v1"},
                sort_keys=True, separators=(",", ":"),
            )
        }
    )
    rule_runner.set_options(
        [*options(), "--modelseal-revocations=revoked.json"],
        env={"XDG_DATA_HOME": str(tmp_path)},
        env_inherit=INHERIT,
    )
    with pytest.raises(ExecutionError) as failure:
        package(rule_runner)
    assert f"the key {revoked[:16]} is revoked" in str(failure.value)
    assert "keys/release.pub" in str(failure.value)
