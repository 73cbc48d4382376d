"""A strict reader for the one tar format modelseal writes, over its 512-byte blocks.

Why not `tarfile`: a reader that is more lenient than GNU tar, or lenient differently, lets one
archive mean two things: `tarfile` silently stops at a header it cannot parse (GNU tar reads on and
extracts the members after it), its pax parser is quadratic in the record length (CVE-2024-6232,
unfixed in the interpreters modelseal supports), and it follows chains of long-name headers by
recursion. A bundle tar is never any of that: `modelseal.format.archive.write_tar` emits GNU
format, sorted by path, directories and regular files only, owner 0:0 with empty names, modes
0755/0644, long names as one GNU `L` record, and end-of-archive blocks padded to a 10 KiB record.
This module accepts exactly that and nothing else:

- every header's checksum and numeric fields are parsed strictly (octal digits then NUL, or the
  GNU base-256 size for members of 8 GiB and more) before any field is used, and the whole header
  (with its `L` record) must be byte for byte the header the writer emits for the same name, type,
  size, mode and mtime (`tarfile`'s own header *writer* produces that reference: the writer uses
  it, and serializing trusted values parses nothing);
- member types: directory, regular file, and one `L` record before a member; no pax, no sparse,
  no links, no devices, no chained `L` records;
- names: UTF-8, relative bundle paths, at most 4096 bytes, 128 segments and 255 bytes a segment,
  strictly increasing in the writer's order (so no duplicates), each inside the one top directory
  and below a directory member already seen;
- the member count and the names' total length are bounded, and the archive must end with two
  zero blocks followed by nothing but zero padding up to the 10 KiB record.

Work is linear in the archive: one pass over the headers, constant work per block, no recursion.
"""

from __future__ import annotations

import tarfile
from collections.abc import Iterator
from dataclasses import dataclass
from typing import BinaryIO

from modelseal.errors import ArchiveError
from modelseal.format.manifest import bundle_path_problem
from modelseal.format.tree import Entry

__all__ = [
    "BLOCK",
    "MAX_NAME_BYTES",
    "MAX_SEGMENTS",
    "MAX_SEGMENT_BYTES",
    "TarEntry",
    "read_entries",
]

BLOCK = 512
RECORD = 20 * BLOCK  # tarfile's RECORDSIZE: the archive is padded to a multiple of it.
MAX_NAME_BYTES = 4096
MAX_SEGMENTS = 128
MAX_SEGMENT_BYTES = 255
# All member names together: the reader keeps them (to find parents and duplicates).
MAX_NAMES_BYTES = 16 * 1024 * 1024
DIR_MODE = 0o755
FILE_MODES = (0o644, 0o755)

# What the member types a bundle never holds are, for the message.
KINDS = {
    tarfile.LNKTYPE: "a hard link",
    tarfile.SYMTYPE: "a symbolic link",
    tarfile.CHRTYPE: "a device",
    tarfile.BLKTYPE: "a device",
    tarfile.FIFOTYPE: "a FIFO",
    tarfile.CONTTYPE: "a contiguous file",
    tarfile.GNUTYPE_SPARSE: "a sparse file",
    tarfile.GNUTYPE_LONGNAME: "a second long-name record",
    tarfile.GNUTYPE_LONGLINK: "a long link-name record",
    tarfile.XHDTYPE: "a pax header",
    tarfile.XGLTYPE: "a pax global header",
    tarfile.SOLARIS_XHDTYPE: "a pax header",
}

REMEDY = "this is not an archive modelseal wrote: do not install it, re-download the bundle"


@dataclass(frozen=True)
class TarEntry:
    """A member that passed every check: its record (path below the top directory, "" for the
    top itself), its mode, and where its content starts in the archive."""

    name: str  # The full path, top directory included.
    entry: Entry
    mode: int
    offset: int


def _bad(archive: str, where: str, what: str, expected: str = "", found: str = "") -> ArchiveError:
    return ArchiveError(
        what=what, where=f"{archive}: {where}", remedy=REMEDY, expected=expected, found=found
    )


def _octal(field: bytes, archive: str, where: str, name: str) -> int:
    """An octal field as the writer emits it: digits, then NUL (nothing else)."""
    digits = field[:-1]
    if field[-1:] != b"\0" or not digits or any(c not in b"01234567" for c in digits):
        raise _bad(archive, where, f"the header's {name} field is not a plain octal number",
                   "octal digits then NUL", repr(field))
    return int(digits, 8)


def _size(field: bytes, archive: str, where: str) -> int:
    if field[0] == 0x80:  # GNU base-256, which the writer uses from 8 GiB on.
        return int.from_bytes(field[1:], "big")
    return _octal(field, archive, where, "size")


