"""The package step's standard evidence: the CycloneDX SBOM and the SLSA provenance, written
together into `provenance/` before the sign step, so that `model.sig` covers both.

Both are computed in memory first and only then written (temp file + rename), so a failing
signer or a refused dependency (the vulnerability gate) leaves the bundle as it was.
"""

from __future__ import annotations

import hashlib
import os
import zipfile
from collections.abc import Callable, Mapping

from modelseal.errors import SpecError
from modelseal.format.atomic import write_atomic
from modelseal.format.manifest import MANIFEST_PATH, PROVENANCE_DIR, SIGNATURE_PATH, Manifest
from modelseal.keys.core import Signer
from modelseal.signing.modelsig import bundle_digests
from modelseal.signing.sbom import SBOM_PATH, sbom_bytes
from modelseal.signing.slsa import PROVENANCE_PATH, provenance_statement, sign_provenance

__all__ = ["pex_version", "write_evidence"]


def pex_version(pex_path: str) -> str:
    """The pex version that built the PEX (PEX-INFO's build_properties), or "unknown"."""
    import json

    try:
        with zipfile.ZipFile(pex_path) as archive:
            info = json.loads(archive.read("PEX-INFO"))
        return str(info.get("build_properties", {}).get("pex_version") or "unknown")
    except (OSError, KeyError, ValueError, zipfile.BadZipFile):
        return "unknown"


def write_evidence(
    bundle_dir: str,
    signer: Signer,
    *,
    lock: bytes,
    lock_path: str,
    target: str,
    known: Mapping[str, tuple[str, int]] | None = None,
    gate: Callable[[bytes], None] | None = None,
    out_dir: str | None = None,
) -> tuple[str, str]:
    """Write SBOM_PATH and PROVENANCE_PATH into `bundle_dir` (or, with `out_dir`, at the same
    relative paths under it, the bundle only read: see `sign_release`); their paths. `gate`
    sees the SBOM first and may refuse it (then nothing is written)."""
    root = os.path.abspath(bundle_dir)
    out_root = os.path.abspath(out_dir) if out_dir is not None else root
    with open(os.path.join(root, MANIFEST_PATH), "rb") as f:
        manifest_data = f.read()
    manifest = Manifest.from_bytes(manifest_data, source=MANIFEST_PATH)
    if hashlib.sha256(lock).hexdigest() != manifest.build.lock_sha256:
        raise SpecError(
            what="its sha256 is not the manifest's build.lock_sha256",
            where=lock_path,
            remedy="pass the lock of the resolve the model was built from",
        )
    digests = {
        path: digest
        for path, digest in bundle_digests(root, (SIGNATURE_PATH,), known=known).items()
        if not path.startswith(PROVENANCE_DIR + "/")
    }
    pex_path = os.path.join(root, *manifest.runtime.pex.split("/"))
    sbom = sbom_bytes(
        manifest, digests[MANIFEST_PATH], digests[manifest.runtime.pex], pex_path, lock, lock_path
    )
    if gate is not None:
        gate(sbom)
    digests[SBOM_PATH] = hashlib.sha256(sbom).hexdigest()
    statement = provenance_statement(
        manifest, digests, target=target, lock_path=lock_path, pex_version=pex_version(pex_path)
    )
    envelope = sign_provenance(statement, signer)
    os.makedirs(os.path.join(out_root, PROVENANCE_DIR), exist_ok=True)
    outputs = []
    for path, data in ((SBOM_PATH, sbom), (PROVENANCE_PATH, envelope)):
        out = os.path.join(out_root, *path.split("/"))
        write_atomic(out, data)
        outputs.append(out)
    return outputs[0], outputs[1]
