"""The per-user development keyring: one ECDSA P-256 key per role, made once on first use.

`./pants package ::` must work on a fresh machine with no keys configured; what these keys sign
says `"trust": "development"`, which `modelseal verify` refuses unless asked to allow it.
"""

from __future__ import annotations

import fcntl
import os
import sys

from modelseal.errors import SpecError
from modelseal.keys.core import generate_private_key, write_key_pair

DEV_ROLES = ("owner", "train", "package", "evaluate", "sign")


def ensure_dev_keyring(directory: str) -> None:
    """Create the development keys missing in `directory` (absolute), under a lock."""
    if not os.path.isabs(directory):
        raise SpecError(what="the keyring directory must be absolute", where=directory,
                        remedy="pass an absolute directory")
    os.makedirs(directory, mode=0o700, exist_ok=True)
    with open(os.path.join(directory, ".lock"), "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # Two builds may start at once on a fresh machine.
        for role in DEV_ROLES:
            path = os.path.join(directory, f"{role}.pem")
            if not os.path.exists(path):
                write_key_pair(generate_private_key("ecdsa-p256"), path, None)
                print(f"modelseal: created the development key {path}", file=sys.stderr)
