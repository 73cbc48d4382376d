"""Read a bundle, as a directory or as its tar, and check its files against its manifest.

`inspect` shows what a bundle holds and `verify` proves it, on hosts where the tar may be all there
is, so the tar is read in place: the manifest is read from its member and nothing is extracted.
Checking files is fail-closed: a file the manifest does not list is as wrong as a changed one,
except for the manifest itself and what signing adds after it (`model.sig`, `provenance/`).
"""

from __future__ import annotations

import os

from modelseal.errors import IntegrityError, SpecError
from modelseal.format.archive import read_tar_members
from modelseal.format.manifest import MANIFEST_PATH, Manifest
from modelseal.format.tree import Entry, walk

__all__ = ["read_bundle"]


def read_bundle(path: str | os.PathLike[str]) -> tuple[Manifest, list[Entry]]:
    """The manifest of the bundle directory or tar at `path`, and every regular file present in
    it (sorted by path). Nothing is hashed: that is `modelseal.format.digests.check_tree`'s job."""
    location = os.fspath(path)
    if os.path.isdir(location):
        manifest_path = os.path.join(location, MANIFEST_PATH)
        try:
            with open(manifest_path, "rb") as f:
                data = f.read()
        except FileNotFoundError:
            raise IntegrityError(
                what=f"no {MANIFEST_PATH}: not a bundle directory",
                where=location,
                remedy="pass the directory `pants package` wrote, or its .tar",
            ) from None
        manifest = Manifest.from_bytes(data, source=manifest_path)
        present = [e for e in walk(location) if not e.is_dir]
        return manifest, present
    if os.path.isfile(location):
        listing = read_tar_members(location, read=(MANIFEST_PATH,))
        data_or_none = listing.contents.get(MANIFEST_PATH)
        source = f"{location}: {listing.top}/{MANIFEST_PATH}"
        if data_or_none is None:
            raise IntegrityError(
                what=f"no {listing.top}/{MANIFEST_PATH}: not a bundle archive",
                where=location,
                remedy="pass the .tar `pants package` wrote, or its directory",
            )
        manifest = Manifest.from_bytes(data_or_none, source=source)
        present = [m for m in listing.members if not m.is_dir]
        return manifest, sorted(present, key=lambda p: p.path.encode("utf-8"))
    raise SpecError(
        what="no such bundle directory or tar",
        where=location,
        remedy="pass the directory or .tar that `pants package` wrote",
    )
