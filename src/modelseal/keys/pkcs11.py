"""PKCS#11 keys: `pkcs11:token=T;object=K?module-path=LIB&pin-source=file:PATH`.

The Cryptoki calls go through `python-pkcs11` (MIT, compiled wheels for CPython 3.9-3.13 on
manylinux x86_64/aarch64 and macOS); `modelseal.keys.cryptoki` holds the module and the shared
logged-in sessions. The reference grammar stays ours (`modelseal.keys.pkcs11_reference`):
the binding parses no RFC 7512 URIs.

Why ECDSA only: `model.sig` must be ECDSA for `model_signing verify key`, and signing the
pre-computed digest with `CKM_ECDSA` works on every token, whereas the hash-and-sign mechanisms
are optional. The token returns `r || s`; it is re-encoded as DER so a token signature is the
same shape as a file key's and verifies through the same `PublicKey`. Unlike file keys, token
ECDSA is randomised, so two signatures over the same bytes differ.

Why the session stays open: the PIN is read once, used for `C_Login`, and dropped; signing later
needs the logged-in session, not the PIN. `close()` (or garbage collection, or interpreter exit)
lets go of the token's session, which closes (and logs out) with the last signer using it, and
the module is finalised with its last session, because a process may hold the owner and release
keys in the same token and Cryptoki's initialisation and login state are per process, not per
signer.

The reference grammar is RFC 7512: path attributes `token`, `manufacturer`, `model`, `serial`,
`slot-id`, `object`, `id` (percent-encoded bytes) and `type` (only `private`), separated by `;`;
query attributes `module-path` and `pin-source` (only `file:PATH`), separated by `&`. Values are
percent-decoded (never `+` to space: a path may hold a `+`). `pin-value` is refused, because a
reference travels through argv, env and build caches; without `module-path` the module is taken
from `MODELSEAL_PKCS11_MODULE`.
"""

from __future__ import annotations

import hashlib
import weakref
from collections.abc import Mapping
from typing import Any

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.utils import encode_dss_signature
from pkcs11 import Attribute, KeyType, Mechanism, ObjectClass, TokenFlag
from pkcs11 import exceptions as p11e

from modelseal.errors import SigningError
from modelseal.keys.core import PublicKey, Signer, key_id_of, read_secret_file
from modelseal.keys.cryptoki import (
    CKA_PUBLIC_KEY_INFO,
    SharedSession,
    acquire_module,
    finalise_if_unused,
    open_session,
    rv_name,
)
from modelseal.keys.pkcs11_reference import (
    MODULE_ENV,
    TOKEN_ATTRIBUTES,
    Pkcs11Reference,
    fail,
    parse_reference,
)

__all__ = ["MODULE_ENV", "Pkcs11Reference", "Pkcs11Signer", "load_pkcs11_signer", "parse_reference"]

# DER-encoded named-curve OIDs as they appear in CKA_EC_PARAMS.
CURVES: dict[bytes, ec.EllipticCurve] = {
    bytes.fromhex("06082a8648ce3d030107"): ec.SECP256R1(),
    bytes.fromhex("06052b81040022"): ec.SECP384R1(),
}
KEY_TYPE_NAMES = {0x0: "RSA", 0x1: "DSA", 0x2: "DH", 0x3: "EC", 0x40: "EC_EDWARDS"}
PIN_WRONG = (p11e.PinIncorrect, p11e.PinInvalid, p11e.PinLenRange)
PIN_UNUSABLE = (p11e.PinLocked, p11e.PinExpired, p11e.UserPinNotInitialized)

# -- token, login, objects --------------------------------------------------------------------


def _find_slot(library: Any, reference: Pkcs11Reference) -> tuple[Any, str]:
    """The slot of the one token the reference names, and its label."""
    shown = reference.shown
    try:
        # An uninitialised token (SoftHSM2 always offers one) has no label and no keys.
        tokens = [
            (slot, token)
            for slot in library.get_slots(token_present=True)
            for token in [slot.get_token()]
            if token.flags & TokenFlag.TOKEN_INITIALIZED
        ]
    except p11e.PKCS11Error as e:
        raise fail(f"C_GetSlotList failed: {rv_name(e)}", shown, "check the module") from None
    matching = []
    for slot, token in tokens:
        fields = {"label": token.label, "manufacturer": token.manufacturer_id, "model": token.model}
        if any(fields[TOKEN_ATTRIBUTES[k]] != v for k, v in reference.token.items()):
            continue
        serial = token.serial.decode("utf-8", "replace").rstrip(" ")
        if reference.serial is not None and serial != reference.serial:
            continue
        if reference.slot_id is not None and slot.slot_id != reference.slot_id:
            continue
        matching.append((slot, token.label))
    labels = ", ".join(repr(token.label) for _, token in tokens) or "none"
    if not matching:
        wanted = reference.token.get("token")
        what = f"no token labelled {wanted!r}" if wanted else "no token matches the reference"
        raise fail(
            f"{what} in {reference.module_path}; available token labels: {labels}",
            shown,
            "fix token= (RFC 7512: percent-encode ';', '?', '%'), or initialise the token "
            "(softhsm2-util --init-token; docs/operations.md)",
        )
    if len(matching) > 1:
        raise fail(
            f"{len(matching)} tokens match: {labels}",
            shown,
            "add token=, serial= or slot-id= to the reference",
        )
    return matching[0]


