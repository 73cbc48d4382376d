"""The auditor's statement: an in-toto Statement in a DSSE envelope, signed and checked with real
keys; securesystemslib (an independent implementation) must accept it too."""

from __future__ import annotations

import json
from base64 import b64encode
from pathlib import Path

import pytest
from securesystemslib.dsse import Envelope
from securesystemslib.exceptions import VerificationError
from securesystemslib.signer import SSlibKey

from core.signing_fixtures import write_ec_key
from modelseal.format.canonical import canonical_json
from modelseal.keys.core import Signer
from modelseal.keys.reference import load_signer
from modelseal.signing.attestation import Reproduction, sign_statement, statement

REPRODUCTION = Reproduction(
    artifact_name="tiny-0.1.0.tar",
    artifact_sha256="a" * 64,
    repository="/src/repo",
    commit="0123456789abcdef0123456789abcdef01234567",
    target="examples/tiny:model",
    reproduced=True,
    compared=("manifest.json", "model.pex"),
    not_compared=("model.sig",),
    time_verified="2026-11-26T12:00:00Z",
)


def test_statement_says_what_was_reproduced() -> None:
    document = statement(REPRODUCTION, "k" * 64)
    assert document["_type"] == "https://in-toto.io/Statement/v1"
    assert document["subject"] == [{"name": "tiny-0.1.0.tar", "digest": {"sha256": "a" * 64}}]
    predicate = document["predicate"]
    assert isinstance(predicate, dict)
    assert predicate["verificationResult"] == "PASSED"
    assert predicate["reproduction"]["commit"] == REPRODUCTION.commit
    assert predicate["reproduction"]["key_id"] == "k" * 64


def _sslib_key(signer: Signer) -> SSlibKey:
    return SSlibKey(signer.key_id, "ecdsa", "ecdsa-sha2-nistp256",
                    {"public": signer.public_key_pem.decode()})  # fmt: skip


def _parsed(envelope: dict[str, object]) -> Envelope:
    """A fresh parse each time: `Envelope.from_dict` rewrites the signature entries it reads."""
    return Envelope.from_dict(json.loads(json.dumps(envelope)))


def test_signed_statement_verifies_with_securesystemslib(tmp_path: Path) -> None:
    signer = load_signer("file:" + write_ec_key(str(tmp_path / "auditor.pem")))
    envelope = sign_statement(statement(REPRODUCTION, signer.key_id), signer)
    parsed = Envelope.from_dict(json.loads(envelope))
    assert signer.key_id in parsed.verify([_sslib_key(signer)], 1)
    opened = json.loads(parsed.payload)
    assert opened["subject"] == statement(REPRODUCTION, signer.key_id)["subject"]


def test_a_changed_statement_or_another_key_is_refused(tmp_path: Path) -> None:
    signer = load_signer("file:" + write_ec_key(str(tmp_path / "auditor.pem")))
    other = load_signer("file:" + write_ec_key(str(tmp_path / "other.pem")))
    envelope = json.loads(sign_statement(statement(REPRODUCTION, signer.key_id), signer))
    with pytest.raises(VerificationError):  # signed by another key than the one trusted
        _parsed(envelope).verify([_sslib_key(other)], 1)
    with pytest.raises(VerificationError):  # the same key id, another key's signature
        key = SSlibKey(signer.key_id, "ecdsa", "ecdsa-sha2-nistp256",
                       {"public": other.public_key_pem.decode()})  # fmt: skip
        _parsed(envelope).verify([key], 1)
    forged = dict(statement(REPRODUCTION, signer.key_id), subject=[])
    envelope["payload"] = b64encode(canonical_json(forged)).decode()
    with pytest.raises(VerificationError):
        _parsed(envelope).verify([_sslib_key(signer)], 1)
    with pytest.raises(KeyError):
        Envelope.from_dict({})
