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
import os
import threading
import weakref
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Callable
from urllib.parse import unquote, unquote_to_bytes

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.utils import encode_dss_signature

from modelseal.errors import KeyError_, SigningError
from modelseal.keys.core import PublicKey, Signer, key_id_of, read_secret_file, redact_reference

__all__ = [
    "MODULE_ENV",
    "Pkcs11Reference",
    "Pkcs11Signer",
    "load_pkcs11_signer",
    "parse_reference",
]

MODULE_ENV = "MODELSEAL_PKCS11_MODULE"

PATH_ATTRIBUTES = ("token", "manufacturer", "model", "serial", "slot-id", "object", "id", "type")
QUERY_ATTRIBUTES = ("module-path", "pin-source")
TOKEN_ATTRIBUTES = {"token": "label", "manufacturer": "manufacturer", "model": "model"}

# -- Cryptoki constants (PKCS#11 v2.40 base specification) ------------------------------------

CKR_OK = 0x0
CKR_ATTRIBUTE_SENSITIVE = 0x11
CKR_ATTRIBUTE_TYPE_INVALID = 0x12
CKR_CRYPTOKI_ALREADY_INITIALIZED = 0x191
CKR_PIN_INCORRECT = 0xA0
CKR_PIN_INVALID = 0xA1
CKR_PIN_LEN_RANGE = 0xA2
CKR_PIN_EXPIRED = 0xA3
CKR_PIN_LOCKED = 0xA4
CKR_USER_ALREADY_LOGGED_IN = 0x100
CKR_USER_PIN_NOT_INITIALIZED = 0x102

RV_NAMES = {
    0x1: "CKR_CANCEL",
    0x2: "CKR_HOST_MEMORY",
    0x3: "CKR_SLOT_ID_INVALID",
    0x5: "CKR_GENERAL_ERROR",
    0x6: "CKR_FUNCTION_FAILED",
    0x7: "CKR_ARGUMENTS_BAD",
    CKR_ATTRIBUTE_SENSITIVE: "CKR_ATTRIBUTE_SENSITIVE",
    CKR_ATTRIBUTE_TYPE_INVALID: "CKR_ATTRIBUTE_TYPE_INVALID",
    0x30: "CKR_DEVICE_ERROR",
    0x31: "CKR_DEVICE_MEMORY",
    0x32: "CKR_DEVICE_REMOVED",
    0x54: "CKR_FUNCTION_NOT_SUPPORTED",
    0x60: "CKR_KEY_HANDLE_INVALID",
    0x63: "CKR_KEY_TYPE_INCONSISTENT",
    0x68: "CKR_KEY_FUNCTION_NOT_PERMITTED",
    0x70: "CKR_MECHANISM_INVALID",
    0x71: "CKR_MECHANISM_PARAM_INVALID",
    0x82: "CKR_OBJECT_HANDLE_INVALID",
    CKR_PIN_INCORRECT: "CKR_PIN_INCORRECT",
    CKR_PIN_INVALID: "CKR_PIN_INVALID",
    CKR_PIN_LEN_RANGE: "CKR_PIN_LEN_RANGE",
    CKR_PIN_EXPIRED: "CKR_PIN_EXPIRED",
    CKR_PIN_LOCKED: "CKR_PIN_LOCKED",
    0xB3: "CKR_SESSION_HANDLE_INVALID",
    0xB4: "CKR_SESSION_PARALLEL_NOT_SUPPORTED",
    0xE0: "CKR_TOKEN_NOT_PRESENT",
    0xE1: "CKR_TOKEN_NOT_RECOGNIZED",
    CKR_USER_ALREADY_LOGGED_IN: "CKR_USER_ALREADY_LOGGED_IN",
    0x101: "CKR_USER_NOT_LOGGED_IN",
    CKR_USER_PIN_NOT_INITIALIZED: "CKR_USER_PIN_NOT_INITIALIZED",
    0x150: "CKR_BUFFER_TOO_SMALL",
    0x190: "CKR_CRYPTOKI_NOT_INITIALIZED",
}

