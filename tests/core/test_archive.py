from __future__ import annotations

import gzip
import hashlib
import io
import os
import subprocess
import tarfile
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import modelseal
from core.interpreters import SUPPORTED_MINORS, find_python
from modelseal.errors import ArchiveError, SpecError
from modelseal.format.archive import read_tar_members, write_tar
from modelseal.format.tree import Entry

MTIME = 1700000000
FILES = {
    "model.pex": b"#!/usr/bin/env python3\n",
    "manifest.json": b"{}\n",
    "weights/model.json": b'{"w": 1}',
    "weights/tokenizer/vocab.json": b"[]",
    "weights/a.b": b"",
}


def _make(root: Path, files: dict[str, bytes]) -> Path:
    for path, data in files.items():
        target = root.joinpath(*path.split("/"))
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(data)
    return root


def _members(path: Path) -> list[tarfile.TarInfo]:
    with tarfile.open(path, "r:") as tar:
        return tar.getmembers()


def test_entries_and_headers(tmp_path: Path) -> None:
    bundle = _make(tmp_path / "iris-1.0.0", FILES)
    out = tmp_path / "iris-1.0.0.tar"
    write_tar(bundle, out, top="iris-1.0.0", mtime=MTIME)
    members = _members(out)
    assert [(m.name, m.type, m.mode) for m in members] == [
        ("iris-1.0.0", tarfile.DIRTYPE, 0o755),
        ("iris-1.0.0/manifest.json", tarfile.REGTYPE, 0o644),
        ("iris-1.0.0/model.pex", tarfile.REGTYPE, 0o755),
        ("iris-1.0.0/weights", tarfile.DIRTYPE, 0o755),
        ("iris-1.0.0/weights/a.b", tarfile.REGTYPE, 0o644),
        ("iris-1.0.0/weights/model.json", tarfile.REGTYPE, 0o644),
        ("iris-1.0.0/weights/tokenizer", tarfile.DIRTYPE, 0o755),
        ("iris-1.0.0/weights/tokenizer/vocab.json", tarfile.REGTYPE, 0o644),
    ]
    for member in members:
        assert (member.mtime, member.uid, member.gid, member.uname, member.gname) == (
            MTIME,
            0,
            0,
            "",
            "",
        )
        assert member.pax_headers == {}
    with tarfile.open(out, "r:") as tar:
        for path, data in FILES.items():
            stream = tar.extractfile(f"iris-1.0.0/{path}")
            assert stream is not None
            assert stream.read() == data
    raw = out.read_bytes()
    assert raw[257:265] == b"ustar  \0"  # GNU, not POSIX/pax.
    assert b"PaxHeader" not in raw
    assert raw[:100].rstrip(b"\0") == b"iris-1.0.0/"
    assert len(raw) % 10240 == 0
    assert out.stat().st_mode & 0o777 == 0o644


def test_long_and_unicode_names(tmp_path: Path) -> None:
    long = "weights/" + "/".join(["d" * 60] * 3) + "/é.bin"
    bundle = _make(tmp_path / "b", {long: b"x"})
    out = tmp_path / "b.tar"
    write_tar(bundle, out, top="b", mtime=0)
    names = [m.name for m in _members(out)]
    assert names[-1] == f"b/{long}"
    assert b"PaxHeader" not in out.read_bytes()
    assert b"././@LongLink" in out.read_bytes()  # GNU long names.


def test_hard_links_are_archived_as_regular_files(tmp_path: Path) -> None:
    # Pants materializes large files into sandboxes as hard links to its store.
    bundle = _make(tmp_path / "b", {"weights/a.bin": b"abc"})
    os.link(bundle / "weights/a.bin", bundle / "weights/b.bin")
    out = tmp_path / "b.tar"
    write_tar(bundle, out, top="b", mtime=0)
    files = [m for m in _members(out) if not m.isdir()]
    assert [(m.name, m.type, m.size) for m in files] == [
        ("b/weights/a.bin", tarfile.REGTYPE, 3),
        ("b/weights/b.bin", tarfile.REGTYPE, 3),
    ]


