"""SLSA Provenance v1 for a bundle (`provenance/build.intoto.jsonl`): an in-toto Statement v1
whose subjects are the bundle's files, in a DSSE envelope signed by the `package` functionary.

Why: slsa-verifier, GUAC and `cosign verify-attestation` read SLSA provenance, not in-toto v0.9
links. The links stay (in-toto-verify checks the chain); this statement says the same thing
about the build in the standard vocabulary (docs/provenance.md).

Order: the SBOM is written first, then this statement, then the sign link and `model.sig`. So
the subjects are every bundle file outside `provenance/` plus `provenance/sbom.cdx.json`; they
cannot include this file itself, the layout and links (separate evidence with their own
signatures), or `model.sig`, which signs this statement in turn.

Deterministic: no timestamps but SOURCE_DATE_EPOCH, canonical JSON, deterministic signatures
for file keys (RFC 6979 ECDSA, Ed25519).
"""

from __future__ import annotations

import base64
from collections.abc import Mapping
from typing import Any

from modelseal import __version__
from modelseal.errors import ProvenanceCheckError
from modelseal.format.canonical import canonical_json, load_json
from modelseal.format.fields import SLSA_PATH
from modelseal.format.manifest import Manifest
from modelseal.keys.core import PublicKey, Signer
from modelseal.signing.attestation import PAYLOAD_TYPE, STATEMENT_TYPE
from modelseal.signing.dsse import envelope, pae

__all__ = [
    "BUILD_TYPE",
    "BUILDER_ID",
    "PREDICATE_TYPE",
    "PROVENANCE_PATH",
    "provenance_statement",
    "sign_provenance",
    "verify_provenance_envelope",
]

PROVENANCE_PATH = SLSA_PATH
PREDICATE_TYPE = "https://slsa.dev/provenance/v1"
BUILD_TYPE = "urn:modelseal:build-type:model_artifact:v1"  # docs/provenance.md
BUILDER_ID = "urn:modelseal:builder:pants-modelseal-plugin:v1"
_REMEDY = "re-package the bundle, or re-download it"


def provenance_statement(
    manifest: Manifest,
    subjects: Mapping[str, str],
    *,
    target: str,
    lock_path: str,
    pex_version: str,
) -> dict[str, object]:
    """The Statement: `subjects` maps bundle paths to sha256; the rest comes from the manifest
    (commit, dirty flag, lock digest, Pants version) and the caller (target, lock, pex)."""
    build = manifest.build
    dependencies: list[dict[str, object]] = [
        {"name": lock_path, "uri": f"file:{lock_path}", "digest": {"sha256": build.lock_sha256}},
        {"name": "pex", "uri": f"pkg:pypi/pex@{pex_version}"},
        {"name": "pants", "uri": f"pkg:pypi/pantsbuild.pants@{build.pants_version}"},
        {"name": "modelseal", "uri": f"pkg:pypi/modelseal@{build.modelseal_version}"},
    ]
    if build.commit:
        dependencies.insert(
            0, {"name": "source", "digest": {"gitCommit": build.commit}},
        )
    return {
        "_type": STATEMENT_TYPE,
        "subject": [
            {"name": path, "digest": {"sha256": digest}}
            for path, digest in sorted(subjects.items())
        ],
        "predicateType": PREDICATE_TYPE,
        "predicate": {
            "buildDefinition": {
                "buildType": BUILD_TYPE,
                "externalParameters": {
                    "target": target,
                    "source": {
                        "commit": build.commit,
                        "dirty": build.dirty,
                        "dirty_sha256": build.dirty_sha256,
                    },
                },
                "internalParameters": {"source_date_epoch": build.source_date_epoch},
                "resolvedDependencies": dependencies,
            },
            "runDetails": {
                "builder": {
                    "id": BUILDER_ID,
                    "version": {"modelseal": __version__, "pants": build.pants_version},
                },
                "metadata": {"invocationId": f"{manifest.name}-{manifest.version}"},
            },
        },
    }


def sign_provenance(statement: Mapping[str, object], signer: Signer) -> bytes:
    """The DSSE envelope as one canonical JSON line (a one-line `.intoto.jsonl`)."""
    payload = canonical_json(dict(statement))[:-1]
    return canonical_json(envelope(payload, PAYLOAD_TYPE, signer, signer.key_id))


def verify_provenance_envelope(
    data: bytes, trusted: Mapping[str, PublicKey], digests: Mapping[str, str]
) -> dict[str, Any]:
    """The statement, after checking that a `trusted` key (key id -> key: the layout's package
    functionaries) signed it and that every subject is a bundle file with that sha256.
    ProvenanceCheckError naming the file and field otherwise."""

    def fail(field: str, what: str) -> ProvenanceCheckError:
        return ProvenanceCheckError(what=what, where=f"{PROVENANCE_PATH}: {field}", remedy=_REMEDY)

    try:
        document: Any = load_json(data)
        payload = base64.b64decode(document["payload"], validate=True)
        payload_type = document["payloadType"]
        signatures = list(document["signatures"])
        statement: Any = load_json(payload)
    except Exception as e:  # malformed input: many exception types, one meaning
        raise fail(
            "payload", f"not a DSSE envelope of a JSON statement ({type(e).__name__})"
        ) from None
    if payload_type != PAYLOAD_TYPE:
        raise fail("payloadType", f"expected {PAYLOAD_TYPE!r}, found {payload_type!r}")
    signed = pae(PAYLOAD_TYPE, payload)
    if not any(_signed_by(s, trusted, signed) for s in signatures):
        raise fail("signatures", "no valid signature by a package key the layout trusts")
    if not isinstance(statement, dict) or statement.get("predicateType") != PREDICATE_TYPE:
        raise fail("predicateType", f"expected {PREDICATE_TYPE!r}")
    subjects = statement.get("subject")
    if not isinstance(subjects, list) or not subjects:
        raise fail("subject", "expected a non-empty array")
    for index, subject in enumerate(subjects):
        name = subject.get("name") if isinstance(subject, dict) else None
        digest = (subject.get("digest") or {}).get("sha256") if isinstance(subject, dict) else None
        if not isinstance(name, str) or digests.get(name) != digest:
            raise fail(
                f"subject[{index}]",
                f"{name!r} is not a bundle file with sha256 {digest}",
            )
    return statement


def _signed_by(signature: object, trusted: Mapping[str, PublicKey], signed: bytes) -> bool:
    """Whether `signature` (a DSSE signature entry) is a valid one by a `trusted` key."""
    if not isinstance(signature, dict) or signature.get("keyid") not in trusted:
        return False
    try:
        raw = base64.b64decode(str(signature.get("sig", "")), validate=True)
    except ValueError:
        return False
    return trusted[str(signature["keyid"])].verify(raw, signed)
