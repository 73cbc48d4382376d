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

from modelseal.errors import IntegrityError, SpecError
from modelseal.format.tree import walk

__all__ = ["CHUNK_SIZE", "check_files", "check_tree", "sha256_file", "sha256_files"]

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
    root: StrPath,
    expected: Mapping[str, tuple[str, int]],
    max_workers: int | None = None,
    *,
    known: Mapping[str, tuple[str, int]] | None = None,
) -> None:
    """Raise IntegrityError for the first path (in path order) under `root` whose file is missing
    or whose (sha256, size) differs from `expected`; sizes are compared before anything is hashed,
    so a truncated file fails fast. `known`: (sha256, size) the caller hashed already for exactly
    these files (what verify hashed once for all its checks): those are not read again."""
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
            raise _size_error(path, expected_size, size)
    given = known or {}
    found = sha256_files(
        [local[p] for p in ordered if p not in given], max_workers=max_workers
    )
    for path in ordered:
        expected_sha256, expected_size = expected[path]
        sha256, size = given[path] if path in given else found[local[path]]
        if sha256 != expected_sha256:
            raise IntegrityError(
                what=f"sha256 expected {expected_sha256} found {sha256}",
                where=path,
                remedy=CHANGED_REMEDY,
                expected=expected_sha256,
                found=sha256,
            )
        if size != expected_size:  # Changed between the stat above and the read.
            raise _size_error(path, expected_size, size)


def _size_error(path: str, expected: int, found: int) -> IntegrityError:
    return IntegrityError(
        what=f"size expected {expected} found {found}",
        where=path,
        remedy=CHANGED_REMEDY,
        expected=f"{expected} bytes",
        found=f"{found} bytes",
    )


def check_tree(
    root: StrPath,
    expected: Mapping[str, tuple[str, int]],
    *,
    below: str = "",
    unlisted_ok: Callable[[str], bool] = lambda path: False,
    known: Mapping[str, tuple[str, int]] | None = None,
) -> None:
    """The one check of files against a manifest, shared by verify's integrity check and
    `model.pex`'s check before loading, so the two cannot disagree: every regular file under
    `root/below` is one of `expected` (or `unlisted_ok`), nothing there is a link or special
    file, and every expected file has its size and sha256. IntegrityError naming the first file
    that does not hold (SpecError's refusals of links become IntegrityError here)."""
    top = os.path.join(root, *below.split("/")) if below else os.fspath(root)
    prefix = f"{below}/" if below else ""
    if os.path.islink(top):
        raise IntegrityError(
            what="a symbolic link, not a directory of the bundle",
            where=below,
            remedy=CHANGED_REMEDY,
        )
    try:
        entries = walk(top) if os.path.isdir(top) else []
    except SpecError as e:
        raise IntegrityError(what=e.what, where=e.where, remedy=CHANGED_REMEDY) from None
    for entry in entries:
        path = prefix + entry.path
        if entry.is_dir or path in expected or unlisted_ok(path):
            continue
        raise IntegrityError(
            what="present in the bundle but not listed in the manifest",
            where=path,
            remedy=CHANGED_REMEDY,
            expected="only the manifest's files",
            found=f"{path} ({entry.size} bytes)",
        )
    check_files(root, expected, known=known)