def _login(slot: Any, reference: Pkcs11Reference, label: str) -> SharedSession:
    """The token's shared session, logged in with the PIN from `pin-source` when there is one (a
    token may allow signing without login; if not, the key is not found)."""
    assert reference.module_path is not None  # acquire_module refused a reference without one
    pin: str | None = None
    if reference.pin_file is not None:
        raw = read_secret_file(reference.pin_file, reference.shown, "PIN")
        try:
            pin = raw.decode("utf-8")
        except UnicodeDecodeError:
            raise fail(
                "the PIN is not UTF-8 text",
                reference.shown,
                f"write the PIN as text on the first line of {reference.pin_file}",
            ) from None
        del raw
    try:
        return open_session(slot, pin, reference.module_path)
    except PIN_WRONG as e:
        raise fail(
            f"wrong PIN for token {label!r} ({rv_name(e)})",
            reference.shown,
            f"check the first line of the pin-source file {reference.pin_file}; repeated wrong "
            "PINs lock the token",
        ) from None
    except PIN_UNUSABLE as e:
        raise fail(
            f"the user PIN of token {label!r} cannot be used ({rv_name(e)})",
            reference.shown,
            "the token's security officer must set or unlock the user PIN",
        ) from None
    except p11e.PKCS11Error as e:
        raise fail(
            f"login to token {label!r} failed: {rv_name(e)}", reference.shown, "check the token"
        ) from None
    finally:
        del pin


def _attribute(obj: Any, kind: int) -> Any:
    """The attribute's value, or None when the object has none (or it is sensitive)."""
    try:
        return obj[kind]
    except (p11e.PKCS11Error, NotImplementedError):
        return None


def _der_octets(data: bytes) -> bytes | None:
    """The content of a DER OCTET STRING, or None if `data` is not exactly one."""
    if len(data) < 2 or data[0] != 0x04:
        return None
    length, offset = data[1], 2
    if length & 0x80:
        size = length & 0x7F
        if size == 0 or size > 2 or len(data) < 2 + size:
            return None
        length, offset = int.from_bytes(data[2 : 2 + size], "big"), 2 + size
    return data[offset:] if len(data) - offset == length else None


def _public_from_object(obj: Any, shown: str) -> ec.EllipticCurvePublicKey:
    params = _attribute(obj, Attribute.EC_PARAMS)
    point = _attribute(obj, Attribute.EC_POINT)
    if params is None or point is None:
        raise fail("the public key object has no EC parameters or point", shown, "check the key")
    curve = CURVES.get(params)
    if curve is None:
        raise fail(
            f"the key's curve (EC parameters {params.hex()}) is not supported",
            shown,
            "use an EC key on P-256 or P-384",
        )
    # The standard says DER OCTET STRING; some modules return the bare point.
    encoded = _der_octets(point) or point
    try:
        return ec.EllipticCurvePublicKey.from_encoded_point(curve, encoded)
    except ValueError:
        raise fail("the public key object's EC point is invalid", shown, "check the key") from None


def _find(session: Any, template: dict[int, Any], shown: str) -> list[Any]:
    try:
        return list(session.get_objects(template))
    except p11e.PKCS11Error as e:
        raise fail(f"C_FindObjects failed: {rv_name(e)}", shown, "check the token") from None


# -- the signer -------------------------------------------------------------------------------


