"""`model.sig`: the OpenSSF Model Signing v1.0 signature over a bundle directory.

Interop is the point: `model_signing verify key BUNDLE --signature BUNDLE/model.sig --public_key
release.pub` (PyPI `model-signing`) must accept what this writes, so the layers are the ones that
tool reads, each built here from the specification rather than from its code:

1. an in-toto Statement v1 whose predicate (`https://model_signing/signature/v1.0`) lists a
   resource `{name, algorithm: sha256, digest}` for every file of the bundle, sorted by path, and
   records how files were chosen (`serialization`: method `files`, `hash_type` sha256, no
   symlinks, and the `ignore_paths`); its one subject is the bundle directory's name with, as
   digest, the SHA-256 of the concatenated raw resource digests in the listed order;
2. a DSSE envelope whose payload is that statement (canonical JSON) and whose one signature is
   over the DSSE pre-authentication encoding (PAE) of it (`modelseal.signing.dsse`, through
   securesystemslib); the envelope is read back here, not by securesystemslib's
   `Envelope.from_dict`, so that each malformed field gets its own message;
3. a Sigstore bundle v0.3 (`application/vnd.dev.sigstore.bundle.v0.3+json`) carrying the
   envelope and, as verification material, a public-key hint: the hex SHA-256 of the signer's
   PEM SubjectPublicKeyInfo (what model_signing compares against the key it is given).

`model_signing` verifies EC keys only (P-256, P-384, P-521), so `signature_bytes` refuses others.
With a file key, ECDSA is deterministic (RFC 6979): the same key and bundle give the same bytes.

`ignore_paths` recorded in the statement are honoured by every verifier (model_signing adds them
to its own list), so no command-line ignore option is ever needed: modelseal records `model.sig`
itself and `provenance/files.link`, the inspection record that `in-toto-verify` leaves in the
bundle when it runs there (docs/signing.md explains why).
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import os
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

from modelseal.errors import IntegrityError, KeyError_, SigningError
from modelseal.format.canonical import canonical_json, load_json
from modelseal.format.digests import CHANGED_REMEDY, sha256_files
from modelseal.format.manifest import SIGNATURE_PATH, bundle_path_problem
from modelseal.format.tree import walk
from modelseal.keys.core import PublicKey, Signer
from modelseal.signing.dsse import envelope, pae

__all__ = [
    "BUNDLE_MEDIA_TYPE",
    "DEFAULT_IGNORE",
    "PAYLOAD_TYPE",
    "PREDICATE_TYPE",
    "STATEMENT_TYPE",
    "VerifiedSignature",
    "bundle_digests",
    "signature_bytes",
    "verify_bundle_signature",
]

BUNDLE_MEDIA_TYPE = "application/vnd.dev.sigstore.bundle.v0.3+json"
PAYLOAD_TYPE = "application/vnd.in-toto+json"
STATEMENT_TYPE = "https://in-toto.io/Statement/v1"
PREDICATE_TYPE = "https://model_signing/signature/v1.0"
# The persisted record of the layout's inspection
# (modelseal.signing.provenance.INSPECTION_NAME + .link).
INSPECTION_LINK = "provenance/files.link"
DEFAULT_IGNORE: tuple[str, ...] = (SIGNATURE_PATH, INSPECTION_LINK)

# Read into memory at most (it lists one digest per file: about 150 bytes a file).
MAX_SIGNATURE_SIZE = 4 * 1024 * 1024

SIGNATURE_REMEDY = (
    "the bundle or its model.sig was changed after signing, or the wrong public key was given: "
    "re-download the bundle, or check which key signed it"
)


def _ignored(path: str, ignore: Iterable[str]) -> bool:
    # As model_signing: an ignored path also ignores everything below it.
    return any(path == p or path.startswith(p.rstrip("/") + "/") for p in ignore)


def bundle_digests(
    bundle_dir: str | os.PathLike[str],
    ignore: Iterable[str] = DEFAULT_IGNORE,
    known: Mapping[str, tuple[str, int]] | None = None,
) -> dict[str, str]:
    """{path: sha256 hex} of every file below `bundle_dir` except the ignored ones, hashed in
    parallel.

    `known` maps bundle paths to (sha256, size) that the caller already holds for exactly these
    bytes (Pants' content-addressed digests of the files it materialized, or what verification
    hashed a moment ago): those files are not read again, only their size is checked. Every
    other file is hashed."""
    ignored = tuple(ignore)
    root = os.fspath(bundle_dir)
    entries = [e for e in walk(root) if not e.is_dir and not _ignored(e.path, ignored)]
    result: dict[str, str] = {}
    local: dict[str, str] = {}
    for entry in entries:
        given = (known or {}).get(entry.path)
        if given is None:
            local[entry.path] = os.path.join(root, *entry.path.split("/"))
            continue
        if given[1] != entry.size:
            raise IntegrityError(
                what=f"{entry.size} bytes, but its known digest is of {given[1]} bytes",
                where=entry.path,
                remedy=CHANGED_REMEDY,
            )
        result[entry.path] = given[0]
    hashed = sha256_files(local.values())
    for path, file in local.items():
        result[path] = hashed[file][0]
    return result


def _statement(name: str, digests: dict[str, str], ignore: Iterable[str]) -> dict[str, object]:
    ordered = sorted(digests, key=lambda p: p.encode("utf-8"))
    root = hashlib.sha256(b"".join(bytes.fromhex(digests[p]) for p in ordered)).hexdigest()
    return {
        "_type": STATEMENT_TYPE,
        "subject": [{"name": name, "digest": {"sha256": root}}],
        "predicateType": PREDICATE_TYPE,
        "predicate": {
            "serialization": {
                "method": "files",
                "hash_type": "sha256",
                "allow_symlinks": False,
                "ignore_paths": sorted(set(ignore)),
            },
            "resources": [
                {"name": p, "algorithm": "sha256", "digest": digests[p]} for p in ordered
            ],
        },
    }


def _require_ec(signer: Signer) -> PublicKey:
    public = signer.public_key()
    if not public.scheme.startswith("ecdsa-"):
        raise KeyError_(
            what=f"model.sig needs an ECDSA key, and this is {public.scheme}",
            where=signer.reference,
            remedy="model_signing verifies EC keys only: sign the bundle with an ecdsa-p256 or "
            "ecdsa-p384 key (`modelseal keygen --type ecdsa-p256`)",
        )
    return public


def signature_bytes(
    name: str, digests: dict[str, str], signer: Signer, ignore: Iterable[str] = DEFAULT_IGNORE
) -> bytes:
    """The bytes of `model.sig` for a bundle called `name` whose files have `digests`."""
    public = _require_ec(signer)
    for path in digests:
        problem = bundle_path_problem(path)
        if problem is not None:
            raise SigningError(what=f"path {problem}", where=path, remedy="rename the file")
    statement = _statement(name, digests, ignore)
    payload = canonical_json(statement)[:-1]  # The payload is the JSON text, no newline.
    hint = hashlib.sha256(public.pem).hexdigest()
    bundle = {
        "mediaType": BUNDLE_MEDIA_TYPE,
        "verificationMaterial": {"publicKey": {"hint": hint}, "tlogEntries": []},
        "dsseEnvelope": envelope(payload, PAYLOAD_TYPE, signer, ""),
    }
    return canonical_json(bundle)


# -- verification -----------------------------------------------------------------------------


@dataclass(frozen=True)
class VerifiedSignature:
    """What a valid model.sig says: the subject name and every signed file's sha256."""

    name: str
    digests: dict[str, str]
    ignore_paths: tuple[str, ...]
    key: PublicKey  # the key whose signature verified