CKF_OS_LOCKING_OK = 0x2
CKF_SERIAL_SESSION = 0x4
CKF_TOKEN_INITIALIZED = 0x400
CKU_USER = 1
CKO_PUBLIC_KEY = 2
CKO_PRIVATE_KEY = 3
CKA_CLASS = 0x0
CKA_LABEL = 0x3
CKA_KEY_TYPE = 0x100
CKA_ID = 0x102
CKA_PUBLIC_KEY_INFO = 0x129
CKA_EC_PARAMS = 0x180
CKA_EC_POINT = 0x181
CKK_EC = 0x3
KEY_TYPE_NAMES = {0x0: "RSA", 0x1: "DSA", 0x2: "DH", CKK_EC: "EC", 0x40: "EC_EDWARDS"}
CKM_ECDSA = 0x1041
CK_UNAVAILABLE_INFORMATION = ctypes.c_ulong(-1).value

# DER-encoded named-curve OIDs as they appear in CKA_EC_PARAMS.
CURVES: dict[bytes, ec.EllipticCurve] = {
    bytes.fromhex("06082a8648ce3d030107"): ec.SECP256R1(),
    bytes.fromhex("06052b81040022"): ec.SECP384R1(),
}

# -- Cryptoki structures and functions --------------------------------------------------------

CK_ULONG = ctypes.c_ulong
CK_RV = ctypes.c_ulong


class _Version(ctypes.Structure):
    _fields_ = (("major", ctypes.c_ubyte), ("minor", ctypes.c_ubyte))


class _TokenInfo(ctypes.Structure):
    _fields_ = (
        ("label", ctypes.c_char * 32),
        ("manufacturer", ctypes.c_char * 32),
        ("model", ctypes.c_char * 16),
        ("serial", ctypes.c_char * 16),
        ("flags", CK_ULONG),
        ("max_session_count", CK_ULONG),
        ("session_count", CK_ULONG),
        ("max_rw_session_count", CK_ULONG),
        ("rw_session_count", CK_ULONG),
        ("max_pin_len", CK_ULONG),
        ("min_pin_len", CK_ULONG),
        ("total_public_memory", CK_ULONG),
        ("free_public_memory", CK_ULONG),
        ("total_private_memory", CK_ULONG),
        ("free_private_memory", CK_ULONG),
        ("hardware_version", _Version),
        ("firmware_version", _Version),
        ("utc_time", ctypes.c_char * 16),
    )


class _Attribute(ctypes.Structure):
    _fields_ = (("type", CK_ULONG), ("value", ctypes.c_void_p), ("length", CK_ULONG))


class _Mechanism(ctypes.Structure):
    _fields_ = (("mechanism", CK_ULONG), ("parameter", ctypes.c_void_p), ("length", CK_ULONG))


class _InitializeArgs(ctypes.Structure):
    _fields_ = (
        ("create_mutex", ctypes.c_void_p),
        ("destroy_mutex", ctypes.c_void_p),
        ("lock_mutex", ctypes.c_void_p),
        ("unlock_mutex", ctypes.c_void_p),
        ("flags", CK_ULONG),
        ("reserved", ctypes.c_void_p),
    )


# CK_FUNCTION_LIST up to C_Sign, in the order the specification fixes; the rest is never read.
FUNCTION_ORDER = (
    "C_Initialize", "C_Finalize", "C_GetInfo", "C_GetFunctionList", "C_GetSlotList",
    "C_GetSlotInfo", "C_GetTokenInfo", "C_GetMechanismList", "C_GetMechanismInfo", "C_InitToken",
    "C_InitPIN", "C_SetPIN", "C_OpenSession", "C_CloseSession", "C_CloseAllSessions",
    "C_GetSessionInfo", "C_GetOperationState", "C_SetOperationState", "C_Login", "C_Logout",
    "C_CreateObject", "C_CopyObject", "C_DestroyObject", "C_GetObjectSize", "C_GetAttributeValue",
    "C_SetAttributeValue", "C_FindObjectsInit", "C_FindObjects", "C_FindObjectsFinal",
    "C_EncryptInit", "C_Encrypt", "C_EncryptUpdate", "C_EncryptFinal", "C_DecryptInit",
    "C_Decrypt", "C_DecryptUpdate", "C_DecryptFinal", "C_DigestInit", "C_Digest",
    "C_DigestUpdate", "C_DigestKey", "C_DigestFinal", "C_SignInit", "C_Sign",
)  # fmt: skip


class _FunctionList(ctypes.Structure):
    _fields_ = (("version", _Version), *((name, ctypes.c_void_p) for name in FUNCTION_ORDER))