class Pkcs11Signer(Signer):
    """An EC private key in a PKCS#11 token; signs with CKM_ECDSA over SHA-256 (P-256) or SHA-384
    (P-384) and returns DER signatures. Holds a logged-in session, never the PIN."""

    def __init__(self, reference: Pkcs11Reference) -> None:
        self.reference = reference.shown
        library = acquire_module(reference.module_path, reference.shown)
        try:
            slot, label = _find_slot(library, reference)
            self._shared = _login(slot, reference, label)
        except BaseException:
            finalise_if_unused(reference.module_path)
            raise
        # Runs on close(), on garbage collection and at interpreter exit, whichever comes first.
        self._closer = weakref.finalize(self, self._shared.release)
        try:
            self._open(reference, label)
        except BaseException:
            self._closer()
            raise

    def _open(self, reference: Pkcs11Reference, label: str) -> None:
        shown = reference.shown
        session = self._shared.session
        template: dict[int, Any] = {Attribute.CLASS: ObjectClass.PRIVATE_KEY}
        if reference.label is not None:
            template[Attribute.LABEL] = reference.label
        if reference.key_id is not None:
            template[Attribute.ID] = reference.key_id
        keys = _find(session, template, shown)
        if len(keys) != 1:
            named = (f"object={reference.label!r} " if reference.label is not None else "") + (
                f"id={reference.key_id.hex()} " if reference.key_id is not None else ""
            )
            if not keys:
                hint = "" if reference.pin_file else " (no pin-source: private keys are hidden)"
                raise fail(
                    f"no private key {named}in token {label!r}{hint}",
                    shown,
                    "list the token's keys with `pkcs11-tool --module LIB --list-objects "
                    "--login` and fix object= or id=",
                )
            raise fail(
                f"{len(keys)} private keys {named}in token {label!r}",
                shown,
                "add object= and/or id= to name exactly one key",
            )
        self._key = keys[0]
        key_type = _attribute(self._key, Attribute.KEY_TYPE)
        type_value = -1 if key_type is None else int(key_type)
        if type_value != KeyType.EC:
            name = KEY_TYPE_NAMES.get(type_value, f"0x{type_value:X}")
            raise fail(
                f"the key is a {name} key; only EC (ECDSA P-256/P-384) token keys are supported",
                shown,
                "create an EC P-256 or P-384 key pair on the token",
            )
        public = self._find_public(session, shown)
        self._curve_hash = hashlib.sha256 if public.key_size == 256 else hashlib.sha384
        self.key_id = key_id_of(public)
        self.public_key_pem = public.public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        )
        # A public key object that belongs to another private key would sign links nobody can
        # verify; one signature now is cheaper than a bundle found unverifiable later.
        probe = b"modelseal: does the public key match the private key?"
        if not PublicKey(public).verify(self.sign(probe), probe):
            raise fail(
                "the token's public key does not match the private key",
                shown,
                "give both objects the same CKA_ID (softhsm2-util --import sets it)",
            )

    def _find_public(self, session: Any, shown: str) -> ec.EllipticCurvePublicKey:
        key_id = _attribute(self._key, Attribute.ID)
        label = _attribute(self._key, Attribute.LABEL)
        template: dict[int, Any] = {Attribute.CLASS: ObjectClass.PUBLIC_KEY}
        if key_id:
            template[Attribute.ID] = key_id
        elif label:
            template[Attribute.LABEL] = label
        publics = _find(session, template, shown) if len(template) > 1 else []
        if len(publics) == 1:
            return _public_from_object(publics[0], shown)
        info = _attribute(self._key, CKA_PUBLIC_KEY_INFO)
        if info:
            try:
                loaded = serialization.load_der_public_key(info)
            except ValueError:
                loaded = None
            if isinstance(loaded, ec.EllipticCurvePublicKey):
                return loaded
        if len(publics) > 1:
            raise fail(
                f"{len(publics)} public keys share the private key's CKA_ID/label",
                shown,
                "give the key pair an id no other key uses",
            )
        raise fail(
            "the token has no public key object for this private key (same CKA_ID or label)",
            shown,
            "import or generate the key pair, not the private key alone",
        )

    def __repr__(self) -> str:
        return f"Pkcs11Signer({self.reference!r}, key_id={getattr(self, 'key_id', '?')[:16]})"

    def close(self) -> None:
        self._closer()

    def sign(self, data: bytes) -> bytes:
        if not self._closer.alive or self._shared.closed:
            raise SigningError(
                what="the PKCS#11 session is closed",
                where=self.reference,
                remedy="load the key again",
            )
        digest = self._curve_hash(data).digest()
        try:
            raw = self._key.sign(digest, mechanism=Mechanism.ECDSA)
        except p11e.PKCS11Error as e:
            raise SigningError(
                what=f"the token failed to sign: {rv_name(e)}",
                where=self.reference,
                remedy="check that the key may sign (CKA_SIGN) and the token supports CKM_ECDSA",
            ) from None
        if not raw or len(raw) % 2:
            raise SigningError(
                what="the token returned no ECDSA signature (r || s)",
                where=self.reference,
                remedy="check the token, then sign again",
            )
        half = len(raw) // 2
        return encode_dss_signature(
            int.from_bytes(raw[:half], "big"), int.from_bytes(raw[half:], "big")
        )


def load_pkcs11_signer(reference: str, environ: Mapping[str, str] | None = None) -> Pkcs11Signer:
    """The signer for a `pkcs11:` reference; KeyError_ (exit 5) naming the reference, without
    secrets, and the fix, when the module, token, PIN or key cannot be used."""
    return Pkcs11Signer(parse_reference(reference, environ))
