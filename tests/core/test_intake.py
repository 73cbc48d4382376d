"""`modelseal intake`: large workspace files copied into a content-addressed store by the digest of
the bytes copied, each read once, and not read at all by a later intake when its stat says it did
not change (modelseal/format/intake.py says why the Pants rules need this)."""

from __future__ import annotations

import hashlib
import json
import os
import stat
from pathlib import Path

import pytest

from modelseal.cli.main import main
from modelseal.errors import EXIT_SPEC, SpecError
from modelseal.format import intake
from modelseal.format.intake import SEGMENT, ingest_files, store_path

MIN = 64 * 1024


def data(size: int, seed: bytes) -> bytes:
    """`size` bytes that differ with `seed` in every 32-byte block."""
    blocks = (hashlib.sha256(seed + i.to_bytes(8, "big")).digest() for i in range(size // 32 + 1))
    return b"".join(blocks)[:size]


def workspace(root: Path) -> dict[str, bytes]:
    files = {
        "big.bin": data(MIN + 1, b"big"),
        "nested/shard-1.bin": data(3 * MIN, b"shard"),
        "run.sh": data(MIN, b"exactly the minimum"),
        "config.json": b'{"small": true}\n',
    }
    for path, content in files.items():
        (root / path).parent.mkdir(parents=True, exist_ok=True)
        (root / path).write_bytes(content)
    (root / "run.sh").chmod(0o755)
    return files


def run(root: Path, store: Path, cache: Path, paths: list[str]) -> dict[str, intake.Ingested]:
    return {i.path: i for i in ingest_files(str(root), paths, str(store), str(cache), MIN)}


def test_large_files_go_into_the_store_named_by_their_digest(tmp_path: Path) -> None:
    root, store, cache = tmp_path / "repo", tmp_path / "store", tmp_path / "cache"
    root.mkdir()
    files = workspace(root)
    result = run(root, store, cache, sorted(files))
    assert sorted(result) == ["big.bin", "nested/shard-1.bin", "run.sh"]  # not the small file
    for path, ingested in result.items():
        expected = hashlib.sha256(files[path]).hexdigest()
        assert (ingested.sha256, ingested.size, ingested.read) == (expected, len(files[path]), True)
        copy = Path(store_path(str(store), expected))
        assert copy.parent.name == expected[:2]
        assert copy.read_bytes() == files[path]
        assert stat.S_IMODE(copy.stat().st_mode) == 0o555  # as Pants writes its own
    assert result["run.sh"].executable and not result["big.bin"].executable
    assert not list(store.glob("*/*.tmp"))  # no temporary file is left behind


def test_an_unchanged_file_is_not_read_again_and_a_changed_one_is(tmp_path: Path) -> None:
    root, store, cache = tmp_path / "repo", tmp_path / "store", tmp_path / "cache"
    root.mkdir()
    files = workspace(root)
    first = run(root, store, cache, sorted(files))
    again = run(root, store, cache, sorted(files))
    assert {p: (i.sha256, i.read) for p, i in again.items()} == {
        p: (i.sha256, False) for p, i in first.items()
    }
    # Same size, same path, other bytes: the stat (mtime, ctime) differs, so it is read.
    changed = data(MIN + 1, b"retrained")
    (root / "big.bin").write_bytes(changed)
    third = run(root, store, cache, sorted(files))
    assert third["big.bin"].read
    assert third["big.bin"].sha256 == hashlib.sha256(changed).hexdigest()
    assert not third["nested/shard-1.bin"].read


def test_a_store_file_that_is_gone_or_truncated_is_written_again(tmp_path: Path) -> None:
    """Pants' garbage collection removes store files; a crash can leave one short (its data is
    not fsynced): the stat cache alone must not vouch for the store."""
    root, store, cache = tmp_path / "repo", tmp_path / "store", tmp_path / "cache"
    root.mkdir()
    files = workspace(root)
    first = run(root, store, cache, ["big.bin", "run.sh"])
    gone = Path(store_path(str(store), first["big.bin"].sha256))
    gone.unlink()
    short = Path(store_path(str(store), first["run.sh"].sha256))
    short.chmod(0o644)
    short.write_bytes(b"")
    again = run(root, store, cache, ["big.bin", "run.sh"])
    assert again["big.bin"].read and again["run.sh"].read
    assert gone.read_bytes() == files["big.bin"]
    assert short.read_bytes() == files["run.sh"]


@pytest.mark.parametrize("kernel_copy", [True, False], ids=["copy_file_range", "buffered"])
def test_a_file_of_several_segments_is_copied_whole(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, kernel_copy: bool
) -> None:
    """Both ways of copying (the kernel's, and a buffer where the file system refuses it), over
    segment boundaries, give the same bytes and the hash of exactly those bytes."""
    if kernel_copy and not hasattr(os, "copy_file_range"):
        pytest.fail("this platform has no os.copy_file_range: run the test on Linux")
    monkeypatch.setattr(intake, "_KERNEL_COPY", [kernel_copy])
    root, store, cache = tmp_path / "repo", tmp_path / "store", tmp_path / "cache"
    root.mkdir()
    content = data(2 * SEGMENT + 12345, b"segments")
    (root / "weights.bin").write_bytes(content)
    result = run(root, store, cache, ["weights.bin"])
    digest = hashlib.sha256(content).hexdigest()
    assert result["weights.bin"].sha256 == digest
    assert Path(store_path(str(store), digest)).read_bytes() == content
    assert intake._KERNEL_COPY == [kernel_copy]  # the kernel copy worked, or was not tried


def test_a_symbolic_link_or_a_missing_file_is_an_error_naming_it(tmp_path: Path) -> None:
    root, store, cache = tmp_path / "repo", tmp_path / "store", tmp_path / "cache"
    root.mkdir()
    workspace(root)
    (root / "link.bin").symlink_to(root / "big.bin")
    with pytest.raises(SpecError, match=r"link\.bin is not a regular file"):
        run(root, store, cache, ["link.bin"])
    with pytest.raises(SpecError, match=r"gone\.bin does not exist"):
        run(root, store, cache, ["big.bin", "gone.bin"])
    # Datasets may be links (Pants' snapshot follows them): then the target's bytes are read.
    (followed,) = ingest_files(str(root), ["link.bin"], str(store), str(cache), MIN,
                               follow_links=True)
    assert followed.sha256 == hashlib.sha256((root / "big.bin").read_bytes()).hexdigest()


def test_the_command_prints_the_digests_as_json(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    root, store, cache = tmp_path / "repo", tmp_path / "store", tmp_path / "cache"
    root.mkdir()
    files = workspace(root)
    argv = ["intake", f"--root={root}", f"--store={store}", f"--stat-cache={cache}",
            f"--min-size={MIN}", *sorted(files)]
    assert main(argv) == 0
    printed = json.loads(capsys.readouterr().out)
    assert printed["schema"] == "modelseal.intake/v1"
    assert [f["path"] for f in printed["files"]] == ["big.bin", "nested/shard-1.bin", "run.sh"]
    assert printed["files"][0] == {
        "path": "big.bin", "sha256": hashlib.sha256(files["big.bin"]).hexdigest(),
        "size": MIN + 1, "executable": False, "read": True,
    }
    (root / "config.json").unlink()
    (root / "config.json").symlink_to(root / "big.bin")
    assert main([*argv[:-4], "config.json"]) == EXIT_SPEC
    assert "config.json is not a regular file" in capsys.readouterr().err


def test_a_copy_that_fails_leaves_no_temporary_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A disk that fills mid-copy: the error reaches the caller, and neither a temporary file nor
    a store entry is left behind."""
    root, store, cache = tmp_path / "repo", tmp_path / "store", tmp_path / "cache"
    root.mkdir()
    (root / "weights.bin").write_bytes(data(2 * SEGMENT, b"full disk"))
    real = intake._copy_segment
    calls = []

    def fails_second_time(*args: object) -> int:
        calls.append(1)
        if len(calls) == 2:
            raise OSError(28, "No space left on device")
        return real(*args)  # type: ignore[arg-type]

    monkeypatch.setattr(intake, "_copy_segment", fails_second_time)
    with pytest.raises(OSError, match="No space left"):
        run(root, store, cache, ["weights.bin"])
    assert [p.name for p in store.rglob("*") if p.is_file()] == []
    assert not cache.exists() or not [p for p in cache.rglob("*") if p.is_file()]
