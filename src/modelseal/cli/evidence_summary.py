"""What `modelseal inspect` shows of the SBOM and the SLSA provenance, as the files claim: the
number of components and the model component, the provenance's signer and subject count.
Nothing is verified here (`modelseal verify` checks the provenance's signature and subjects)."""

from __future__ import annotations

import base64
import json
from collections.abc import Mapping

from modelseal.format.fields import SBOM_PATH, SLSA_PATH
from modelseal.keys.ids import short_key_id

__all__ = ["standard_evidence"]


def standard_evidence(files: Mapping[str, bytes]) -> list[tuple[str, str]]:
    """(row name, value) rows for the SBOM and the SLSA provenance present in `files`."""
    rows: list[tuple[str, str]] = []
    if SBOM_PATH in files:
        try:
            sbom = json.loads(files[SBOM_PATH])
            model = sbom["metadata"]["component"]
            libraries = [c for c in sbom.get("components", []) if c.get("type") == "library"]
            # One component per wheel; a distribution may ship a wheel per platform.
            names = {(c.get("name"), c.get("version")) for c in libraries}
            rows.append(("sbom", f"CycloneDX {sbom['specVersion']}: {model['type']} "
                         f"{model['name']} {model.get('version', '')}, "
                         f"{len(names)} distributions in {len(libraries)} wheels ({SBOM_PATH})"))
        except (ValueError, KeyError, TypeError, AttributeError):
            rows.append(("problem", f"{SBOM_PATH} is not a CycloneDX document"))
    if SLSA_PATH in files:
        try:
            envelope = json.loads(files[SLSA_PATH])
            statement = json.loads(base64.b64decode(envelope["payload"]))
            keys = ", ".join(short_key_id(str(s["keyid"])) for s in envelope["signatures"])
            rows.append(("slsa provenance", f"{statement['predicateType']}, key {keys}, "
                         f"{len(statement['subject'])} subjects ({SLSA_PATH})"))
        except (ValueError, KeyError, TypeError):
            rows.append(("problem", f"{SLSA_PATH} is not a DSSE envelope"))
    return rows