_ULONG_P = ctypes.POINTER(CK_ULONG)
_ATTRIBUTE_P = ctypes.POINTER(_Attribute)
SIGNATURES: dict[str, tuple[Any, ...]] = {
    "C_Initialize": (ctypes.c_void_p,),
    "C_Finalize": (ctypes.c_void_p,),
    "C_GetSlotList": (ctypes.c_ubyte, _ULONG_P, _ULONG_P),
    "C_GetTokenInfo": (CK_ULONG, ctypes.POINTER(_TokenInfo)),
    "C_OpenSession": (CK_ULONG, CK_ULONG, ctypes.c_void_p, ctypes.c_void_p, _ULONG_P),
    "C_CloseSession": (CK_ULONG,),
    "C_Login": (CK_ULONG, CK_ULONG, ctypes.c_void_p, CK_ULONG),
    "C_GetAttributeValue": (CK_ULONG, CK_ULONG, _ATTRIBUTE_P, CK_ULONG),
    "C_FindObjectsInit": (CK_ULONG, _ATTRIBUTE_P, CK_ULONG),
    "C_FindObjects": (CK_ULONG, _ULONG_P, CK_ULONG, _ULONG_P),
    "C_FindObjectsFinal": (CK_ULONG,),
    "C_SignInit": (CK_ULONG, ctypes.POINTER(_Mechanism), CK_ULONG),
    "C_Sign": (CK_ULONG, ctypes.c_void_p, CK_ULONG, ctypes.c_void_p, _ULONG_P),
}


def rv_name(rv: int) -> str:
    return RV_NAMES.get(rv, f"CKR_0x{rv:X}")


def _fixed(text: bytes) -> str:
    """A Cryptoki fixed-length field (blank padded, sometimes NUL padded) as text."""
    return text.rstrip(b"\0").decode("utf-8", "replace").rstrip(" ")


# -- references -------------------------------------------------------------------------------


@dataclass(frozen=True)
class Pkcs11Reference:
    """A parsed `pkcs11:` reference. `shown` is the reference safe to print (it never holds a
    secret: the PIN is only ever in the file `pin_file` names)."""

    shown: str
    token: dict[str, str] = field(default_factory=dict)
    slot_id: int | None = None
    serial: str | None = None
    label: str | None = None
    key_id: bytes | None = None
    module_path: str | None = None
    pin_file: str | None = None


def _fail(what: str, shown: str, remedy: str) -> KeyError_:
    return KeyError_(what=what, where=shown, remedy=remedy)


def _pairs(text: str, separator: str, allowed: tuple[str, ...], shown: str) -> dict[str, str]:
    result: dict[str, str] = {}
    for part in text.split(separator) if text else []:
        name, sep, value = part.partition("=")
        if name == "pin-value":
            raise _fail(
                "a PIN may not be written into a key reference",
                shown,
                "put the PIN in a file and use pin-source=file:PATH",
            )
        if not sep or not name:
            raise _fail(
                f"{part!r} is not an attribute=value pair",
                shown,
                "see RFC 7512 and docs/signing.md, 'PKCS#11'",
            )
        if name not in allowed or name in result:
            problem = "repeated" if name in result else "unknown"
            raise _fail(
                f"{problem} attribute {name!r}", shown, f"allowed here: {', '.join(allowed)}"
            )
        result[name] = value
    return result


def parse_reference(reference: str, environ: Mapping[str, str] | None = None) -> Pkcs11Reference:
    """Parse an RFC 7512 reference; KeyError_ naming it (without secrets) when it is malformed."""
    env = os.environ if environ is None else environ
    shown = redact_reference(reference)
    if not reference.startswith("pkcs11:"):
        raise _fail("not a pkcs11: reference", shown, "start it with pkcs11:")
    path, _, query = reference[len("pkcs11:") :].partition("?")
    attributes = _pairs(path, ";", PATH_ATTRIBUTES, shown)
    options = _pairs(query, "&", QUERY_ATTRIBUTES, shown)
    try:
        text = {n: unquote(v, errors="strict") for n, v in attributes.items() if n != "id"}
    except UnicodeDecodeError:
        raise _fail(
            "a percent-encoded attribute other than id is not UTF-8",
            shown,
            "percent-encode the UTF-8 bytes of labels",
        ) from None
    if text.get("type", "private") != "private":
        raise _fail(
            f"type={text['type']} does not name a private key",
            shown,
            "use type=private, or leave type out",
        )
    slot_id = None
    if "slot-id" in text:
        if not text["slot-id"].isdigit():
            raise _fail("slot-id is not a decimal number", shown, "write e.g. slot-id=0")
        slot_id = int(text["slot-id"])
    module_path = unquote(options["module-path"]) if "module-path" in options else None
    if not module_path:
        module_path = env.get(MODULE_ENV) or None
    pin_file = None
    if "pin-source" in options:
        source = unquote(options["pin-source"])
        if source.startswith("file://"):
            source = source[len("file://") :]
            if not source.startswith("/"):
                raise _fail(
                    "pin-source=file:// must be followed by an absolute path",
                    shown,
                    "write pin-source=file:/path/to/pin or pin-source=file:relative/path",
                )
        elif source.startswith("file:"):
            source = source[len("file:") :]
        else:
            raise _fail(
                "pin-source must be a file: URI",
                shown,
                "write the PIN on the first line of a file and use pin-source=file:PATH",
            )
        if not source:
            raise _fail("no path after pin-source=file:", shown, "write pin-source=file:PATH")
        pin_file = source
    return Pkcs11Reference(
        shown=shown,
        token={k: text[k] for k in TOKEN_ATTRIBUTES if k in text},
        slot_id=slot_id,
        serial=text.get("serial"),
        label=text.get("object"),
        key_id=unquote_to_bytes(attributes["id"]) if "id" in attributes else None,
        module_path=module_path,
        pin_file=pin_file,
    )


