"""PKCS#11 keys: `pkcs11:token=T;object=K?module-path=LIB&pin-source=file:PATH`.

Why ctypes and not a binding from PyPI: the signer needs ten Cryptoki calls, and every extra
compiled dependency is one more wheel to pin, audit and rebuild for each interpreter the tool runs
on. The Cryptoki ABI is plain C with `unsigned long` handles, which ctypes describes exactly on the
Unix platforms modelseal supports (Windows packs the structures to 1 byte; not supported here).

Why ECDSA only: `model.sig` must be ECDSA for `model_signing verify key`, and signing the
pre-computed digest with `CKM_ECDSA` works on every token, whereas the hash-and-sign mechanisms
are optional. The token returns `r || s`; it is re-encoded as DER so a token signature is the
same shape as a file key's and verifies through the same `PublicKey`. Unlike file keys, token
ECDSA is randomised, so two signatures over the same bytes differ.

Why the session stays open: the PIN is read once, used for `C_Login`, and dropped; signing later
needs the logged-in session, not the PIN. `close()` (or garbage collection, or interpreter exit)
closes the session, and the module is finalised when the last signer using it closes, because a
process may hold the owner and release keys in the same token and Cryptoki's initialisation and
login state are per process, not per signer. Nothing here ever logs out explicitly: `C_Logout`
would log out every session of the token, and closing the last session does it anyway.

The reference grammar is RFC 7512: path attributes `token`, `manufacturer`, `model`, `serial`,
`slot-id`, `object`, `id` (percent-encoded bytes) and `type` (only `private`), separated by `;`;
query attributes `module-path` and `pin-source` (only `file:PATH`), separated by `&`. Values are
percent-decoded (never `+` to space: a path may hold a `+`). `pin-value` is refused, because a
reference travels through argv, env and build caches; without `module-path` the module is taken
from `MODELSEAL_PKCS11_MODULE`.
"""

from __future__ import annotations

import ctypes
import hashlib
import weakref
from collections.abc import Mapping

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.utils import encode_dss_signature

from modelseal.errors import SigningError
from modelseal.keys.core import PublicKey, Signer, key_id_of, read_secret_file
from modelseal.keys.cryptoki import (
    CK_ULONG,
    CK_UNAVAILABLE_INFORMATION,
    CKA_CLASS,
    CKA_EC_PARAMS,
    CKA_EC_POINT,
    CKA_ID,
    CKA_KEY_TYPE,
    CKA_LABEL,
    CKA_PUBLIC_KEY_INFO,
    CKF_SERIAL_SESSION,
    CKF_TOKEN_INITIALIZED,
    CKK_EC,
    CKM_ECDSA,
    CKO_PRIVATE_KEY,
    CKO_PUBLIC_KEY,
    CKR_OK,
    CKR_PIN_EXPIRED,
    CKR_PIN_INCORRECT,
    CKR_PIN_INVALID,
    CKR_PIN_LEN_RANGE,
    CKR_PIN_LOCKED,
    CKR_USER_ALREADY_LOGGED_IN,
    CKR_USER_PIN_NOT_INITIALIZED,
    CKU_USER,
    CURVES,
    FUNCTION_ORDER,
    KEY_TYPE_NAMES,
    Attribute,
    Mechanism,
    Module,
    Session,
    TokenInfo,
    acquire_module,
    fixed_text,
    rv_name,
)
from modelseal.keys.pkcs11_reference import (
    MODULE_ENV,
    TOKEN_ATTRIBUTES,
    Pkcs11Reference,
    fail,
    parse_reference,
)

__all__ = [
    "FUNCTION_ORDER",
    "MODULE_ENV",
    "Pkcs11Reference",
    "Pkcs11Signer",
    "load_pkcs11_signer",
    "parse_reference",
]

# -- token, login, objects --------------------------------------------------------------------


def _tokens(module: Module, shown: str) -> list[tuple[int, TokenInfo]]:
    count = CK_ULONG(0)
    rv = module("C_GetSlotList", 1, None, ctypes.byref(count))
    slots = (CK_ULONG * max(count.value, 1))()
    if rv == CKR_OK and count.value:
        rv = module("C_GetSlotList", 1, slots, ctypes.byref(count))
    if rv != CKR_OK:
        raise fail(f"C_GetSlotList failed: {rv_name(rv)}", shown, "check the token's module")
    result = []
    for slot in slots[: count.value]:
        info = TokenInfo()
        # An uninitialised token (SoftHSM2 always offers one) has no label and no keys.
        rv = module("C_GetTokenInfo", CK_ULONG(slot), ctypes.byref(info))
        if rv == CKR_OK and info.flags & CKF_TOKEN_INITIALIZED:
            result.append((int(slot), info))
    return result


