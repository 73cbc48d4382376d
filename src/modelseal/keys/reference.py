"""Resolving a key reference (`file:`, `pkcs11:`, `env:NAME`) to a `Signer`.

Kept apart from `modelseal.keys.core` (the signing interface and file keys) so that the PKCS#11
signer, which builds on that interface, and the dispatcher that chooses between them do not import
each other.
"""

from __future__ import annotations

import os
from collections.abc import Mapping

from modelseal.errors import KeyError_
from modelseal.keys.core import REFERENCE_HELP, Signer, load_file_signer, redact_reference


def load_signer(reference: str, environ: Mapping[str, str] | None = None) -> Signer:
    """The signer a key reference names; KeyError_ (exit code 5) naming the reference, without
    secrets, and the fix, when it cannot be used."""
    env = os.environ if environ is None else environ
    shown = redact_reference(reference)
    if reference.startswith("env:"):
        name = reference[len("env:") :]
        value = env.get(name)
        if not name or value is None:
            raise KeyError_(
                what=f"the environment variable {name!r} is not set",
                where=shown,
                remedy="export it with a key reference such as file:/path/to/key.pem",
            )
        if not value.startswith(("file:", "pkcs11:")):
            # Never echo the value: someone may have put key bytes there.
            raise KeyError_(
                what=f"the environment variable {name} does not hold a file: or pkcs11: reference",
                where=shown,
                remedy="put a reference to the key in it, never the key itself",
            )
        return load_signer(value, env)
    if reference.startswith("file:"):
        return load_file_signer(reference)
    if reference.startswith("pkcs11:"):
        from modelseal.keys.pkcs11 import load_pkcs11_signer

        signer: Signer = load_pkcs11_signer(reference, env)
        return signer
    raise KeyError_(what="not a key reference", where=shown, remedy=REFERENCE_HELP)
