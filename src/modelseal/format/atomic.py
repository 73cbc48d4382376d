"""Write a file completely or not at all.

Pants and people both read the outputs (`manifest.json`, the bundle's tar) by name; a crash or a
full disk mid-write must not leave a truncated file there that looks like a finished one. So output
goes to a temporary file in the same directory and is renamed over the target, which is atomic on
POSIX file systems.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from typing import BinaryIO

__all__ = ["atomic_output", "removed_on_failure", "write_atomic"]

# Outputs are meant to be shared and read by others; a temporary file is created 0600.
OUTPUT_MODE = 0o644


@contextmanager
def atomic_output(path: str | os.PathLike[str], mode: int = OUTPUT_MODE) -> Iterator[BinaryIO]:
    """A binary file that replaces `path` when the block exits normally, and vanishes otherwise.
    It gets `mode` only once complete: until then it is 0600 (mkstemp's), so a private key
    written with `mode=0o600` is never readable by others, not even briefly."""
    target = os.fspath(path)
    directory = os.path.dirname(os.path.abspath(target))
    fd, temporary = tempfile.mkstemp(
        dir=directory, prefix=f".{os.path.basename(target)}.", suffix=".tmp"
    )
    with removed_on_failure(temporary):
        with os.fdopen(fd, "wb") as f:
            yield f
            f.flush()
            os.fsync(f.fileno())
        os.chmod(temporary, mode)
        os.replace(temporary, target)


@contextmanager
def removed_on_failure(temporary: str) -> Iterator[None]:
    """Remove `temporary` when the block raises: a temporary file must not outlive the write that
    failed (the block renames it into place when it succeeds)."""
    try:
        yield
    except BaseException:
        try:
            os.unlink(temporary)
        except FileNotFoundError:
            pass
        raise


def write_atomic(path: str | os.PathLike[str], data: bytes, mode: int = OUTPUT_MODE) -> None:
    with atomic_output(path, mode) as f:
        f.write(data)
