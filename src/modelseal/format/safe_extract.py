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

The headers are read by `modelseal.format.tarstream`, which accepts only what modelseal's writer
emits (see there why `tarfile` is not used to read). Extraction is one pass: each file is written
and hashed as it streams by, so the digests the checks compare are of exactly the bytes written,
and the tar is never read again. Disk use is bounded before a byte is written: a file the
(not yet verified) manifest lists must have the size it declares, and any other file, or any file
before the manifest, at most `METADATA_LIMIT`.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import tempfile
from collections.abc import Collection, Mapping
from dataclasses import dataclass, field
from typing import BinaryIO

from modelseal.errors import ArchiveError, IntegrityError, ModelsealError
from modelseal.format.manifest import MANIFEST_PATH, PEX_PATH, Manifest
from modelseal.format.tarstream import REMEDY, TarEntry, read_entries
from modelseal.format.tree import Entry, walk

__all__ = [
    "DEFAULT_LIMITS",
    "METADATA_LIMIT",
    "Limits",
    "Scan",
    "copy_verified",
    "extract_bundle",
    "extract_and_hash",
    "private_directory",
    "read_members",
    "remove_tree",
    "scan_tar",
]

GIB = 1024**3
CHUNK = 1024 * 1024
# The most any file the manifest does not list may hold (model.sig, the layout, links, the
# manifest itself): small enough that parsing one as JSON stays far below 256 MiB of memory.
METADATA_LIMIT = 4 * 1024 * 1024


@dataclass(frozen=True)
class Limits:
    """What a bundle archive may hold at most. The defaults fit the largest models in use today
    with room to spare while keeping a hostile archive from filling a disk."""

    max_member_size: int = 32 * GIB
    max_total_size: int = 64 * GIB
    max_members: int = 100_000


DEFAULT_LIMITS = Limits()


@dataclass(frozen=True)
class Scan:
    """A checked tar: its top directory, its members (the top excluded) and their total size."""

    top: str
    members: tuple[Entry, ...]
    total_size: int
    modes: dict[str, int] = field(default_factory=dict)  # path -> mode (0644 or 0755)


def _bad(archive: str, name: str, what: str, expected: str = "", found: str = "") -> ArchiveError:
    return ArchiveError(
        what=what, where=f"{archive}: {name}", remedy=REMEDY, expected=expected, found=found
    )


class _Budget:
    """The size rules every member passes before its content is read or written: the limits,
    and the manifest's declared sizes once the manifest has gone by."""

    def __init__(self, archive: str, limits: Limits, *, by_manifest: bool = True) -> None:
        self.archive = archive
        self.by_manifest = by_manifest
        self.limits = limits
        self.total = 0
        self.declared: dict[str, int] | None = None

    def admit(self, member: TarEntry) -> None:
        size, name = member.entry.size, member.name
        if size > self.limits.max_member_size:
            raise _bad(self.archive, name, "a member above the size limit",
                       f"at most {self.limits.max_member_size} bytes", f"{size} bytes")
        self.total += size
        if self.total > self.limits.max_total_size:
            raise _bad(self.archive, name, "the archive is above the total size limit",
                       f"at most {self.limits.max_total_size} bytes", f"{self.total} bytes")
        if member.entry.is_dir or not self.by_manifest:
            return
        declared = (self.declared or {}).get(member.entry.path)
        if declared is None and size > METADATA_LIMIT:
            raise _bad(self.archive, name, "a file larger than the manifest allows",
                       f"at most {METADATA_LIMIT} bytes for a file manifest.json does not list",
                       f"{size} bytes")
        if declared is not None and size != declared:
            raise _bad(self.archive, name, "a file whose size is not the manifest's",
                       f"{declared} bytes", f"{size} bytes")

    def saw_manifest(self, data: bytes) -> None:
        try:
            manifest = Manifest.from_bytes(data, source=MANIFEST_PATH)
        except (ModelsealError, ValueError, RecursionError):
            return  # Unreadable: every later file stays small; the checks name the problem.
        self.declared = {entry.path: entry.size for entry in manifest.files}


def _scan(f: BinaryIO, archive: str, limits: Limits, names: Collection[str],
          max_size: int) -> tuple[Scan, dict[str, bytes]]:
    members: list[Entry] = []
    modes: dict[str, int] = {}
    contents: dict[str, bytes] = {}
    top = ""
    budget = _Budget(archive, limits, by_manifest=False)
    for member in read_entries(f, archive, limits.max_members):
        budget.admit(member)
        if not member.entry.path:
            top = member.name
            continue
        size = member.entry.size
        if member.entry.path in names and not member.entry.is_dir:
            if size > max_size:
                raise _bad(archive, member.name, "a member too large to read",
                           f"at most {max_size} bytes", f"{size} bytes")
            contents[member.entry.path] = f.read(size)
        members.append(member.entry)
        modes[member.entry.path] = member.mode
    return Scan(top, tuple(members), budget.total, modes), contents


