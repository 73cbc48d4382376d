"""How key ids are written: in full (64 hex, the sha256 of the DER public key) in every JSON
document, revocation list and policy; as one short form, the first 16 hex characters, in text
meant for people. in-toto names link files `<step>.<first 8>.link`: that is in-toto's convention,
kept for interoperability, not a third way of naming a key (docs/signing.md, "Key ids").

Standard library only, so that text output needs no cryptography import.
"""

from __future__ import annotations

import re

SHORT_KEY_ID_LENGTH = 16
KEY_ID = re.compile(r"[0-9a-f]{64}\Z")
KEY_ID_PREFIX = re.compile(r"[0-9a-f]{8,64}\Z")


def short_key_id(key_id: str) -> str:
    """The form text output uses for the key id `key_id`."""
    return key_id[:SHORT_KEY_ID_LENGTH]


def is_key_id(text: str) -> bool:
    """Whether `text` is a full key id: 64 lowercase hex characters."""
    return bool(KEY_ID.match(text))


def key_id_line(key_id: str) -> str:
    """`<short> (<full>)`: how a command that makes or names a key (keygen, keys export-public,
    keys revoke) shows its id once in full, for revocation lists and policies."""
    return f"{short_key_id(key_id)} ({key_id})"