# -- the module -------------------------------------------------------------------------------


class _Module:
    """One loaded Cryptoki library, initialised once per process however many signers use it."""

    def __init__(self, path: str, shown: str) -> None:
        self.path = path
        self.users = 0
        try:
            self._library = ctypes.CDLL(path)
            get_function_list = self._library.C_GetFunctionList
        except (OSError, AttributeError) as e:
            raise _fail(
                f"cannot load the PKCS#11 module {path}: {e}",
                shown,
                "module-path must name the vendor's PKCS#11 library (for SoftHSM2: "
                "/usr/lib/softhsm/libsofthsm2.so)",
            ) from None
        get_function_list.restype = CK_RV
        get_function_list.argtypes = (ctypes.POINTER(ctypes.POINTER(_FunctionList)),)
        table = ctypes.POINTER(_FunctionList)()
        rv = get_function_list(ctypes.byref(table))
        if rv != CKR_OK or not table:
            raise _fail(
                f"C_GetFunctionList failed in {path}: {rv_name(rv)}",
                shown,
                "check that module-path names a PKCS#11 library",
            )
        self._functions: dict[str, Callable[..., int]] = {}
        for name, argtypes in SIGNATURES.items():
            address = getattr(table.contents, name)
            if not address:
                raise _fail(
                    f"the PKCS#11 module {path} does not implement {name}",
                    shown,
                    "use the module your token's vendor ships",
                )
            self._functions[name] = ctypes.CFUNCTYPE(CK_RV, *argtypes)(address)
        self.owns_initialisation = False

    def __call__(self, name: str, *args: Any) -> int:
        return int(self._functions[name](*args))

    def initialise(self, shown: str) -> None:
        args = _InitializeArgs(flags=CKF_OS_LOCKING_OK)
        rv = self("C_Initialize", ctypes.byref(args))
        if rv == CKR_CRYPTOKI_ALREADY_INITIALIZED:
            # Someone else in this process (another library) initialised it: leave it to them.
            return
        if rv != CKR_OK:
            raise _fail(
                f"C_Initialize failed in {self.path}: {rv_name(rv)}",
                shown,
                "check the module's configuration (for SoftHSM2, SOFTHSM2_CONF and its tokendir)",
            )
        self.owns_initialisation = True

    def finalise(self) -> None:
        if self.owns_initialisation:
            self("C_Finalize", None)
            self.owns_initialisation = False


_MODULES: dict[str, _Module] = {}
_MODULES_LOCK = threading.Lock()


def _acquire_module(path: str | None, shown: str) -> _Module:
    if not path:
        raise _fail(
            "no PKCS#11 module is named",
            shown,
            f"add module-path=LIB to the reference's query, or set {MODULE_ENV}",
        )
    if not os.path.isfile(path):
        raise _fail(
            f"the PKCS#11 module {path} does not exist",
            shown,
            "install the token's PKCS#11 library (SoftHSM2: apt-get install softhsm2) and "
            "point module-path at it",
        )
    real = os.path.realpath(path)
    with _MODULES_LOCK:
        module = _MODULES.get(real)
        if module is None:
            module = _Module(real, shown)
            module.initialise(shown)
            _MODULES[real] = module
        module.users += 1
        return module


