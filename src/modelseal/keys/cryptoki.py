"""The Cryptoki (PKCS#11 v2.40) ABI through ctypes: the constants, structures and functions the
signer calls, and the per-process module registry (initialise once, finalise with the last user).

Own code, not a binding from PyPI: see `modelseal.keys.pkcs11` for why.
"""

from __future__ import annotations

import ctypes
import os
import threading
from typing import Any, Callable

from cryptography.hazmat.primitives.asymmetric import ec

from modelseal.keys.pkcs11_reference import MODULE_ENV, fail

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


class TokenInfo(ctypes.Structure):
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


class Attribute(ctypes.Structure):
    _fields_ = (("type", CK_ULONG), ("value", ctypes.c_void_p), ("length", CK_ULONG))


class Mechanism(ctypes.Structure):
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
_ATTRIBUTE_P = ctypes.POINTER(Attribute)
SIGNATURES: dict[str, tuple[Any, ...]] = {
    "C_Initialize": (ctypes.c_void_p,),
    "C_Finalize": (ctypes.c_void_p,),
    "C_GetSlotList": (ctypes.c_ubyte, _ULONG_P, _ULONG_P),
    "C_GetTokenInfo": (CK_ULONG, ctypes.POINTER(TokenInfo)),
    "C_OpenSession": (CK_ULONG, CK_ULONG, ctypes.c_void_p, ctypes.c_void_p, _ULONG_P),
    "C_CloseSession": (CK_ULONG,),
    "C_Login": (CK_ULONG, CK_ULONG, ctypes.c_void_p, CK_ULONG),
    "C_GetAttributeValue": (CK_ULONG, CK_ULONG, _ATTRIBUTE_P, CK_ULONG),
    "C_FindObjectsInit": (CK_ULONG, _ATTRIBUTE_P, CK_ULONG),
    "C_FindObjects": (CK_ULONG, _ULONG_P, CK_ULONG, _ULONG_P),
    "C_FindObjectsFinal": (CK_ULONG,),
    "C_SignInit": (CK_ULONG, ctypes.POINTER(Mechanism), CK_ULONG),
    "C_Sign": (CK_ULONG, ctypes.c_void_p, CK_ULONG, ctypes.c_void_p, _ULONG_P),
}


def rv_name(rv: int) -> str:
    return RV_NAMES.get(rv, f"CKR_0x{rv:X}")


def fixed_text(text: bytes) -> str:
    """A Cryptoki fixed-length field (blank padded, sometimes NUL padded) as text."""
    return text.rstrip(b"\0").decode("utf-8", "replace").rstrip(" ")


# -- the module -------------------------------------------------------------------------------


class Module:
    """One loaded Cryptoki library, initialised once per process however many signers use it."""

    def __init__(self, path: str, shown: str) -> None:
        self.path = path
        self.users = 0
        try:
            self._library = ctypes.CDLL(path)
            get_function_list = self._library.C_GetFunctionList
        except (OSError, AttributeError) as e:
            raise fail(
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
            raise fail(
                f"C_GetFunctionList failed in {path}: {rv_name(rv)}",
                shown,
                "check that module-path names a PKCS#11 library",
            )
        self._functions: dict[str, Callable[..., int]] = {}
        for name, argtypes in SIGNATURES.items():
            address = getattr(table.contents, name)
            if not address:
                raise fail(
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
            raise fail(
                f"C_Initialize failed in {self.path}: {rv_name(rv)}",
                shown,
                "check the module's configuration (for SoftHSM2, SOFTHSM2_CONF and its tokendir)",
            )
        self.owns_initialisation = True

    def finalise(self) -> None:
        if self.owns_initialisation:
            self("C_Finalize", None)
            self.owns_initialisation = False


_MODULES: dict[str, Module] = {}
_MODULES_LOCK = threading.Lock()


def acquire_module(path: str | None, shown: str) -> Module:
    if not path:
        raise fail(
            "no PKCS#11 module is named",
            shown,
            f"add module-path=LIB to the reference's query, or set {MODULE_ENV}",
        )
    if not os.path.isfile(path):
        raise fail(
            f"the PKCS#11 module {path} does not exist",
            shown,
            "install the token's PKCS#11 library (SoftHSM2: apt-get install softhsm2) and "
            "point module-path at it",
        )
    real = os.path.realpath(path)
    with _MODULES_LOCK:
        module = _MODULES.get(real)
        if module is None:
            module = Module(real, shown)
            module.initialise(shown)
            _MODULES[real] = module
        module.users += 1
        return module


def release_module(module: Module) -> None:
    with _MODULES_LOCK:
        module.users -= 1
        if module.users == 0:
            _MODULES.pop(module.path, None)
            module.finalise()


class Session:
    """An open, logged-in session; `close` is idempotent and safe at interpreter exit."""

    def __init__(self, module: Module) -> None:
        self.module = module
        self.handle: int | None = None
        self.released = False

    def close(self) -> None:
        if self.handle is not None:
            self.module("C_CloseSession", CK_ULONG(self.handle))
            self.handle = None
        if not self.released:
            self.released = True
            release_module(self.module)
