"""The revocation list: canonical JSON of the key ids that must no longer sign or be trusted."""

from __future__ import annotations

from collections.abc import Iterable

from modelseal.errors import SpecError
from modelseal.format.canonical import canonical_json, load_json

REVOCATIONS_SCHEMA = "modelseal.revocations/v1"


def revocations_bytes(key_ids: Iterable[str]) -> bytes:
    """The revocation list: canonical JSON `{"revoked": [key ids, sorted], "schema": ...}`."""
    ids = sorted(set(key_ids))
    for key_id in ids:
        if len(key_id) != 64 or any(c not in "0123456789abcdef" for c in key_id):
            raise SpecError(
                what=f"{key_id!r} is not a key id",
                where="revocations",
                remedy="key ids are 64 lowercase hex characters",
            )
    return canonical_json({"revoked": ids, "schema": REVOCATIONS_SCHEMA})


def load_revocations(data: bytes, source: str = "revocations.json") -> frozenset[str]:
    try:
        document = load_json(data)
    except ValueError as e:
        raise SpecError(what=f"not JSON ({e})", where=source, remedy="fix the file") from None
    if (
        not isinstance(document, dict)
        or document.get("schema") != REVOCATIONS_SCHEMA
        or not isinstance(document.get("revoked"), list)
        or set(document) != {"schema", "revoked"}
    ):
        raise SpecError(
            what=f"expected {{'schema': '{REVOCATIONS_SCHEMA}', 'revoked': [key ids]}}",
            where=source,
            remedy="see docs/signing.md, 'Revocation list'",
        )
    revoked = document["revoked"]
    assert isinstance(revoked, list)
    revocations_bytes(str(k) for k in revoked)  # Validates every id.
    return frozenset(str(k) for k in revoked)