def scan_tar(path: str, limits: Limits = DEFAULT_LIMITS) -> Scan:
    """Judge every header of the tar at `path` without extracting anything; ArchiveError for the
    first member a bundle cannot hold."""
    with open(path, "rb") as f:
        return _scan(f, path, limits, (), 0)[0]


def read_members(
    path: str, names: Collection[str], max_size: int, limits: Limits = DEFAULT_LIMITS
) -> tuple[Scan, dict[str, bytes]]:
    """Judge every header as `scan_tar` does, and read the regular-file members whose paths
    (below the top directory) are in `names`, each at most `max_size` bytes: what `inspect`
    needs (the manifest) without extracting anything."""
    with open(path, "rb") as f:
        return _scan(f, path, limits, names, max_size)


def private_directory(prefix: str = "modelseal-verify-") -> str:
    """A new directory only this user can enter (mkdtemp creates it with mode 0700)."""
    return tempfile.mkdtemp(prefix=prefix)


def _write_member(f: BinaryIO, member: TarEntry, target: str, archive: str) -> tuple[str, int]:
    """Stream one member's content into a new file; (sha256, size) of what was written."""
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_NOFOLLOW", 0)
    try:
        fd = os.open(target, flags, 0o600)
    except FileExistsError:
        # A name that collides on this file system (case-insensitive, normalised names).
        raise _bad(archive, member.name, "collides with another member's name") from None
    digest = hashlib.sha256()
    left = member.entry.size
    with os.fdopen(fd, "wb") as out:
        while left:
            chunk = f.read(min(CHUNK, left))
            if not chunk:
                raise _bad(archive, member.name, "truncated member",
                           f"{member.entry.size} bytes", f"{member.entry.size - left} bytes")
            digest.update(chunk)
            out.write(chunk)
            left -= len(chunk)
    return digest.hexdigest(), member.entry.size


def extract_and_hash(
    path: str, destination: str, limits: Limits = DEFAULT_LIMITS
) -> tuple[str, dict[str, tuple[str, int]]]:
    """Extract the bundle tar at `path` into `destination` (an empty private directory) in one
    pass, hashing each file as it is written: (the bundle directory `destination/<top>`,
    {bundle path: (sha256, size)}). ArchiveError for the first unsafe member; what was written
    before it stays in `destination`, which the caller removes."""
    budget = _Budget(path, limits)
    digests: dict[str, tuple[str, int]] = {}
    root = ""
    with open(path, "rb") as f:
        for member in read_entries(f, path, limits.max_members):
            budget.admit(member)
            entry = member.entry
            if not entry.path:
                root = os.path.join(destination, member.name)
                os.mkdir(root, 0o700)
                continue
            target = os.path.join(root, *entry.path.split("/"))
            if entry.is_dir:
                try:
                    os.mkdir(target, 0o700)  # Its parent was a member before it (tarstream).
                except FileExistsError:
                    raise _bad(path, member.name, "collides with another member's name") from None
                continue
            digests[entry.path] = _write_member(f, member, target, path)
            if entry.path == MANIFEST_PATH:
                with open(target, "rb") as manifest:
                    budget.saw_manifest(manifest.read())
    return root, digests


def extract_bundle(path: str, destination: str, limits: Limits = DEFAULT_LIMITS) -> str:
    """`extract_and_hash`, for callers that need only the directory."""
    return extract_and_hash(path, destination, limits)[0]


def copy_verified(
    source: str,
    target: str,
    digests: Mapping[str, tuple[str, int]],
    executables: Collection[str] = (PEX_PATH,),
) -> None:
    """Copy the verified bundle directory `source` to the new directory `target`, each file
    hashed as it is copied and compared with `digests` (what verification checked), files
    created exclusively without following links, modes as the tar records them (0755 for
    directories and `executables`, 0644 otherwise). IntegrityError if a byte differs."""
    os.mkdir(target, 0o700)
    for entry in walk(source):
        path = os.path.join(target, *entry.path.split("/"))
        if entry.is_dir:
            os.mkdir(path, 0o755)
            continue
        expected = digests.get(entry.path)
        flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_NOFOLLOW", 0)
        mode = 0o755 if entry.path in executables else 0o644
        digest = hashlib.sha256()
        size = 0
        with open(os.path.join(source, *entry.path.split("/")), "rb") as f, os.fdopen(
            os.open(path, flags, 0o600), "wb"
        ) as out:
            while True:
                chunk = f.read(CHUNK)
                if not chunk:
                    break
                digest.update(chunk)
                size += len(chunk)
                out.write(chunk)
        if expected != (digest.hexdigest(), size):
            raise IntegrityError(
                what="changed after it was verified",
                where=entry.path,
                remedy="something wrote into the private directory: verify again",
            )
        os.chmod(path, mode)
    os.chmod(target, 0o755)


def remove_tree(path: str) -> None:
    """Remove a private directory made by `private_directory`, whatever it holds."""
    shutil.rmtree(path, ignore_errors=True)
