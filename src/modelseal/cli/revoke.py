"""`modelseal keys revoke`: add a key to a revocation list that verifiers read (`modelseal verify
--revocations FILE`, `[modelseal].revocations` in the build).

The list is canonical JSON (`modelseal.revocations/v1`, sorted, no duplicates), so two operators
who revoke the same keys in any order write the same bytes, and a diff of it in review shows
exactly which keys were added. It is rewritten atomically: a verifier never reads half a list.
"""

from __future__ import annotations

import argparse
import os

from modelseal.errors import EXIT_OK, SpecError
from modelseal.format.atomic import write_atomic
from modelseal.keys.ids import KEY_ID_PREFIX, is_key_id, key_id_line

MAX_LIST_SIZE = 16 * 1024 * 1024


def revoke_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "key",
        metavar="KEYID_OR_PUB",
        help="the key to revoke: its full key id (64 hex characters, as `modelseal verify "
        "--json`, `keygen` and `keys export-public` print it) or its public key file (PEM)",
    )
    parser.add_argument(
        "--list",
        required=True,
        metavar="FILE",
        dest="revocations",
        help="the revocation list to add it to (created when it does not exist)",
    )


def _key_id(text: str) -> str:
    """The full key id `text` names: itself, or the id of the public key file it names. A
    short id is refused: the list must name exactly one key, and nothing here can tell which
    key a prefix was cut from."""
    if os.path.isfile(text):
        from modelseal.keys.core import PublicKey

        with open(text, "rb") as f:
            return PublicKey.from_pem(f.read(MAX_LIST_SIZE), source=text).key_id
    if is_key_id(text):
        return text
    what = (
        "a shortened key id"
        if KEY_ID_PREFIX.match(text)
        else "neither a key id (64 lowercase hex characters) nor a public key file"
    )
    raise SpecError(
        what=what,
        where=f"KEYID_OR_PUB {text}",
        remedy="pass the full key id (`modelseal verify --json` shows signers in full; keygen "
        "and `keys export-public` print it) or the key's .pub file",
    )


def revoke(args: argparse.Namespace) -> int:
    from modelseal.signing.provenance import load_revocations, revocations_bytes

    key_id = _key_id(args.key)
    revoked: frozenset[str] = frozenset()
    if os.path.lexists(args.revocations):
        with open(args.revocations, "rb") as f:
            revoked = load_revocations(f.read(MAX_LIST_SIZE + 1), args.revocations)
    if key_id in revoked:
        print(f"key {key_id_line(key_id)} is already revoked in {args.revocations} "
              f"({len(revoked)} keys)")
        return EXIT_OK
    directory = os.path.dirname(os.path.abspath(args.revocations))
    if not os.path.isdir(directory):
        raise SpecError(
            what=f"the directory {directory} does not exist",
            where=f"--list {args.revocations}",
            remedy="create it first, or choose another --list",
        )
    write_atomic(args.revocations, revocations_bytes({*revoked, key_id}))
    print(f"revoked key {key_id_line(key_id)} in {args.revocations} ({len(revoked) + 1} keys); "
          "distribute the list to every verifier")
    return EXIT_OK