def _bad(what: str, where: str) -> IntegrityError:
    return IntegrityError(what=what, where=where, remedy=SIGNATURE_REMEDY)


def _field(obj: object, name: str, kind: type, where: str) -> object:
    if not isinstance(obj, dict) or not isinstance(obj.get(name), kind):
        raise _bad(f"{name}: missing or not a {kind.__name__}", where)
    return obj[name]


def _decode(text: object, where: str) -> bytes:
    if not isinstance(text, str):
        raise _bad("expected base64 text", where)
    try:
        return base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError):
        raise _bad("not valid base64", where) from None


def _read_statement(
    data: bytes, candidates: Sequence[PublicKey], where: str
) -> tuple[dict[str, object], PublicKey]:
    try:
        bundle = load_json(data)
    except ValueError as e:
        raise _bad(f"not a JSON document ({e})", where) from None
    if _field(bundle, "mediaType", str, where) != BUNDLE_MEDIA_TYPE:
        raise _bad(f"mediaType is not {BUNDLE_MEDIA_TYPE}", where)
    material = _field(bundle, "verificationMaterial", dict, where)
    key_info = material.get("publicKey") if isinstance(material, dict) else None
    hint = key_info.get("hint") if isinstance(key_info, dict) else None
    keys = [k for k in candidates if hint is None or hint == hashlib.sha256(k.pem).hexdigest()]
    if not keys:
        raise IntegrityError(
            what="signed by another key than the public key given"
            if len(candidates) == 1
            else "signed by another key than those the layout allows to sign it",
            where=where,
            remedy="verify with the public key of the release signer that signed this bundle",
        )
    envelope = _field(bundle, "dsseEnvelope", dict, where)
    if _field(envelope, "payloadType", str, where) != PAYLOAD_TYPE:
        raise _bad(f"payloadType is not {PAYLOAD_TYPE}", where)
    payload = _decode(_field(envelope, "payload", str, where), f"{where}: payload")
    signatures = _field(envelope, "signatures", list, where)
    assert isinstance(signatures, list)
    if not signatures or not isinstance(signatures[0], dict):
        raise _bad("the envelope holds no signature", where)
    signature = _decode(signatures[0].get("sig"), f"{where}: signature")
    signed = pae(PAYLOAD_TYPE, payload)
    public = next((k for k in keys if k.verify(signature, signed)), None)
    if public is None:
        raise _bad("the signature does not verify with the public key given", where)
    try:
        statement = load_json(payload)
    except ValueError as e:
        raise _bad(f"the payload is not JSON ({e})", where) from None
    if not isinstance(statement, dict):
        raise _bad("the payload is not an in-toto statement", where)
    if statement.get("_type") != STATEMENT_TYPE or statement.get("predicateType") != PREDICATE_TYPE:
        raise _bad(f"not an in-toto Statement v1 with predicate {PREDICATE_TYPE}", where)
    return statement, public


