from __future__ import annotations

import hashlib
import os
from pathlib import Path

import pytest

from modelseal.errors import IntegrityError
from modelseal.format import digests
from modelseal.format.digests import CHUNK_SIZE, check_files, sha256_file, sha256_files

EMPTY = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"


def _write(path: Path, data: bytes) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    return path


def test_empty_file(tmp_path: Path) -> None:
    assert sha256_file(_write(tmp_path / "e", b"")) == (EMPTY, 0)


@pytest.mark.parametrize("size", [1, CHUNK_SIZE - 1, CHUNK_SIZE, CHUNK_SIZE + 1, 3 * CHUNK_SIZE])
def test_chunk_boundaries(tmp_path: Path, size: int) -> None:
    data = os.urandom(size)
    assert sha256_file(_write(tmp_path / "f", data)) == (hashlib.sha256(data).hexdigest(), size)


def test_reads_in_bounded_chunks(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    data = os.urandom(10_000)
    path = _write(tmp_path / "f", data)
    monkeypatch.setattr(digests, "CHUNK_SIZE", 64)
    reads: list[int] = []
    real_open = open

    class Spy:
        def __init__(self, *args: object, **kwargs: object) -> None:
            self.f = real_open(*args, **kwargs)  # type: ignore[call-overload]

        def readinto(self, buffer: bytearray) -> int:
            count: int = self.f.readinto(buffer)
            reads.append(len(buffer))
            return count

        def __enter__(self) -> Spy:
            return self

        def __exit__(self, *exc: object) -> None:
            self.f.close()

    monkeypatch.setattr(digests, "open", Spy, raising=False)
    assert sha256_file(path) == (hashlib.sha256(data).hexdigest(), len(data))
    assert set(reads) == {64}
    assert len(reads) == 10_000 // 64 + 2  # The last partial chunk, then end of file.


def test_sha256_files_in_parallel_matches_serial(tmp_path: Path) -> None:
    paths = [_write(tmp_path / f"f{i}", os.urandom(i * 1000)) for i in range(20)]
    parallel = sha256_files(paths, max_workers=4)
    assert parallel == sha256_files(paths, max_workers=1)
    assert parallel == {p: sha256_file(p) for p in paths}
    assert sha256_files([]) == {}


def test_sha256_files_keeps_the_keys_given(tmp_path: Path) -> None:
    path = _write(tmp_path / "a", b"a")
    result = sha256_files([str(path), str(path)])
    assert list(result) == [str(path)]


def test_sha256_files_rejects_zero_workers() -> None:
    with pytest.raises(ValueError, match="max_workers must be at least 1, not 0"):
        sha256_files(["x"], max_workers=0)


def test_missing_file_raises(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError):
        sha256_files([tmp_path / "a", tmp_path / "b"], max_workers=2)


def _expect(files: dict[str, bytes]) -> dict[str, tuple[str, int]]:
    return {path: (hashlib.sha256(data).hexdigest(), len(data)) for path, data in files.items()}


FILES = {"weights/a.bin": b"a" * 100, "weights/b/c.bin": b"c" * 10, "model.pex": b"pex"}


@pytest.fixture
def root(tmp_path: Path) -> Path:
    for path, data in FILES.items():
        _write(tmp_path / path, data)
    return tmp_path


def test_check_files_accepts_matching_files(root: Path) -> None:
    check_files(root, _expect(FILES), max_workers=2)


def test_check_files_names_changed_content(root: Path) -> None:
    (root / "weights/b/c.bin").write_bytes(b"C" * 10)
    with pytest.raises(IntegrityError) as raised:
        check_files(root, _expect(FILES))
    assert str(raised.value) == (
        f"weights/b/c.bin: sha256 expected {hashlib.sha256(b'c' * 10).hexdigest()} found "
        f"{hashlib.sha256(b'C' * 10).hexdigest()}. The bundle was changed after packaging: "
        "re-package or re-download it"
    )


def test_check_files_compares_sizes_first(root: Path) -> None:
    (root / "weights/a.bin").write_bytes(b"a" * 99)
    (root / "weights/b/c.bin").write_bytes(b"C" * 10)
    with pytest.raises(IntegrityError) as raised:
        check_files(root, _expect(FILES))
    assert raised.value.where == "weights/a.bin"
    assert raised.value.what == "size expected 100 found 99"


def test_check_files_reports_the_first_bad_path_in_order(root: Path) -> None:
    (root / "weights/b/c.bin").write_bytes(b"C" * 10)
    (root / "model.pex").write_bytes(b"PEX")
    with pytest.raises(IntegrityError) as raised:
        check_files(root, _expect(FILES))
    assert raised.value.where == "model.pex"


def test_check_files_missing(root: Path) -> None:
    (root / "weights/a.bin").unlink()
    with pytest.raises(IntegrityError) as raised:
        check_files(root, _expect(FILES))
    assert str(raised.value) == (
        "weights/a.bin: missing: the manifest lists it but the bundle does not contain it. "
        "The bundle was changed after packaging: re-package or re-download it"
    )


def test_check_files_directory_in_place_of_file(root: Path) -> None:
    (root / "model.pex").unlink()
    (root / "model.pex").mkdir()
    with pytest.raises(IntegrityError) as raised:
        check_files(root, _expect(FILES))
    assert raised.value.what == "not a regular file, but the manifest lists it as one"
