"""Verify's check of the SLSA provenance (`provenance/build.intoto.jsonl`): signed by a key the
verified layout trusts for the `package` step, and every subject is a file of this bundle with
the digest verification hashed. A bundle from before modelseal wrote the file has none; that is
reported, not refused (`model.sig` signs every file, so the file cannot be removed unnoticed
from a bundle that had it).
"""

from __future__ import annotations

import os
from collections.abc import Mapping

from modelseal.errors import ProvenanceCheckError
from modelseal.keys.core import PublicKey
from modelseal.signing.slsa import PROVENANCE_PATH, verify_provenance_envelope

__all__ = ["check_build_provenance"]

_LIMIT = 16 * 1024 * 1024


def check_build_provenance(
    root: str, layout: object, hashed: Mapping[str, tuple[str, int]]
) -> str:
    """A phrase for verify's provenance line; ProvenanceCheckError when the file does not hold."""
    path = os.path.join(root, *PROVENANCE_PATH.split("/"))
    if not os.path.isfile(path):
        return "no SLSA provenance (a bundle from before modelseal wrote it)"
    with open(path, "rb") as f:
        data = f.read(_LIMIT + 1)
    if len(data) > _LIMIT:
        raise ProvenanceCheckError(
            what="larger than modelseal reads", where=PROVENANCE_PATH,
            remedy="re-package the bundle, or re-download it",
        )
    signed = layout["signed"]  # type: ignore[index]
    package_ids = [
        key_id
        for step in signed["steps"]
        if step["name"] == "package"
        for key_id in step["pubkeys"]
    ]
    trusted = {
        key_id: PublicKey.from_pem(
            signed["keys"][key_id]["keyval"]["public"].encode(), source="layout"
        )
        for key_id in package_ids
    }
    digests = {name: digest for name, (digest, _size) in hashed.items()}
    statement = verify_provenance_envelope(data, trusted, digests)
    return f"SLSA provenance by the package key signs {len(statement['subject'])} files"