def _signed_resources(resources: list[object], where: str) -> tuple[dict[str, str], bytes]:
    """{name: sha256} of the predicate's resources, and their raw digests concatenated in the
    listed order (what the subject digest is computed over)."""
    signed: dict[str, str] = {}
    concatenated = b""
    for index, resource in enumerate(resources):
        if not isinstance(resource, dict) or resource.get("algorithm") != "sha256":
            raise _bad(f"resources[{index}] is not a sha256 resource", where)
        name, digest = resource.get("name"), resource.get("digest")
        if not isinstance(name, str) or not isinstance(digest, str) or len(digest) != 64:
            raise _bad(f"resources[{index}] has no name or digest", where)
        try:
            concatenated += bytes.fromhex(digest)
        except ValueError:
            raise _bad(f"resources[{index}].digest is not hex", where) from None
        signed[name] = digest
    return signed, concatenated


def _candidates(public_key: PublicKey | bytes | Sequence[PublicKey]) -> Sequence[PublicKey]:
    if isinstance(public_key, bytes):
        return [PublicKey.from_pem(public_key)]
    if isinstance(public_key, PublicKey):
        return [public_key]
    return public_key


def verify_bundle_signature(
    bundle_dir: str | os.PathLike[str],
    public_key: PublicKey | bytes | Sequence[PublicKey],
    *,
    known: Mapping[str, tuple[str, int]] | None = None,
) -> VerifiedSignature:
    """Check `model.sig` against `public_key` and the files on disk:
    IntegrityError naming the first problem (bad signature, a changed, missing or unsigned file).
    Paths the signature itself records as ignored are skipped, as model_signing does. `known`:
    (sha256, size) of files already hashed by the caller (see `bundle_digests`)."""
    root = os.fspath(bundle_dir)
    sig_path = os.path.join(root, SIGNATURE_PATH)
    candidates = _candidates(public_key)
    try:
        with open(sig_path, "rb") as f:
            data = f.read(MAX_SIGNATURE_SIZE + 1)
    except FileNotFoundError:
        raise IntegrityError(
            what="no model.sig: the bundle is not signed",
            where=sig_path,
            remedy="sign it with `modelseal sign`, or re-download the signed bundle",
        ) from None
    if len(data) > MAX_SIGNATURE_SIZE:
        raise _bad(
            f"larger than {MAX_SIGNATURE_SIZE} bytes, more than any model.sig modelseal writes",
            sig_path,
        )
    statement, public = _read_statement(data, candidates, sig_path)
    where = f"{sig_path}: payload"
    subjects = statement.get("subject")
    predicate = statement.get("predicate")
    if not isinstance(subjects, list) or len(subjects) != 1 or not isinstance(predicate, dict):
        raise _bad("expected one subject and a predicate", where)
    serialization = predicate.get("serialization")
    resources = predicate.get("resources")
    if (
        not isinstance(serialization, dict)
        or serialization.get("method") != "files"
        or serialization.get("hash_type") != "sha256"
        or not isinstance(resources, list)
    ):
        raise _bad("expected serialization method 'files' with sha256 and a resource list", where)
    ignore_raw = serialization.get("ignore_paths", [])
    if not isinstance(ignore_raw, list) or not all(isinstance(p, str) for p in ignore_raw):
        raise _bad("ignore_paths is not a list of strings", where)
    ignore = tuple({*ignore_raw, SIGNATURE_PATH})
    signed, concatenated = _signed_resources(resources, where)
    subject = subjects[0]
    expected_root = subject.get("digest", {}).get("sha256") if isinstance(subject, dict) else None
    if expected_root != hashlib.sha256(concatenated).hexdigest():
        raise _bad("the subject digest does not match the resources", where)
    actual = bundle_digests(root, ignore, known=known)
    for path in sorted(set(signed) | set(actual), key=lambda p: p.encode("utf-8")):
        if path not in actual:
            raise IntegrityError(
                what="missing: model.sig signs it but the bundle does not contain it",
                where=path,
                remedy=CHANGED_REMEDY,
            )
        if path not in signed:
            raise IntegrityError(
                what="present in the bundle but not signed by model.sig",
                where=path,
                remedy=CHANGED_REMEDY,
            )
        if actual[path] != signed[path]:
            raise IntegrityError(
                what=f"sha256 differs from the one model.sig signs: expected {signed[path]}, "
                f"found {actual[path]}",
                where=path,
                remedy=CHANGED_REMEDY,
                expected=signed[path],
                found=actual[path],
            )
    name = subject.get("name") if isinstance(subject, dict) else None
    return VerifiedSignature(str(name), signed, tuple(sorted(ignore)), public)
