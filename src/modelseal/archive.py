"""The bundle's tar, the same bytes for the same content on every machine.

An archive normally records who made it, when and with which umask; two honest builds of one
commit would then differ and nobody could tell them from a tampered one. So every header field
that is not content is fixed: entries sorted by the UTF-8 bytes of their path, mtime from the
commit (SOURCE_DATE_EPOCH), owner 0:0 with empty names, mode 0755 for directories and the runnable
PEX and 0644 for everything else, GNU format so no pax header carries a timestamp.

Reading is the other side of the same boundary: a tar from elsewhere is untrusted, so the reader
refuses anything a bundle never contains (absolute paths, `..`, links, devices, duplicates) before
anything looks at a member.
"""

from __future__ import annotations

import os
import tarfile
from collections.abc import Collection
from dataclasses import dataclass, field

from modelseal.atomic import atomic_output
from modelseal.errors import IntegrityError, SpecError
from modelseal.manifest import PEX_PATH, bundle_path_problem
from modelseal.tree import walk

__all__ = ["TarListing", "TarMember", "read_tar_members", "write_tar"]

DIR_MODE = 0o755
EXECUTABLE_MODE = 0o755
FILE_MODE = 0o644
# What `read_tar_members` reads into memory (a manifest), at most.
MAX_READ_SIZE = 16 * 1024 * 1024

UNSAFE_REMEDY = "this is not an archive modelseal wrote: do not install it, re-download it"


def _header(name: str, *, is_dir: bool, size: int, mode: int, mtime: int) -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.type = tarfile.DIRTYPE if is_dir else tarfile.REGTYPE
    info.size = size
    info.mode = mode
    info.mtime = mtime
    info.uid = info.gid = 0
    info.uname = info.gname = ""
    return info


def _check_top(top: str) -> None:
    if "/" in top or bundle_path_problem(top) is not None:
        raise SpecError(
            what="the archive's top directory must be a single path segment",
            where=repr(top),
            remedy="name the bundle directory like '<name>-<version>'",
        )


def write_tar(
    bundle_dir: str | os.PathLike[str],
    out_path: str | os.PathLike[str],
    top: str,
    mtime: int,
    *,
    executables: Collection[str] = (PEX_PATH,),
) -> None:
    """Archive `bundle_dir` as `top/...` into `out_path`, atomically. `executables` are the bundle
    paths that get mode 0755. SpecError if the input holds a link, device, FIFO or socket."""
    _check_top(top)
    if isinstance(mtime, bool) or not isinstance(mtime, int) or mtime < 0:
        raise SpecError(
            what=f"mtime must be a non-negative integer, not {mtime!r}",
            where="archive",
            remedy="pass the commit time (SOURCE_DATE_EPOCH) in seconds",
        )
    root = os.path.abspath(bundle_dir)
    out = os.path.abspath(out_path)
    if os.path.commonpath([root, out]) == root:
        raise SpecError(
            what="the archive would be written inside the directory it archives",
            where=os.fspath(out_path),
            remedy="write it next to the bundle directory",
        )
    if not os.path.isdir(root):
        raise SpecError(
            what="not a directory",
            where=os.fspath(bundle_dir),
            remedy="pass the bundle directory",
        )
    entries = walk(root)  # Before the output exists: nothing is written for a refused input.
    with atomic_output(out) as raw:
        # encoding: names are UTF-8 whatever the locale; GNU_FORMAT: never a pax header.
        with tarfile.open(
            fileobj=raw, mode="w", format=tarfile.GNU_FORMAT, encoding="utf-8"
        ) as tar:
            tar.addfile(_header(top, is_dir=True, size=0, mode=DIR_MODE, mtime=mtime))
            for entry in entries:
                name = f"{top}/{entry.path}"
                if entry.is_dir:
                    tar.addfile(_header(name, is_dir=True, size=0, mode=DIR_MODE, mtime=mtime))
                    continue
                mode = EXECUTABLE_MODE if entry.path in executables else FILE_MODE
                with open(os.path.join(root, *entry.path.split("/")), "rb") as content:
                    size = os.fstat(content.fileno()).st_size
                    header = _header(name, is_dir=False, size=size, mode=mode, mtime=mtime)
                    tar.addfile(header, content)  # Streamed in blocks, never read whole.