def _find_slot(module: Module, reference: Pkcs11Reference) -> tuple[int, str]:
    """The slot of the one token the reference names, and its label."""
    shown = reference.shown
    tokens = _tokens(module, shown)
    matching = []
    for slot, info in tokens:
        fields = {
            "label": fixed_text(info.label),
            "manufacturer": fixed_text(info.manufacturer),
            "model": fixed_text(info.model),
        }
        if any(fields[TOKEN_ATTRIBUTES[k]] != v for k, v in reference.token.items()):
            continue
        if reference.serial is not None and fixed_text(info.serial) != reference.serial:
            continue
        if reference.slot_id is not None and slot != reference.slot_id:
            continue
        matching.append((slot, fields["label"]))
    labels = ", ".join(repr(fixed_text(info.label)) for _, info in tokens) or "none"
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


def _login(module: Module, handle: int, reference: Pkcs11Reference, label: str) -> None:
    if reference.pin_file is None:
        return  # A token may allow signing without login; if not, the key is not found.
    pin = read_secret_file(reference.pin_file, reference.shown, "PIN")
    # A mutable copy that is wiped after use; the bytes object itself cannot be wiped.
    buffer = ctypes.create_string_buffer(pin, len(pin) or 1)
    try:
        rv = module("C_Login", CK_ULONG(handle), CKU_USER, buffer, len(pin))
    finally:
        ctypes.memset(buffer, 0, len(buffer))
        del pin
    if rv in (CKR_OK, CKR_USER_ALREADY_LOGGED_IN):
        return
    if rv in (CKR_PIN_INCORRECT, CKR_PIN_INVALID, CKR_PIN_LEN_RANGE):
        raise fail(
            f"wrong PIN for token {label!r} ({rv_name(rv)})",
            reference.shown,
            f"check the first line of the pin-source file {reference.pin_file}; repeated wrong "
            "PINs lock the token",
        )
    if rv in (CKR_PIN_LOCKED, CKR_PIN_EXPIRED, CKR_USER_PIN_NOT_INITIALIZED):
        raise fail(
            f"the user PIN of token {label!r} cannot be used ({rv_name(rv)})",
            reference.shown,
            "the token's security officer must set or unlock the user PIN",
        )
    raise fail(
        f"login to token {label!r} failed: {rv_name(rv)}", reference.shown, "check the token"
    )


class _Template:
    """A CK_ATTRIBUTE array that keeps its value buffers alive as long as it lives."""

    def __init__(self, items: list[tuple[int, bytes]]) -> None:
        self._buffers = [ctypes.create_string_buffer(value, len(value) or 1) for _, value in items]
        self.array = (Attribute * max(len(items), 1))()
        for i, ((kind, value), buffer) in enumerate(zip(items, self._buffers)):
            self.array[i].type = kind
            self.array[i].value = ctypes.cast(buffer, ctypes.c_void_p)
            self.array[i].length = len(value)
        self.count = len(items)


def _ulong(value: int) -> bytes:
    return bytes(CK_ULONG(value))


def _find(module: Module, handle: int, items: list[tuple[int, bytes]], shown: str) -> list[int]:
    template = _Template(items)
    session = CK_ULONG(handle)
    rv = module("C_FindObjectsInit", session, template.array, template.count)
    if rv != CKR_OK:
        raise fail(f"C_FindObjectsInit failed: {rv_name(rv)}", shown, "check the token")
    found: list[int] = []
    try:
        batch = (CK_ULONG * 16)()
        while True:
            count = CK_ULONG(0)
            rv = module("C_FindObjects", session, batch, 16, ctypes.byref(count))
            if rv != CKR_OK:
                raise fail(f"C_FindObjects failed: {rv_name(rv)}", shown, "check the token")
            found.extend(int(h) for h in batch[: count.value])
            if count.value < 16:
                return found
    finally:
        module("C_FindObjectsFinal", session)


def _attribute(module: Module, handle: int, obj: int, kind: int) -> bytes | None:
    """The attribute's value, or None when the object has none (or it is sensitive)."""
    query = (Attribute * 1)()
    query[0].type = kind
    rv = module("C_GetAttributeValue", CK_ULONG(handle), CK_ULONG(obj), query, 1)
    if rv != CKR_OK or query[0].length == CK_UNAVAILABLE_INFORMATION:
        return None
    buffer = ctypes.create_string_buffer(query[0].length or 1)
    query[0].value = ctypes.cast(buffer, ctypes.c_void_p)
    rv = module("C_GetAttributeValue", CK_ULONG(handle), CK_ULONG(obj), query, 1)
    if rv != CKR_OK:
        return None
    return buffer.raw[: query[0].length]


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


