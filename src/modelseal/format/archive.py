"""The bundle's tar, the same bytes for the same content on every machine.

An archive normally records who made it, when and with which umask; two honest builds of one
commit would then differ and nobody could tell them from a tampered one. So every header field
that is not content is fixed: entries sorted by the UTF-8 bytes of their path, mtime from the
commit (SOURCE_DATE_EPOCH), owner 0:0 with empty names, mode 0755 for directories and the runnable
PEX and 0644 for everything else, GNU format so no pax header carries a timestamp.

Reading is the other side of the same boundary: a tar from elsewhere is untrusted, so the reader
(modelseal.format.tarstream) accepts only the headers this writer emits, byte for byte.
"""

from __future__ import annotations

import os
import tarfile
from collections.abc import Collection
from dataclasses import dataclass, field

from modelseal.errors import SpecError
from modelseal.format.atomic import atomic_output
from modelseal.format.manifest import PEX_PATH, bundle_path_problem
from modelseal.format.safe_extract import read_members
from modelseal.format.tree import Entry, walk

__all__ = ["TarListing", "read_tar_members", "write_tar"]

DIR_MODE = 0o755
EXECUTABLE_MODE = 0o755
FILE_MODE = 0o644
# What `read_tar_members` reads into memory (a manifest), at most.
MAX_READ_SIZE = 16 * 1024 * 1024



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
class TarListing:
    """A bundle tar's top directory, its members (top excluded) and the contents read on request."""

    top: str
    members: tuple[Entry, ...]
    contents: dict[str, bytes] = field(default_factory=dict)


def read_tar_members(
    path: str | os.PathLike[str], *, read: Collection[str] = (), max_read_size: int = MAX_READ_SIZE
) -> TarListing:
    """List a bundle tar without extracting it, reading the contents of the members whose paths
    (below the top directory) are in `read`. The checks are `modelseal verify`'s
    (modelseal.format.safe_extract), so an unsafe tar fails the same way, with ArchiveError
    (exit 10), whichever command reads it."""
    scan, contents = read_members(os.fspath(path), read, max_read_size)
    members = scan.members
    return TarListing(top=scan.top, members=members, contents=contents)
