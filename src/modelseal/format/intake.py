"""Large workspace files into a content-addressed directory at one read, remembered by their stat.

Why this module exists: Pants 2.17 snapshots a workspace file by streaming it twice through
tokio's 8 KiB copy buffer, once to hash it and once to copy it into its store, each 8 KiB a
hand-off to a blocking thread. For weights that is about 10 CPU-seconds per GiB on this project's
2-core machine, most of it thread switches, and it was nine tenths of a cold `pants package`
(docs/benchmarks.md, "Issue #17, fourth round"). Pants' own code still does this, so no Pants
upgrade removes it. The plugin gives the large files to this module instead:

- each file is read once, in CHUNK_SIZE pieces, hashed while a second thread writes the same
  bytes to a temporary file in the store, which is then renamed to `<hex[:2]>/<hex>`: the layout
  Pants reads its large files from (`immutable/files` in its local store). What is in the store is
  by construction what was hashed, even if the workspace file changes meanwhile (then the result
  names the bytes that were read, and the next build sees the new stat and reads again);
- its (sha256, size) is recorded in a stat cache, keyed by the file's absolute path and checked
  against (device, inode, size, mtime, ctime), as git's index does: a build whose weights did not
  change reads none of them, and a changed file always has a new ctime;
- a store file that is missing or of the wrong size (removed by Pants' garbage collection, or
  truncated by a crash: data is not fsynced, Pants' materialization would copy it as it is) is
  written again.

The plugin then names the files by these digests (a `CreateDigest` of `FileEntry`s), and Pants
hard-links them into sandboxes and copies them into `dist/` from its store as it does any file.

Standard library only; nothing here knows Pants: the store directory, its layout and the size from
which a file counts as large are the plugin's (rules/modelseal_pants/workspace_files.py).
"""

from __future__ import annotations

import errno
import hashlib
import json
import os
import queue
import stat
import tempfile
import threading
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from io import FileIO

from modelseal.errors import SpecError
from modelseal.format.atomic import removed_on_failure, write_atomic
from modelseal.format.digests import CHUNK_SIZE

__all__ = ["Ingested", "ingest_files", "store_path"]

# Where a copy is written before its digest is known: a shard directory like any other, and a
# name with an extension, which Pants' garbage collection of the store skips as a temporary file.
TEMPORARY_SHARD = "00"
TEMPORARY_SUFFIX = ".modelseal-intake.tmp"
STAT_CACHE_SCHEMA = "modelseal.intake-stat/v1"
# Bytes copied at a time; the hashing thread follows one segment behind.
SEGMENT = 16 * CHUNK_SIZE
# Whether copy_file_range works here (it is Linux's; some file systems and kernels refuse it);
# errors that mean "not here", after which the copy goes through a buffer.
_KERNEL_COPY = [hasattr(os, "copy_file_range")]
_NO_KERNEL_COPY = frozenset(
    {errno.EXDEV, errno.ENOSYS, errno.EINVAL, errno.EOPNOTSUPP, errno.ENOTSUP, errno.EPERM}
)
# Attempts at reading a file that keeps changing while it is read.
ATTEMPTS = 3


@dataclass(frozen=True)
class Ingested:
    path: str  # as given, relative to the root
    sha256: str
    size: int
    executable: bool
    read: bool  # False: the stat cache answered, no byte of the file was read

    def to_json(self) -> dict[str, object]:
        return {
            "path": self.path, "sha256": self.sha256, "size": self.size,
            "executable": self.executable, "read": self.read,
        }


def store_path(store: str, sha256: str) -> str:
    return os.path.join(store, sha256[:2], sha256)


def _stat_key(info: os.stat_result) -> list[int]:
    return [info.st_dev, info.st_ino, info.st_size, info.st_mtime_ns, info.st_ctime_ns]


def _cache_file(cache_dir: str, absolute: str) -> str:
    name = hashlib.sha256(absolute.encode("utf-8", "surrogateescape")).hexdigest()
    return os.path.join(cache_dir, name[:2], f"{name}.json")


def _cached(cache_dir: str, absolute: str, info: os.stat_result) -> str | None:
    try:
        with open(_cache_file(cache_dir, absolute), "rb") as f:
            entry = json.loads(f.read())
    except (OSError, ValueError):
        return None
    if (
        not isinstance(entry, dict)
        or entry.get("schema") != STAT_CACHE_SCHEMA
        or entry.get("path") != absolute
        or entry.get("stat") != _stat_key(info)
    ):
        return None
    digest = entry.get("sha256")
    return digest if isinstance(digest, str) and len(digest) == 64 else None


def _remember(cache_dir: str, absolute: str, info: os.stat_result, sha256: str) -> None:
    path = _cache_file(cache_dir, absolute)
    os.makedirs(os.path.dirname(path), exist_ok=True)
    entry = {"schema": STAT_CACHE_SCHEMA, "path": absolute, "stat": _stat_key(info),
             "sha256": sha256}
    write_atomic(path, json.dumps(entry, sort_keys=True).encode())


def _in_store(store: str, sha256: str, size: int) -> bool:
    try:
        return os.stat(store_path(store, sha256)).st_size == size
    except OSError:
        return False


