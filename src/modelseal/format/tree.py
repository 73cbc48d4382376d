"""List a bundle directory the same way on every host.

Archiving and verification both need every entry of a bundle directory, in an order that does not
depend on the file system, and both must refuse anything a bundle never contains: a symlink could
point outside the bundle and a device or FIFO has no content to hash. Hard links are not refused:
Pants materializes large files into its sandboxes as hard links to its store, and a hard link is
just another name for a regular file, so its content is read like any other.
"""

from __future__ import annotations

import os
import stat
from dataclasses import dataclass

from modelseal.errors import SpecError

__all__ = ["Entry", "walk"]


@dataclass(frozen=True)
class Entry:
    """A directory or regular file: POSIX path relative to the root, size (0 for directories)."""

    path: str
    is_dir: bool
    size: int


def _kind(mode: int) -> str | None:
    if stat.S_ISLNK(mode):
        return "a symbolic link"
    if stat.S_ISCHR(mode) or stat.S_ISBLK(mode):
        return "a device"
    if stat.S_ISFIFO(mode):
        return "a FIFO"
    if stat.S_ISSOCK(mode):
        return "a socket"
    if stat.S_ISDIR(mode) or stat.S_ISREG(mode):
        return None
    return "not a regular file or directory"


def walk(root: str | os.PathLike[str]) -> list[Entry]:
    """Every directory and file below `root` (not `root` itself), sorted by the UTF-8 bytes of the
    path; SpecError naming the first entry that is not a regular file or directory."""
    entries: list[Entry] = []
    pending = [("", os.fspath(root))]
    while pending:
        relative, directory = pending.pop()
        with os.scandir(directory) as listing:
            children = list(listing)
        for child in children:
            path = f"{relative}/{child.name}" if relative else child.name
            try:
                path.encode("utf-8")
            except UnicodeEncodeError:
                raise SpecError(
                    what="the file name is not valid UTF-8",
                    where=os.path.join(directory, child.name),
                    remedy="rename it: bundle paths must read the same on every host",
                ) from None
            info = child.stat(follow_symlinks=False)
            problem = _kind(info.st_mode)
            if problem is not None:
                raise SpecError(
                    what=f"{problem} cannot be part of a bundle",
                    where=child.path,
                    remedy="replace it with the regular file or directory it stands for",
                )
            if stat.S_ISDIR(info.st_mode):
                entries.append(Entry(path, True, 0))
                pending.append((path, child.path))
            else:
                entries.append(Entry(path, False, info.st_size))
    entries.sort(key=lambda entry: entry.path.encode("utf-8"))
    return entries