def _release_module(module: _Module) -> None:
    with _MODULES_LOCK:
        module.users -= 1
        if module.users == 0:
            _MODULES.pop(module.path, None)
            module.finalise()


class _Session:
    """An open, logged-in session; `close` is idempotent and safe at interpreter exit."""

    def __init__(self, module: _Module) -> None:
        self.module = module
        self.handle: int | None = None
        self.released = False

    def close(self) -> None:
        if self.handle is not None:
            self.module("C_CloseSession", CK_ULONG(self.handle))
            self.handle = None
        if not self.released:
            self.released = True
            _release_module(self.module)


# -- token, login, objects --------------------------------------------------------------------


def _tokens(module: _Module, shown: str) -> list[tuple[int, _TokenInfo]]:
    count = CK_ULONG(0)
    rv = module("C_GetSlotList", 1, None, ctypes.byref(count))
    slots = (CK_ULONG * max(count.value, 1))()
    if rv == CKR_OK and count.value:
        rv = module("C_GetSlotList", 1, slots, ctypes.byref(count))
    if rv != CKR_OK:
        raise _fail(f"C_GetSlotList failed: {rv_name(rv)}", shown, "check the token's module")
    result = []
    for slot in slots[: count.value]:
        info = _TokenInfo()
        # An uninitialised token (SoftHSM2 always offers one) has no label and no keys.
        rv = module("C_GetTokenInfo", CK_ULONG(slot), ctypes.byref(info))
        if rv == CKR_OK and info.flags & CKF_TOKEN_INITIALIZED:
            result.append((int(slot), info))
    return result


def _find_slot(module: _Module, reference: Pkcs11Reference) -> tuple[int, str]:
    """The slot of the one token the reference names, and its label."""
    shown = reference.shown
    tokens = _tokens(module, shown)
    matching = []
    for slot, info in tokens:
        fields = {
            "label": _fixed(info.label),
            "manufacturer": _fixed(info.manufacturer),
            "model": _fixed(info.model),
        }
        if any(fields[TOKEN_ATTRIBUTES[k]] != v for k, v in reference.token.items()):
            continue
        if reference.serial is not None and _fixed(info.serial) != reference.serial:
            continue
        if reference.slot_id is not None and slot != reference.slot_id:
            continue
        matching.append((slot, fields["label"]))
    labels = ", ".join(repr(_fixed(info.label)) for _, info in tokens) or "none"
    if not matching:
        wanted = reference.token.get("token")
        what = f"no token labelled {wanted!r}" if wanted else "no token matches the reference"
        raise _fail(
            f"{what} in {reference.module_path}; available token labels: {labels}",
            shown,
            "fix token= (RFC 7512: percent-encode ';', '?', '%'), or initialise the token "
            "(softhsm2-util --init-token; docs/operations.md)",
        )
    if len(matching) > 1:
        raise _fail(
            f"{len(matching)} tokens match: {labels}",
            shown,
            "add token=, serial= or slot-id= to the reference",
        )
    return matching[0]


def _login(module: _Module, handle: int, reference: Pkcs11Reference, label: str) -> None:
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
        raise _fail(
            f"wrong PIN for token {label!r} ({rv_name(rv)})",
            reference.shown,
            f"check the first line of the pin-source file {reference.pin_file}; repeated wrong "
            "PINs lock the token",
        )
    if rv in (CKR_PIN_LOCKED, CKR_PIN_EXPIRED, CKR_USER_PIN_NOT_INITIALIZED):
        raise _fail(
            f"the user PIN of token {label!r} cannot be used ({rv_name(rv)})",
            reference.shown,
            "the token's security officer must set or unlock the user PIN",
        )
    raise _fail(
        f"login to token {label!r} failed: {rv_name(rv)}", reference.shown, "check the token"
    )


class _Template:
    """A CK_ATTRIBUTE array that keeps its value buffers alive as long as it lives."""

    def __init__(self, items: list[tuple[int, bytes]]) -> None:
        self._buffers = [ctypes.create_string_buffer(value, len(value) or 1) for _, value in items]
        self.array = (_Attribute * max(len(items), 1))()
        for i, ((kind, value), buffer) in enumerate(zip(items, self._buffers)):
            self.array[i].type = kind
            self.array[i].value = ctypes.cast(buffer, ctypes.c_void_p)
            self.array[i].length = len(value)
        self.count = len(items)


