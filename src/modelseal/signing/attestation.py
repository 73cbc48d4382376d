"""The signed statement an auditor hands over after a rebuild: an in-toto Statement v1 carrying a
SLSA verification summary, in a DSSE envelope.

Why these formats: in-toto attestations are what supply-chain tooling already reads (in-toto,
sigstore, SLSA verifiers), DSSE signs the exact payload bytes (no canonicalisation to get wrong),
and the verification-summary predicate is the standard way to say "this verifier checked this
artifact and it passed". What is specific to modelseal (the commit, the target, the files compared)
sits in the predicate's `reproduction` field. The envelope is `modelseal.signing.dsse`'s
(securesystemslib); a statement is checked by any DSSE verifier (securesystemslib's
`Envelope.verify`, as the tests do), so modelseal has no reader of its own.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from modelseal import __version__
from modelseal.format.canonical import canonical_json
from modelseal.keys.core import Signer
from modelseal.signing.dsse import envelope

STATEMENT_TYPE = "https://in-toto.io/Statement/v1"
PAYLOAD_TYPE = "application/vnd.in-toto+json"
VSA_PREDICATE = "https://slsa.dev/verification_summary/v1"
VERIFIER_ID = "modelseal rebuild"


@dataclass(frozen=True)
class Reproduction:
    """What was rebuilt and what came out."""

    artifact_name: str  # the published file's base name
    artifact_sha256: str
    repository: str  # where the commit came from, as the auditor named it
    commit: str
    target: str
    reproduced: bool
    compared: Sequence[str]
    not_compared: Sequence[str]
    time_verified: str  # RFC 3339, UTC: when the audit ran (this is a record, not a build output)


def statement(reproduction: Reproduction, key_id: str) -> dict[str, object]:
    return {
        "_type": STATEMENT_TYPE,
        "subject": [
            {"name": reproduction.artifact_name, "digest": {"sha256": reproduction.artifact_sha256}}
        ],
        "predicateType": VSA_PREDICATE,
        "predicate": {
            "verifier": {"id": VERIFIER_ID, "version": {"modelseal": __version__}},
            "timeVerified": reproduction.time_verified,
            "resourceUri": f"git+{reproduction.repository}@{reproduction.commit}",
            "policy": {"uri": "modelseal:reproduce/v1"},
            "verificationResult": "PASSED" if reproduction.reproduced else "FAILED",
            "verifiedLevels": [],
            "reproduction": {
                "commit": reproduction.commit,
                "target": reproduction.target,
                "reproduced": reproduction.reproduced,
                "key_id": key_id,
                "compared": list(reproduction.compared),
                "not_compared": list(reproduction.not_compared),
            },
        },
    }


def sign_statement(document: Mapping[str, object], signer: Signer) -> bytes:
    """The DSSE envelope (canonical JSON bytes) of `document`, signed by `signer`."""
    payload = canonical_json(dict(document))
    return canonical_json(envelope(payload, PAYLOAD_TYPE, signer, signer.key_id))