def _header_values(block: bytes, archive: str, where: str) -> tuple[bytes, bytes, int, int, int]:
    """(name field, type, size, mode, mtime) of one header block, its checksum checked first."""
    shown = block[:100].split(b"\0", 1)[0].decode("utf-8", "replace")
    where = f"{shown} ({where})"
    stored = block[148:156]
    if stored[6:] != b"\0 " or any(c not in b"01234567" for c in stored[:6]):
        raise _bad(archive, where, "the header's checksum field is malformed",
                   "six octal digits, NUL, space", repr(stored))
    computed = sum(block[:148]) + 8 * 0x20 + sum(block[156:])
    if int(stored[:6], 8) != computed:
        raise _bad(archive, where, "the header's checksum does not match",
                   str(computed), str(int(stored[:6], 8)))
    name = block[:100].split(b"\0", 1)[0]
    kind = block[156:157]
    size = _size(block[124:136], archive, where)
    mode = _octal(block[100:108], archive, where, "mode")
    mtime = _octal(block[136:148], archive, where, "mtime")
    return name, kind, size, mode, mtime


def _reference(name: str, is_dir: bool, size: int, mode: int, mtime: int) -> bytes:
    """The header bytes the writer emits for this member (modelseal.format.archive._header)."""
    info = tarfile.TarInfo(name)
    info.type = tarfile.DIRTYPE if is_dir else tarfile.REGTYPE
    info.size = size
    info.mode = mode
    info.mtime = mtime
    info.uid = info.gid = 0
    info.uname = info.gname = ""
    return info.tobuf(tarfile.GNU_FORMAT, "utf-8", "strict")


def _check_name(raw: bytes, archive: str, where: str) -> str:
    if len(raw) > MAX_NAME_BYTES:
        raise _bad(archive, where, "the member name is too long",
                   f"at most {MAX_NAME_BYTES} bytes", f"{len(raw)} bytes")
    try:
        name = raw.decode("utf-8")
    except UnicodeDecodeError:
        raise _bad(archive, where, "the member name is not UTF-8") from None
    path = name[:-1] if name.endswith("/") else name
    if path.startswith("/"):
        raise _bad(archive, where, "an absolute path", "a relative path", repr(name[:200]))
    segments = path.split("/")
    if len(segments) > MAX_SEGMENTS:
        raise _bad(archive, where, "the member name has too many segments",
                   f"at most {MAX_SEGMENTS}", str(len(segments)))
    longest = max(len(s.encode("utf-8")) for s in segments)
    if longest > MAX_SEGMENT_BYTES:
        raise _bad(archive, where, "a segment of the member name is too long",
                   f"at most {MAX_SEGMENT_BYTES} bytes", f"{longest} bytes")
    problem = bundle_path_problem(path)
    if problem is not None:
        raise _bad(archive, where, f"the path {problem}", "a bundle path", repr(name))
    return path


def _read(f: BinaryIO, count: int, archive: str, where: str) -> bytes:
    data = f.read(count)
    if len(data) != count:
        raise _bad(archive, where, "the archive is truncated", f"{count} more bytes",
                   f"{len(data)} bytes")
    return data


def _skip(f: BinaryIO, count: int, archive: str, where: str, end: int) -> None:
    if f.tell() + count > end:
        raise _bad(archive, where, "the archive is truncated", f"{count} more bytes",
                   f"{end - f.tell()} bytes")
    f.seek(count, 1)