def _copy_segment(source: FileIO, target: FileIO, buffer: bytearray) -> int:
    """Copy up to SEGMENT bytes from `source`'s offset to `target`'s: in the kernel where it
    can (`copy_file_range`; a loop of `write` calls cost two to ten times its system time
    here), else through `buffer`. Returns the count, 0 at the end."""
    if _KERNEL_COPY[0]:
        try:
            return os.copy_file_range(source.fileno(), target.fileno(), SEGMENT)
        except (AttributeError, OSError) as e:
            if isinstance(e, OSError) and e.errno not in _NO_KERNEL_COPY:
                raise
            _KERNEL_COPY[0] = False
    copied = 0
    view = memoryview(buffer)
    while copied < SEGMENT:
        count = source.readinto(buffer)
        if not count:
            break
        written = 0
        while written < count:
            written += target.write(view[written:count]) or 0
        copied += count
    return copied


def _hash_behind(
    path: str, copied: queue.Queue[int], digest: hashlib._Hash, failure: list[BaseException]
) -> None:
    """Read `path` back as it is written, the counts of bytes in `copied` (0: the end), into
    `digest`; an error goes into `failure` for the copying thread to raise."""
    buffer = bytearray(CHUNK_SIZE)
    view = memoryview(buffer)
    with open(path, "rb", buffering=0) as back:
        while True:
            count = copied.get()
            if count == 0:
                return
            while count and not failure:
                try:
                    got = back.readinto(view[: min(count, CHUNK_SIZE)])
                    if not got:
                        raise OSError(f"{path} is shorter than what was copied into it")
                except BaseException as e:
                    failure.append(e)
                    break
                digest.update(view[:got])
                count -= got


def _copy_and_hash(source: str, store: str) -> tuple[str, int]:
    """Copy `source` into `store` at `<hex[:2]>/<hex>` (mode 0555, as Pants writes its own) and
    return (sha256, size) of the copy. The hash is of the copy itself, read back from the page
    cache a segment behind the copying, on a second thread: what the store holds is what was
    hashed, even if the workspace file changes meanwhile, and on two cores the copy costs about
    what the hash does."""
    temporary_dir = os.path.join(store, TEMPORARY_SHARD)
    os.makedirs(temporary_dir, exist_ok=True)
    fd, temporary = tempfile.mkstemp(dir=temporary_dir, suffix=TEMPORARY_SUFFIX)
    copied: queue.Queue[int] = queue.Queue()
    digest = hashlib.sha256()
    failure: list[BaseException] = []
    hasher = threading.Thread(
        target=_hash_behind, args=(temporary, copied, digest, failure),
        name="modelseal-intake-hash", daemon=True,
    )
    size = 0
    with removed_on_failure(temporary):
        with open(fd, "wb", buffering=0) as target:
            hasher.start()
            try:
                buffer = bytearray(CHUNK_SIZE)
                with open(source, "rb", buffering=0) as f:
                    while not failure:
                        count = _copy_segment(f, target, buffer)
                        if not count:
                            break
                        size += count
                        copied.put(count)
            finally:
                copied.put(0)
                hasher.join()
        if failure:
            raise failure[0]
        sha256 = digest.hexdigest()
        os.chmod(temporary, 0o555)
        final = store_path(store, sha256)
        os.makedirs(os.path.dirname(final), exist_ok=True)
        os.replace(temporary, final)
        return sha256, size


def _ingest(
    root: str, relative: str, store: str, cache_dir: str, follow_links: bool
) -> Ingested:
    absolute = os.path.join(root, relative)
    status = os.stat if follow_links else os.lstat
    for _ in range(ATTEMPTS):
        try:
            before = status(absolute)
        except FileNotFoundError:
            raise SpecError(
                what=f"{relative} does not exist (it was matched, then removed)",
                where=root,
                remedy="run the build again once the files are in place",
            ) from None
        if stat.S_ISLNK(before.st_mode) or not stat.S_ISREG(before.st_mode):
            raise SpecError(
                what=f"{relative} is not a regular file",
                where=root,
                remedy="weights must be regular files: copy the file in place of the link",
            )
        executable = bool(before.st_mode & stat.S_IXUSR)
        known = _cached(cache_dir, absolute, before)
        if known is not None and _in_store(store, known, before.st_size):
            return Ingested(relative, known, before.st_size, executable, read=False)
        sha256, size = _copy_and_hash(absolute, store)
        after = status(absolute)
        if _stat_key(after) == _stat_key(before) and size == before.st_size:
            _remember(cache_dir, absolute, before, sha256)
            return Ingested(relative, sha256, size, executable, read=True)
    raise SpecError(
        what=f"{relative} changed each of the {ATTEMPTS} times it was read",
        where=root,
        remedy="wait until whatever writes the file has finished, then build again",
    )


def ingest_files(
    root: str,
    paths: list[str],
    store: str,
    cache_dir: str,
    min_size: int,
    max_workers: int | None = None,
    follow_links: bool = False,
) -> list[Ingested]:
    """Every file of `paths` (relative to `root`) of at least `min_size` bytes, in the order
    given, ingested into `store` on `max_workers` threads (default: one per core); smaller files
    are left out (the caller snapshots them). A symbolic link is an error unless `follow_links`
    (then its target is read, as Pants' snapshot does)."""
    large = []
    for relative in paths:
        try:
            if os.stat(os.path.join(root, relative)).st_size >= min_size:
                large.append(relative)
        except FileNotFoundError:
            large.append(relative)  # _ingest says what is missing
    workers = max(1, min(max_workers or os.cpu_count() or 1, len(large) or 1))
    if workers == 1:
        return [_ingest(root, p, store, cache_dir, follow_links) for p in large]
    with ThreadPoolExecutor(max_workers=workers) as pool:
        return list(pool.map(
            lambda p: _ingest(root, p, store, cache_dir, follow_links), large
        ))
