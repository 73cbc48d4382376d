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

DEV_ROLES = ("owner", "train", "package", "release")
# Keyrings made before the release key had one name called it `sign`: renamed on first use.
RENAMED = {"sign": "release"}


def ensure_dev_keyring(directory: str) -> None:
    """Create the development keys missing in `directory` (absolute), under a lock."""
    if not os.path.isabs(directory):
        raise SpecError(what="the keyring directory must be absolute", where=directory,
                        remedy="pass an absolute directory")
    os.makedirs(directory, mode=0o700, exist_ok=True)
    with open(os.path.join(directory, ".lock"), "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # Two builds may start at once on a fresh machine.
        for old, new in RENAMED.items():
            _rename_role(directory, old, new)
        for role in DEV_ROLES:
            path = os.path.join(directory, f"{role}.pem")
            if not os.path.exists(path):
                write_key_pair(generate_private_key("ecdsa-p256"), path, None)
                print(f"modelseal: created the development key {path}", file=sys.stderr)


def _rename_role(directory: str, old: str, new: str) -> None:
    """Keep an existing development key under its new role name (`sign.pem` -> `release.pem`),
    so that bundles built before and after the rename carry the same development key."""
    old_pem, new_pem = os.path.join(directory, f"{old}.pem"), os.path.join(directory, f"{new}.pem")
    if os.path.exists(old_pem) and not os.path.exists(new_pem):
        for suffix in (".pub", ".pem"):  # the private key last: it decides "renamed"
            source = os.path.join(directory, f"{old}{suffix}")
            if os.path.exists(source):
                os.replace(source, os.path.join(directory, f"{new}{suffix}"))