def _padded(size: int) -> int:
    return -(-size // BLOCK) * BLOCK


def _end(f: BinaryIO, archive: str, end: int) -> None:
    """After the first zero block: a second one, then nothing but zeros up to the record."""
    second = _read(f, BLOCK, archive, "end of archive")
    rest = end - f.tell()
    if any(second) or rest >= RECORD or (end % BLOCK) != 0:
        raise _bad(archive, "end of archive", "data after the end-of-archive blocks",
                   "two zero blocks and zero padding", f"{rest} more bytes")
    if any(_read(f, rest, archive, "end of archive")):
        raise _bad(archive, "end of archive", "data after the end-of-archive blocks",
                   "zero padding", "non-zero bytes")


@dataclass(frozen=True)
class _Header:
    """One member's header (with its long-name record, if any), fields parsed and checked."""

    path: str
    where: str
    is_dir: bool
    size: int
    mode: int


def _long_name(f: BinaryIO, archive: str, where: str, size: int) -> tuple[bytes, bytes]:
    """(the name, the record's payload blocks) of a GNU long-name record of `size` bytes."""
    if not 1 < size <= MAX_NAME_BYTES + 1:
        raise _bad(archive, where, "a long-name record modelseal never writes",
                   f"at most {MAX_NAME_BYTES + 1} bytes", f"{size} bytes")
    payload = _read(f, _padded(size), archive, where)
    raw = payload[: size - 1]
    if payload[size - 1] != 0 or b"\0" in raw:
        raise _bad(archive, where, "a malformed long-name record")
    return raw, payload


def _header(f: BinaryIO, block: bytes, archive: str, start: int) -> _Header:
    """Parse and judge the member whose first header block `block` was read at `start`."""
    where = f"header at byte {start}"
    try:
        raw, kind, size, mode, mtime = _header_values(block, archive, where)
    except ArchiveError as e:
        if start:
            raise
        raise _bad(archive, where, f"not an uncompressed tar archive ({e.what})") from None
    long_record = b""
    if kind == tarfile.GNUTYPE_LONGNAME:
        if raw != b"././@LongLink":
            raise _bad(archive, where, "a long-name record modelseal never writes")
        raw, payload = _long_name(f, archive, where, size)
        long_record = block + payload
        block = _read(f, BLOCK, archive, where)
        if not any(block):
            raise _bad(archive, where, "a long-name record without a member")
        _, kind, size, mode, mtime = _header_values(block, archive, where)
    where = raw.decode("utf-8", "replace")[:200].rstrip("/")
    if kind not in (tarfile.REGTYPE, tarfile.DIRTYPE):
        raise _bad(archive, where, "a member a bundle never holds", "a file or directory",
                   KINDS.get(kind, f"a member of type {kind!r}"))
    is_dir = kind == tarfile.DIRTYPE
    path = _check_name(raw, archive, where)
    if mode not in ((DIR_MODE,) if is_dir else FILE_MODES):
        raise _bad(archive, where, "a mode modelseal never writes", "0755 or 0644", oct(mode))
    if is_dir and size:
        raise _bad(archive, where, "a directory with content", "size 0", str(size))
    if long_record + block != _reference(path, is_dir, size, mode, mtime):
        raise _bad(archive, where, "a header modelseal's writer would not emit",
                   "GNU format, owner 0:0, no names, nothing else set", "other header bytes")
    return _Header(path, where, is_dir, size, mode)


class _Tree:
    """The order and nesting rules across members: sorted names (so no duplicates), one top
    directory, every member below a directory member seen before it, names bounded in total."""

    def __init__(self, archive: str) -> None:
        self.archive = archive
        self.top: str | None = None
        self.previous: bytes | None = None
        self.directories: set[str] = set()
        self.files: set[str] = set()
        self.names = 0

    def admit(self, header: _Header) -> str:
        """The member's path below the top directory ("" for the top itself)."""
        path, where, archive = header.path, header.where, self.archive
        key = path.encode("utf-8")
        if key == self.previous:
            raise _bad(archive, where, "a duplicate member name", "each name once", "twice")
        if self.previous is not None and key < self.previous:
            raise _bad(archive, where, "members out of order", "sorted by name", "an earlier name")
        self.previous = key
        member_top, _, below = path.partition("/")
        if self.top is None:
            if below or not header.is_dir:
                raise _bad(archive, where, "the top entry is not a directory")
            self.top = member_top
        elif member_top != self.top:
            raise _bad(archive, where, "outside the top directory", f"{self.top}/...", path)
        parent = path.rpartition("/")[0]
        if parent and parent not in self.directories:
            what = "a file" if parent in self.files else "not a member"
            raise _bad(archive, where, f"inside {parent.rpartition('/')[2]!r}, which is {what}",
                       f"{parent!r} as a directory before it")
        self.names += len(key)
        if self.names > MAX_NAMES_BYTES:
            raise _bad(archive, where, "the member names are too long in total",
                       f"at most {MAX_NAMES_BYTES} bytes", "more")
        (self.directories if header.is_dir else self.files).add(path)
        return below


def read_entries(f: BinaryIO, archive: str, max_members: int) -> Iterator[TarEntry]:
    """Every member of the bundle tar open as `f` (seekable), in order, each judged before it is
    yielded; ArchiveError at the first thing modelseal's writer never emits. The caller may read
    a file's content at `offset`; the reader seeks to the next header itself."""
    end = f.seek(0, 2)
    f.seek(0)
    if end < BLOCK:
        raise _bad(archive, "header at byte 0",
                   "not an uncompressed tar archive (shorter than a header)")
    tree = _Tree(archive)
    count = 0
    while True:
        start = f.tell()
        block = _read(f, BLOCK, archive, f"header at byte {start}")
        if not any(block):
            _end(f, archive, end)
            break
        if count >= max_members:
            raise _bad(archive, f"header at byte {start}", "too many members",
                       f"at most {max_members}", "more")
        header = _header(f, block, archive, start)
        below = tree.admit(header)
        count += 1
        offset = f.tell()
        yield TarEntry(header.path, Entry(below, header.is_dir, header.size), header.mode, offset)
        f.seek(offset)
        _skip(f, _padded(header.size), archive, header.where, end)
    if tree.top is None:
        raise ArchiveError(what="the archive is empty", where=archive, remedy=REMEDY)
