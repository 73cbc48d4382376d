"""The PKCS#11 module and its logged-in sessions, through `python-pkcs11` (the Cryptoki binding).

`python-pkcs11` is imported by this module and `modelseal.keys.pkcs11` only, and those only on
the `pkcs11:` path (`modelseal.keys.reference` imports the signer lazily): a file key never loads
the binding.

Two things the binding leaves to its caller, done here:

- One logged-in session per token, shared by every signer in the process that uses the token,
  closed with the last of them. Cryptoki's login state is per process and token, not per
  session, and the binding's `Session.close()` calls `C_Logout`, which logs out every session of
  the token: a session per signer would log the release key out when the owner key closes.
- The module is finalised when the last session using it closes, so a later signer initialises it
  anew (as the binding does on `pkcs11.lib(path)` after `finalize()`).
"""

from __future__ import annotations

import os
import re
import threading
from typing import Any

import pkcs11
from pkcs11 import exceptions as p11e
from pkcs11.attributes import AttributeMapper

from modelseal.keys.pkcs11_reference import MODULE_ENV, fail

__all__ = [
    "CKA_PUBLIC_KEY_INFO",
    "SharedSession",
    "acquire_module",
    "finalise_if_unused",
    "open_session",
    "rv_name",
]

CKA_PUBLIC_KEY_INFO = 0x129  # PKCS#11 v2.40; the binding's attribute table does not name it.


def rv_name(error: BaseException) -> str:
    """The Cryptoki return value a binding exception stands for (`PinIncorrect` is
    `CKR_PIN_INCORRECT`), as the messages name it."""
    words = re.findall(r"[A-Z][a-z0-9]*", type(error).__name__)
    return "CKR_" + "_".join(w.upper() for w in words)


_LOCK = threading.Lock()
_USERS: dict[str, int] = {}  # module path -> open shared sessions
_SESSIONS: dict[tuple[str, int], SharedSession] = {}  # (module path, slot) -> its session


def acquire_module(path: str | None, shown: str) -> Any:
    """The loaded, initialised module `path` names (`pkcs11.lib`); KeyError_ naming the fix."""
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
    try:
        return pkcs11.lib(real)
    except p11e.PKCS11Error as e:
        raise fail(
            f"cannot load the PKCS#11 module {path}: {e or rv_name(e)}",
            shown,
            "module-path must name the vendor's PKCS#11 library (for SoftHSM2: "
            "/usr/lib/softhsm/libsofthsm2.so), and its configuration must be readable (for "
            "SoftHSM2, SOFTHSM2_CONF and its tokendir)",
        ) from None


class SharedSession:
    """A token's session, logged in or not, and how many signers hold it."""

    def __init__(self, key: tuple[str, int], session: Any, logged_in: bool) -> None:
        self.key = key
        self.session = session
        self.logged_in = logged_in
        self.users = 1
        self.closed = False

    def release(self) -> None:
        """Drop one user; the last one closes the session and, if no other session of the
        module is open, finalises the module. Idempotent per holder via `SignerSession`."""
        with _LOCK:
            self.users -= 1
            if self.users > 0:
                return
            self.closed = True
            if _SESSIONS.get(self.key) is self:
                del _SESSIONS[self.key]
            path = self.key[0]
            try:
                self.session.close()
            except p11e.PKCS11Error:
                pass  # Closing is best effort: the token may be gone already.
            _USERS[path] -= 1
            _finalise_unused(path)


def _finalise_unused(path: str) -> None:
    if _USERS.get(path, 0) > 0:
        return
    _USERS.pop(path, None)
    try:
        pkcs11.lib(path).finalize()
    except p11e.PKCS11Error:
        pass  # Best effort, as above.


def finalise_if_unused(path: str | None) -> None:
    """Finalise the module unless a session uses it: after a signer failed to open (a wrong
    PIN, no such token), nothing of it stays initialised."""
    if path and os.path.isfile(path):
        with _LOCK:
            _finalise_unused(os.path.realpath(path))


def open_session(slot: Any, pin: str | None, path: str) -> SharedSession:
    """The token's shared session, opened (and logged in with `pin`) if no signer holds one.

    A session that is not logged in is not reused for a signer that brings a PIN: that signer
    opens and logs in a session of its own, which then serves later signers."""
    key = (os.path.realpath(path), int(slot.slot_id))
    with _LOCK:
        shared = _SESSIONS.get(key)
        if shared is not None and (shared.logged_in or pin is None):
            shared.users += 1
            return shared
        mapper = AttributeMapper()
        mapper.register_handler(CKA_PUBLIC_KEY_INFO, bytes, bytes)  # type: ignore[arg-type]
        session = slot.get_token().open(user_pin=pin, attribute_mapper=mapper)
        shared = _SESSIONS[key] = SharedSession(key, session, pin is not None)
        _USERS[key[0]] = _USERS.get(key[0], 0) + 1
        return shared
