"""Extract an untrusted bundle tar without trusting a single byte of it.

A tar is a list of instructions ("create this path, with this type, this size"), and every
instruction is the attacker's when the tar comes from elsewhere: `../` or absolute names write
outside the target, symlinks and hard links redirect later writes, devices and FIFOs are not
content, duplicate names overwrite what was checked, and a declared size can exhaust the disk.
So extraction happens in two passes:

1. every header is read and judged first (paths, types, duplicates, per-member and total size,
   member count), and only if all pass does
2. the second pass create anything, inside a fresh private directory (mode 0700), with files
   opened `O_EXCL | O_NOFOLLOW` and contents streamed in fixed-size chunks, never whole.

`tarfile` reads some metadata records (pax headers, GNU long names) into memory in one piece, so
the file object it reads through refuses any single read larger than `MAX_RECORD_SIZE`: a tar that
declares a gigabyte "long name" fails instead of being loaded.
"""

from __future__ import annotations

import io
import os
import shutil
import tarfile
import tempfile
from collections.abc import Callable, Collection
from dataclasses import dataclass
from typing import IO, cast

from modelseal.errors import ArchiveError
from modelseal.format.manifest import bundle_path_problem

__all__ = [
    "DEFAULT_LIMITS",
    "Limits",
    "extract_bundle",
    "private_directory",
    "read_members",
    "remove_tree",
    "scan_tar",
]

GIB = 1024**3
CHUNK = 1024 * 1024
# The largest metadata record (pax header, GNU long name) `tarfile` may read in one piece.
MAX_RECORD_SIZE = 1024 * 1024

REMEDY = "this is not an archive modelseal wrote: do not install it, re-download the bundle"


@dataclass(frozen=True)
class Limits:
    """What a bundle archive may hold at most. The defaults fit the largest models in use today
    with room to spare while keeping a hostile archive from filling a disk."""

    max_member_size: int = 32 * GIB
    max_total_size: int = 64 * GIB
    max_members: int = 100_000


DEFAULT_LIMITS = Limits()


class _BoundedReads(io.RawIOBase):
    """A read-only view of a file that refuses any single read larger than `limit` bytes."""

    def __init__(self, raw: IO[bytes], name: str, limit: int) -> None:
        super().__init__()
        self._raw = raw
        self.name = name
        self._limit = limit

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def read(self, size: int | None = -1) -> bytes:
        if size is None or size < 0 or size > self._limit:
            raise ArchiveError(
                what="a metadata record is larger than modelseal reads",
                where=self.name,
                remedy=REMEDY,
                expected=f"at most {self._limit} bytes",
                found=f"{'unbounded' if size is None or size < 0 else size} bytes",
            )
        return self._raw.read(size)

    def seek(self, offset: int, whence: int = io.SEEK_SET) -> int:
        return self._raw.seek(offset, whence)

    def tell(self) -> int:
        return self._raw.tell()


@dataclass(frozen=True)
class Member:
    """A member that passed the checks: its path below the top directory, kind and size."""

    info: tarfile.TarInfo
    path: str  # Below the top directory; "" for the top directory itself.
    is_dir: bool
    size: int


@dataclass(frozen=True)
class Scan:
    top: str
    members: tuple[Member, ...]
    total_size: int


def _bad(archive: str, name: str, what: str, expected: str = "", found: str = "") -> ArchiveError:
    return ArchiveError(
        what=what, where=f"{archive}: {name}", remedy=REMEDY, expected=expected, found=found
    )


def _kind(info: tarfile.TarInfo) -> str | None:
    """Why this member type cannot be in a bundle, or None for regular files and directories."""
    if info.issym():
        return f"a symbolic link (to {info.linkname!r})"
    if info.islnk():
        return f"a hard link (to {info.linkname!r})"
    if info.ischr() or info.isblk():
        return "a device"
    if info.isfifo():
        return "a FIFO"
    if info.isdir() or info.type in (tarfile.REGTYPE, tarfile.AREGTYPE):
        return None
    return f"a member of type {info.type!r}"


def _judge(archive: str, info: tarfile.TarInfo) -> tuple[str, str]:
    """(top, path below top) of a member, if its name and type are ones a bundle can hold."""
    name = info.name[:-1] if info.isdir() and info.name.endswith("/") else info.name
    if name.startswith("/"):
        raise _bad(archive, info.name, "an absolute path", "a relative path", repr(info.name))
    problem = bundle_path_problem(name)
    if problem is not None:
        raise _bad(archive, info.name, f"the path {problem}", "a bundle path", repr(info.name))
    kind = _kind(info)
    if kind is not None:
        raise _bad(archive, info.name, "a member a bundle never holds", "a file or directory", kind)
    top, _, rest = name.partition("/")
    return top, rest