def _public_from_object(
    module: Module, handle: int, obj: int, shown: str
) -> ec.EllipticCurvePublicKey:
    params = _attribute(module, handle, obj, CKA_EC_PARAMS)
    point = _attribute(module, handle, obj, CKA_EC_POINT)
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


# -- the signer -------------------------------------------------------------------------------


class Pkcs11Signer(Signer):
    """An EC private key in a PKCS#11 token; signs with CKM_ECDSA over SHA-256 (P-256) or SHA-384
    (P-384) and returns DER signatures. Holds a logged-in session, never the PIN."""

    def __init__(self, reference: Pkcs11Reference) -> None:
        self.reference = reference.shown
        module = acquire_module(reference.module_path, reference.shown)
        self._session = Session(module)
        # Runs on close(), on garbage collection and at interpreter exit, whichever comes first.
        self._closer = weakref.finalize(self, self._session.close)
        try:
            self._open(module, reference)
        except BaseException:
            self._closer()
            raise

    def _open(self, module: Module, reference: Pkcs11Reference) -> None:
        shown = reference.shown
        slot, label = _find_slot(module, reference)
        handle = CK_ULONG(0)
        rv = module(
            "C_OpenSession", CK_ULONG(slot), CKF_SERIAL_SESSION, None, None, ctypes.byref(handle)
        )
        if rv != CKR_OK:
            raise fail(f"C_OpenSession failed on token {label!r}: {rv_name(rv)}", shown, "retry")
        self._session.handle = session = int(handle.value)
        _login(module, session, reference, label)
        template = [(CKA_CLASS, _ulong(CKO_PRIVATE_KEY))]
        if reference.label is not None:
            template.append((CKA_LABEL, reference.label.encode("utf-8")))
        if reference.key_id is not None:
            template.append((CKA_ID, reference.key_id))
        keys = _find(module, session, template, shown)
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
        key_type = _attribute(module, session, self._key, CKA_KEY_TYPE)
        type_value = int(CK_ULONG.from_buffer_copy(key_type).value) if key_type else -1
        if type_value != CKK_EC:
            name = KEY_TYPE_NAMES.get(type_value, f"0x{type_value:X}")
            raise fail(
                f"the key is a {name} key; only EC (ECDSA P-256/P-384) token keys are supported",
                shown,
                "create an EC P-256 or P-384 key pair on the token",
            )
        public = self._find_public(module, session, shown)
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

    def _find_public(self, module: Module, session: int, shown: str) -> ec.EllipticCurvePublicKey:
        key_id = _attribute(module, session, self._key, CKA_ID)
        label = _attribute(module, session, self._key, CKA_LABEL)
        template = [(CKA_CLASS, _ulong(CKO_PUBLIC_KEY))]
        if key_id:
            template.append((CKA_ID, key_id))
        elif label:
            template.append((CKA_LABEL, label))
        publics = _find(module, session, template, shown) if len(template) > 1 else []
        if len(publics) == 1:
            return _public_from_object(module, session, publics[0], shown)
        info = _attribute(module, session, self._key, CKA_PUBLIC_KEY_INFO)
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
        handle = self._session.handle
        if handle is None:
            raise SigningError(
                what="the PKCS#11 session is closed",
                where=self.reference,
                remedy="load the key again",
            )
        module = self._session.module
        digest = self._curve_hash(data).digest()
        mechanism = Mechanism(mechanism=CKM_ECDSA)
        rv = module("C_SignInit", CK_ULONG(handle), ctypes.byref(mechanism), CK_ULONG(self._key))
        if rv != CKR_OK:
            raise SigningError(
                what=f"the token refused to start an ECDSA signature: {rv_name(rv)}",
                where=self.reference,
                remedy="check that the key may sign (CKA_SIGN) and the token supports CKM_ECDSA",
            )
        out = ctypes.create_string_buffer(256)
        length = CK_ULONG(len(out))
        rv = module("C_Sign", CK_ULONG(handle), digest, len(digest), out, ctypes.byref(length))
        raw = out.raw[: length.value]
        if rv != CKR_OK or not raw or len(raw) % 2:
            raise SigningError(
                what=f"the token failed to sign: {rv_name(rv)}",
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
