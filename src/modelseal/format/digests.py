"""SHA-256 of files that may be far larger than memory.

Weights run to gigabytes, and both packaging and `model.pex predict` check every one of them, so
files are streamed through a fixed buffer and hashed on several threads at once: hashlib releases
the GIL while it digests a chunk, so threads use every core without processes' start-up cost.

Standard library only: `model.pex` imports this module on hosts that have nothing but Python.
"""

from __future__ import annotations

import hashlib
import os
import stat
from collections.abc import Callable, Iterable, Mapping
from concurrent.futures import ThreadPoolExecutor
from typing import TypeVar, Union

from modelseal.errors import IntegrityError

__all__ = ["CHUNK_SIZE", "check_files", "sha256_file", "sha256_files"]

CHUNK_SIZE = 1024 * 1024

StrPath = Union[str, "os.PathLike[str]"]
P = TypeVar("P", bound=StrPath)

CHANGED_REMEDY = "the bundle was changed after packaging: re-package or re-download it"


def sha256_file(path: StrPath, tick: Callable[[int], None] | None = None) -> tuple[str, int]:
    """(lowercase hex sha256, size in bytes) of the file at `path`, read CHUNK_SIZE at a time;
    `tick(bytes)` after each chunk, for progress."""
    digest = hashlib.sha256()
    size = 0
    buffer = bytearray(CHUNK_SIZE)
    view = memoryview(buffer)
    with open(path, "rb", buffering=0) as f:
        while True:
            count = f.readinto(buffer)
            if not count:
                break
            digest.update(view[:count])
            size += count
            if tick is not None:
                tick(count)
    return digest.hexdigest(), size


def sha256_files(paths: Iterable[P], max_workers: int | None = None) -> dict[P, tuple[str, int]]:
    """`sha256_file` of every path, in parallel; max_workers defaults to os.cpu_count()."""
    unique = list(dict.fromkeys(paths))
    workers = max_workers if max_workers is not None else (os.cpu_count() or 1)
    if workers < 1:
        raise ValueError(f"max_workers must be at least 1, not {workers}")
    if workers == 1 or len(unique) <= 1:
        return {path: sha256_file(path) for path in unique}
    with ThreadPoolExecutor(max_workers=min(workers, len(unique))) as pool:
        return dict(zip(unique, pool.map(sha256_file, unique)))


def check_files(
    root: StrPath, expected: Mapping[str, tuple[str, int]], max_workers: int | None = None
) -> None:
    """Raise IntegrityError for the first path (in path order) under `root` whose file is missing
    or whose (sha256, size) differs from `expected`; sizes are compared before anything is hashed,
    so a truncated file fails fast."""
    ordered = sorted(expected)
    local = {path: os.path.join(root, *path.split("/")) for path in ordered}
    for path in ordered:
        try:
            info = os.stat(local[path])
        except FileNotFoundError:
            raise IntegrityError(
                what="missing: the manifest lists it but the bundle does not contain it",
                where=path,
                remedy=CHANGED_REMEDY,
            ) from None
        if not stat.S_ISREG(info.st_mode):
            raise IntegrityError(
                what="not a regular file, but the manifest lists it as one",
                where=path,
                remedy=CHANGED_REMEDY,
            )
        size = info.st_size
        expected_size = expected[path][1]
        if size != expected_size:
            raise IntegrityError(
                what=f"size expected {expected_size} found {size}",
                where=path,
                remedy=CHANGED_REMEDY,
            )
    found = sha256_files(local.values(), max_workers=max_workers)
    for path in ordered:
        expected_sha256, expected_size = expected[path]
        sha256, size = found[local[path]]
        if sha256 != expected_sha256:
            raise IntegrityError(
                what=f"sha256 expected {expected_sha256} found {sha256}",
                where=path,
                remedy=CHANGED_REMEDY,
            )
        if size != expected_size:  # Changed between the stat above and the read.
            raise IntegrityError(
                what=f"size expected {expected_size} found {size}",
                where=path,
                remedy=CHANGED_REMEDY,
            )
