"""A model's weights reach Pants by `modelseal intake`, not by Pants' snapshot (issue #17: Pants
2.17 reads a large file twice through an 8 KiB buffer). The digest must be exactly the one Pants'
own snapshot gives, the bytes must be where Pants looks for them, and a changed file must be read
again in the next session."""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

from pants.engine.fs import Digest, DigestContents, PathGlobs
from pants.option.global_options import LocalStoreOptions
from pants.testutil.rule_runner import RuleRunner

from modelseal_pants.workspace_files import (
    PANTS_LARGE_FILE_BYTES,
    STORE_FILES,
    WorkspaceFiles,
    WorkspaceFilesRequest,
)
from plugin.runner import INHERIT, contents, options, package, write_model


def data(size: int, seed: bytes) -> bytes:
    blocks = (hashlib.sha256(seed + i.to_bytes(8, "big")).digest() for i in range(size // 32 + 1))
    return b"".join(blocks)[:size]


def store_file(rule_runner: RuleRunner, content: bytes) -> Path:
    """Where Pants keeps a large file of these bytes: its local store as Pants resolves it."""
    global_scope = rule_runner.options_bootstrapper.bootstrap_options.for_global_scope()
    digest = hashlib.sha256(content).hexdigest()
    return Path(LocalStoreOptions.from_options(global_scope).store_dir, STORE_FILES,
                digest[:2], digest)


def new_session(rule_runner: RuleRunner, tmp_path: Path) -> None:
    rule_runner.set_options(options(), env={"XDG_DATA_HOME": str(tmp_path)}, env_inherit=INHERIT)


def test_the_digest_is_the_one_pants_snapshot_gives(
    rule_runner: RuleRunner, tmp_path: Path
) -> None:
    big = data(PANTS_LARGE_FILE_BYTES + 7, b"big")
    executable = data(PANTS_LARGE_FILE_BYTES, b"exactly Pants' large-file size")
    rule_runner.write_files(
        {
            "models/w/big.bin": big,
            "models/w/nested/run.bin": executable,
            "models/w/nested/config.json": "{}\n",
            "models/w/odd[1]*.txt": "a small file whose name is a glob\n",
            "models/w/left-out.bin": data(PANTS_LARGE_FILE_BYTES, b"excluded"),
        }
    )
    Path(rule_runner.build_root, "models/w/nested/run.bin").chmod(0o755)
    globs = PathGlobs(["models/w/**/*", "!models/w/left-out.bin"])
    request = WorkspaceFilesRequest(globs, "the test's files")
    files = rule_runner.request(WorkspaceFiles, [request])
    assert files.large == ("models/w/big.bin", "models/w/nested/run.bin")
    assert files.digest == rule_runner.request(Digest, [globs])  # Pants' own snapshot
    assert store_file(rule_runner, big).read_bytes() == big
    assert store_file(rule_runner, executable).read_bytes() == executable
    by_path = {c.path: c for c in rule_runner.request(DigestContents, [files.digest])}
    assert sorted(by_path) == [
        "models/w/big.bin", "models/w/nested/config.json", "models/w/nested/run.bin",
        "models/w/odd[1]*.txt",
    ]
    assert by_path["models/w/big.bin"].content == big
    assert by_path["models/w/nested/run.bin"].is_executable
    assert not by_path["models/w/big.bin"].is_executable

    # Retrained in place: same size, other bytes. The next session reads it again.
    retrained = data(len(big), b"retrained")
    rule_runner.write_files({"models/w/big.bin": retrained})
    new_session(rule_runner, tmp_path)
    again = rule_runner.request(WorkspaceFiles, [request])
    assert again.digest != files.digest
    assert again.digest == rule_runner.request(Digest, [globs])
    assert store_file(rule_runner, retrained).read_bytes() == retrained

    # A small file grows past the size and a large one shrinks below it: each is then read by the
    # other way, and the digest is still Pants' own.
    grown = data(PANTS_LARGE_FILE_BYTES * 2, b"grown")
    rule_runner.write_files({"models/w/nested/config.json": grown, "models/w/big.bin": "tiny\n"})
    new_session(rule_runner, tmp_path)
    swapped = rule_runner.request(WorkspaceFiles, [request])
    assert swapped.large == ("models/w/nested/config.json", "models/w/nested/run.bin")
    assert swapped.digest == rule_runner.request(Digest, [globs])
    assert store_file(rule_runner, grown).read_bytes() == grown


def test_small_files_only_are_pants_own_snapshot(rule_runner: RuleRunner) -> None:
    rule_runner.write_files({"models/s/a.json": "{}\n", "models/s/b/c.txt": "c\n"})
    globs = PathGlobs(["models/s/**/*"])
    files = rule_runner.request(WorkspaceFiles, [WorkspaceFilesRequest(globs, "small files")])
    assert files.large == ()
    assert files.digest == rule_runner.request(Digest, [globs])
    assert [c.path for c in rule_runner.request(DigestContents, [files.digest])] == [
        "models/s/a.json", "models/s/b/c.txt",
    ]


def test_a_model_with_large_weights_packages_runs_and_records_them(
    rule_runner: RuleRunner,
) -> None:
    """The smoke test runs model.pex on weights Pants hard-links from the store into its sandbox,
    and the manifest records the digest of the bytes in the bundle."""
    big = data(2 * PANTS_LARGE_FILE_BYTES + 3, b"shard")
    write_model(rule_runner, weights="['nested/scale.txt', 'README.md', 'shard.bin']")
    rule_runner.write_files({"models/toy/shard.bin": big})
    files = contents(rule_runner, package(rule_runner))
    prefix = "models.toy/model/toy-1.2.3/"
    assert files[f"{prefix}weights/shard.bin"] == big
    manifest = json.loads(files[f"{prefix}manifest.json"])
    entry = next(e for e in manifest["files"] if e["path"] == "weights/shard.bin")
    assert entry == {"path": "weights/shard.bin", "sha256": hashlib.sha256(big).hexdigest(),
                     "size": len(big)}
    assert os.path.isfile(store_file(rule_runner, big))