@dataclass(frozen=True)
class TarMember:
    """A member of a bundle tar: its path below the top directory, and its size."""

    path: str
    is_dir: bool
    size: int


@dataclass(frozen=True)
class TarListing:
    """A bundle tar's top directory, its members (top excluded) and the contents read on request."""

    top: str
    members: tuple[TarMember, ...]
    contents: dict[str, bytes] = field(default_factory=dict)


def _unsafe(archive: str, name: str, what: str) -> IntegrityError:
    return IntegrityError(what=what, where=f"{archive}: {name}", remedy=UNSAFE_REMEDY)


def _member_path(archive: str, info: tarfile.TarInfo) -> str:
    name = info.name
    if info.isdir() and name.endswith("/"):
        name = name[:-1]
    if name.startswith("/"):
        raise _unsafe(archive, info.name, "absolute path")
    problem = bundle_path_problem(name)
    if problem is not None:
        raise _unsafe(archive, info.name, f"the path {problem}")
    return name


def _member_kind_problem(info: tarfile.TarInfo) -> str | None:
    if info.issym():
        return "a symbolic link"
    if info.islnk():
        return "a hard link"
    if info.ischr() or info.isblk():
        return "a device"
    if info.isfifo():
        return "a FIFO"
    if info.isdir() or info.type in (tarfile.REGTYPE, tarfile.AREGTYPE):
        return None
    return f"an unsupported member type {info.type!r}"


def read_tar_members(
    path: str | os.PathLike[str], *, read: Collection[str] = (), max_read_size: int = MAX_READ_SIZE
) -> TarListing:
    """List a bundle tar without extracting it, reading the contents of the members whose paths
    (below the top directory) are in `read`. IntegrityError for anything unsafe: a path that is
    absolute, holds `..` or lies outside one top directory, a link or device, a duplicate."""
    archive = os.fspath(path)
    try:
        tar = tarfile.open(archive, mode="r:", encoding="utf-8")
    except tarfile.ReadError as e:
        raise IntegrityError(
            what=f"not an uncompressed tar archive ({e})", where=archive, remedy=UNSAFE_REMEDY
        ) from None
    with tar:
        return _read(archive, tar, read, max_read_size)


def _check_member(archive: str, info: tarfile.TarInfo) -> str:
    """The member's path, if the member is something a bundle can contain."""
    name = _member_path(archive, info)
    problem = _member_kind_problem(info)
    if problem is not None:
        raise _unsafe(archive, info.name, f"{problem} cannot be part of a bundle")
    return name


def _read(
    archive: str, tar: tarfile.TarFile, read: Collection[str], max_read_size: int
) -> TarListing:
    top: str | None = None
    members: list[TarMember] = []
    kinds: dict[str, bool] = {}  # path below top ("" for top itself) -> is_dir
    contents: dict[str, bytes] = {}
    for info in tar:
        name = _check_member(archive, info)
        first, _, rest = name.partition("/")
        top = first if top is None else top
        if first != top:
            raise _unsafe(archive, info.name, f"outside the top directory {top!r}")
        if not rest and not info.isdir():
            raise _unsafe(archive, info.name, "the top directory is not a directory")
        if rest in kinds:
            raise _unsafe(archive, info.name, "listed twice")
        kinds[rest] = info.isdir()
        if not rest:
            continue
        members.append(TarMember(rest, info.isdir(), 0 if info.isdir() else info.size))
        if rest in read and not info.isdir():
            if info.size > max_read_size:
                raise _unsafe(archive, info.name, f"larger than {max_read_size} bytes")
            stream = tar.extractfile(info)
            assert stream is not None  # A regular file always has a stream.
            contents[rest] = stream.read()
    if top is None:
        raise IntegrityError(what="the archive is empty", where=archive, remedy=UNSAFE_REMEDY)
    for member in members:
        parts = member.path.split("/")
        for depth in range(1, len(parts)):
            parent = "/".join(parts[:depth])
            if kinds.get(parent) is False:
                raise _unsafe(
                    archive, f"{top}/{member.path}", f"inside {top + '/' + parent!r}, a file"
                )
    return TarListing(top=top, members=tuple(members), contents=contents)
