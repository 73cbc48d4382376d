"""DSSE envelopes (the in-toto attestation wrapper) through securesystemslib's `Envelope`: its
pre-authentication encoding (PAE) is what a signature covers, and its `to_dict` is the envelope
as JSON. The two envelopes modelseal writes (`model.sig`'s and the auditor's statement) are built
here and nowhere else; both are serialised with `modelseal.format.canonical`, so the bytes do not
depend on the library's key order.

PAE counts the payload type in characters where DSSE says bytes: the two agree for the ASCII
payload types modelseal uses (`application/vnd.in-toto+json`), and `pae` refuses any other.
"""

from __future__ import annotations

from securesystemslib.dsse import Envelope
from securesystemslib.signer import Signature

from modelseal.keys.core import Signer

__all__ = ["envelope", "pae"]


def pae(payload_type: str, payload: bytes) -> bytes:
    """What a DSSE signature signs, so that a signature over one payload type can never be
    replayed as another."""
    if not payload_type.isascii():
        raise ValueError(f"a DSSE payload type modelseal writes is ASCII, not {payload_type!r}")
    return Envelope(payload, payload_type, {}).pae()


def envelope(payload: bytes, payload_type: str, signer: Signer, key_id: str) -> dict[str, object]:
    """The DSSE envelope of `payload`, with one signature by `signer` under the key id `key_id`
    (model_signing's envelopes carry an empty one)."""
    signature = signer.sign(pae(payload_type, payload))
    signed = Envelope(payload, payload_type, {key_id: Signature(key_id, signature.hex())})
    return signed.to_dict()