@pytest.mark.parametrize("kind", ["symlink", "dangling symlink", "directory symlink", "fifo"])
def test_refuses_links_and_special_files(tmp_path: Path, kind: str) -> None:
    bundle = _make(tmp_path / "b", {"weights/a.bin": b"abc"})
    odd = bundle / "weights" / "odd"
    if kind == "symlink":
        odd.symlink_to("a.bin")
    elif kind == "dangling symlink":
        odd.symlink_to("/nonexistent")
    elif kind == "directory symlink":
        odd.symlink_to(tmp_path)
    else:
        os.mkfifo(odd)
    out = tmp_path / "b.tar"
    with pytest.raises(SpecError) as raised:
        write_tar(bundle, out, top="b", mtime=0)
    problem = "a FIFO" if kind == "fifo" else "a symbolic link"
    assert str(raised.value) == (
        f"{odd}: {problem} cannot be part of a bundle. "
        "Replace it with the regular file or directory it stands for"
    )
    assert sorted(os.listdir(tmp_path)) == ["b"]


def test_nothing_half_written(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    bundle = _make(tmp_path / "b", FILES)
    out = tmp_path / "b.tar"
    out.write_bytes(b"previous")
    real = tarfile.TarFile.addfile
    calls = []

    def failing(self: tarfile.TarFile, *args: object, **kwargs: object) -> None:
        calls.append(1)
        if len(calls) == 3:
            raise OSError(28, "No space left on device")
        real(self, *args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(tarfile.TarFile, "addfile", failing)
    with pytest.raises(OSError, match="No space left"):
        write_tar(bundle, out, top="b", mtime=0)
    assert out.read_bytes() == b"previous"
    assert sorted(os.listdir(tmp_path)) == ["b", "b.tar"]


def test_refuses_output_inside_the_bundle(tmp_path: Path) -> None:
    bundle = _make(tmp_path / "b", FILES)
    with pytest.raises(SpecError, match="the archive would be written inside the directory"):
        write_tar(bundle, bundle / "weights" / "b.tar", top="b", mtime=0)


@pytest.mark.parametrize("top", ["", "a/b", "..", ".", "a\\b"])
def test_refuses_bad_top(tmp_path: Path, top: str) -> None:
    bundle = _make(tmp_path / "b", FILES)
    with pytest.raises(SpecError, match="must be a single path segment"):
        write_tar(bundle, tmp_path / "b.tar", top=top, mtime=0)


@pytest.mark.parametrize("mtime", [-1, True, 1.5])
def test_refuses_bad_mtime(tmp_path: Path, mtime: int) -> None:
    bundle = _make(tmp_path / "b", FILES)
    with pytest.raises(SpecError, match="mtime must be a non-negative integer"):
        write_tar(bundle, tmp_path / "b.tar", top="b", mtime=mtime)


def test_missing_bundle_dir(tmp_path: Path) -> None:
    with pytest.raises(SpecError, match="not a directory"):
        write_tar(tmp_path / "nope", tmp_path / "b.tar", top="b", mtime=0)


# -- property: the bytes are a pure function of the paths and contents ---------------------------

segment = st.sampled_from(["a", "b", "B", "a.b", "a-b", "é", "z" * 101, "model.pex"])


@st.composite
def trees(draw: st.DrawFn) -> dict[str, bytes]:
    paths = draw(st.lists(st.lists(segment, min_size=1, max_size=3), min_size=1, max_size=8))
    tree: dict[str, bytes] = {}
    for parts in paths:
        path = "/".join(parts)
        # Skip a path whose parent is a file or which is the parent of a file.
        if any("/".join(parts[:i]) in tree for i in range(1, len(parts))):
            continue
        if any(other.startswith(path + "/") for other in tree):
            continue
        tree[path] = draw(st.binary(max_size=300))
    return tree


@contextmanager
def _umask(mask: int) -> Iterator[None]:
    previous = os.umask(mask)
    try:
        yield
    finally:
        os.umask(previous)


def _build(root: Path, tree: dict[str, bytes], order: list[str], data: st.DataObject) -> None:
    for path in order:
        target = root.joinpath(*path.split("/"))
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(tree[path])
        os.chmod(target, data.draw(st.sampled_from([0o400, 0o600, 0o644, 0o755, 0o777])))
        stamp = data.draw(st.integers(0, 2**33))
        os.utime(target, (stamp, stamp))
    for directory, _, _ in os.walk(root):
        os.chmod(directory, data.draw(st.sampled_from([0o700, 0o755, 0o777])))
        os.utime(directory, (data.draw(st.integers(0, 2**33)),) * 2)


@settings(max_examples=40, suppress_health_check=[HealthCheck.too_slow], deadline=None)
@given(trees(), st.data())
def test_tar_bytes_depend_only_on_content(tree: dict[str, bytes], data: st.DataObject) -> None:
    outputs = []
    with tempfile.TemporaryDirectory() as scratch:
        for run, mask in enumerate((0o022, 0o077)):
            order = data.draw(st.permutations(sorted(tree)))
            root = Path(scratch) / f"run{run}" / "bundle"
            with _umask(mask):
                root.mkdir(parents=True)
                _build(root, tree, order, data)
                write_tar(root, Path(scratch) / f"run{run}.tar", top="m-1", mtime=MTIME)
            outputs.append((Path(scratch) / f"run{run}.tar").read_bytes())
    assert outputs[0] == outputs[1]


def test_tar_bytes_do_not_depend_on_listing_order(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # File systems list directories in creation order, hash order or any other.
    bundle = _make(tmp_path / "b", {**FILES, "weights/z": b"", "weights/A": b"", "a/b/c": b""})
    write_tar(bundle, tmp_path / "1.tar", top="b", mtime=0)
    real = os.scandir

    @contextmanager
    def reversed_scandir(path: str) -> Iterator[list[os.DirEntry[str]]]:
        with real(path) as listing:
            yield sorted(listing, key=lambda e: e.name, reverse=True)

    monkeypatch.setattr(os, "scandir", reversed_scandir)
    write_tar(bundle, tmp_path / "2.tar", top="b", mtime=0)
    assert (tmp_path / "1.tar").read_bytes() == (tmp_path / "2.tar").read_bytes()


def test_tar_bytes_change_with_content(tmp_path: Path) -> None:
    first = _make(tmp_path / "1" / "b", {"a": b"x"})
    second = _make(tmp_path / "2" / "b", {"a": b"y"})
    write_tar(first, tmp_path / "1.tar", top="b", mtime=0)
    write_tar(second, tmp_path / "2.tar", top="b", mtime=0)
    assert (tmp_path / "1.tar").read_bytes() != (tmp_path / "2.tar").read_bytes()


def test_same_bytes_on_every_interpreter(tmp_path: Path) -> None:
    bundle = _make(tmp_path / "iris-1.0.0", {**FILES, "weights/" + "l" * 120: b"long"})
    source_root = str(Path(modelseal.__file__).parent.parent)
    script = (
        "import sys; from modelseal.format.archive import write_tar; "
        "write_tar(sys.argv[1], sys.argv[2], top='iris-1.0.0', mtime=1700000000)"
    )
    digests = {}
    for minor in SUPPORTED_MINORS:
        python = find_python(minor)
        if python is None:
            continue
        out = tmp_path / f"3.{minor}.tar"
        env = {**os.environ, "PYTHONPATH": source_root, "LC_ALL": "C", "TZ": "Pacific/Chatham"}
        run = subprocess.run(
            [python, "-c", script, str(bundle), str(out)], capture_output=True, text=True, env=env
        )
        assert run.returncode == 0, run.stderr
        digests[minor] = hashlib.sha256(out.read_bytes()).hexdigest()
    write_tar(bundle, tmp_path / "here.tar", top="iris-1.0.0", mtime=1700000000)
    here = hashlib.sha256((tmp_path / "here.tar").read_bytes()).hexdigest()
    assert digests, "no interpreter to compare with"
    assert set(digests.values()) <= {here}, digests


# -- reading ------------------------------------------------------------------------------------


def test_read_tar_members(tmp_path: Path) -> None:
    bundle = _make(tmp_path / "iris-1.0.0", FILES)
    out = tmp_path / "iris.tar"
    write_tar(bundle, out, top="iris-1.0.0", mtime=0)
    listing = read_tar_members(out, read=("manifest.json", "weights"))
    assert listing.top == "iris-1.0.0"
    assert listing.members[:3] == (
        Entry("manifest.json", False, 3),
        Entry("model.pex", False, len(FILES["model.pex"])),
        Entry("weights", True, 0),
    )
    assert len(listing.members) == 7
    assert listing.contents == {"manifest.json": b"{}\n"}
    with pytest.raises(ArchiveError, match="a member too large to read: expected at most 2 bytes"):
        read_tar_members(out, read=("manifest.json",), max_read_size=2)


def _tar(path: Path, *members: tuple[str, bytes, bytes]) -> Path:
    """A tar with (name, type, content) members, written the unsafe way on purpose."""
    with tarfile.open(path, "w", format=tarfile.GNU_FORMAT) as tar:
        for name, kind, content in members:
            info = tarfile.TarInfo(name)
            info.type = kind
            info.mode = 0o755 if kind == tarfile.DIRTYPE else 0o644  # As the writer's.
            if kind in (tarfile.SYMTYPE, tarfile.LNKTYPE):
                info.linkname = "b/a"
            if kind == tarfile.REGTYPE:
                info.size = len(content)
                tar.addfile(info, io.BytesIO(content))
            else:
                tar.addfile(info)
    return path


D, F = tarfile.DIRTYPE, tarfile.REGTYPE


@pytest.mark.parametrize(
    ("members", "name", "what"),
    [
        ([("/b", D, b""), ("/b/a", F, b"x")], "/b", "an absolute path"),
        ([("b", D, b""), ("b/../a", F, b"x")], "b/../a", "the path must not contain '..'"),
        ([("b", D, b""), ("b/./a", F, b"x")], "b/./a", "the path must not contain '.' segments"),
        (
            [("b", D, b""), ("b/s", tarfile.SYMTYPE, b"")],
            "b/s",
            "a symbolic link",
        ),
        (
            [("b", D, b""), ("b/h", tarfile.LNKTYPE, b"")],
            "b/h",
            "a hard link",
        ),
        (
            [("b", D, b""), ("b/c", tarfile.CHRTYPE, b"")],
            "b/c",
            "a device",
        ),
        (
            [("b", D, b""), ("b/c", tarfile.BLKTYPE, b"")],
            "b/c",
            "a device",
        ),
        (
            [("b", D, b""), ("b/f", tarfile.FIFOTYPE, b"")],
            "b/f",
            "a FIFO",
        ),
        ([("b", D, b""), ("b/a", F, b"x"), ("b/a", F, b"y")], "b/a", "a duplicate member name"),
        ([("b", D, b""), ("b/a", D, b""), ("b/a", F, b"y")], "b/a", "a duplicate member name"),
        ([("b", D, b""), ("b", D, b"")], "b", "a duplicate member name"),
        ([("b", D, b""), ("c/a", F, b"x")], "c/a", "outside the top directory"),
        ([("b", F, b"x")], "b", "the top entry is not a directory"),
        (
            [("b", D, b""), ("b/a", F, b"x"), ("b/a/c", F, b"y")],
            "b/a/c",
            "inside 'a', which is a file",
        ),
    ],
)
def test_read_refuses_unsafe_archives(
    tmp_path: Path, members: list[tuple[str, bytes, bytes]], name: str, what: str
) -> None:
    path = _tar(tmp_path / "x.tar", *members)
    with pytest.raises(ArchiveError) as raised:
        read_tar_members(path)
    # The same refusal as `modelseal verify`'s (modelseal.format.safe_extract): one reader, one
    # answer.
    assert raised.value.exit_code == 10
    assert raised.value.where == f"{path}: {name}"
    assert what in str(raised.value)  # in `what`, or in `found` (the message shows both)
    assert str(raised.value).endswith(
        "This is not an archive modelseal wrote: do not install it, re-download the bundle"
    )


def test_read_refuses_empty_and_compressed(tmp_path: Path) -> None:
    empty = _tar(tmp_path / "empty.tar")
    with pytest.raises(ArchiveError, match="the archive is empty"):
        read_tar_members(empty)
    bundle = _make(tmp_path / "b", FILES)
    write_tar(bundle, tmp_path / "b.tar", top="b", mtime=0)
    compressed = tmp_path / "b.tar.gz"
    compressed.write_bytes(gzip.compress((tmp_path / "b.tar").read_bytes()))
    with pytest.raises(ArchiveError, match="not an uncompressed tar archive"):
        read_tar_members(compressed)
    garbage = tmp_path / "garbage.tar"
    garbage.write_bytes(b"not a tar at all" * 100)
    with pytest.raises(ArchiveError, match="not an uncompressed tar archive"):
        read_tar_members(garbage)