def _ulong(value: int) -> bytes:
    return bytes(CK_ULONG(value))


def _find(module: _Module, handle: int, items: list[tuple[int, bytes]], shown: str) -> list[int]:
    template = _Template(items)
    session = CK_ULONG(handle)
    rv = module("C_FindObjectsInit", session, template.array, template.count)
    if rv != CKR_OK:
        raise _fail(f"C_FindObjectsInit failed: {rv_name(rv)}", shown, "check the token")
    found: list[int] = []
    try:
        batch = (CK_ULONG * 16)()
        while True:
            count = CK_ULONG(0)
            rv = module("C_FindObjects", session, batch, 16, ctypes.byref(count))
            if rv != CKR_OK:
                raise _fail(f"C_FindObjects failed: {rv_name(rv)}", shown, "check the token")
            found.extend(int(h) for h in batch[: count.value])
            if count.value < 16:
                return found
    finally:
        module("C_FindObjectsFinal", session)


def _attribute(module: _Module, handle: int, obj: int, kind: int) -> bytes | None:
    """The attribute's value, or None when the object has none (or it is sensitive)."""
    query = (_Attribute * 1)()
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
    module: _Module, handle: int, obj: int, shown: str
) -> ec.EllipticCurvePublicKey:
    params = _attribute(module, handle, obj, CKA_EC_PARAMS)
    point = _attribute(module, handle, obj, CKA_EC_POINT)
    if params is None or point is None:
        raise _fail("the public key object has no EC parameters or point", shown, "check the key")
    curve = CURVES.get(params)
    if curve is None:
        raise _fail(
            f"the key's curve (EC parameters {params.hex()}) is not supported",
            shown,
            "use an EC key on P-256 or P-384",
        )
    # The standard says DER OCTET STRING; some modules return the bare point.
    encoded = _der_octets(point) or point
    try:
        return ec.EllipticCurvePublicKey.from_encoded_point(curve, encoded)
    except ValueError:
        raise _fail("the public key object's EC point is invalid", shown, "check the key") from None


# -- the signer -------------------------------------------------------------------------------


class Pkcs11Signer(Signer):
    """An EC private key in a PKCS#11 token; signs with CKM_ECDSA over SHA-256 (P-256) or SHA-384
    (P-384) and returns DER signatures. Holds a logged-in session, never the PIN."""

    def __init__(self, reference: Pkcs11Reference) -> None:
        self.reference = reference.shown
        module = _acquire_module(reference.module_path, reference.shown)
        self._session = _Session(module)
        # Runs on close(), on garbage collection and at interpreter exit, whichever comes first.
        self._closer = weakref.finalize(self, self._session.close)
        try:
            self._open(module, reference)
        except BaseException:
            self._closer()
            raise

    def _open(self, module: _Module, reference: Pkcs11Reference) -> None:
        shown = reference.shown
        slot, label = _find_slot(module, reference)
        handle = CK_ULONG(0)
        rv = module(
            "C_OpenSession", CK_ULONG(slot), CKF_SERIAL_SESSION, None, None, ctypes.byref(handle)
        )
        if rv != CKR_OK:
            raise _fail(f"C_OpenSession failed on token {label!r}: {rv_name(rv)}", shown, "retry")
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
                raise _fail(
                    f"no private key {named}in token {label!r}{hint}",
                    shown,
                    "list the token's keys with `pkcs11-tool --module LIB --list-objects "
                    "--login` and fix object= or id=",
                )
            raise _fail(
                f"{len(keys)} private keys {named}in token {label!r}",
                shown,
                "add object= and/or id= to name exactly one key",
            )
        self._key = keys[0]
        key_type = _attribute(module, session, self._key, CKA_KEY_TYPE)
        type_value = int(CK_ULONG.from_buffer_copy(key_type).value) if key_type else -1
        if type_value != CKK_EC:
            name = KEY_TYPE_NAMES.get(type_value, f"0x{type_value:X}")
            raise _fail(
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
            raise _fail(
                "the token's public key does not match the private key",
                shown,
                "give both objects the same CKA_ID (softhsm2-util --import sets it)",
            )

    def _find_public(self, module: _Module, session: int, shown: str) -> ec.EllipticCurvePublicKey:
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
            raise _fail(
                f"{len(publics)} public keys share the private key's CKA_ID/label",
                shown,
                "give the key pair an id no other key uses",
            )
        raise _fail(
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
        mechanism = _Mechanism(mechanism=CKM_ECDSA)
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