def _scan(archive: str, tar: tarfile.TarFile, limits: Limits) -> Scan:
    members: list[Member] = []
    kinds: dict[str, bool] = {}
    top: str | None = None
    total = 0
    for info in tar:
        if len(members) >= limits.max_members:
            raise _bad(
                archive, info.name, "too many members", f"at most {limits.max_members}", "more"
            )
        member_top, path = _judge(archive, info)
        top = member_top if top is None else top
        if member_top != top:
            raise _bad(archive, info.name, "outside the top directory", f"{top}/...", info.name)
        if not path and not info.isdir():
            raise _bad(archive, info.name, "the top entry is not a directory")
        if path in kinds:
            raise _bad(archive, info.name, "a duplicate member name", "each name once", "twice")
        size = 0 if info.isdir() else info.size
        if size > limits.max_member_size:
            raise _bad(
                archive,
                info.name,
                "a member above the size limit",
                f"at most {limits.max_member_size} bytes",
                f"{size} bytes",
            )
        total += size
        if total > limits.max_total_size:
            raise _bad(
                archive,
                info.name,
                "the archive is above the total size limit",
                f"at most {limits.max_total_size} bytes",
                f"{total} bytes or more",
            )
        kinds[path] = info.isdir()
        members.append(Member(info, path, info.isdir(), size))
    if top is None:
        raise ArchiveError(what="the archive is empty", where=archive, remedy=REMEDY)
    for member in members:
        parts = member.path.split("/")
        for depth in range(1, len(parts)):
            parent = "/".join(parts[:depth])
            if kinds.get(parent) is False:
                raise _bad(archive, member.info.name, f"inside {parent!r}, which is a file")
    return Scan(top, tuple(members), total)


def _open(archive: str, raw: IO[bytes]) -> tarfile.TarFile:
    bounded = cast(IO[bytes], _BoundedReads(raw, archive, MAX_RECORD_SIZE))
    try:
        return tarfile.open(fileobj=bounded, mode="r:", encoding="utf-8")
    except tarfile.TarError as e:
        raise ArchiveError(
            what=f"not an uncompressed tar archive ({e})", where=archive, remedy=REMEDY
        ) from None


def scan_tar(path: str, limits: Limits = DEFAULT_LIMITS) -> Scan:
    """Judge every header of the tar at `path` without extracting anything; ArchiveError for the
    first member a bundle cannot hold."""
    with open(path, "rb") as raw:
        tar = _open(path, raw)
        with tar:
            return _guarded(path, lambda: _scan(path, tar, limits))


def read_members(
    path: str, names: Collection[str], max_size: int, limits: Limits = DEFAULT_LIMITS
) -> tuple[Scan, dict[str, bytes]]:
    """Judge every header as `scan_tar` does, then read the regular-file members whose paths
    (below the top directory) are in `names`, each at most `max_size` bytes: what `inspect`
    needs (the manifest) without extracting anything."""
    contents: dict[str, bytes] = {}
    with open(path, "rb") as raw:
        tar = _open(path, raw)
        with tar:
            scan = _guarded(path, lambda: _scan(path, tar, limits))

            def read() -> Scan:
                for member in scan.members:
                    if member.path not in names or member.is_dir:
                        continue
                    if member.size > max_size:
                        raise _bad(path, member.info.name, "a member too large to read",
                                   f"at most {max_size} bytes", f"{member.size} bytes")
                    stream = tar.extractfile(member.info)
                    assert stream is not None  # _scan admits only files and directories.
                    contents[member.path] = stream.read()
                return scan

            _guarded(path, read)
    return scan, contents


def _guarded(archive: str, action: Callable[[], Scan]) -> Scan:
    # tarfile reports malformed headers and truncated data with its own exceptions (and, for
    # some header corruptions, ValueError or UnicodeError): all mean the same thing here.
    try:
        return action()
    except ArchiveError:
        raise
    except (tarfile.TarError, EOFError, ValueError, UnicodeError) as e:
        raise ArchiveError(
            what=f"a malformed tar ({type(e).__name__}: {e})", where=archive, remedy=REMEDY
        ) from None


def private_directory(prefix: str = "modelseal-verify-") -> str:
    """A new directory only this user can enter (mkdtemp creates it with mode 0700)."""
    return tempfile.mkdtemp(prefix=prefix)


def _write_member(tar: tarfile.TarFile, member: Member, target: str, archive: str) -> None:
    source = tar.extractfile(member.info)
    if source is None:  # Only for links and special members, which _scan refused.
        raise _bad(archive, member.info.name, "a member without content")
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_NOFOLLOW", 0)
    try:
        fd = os.open(target, flags, 0o600)
    except FileExistsError:
        # A name that collides on this file system (case-insensitive, normalised names).
        raise _bad(archive, member.info.name, "collides with another member's name") from None
    written = 0
    with os.fdopen(fd, "wb") as out, source:
        while True:
            chunk = source.read(CHUNK)
            if not chunk:
                break
            written += len(chunk)
            out.write(chunk)
    if written != member.size:
        raise _bad(
            archive,
            member.info.name,
            "truncated member",
            f"{member.size} bytes",
            f"{written} bytes",
        )


def _extract(archive: str, tar: tarfile.TarFile, scan: Scan, destination: str) -> Scan:
    root = os.path.join(destination, scan.top)
    os.mkdir(root, 0o700)
    for member in scan.members:
        if not member.path:
            continue
        target = os.path.join(root, *member.path.split("/"))
        os.makedirs(os.path.dirname(target), mode=0o700, exist_ok=True)
        if member.is_dir:
            os.makedirs(target, mode=0o700, exist_ok=True)
        else:
            _write_member(tar, member, target, archive)
    return scan


def extract_bundle(path: str, destination: str, limits: Limits = DEFAULT_LIMITS) -> str:
    """Check every header of the bundle tar at `path`, then extract it into `destination` (an
    empty private directory); the extracted bundle directory `destination/<top>`. ArchiveError
    for anything unsafe, before anything is written."""
    with open(path, "rb") as raw:
        tar = _open(path, raw)
        with tar:
            scan = _guarded(path, lambda: _scan(path, tar, limits))
            _guarded(path, lambda: _extract(path, tar, scan, destination))
    return os.path.join(destination, scan.top)


def remove_tree(path: str) -> None:
    """Remove a private directory made by `private_directory`, whatever it holds."""
    shutil.rmtree(path, ignore_errors=True)
