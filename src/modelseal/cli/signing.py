"""The signing and provenance subcommands of `modelseal`: keygen, keys, sign, layout (`record`
is `modelseal.cli.record`).

Kept apart from `modelseal.cli.main` because these import `cryptography` and `in_toto`, which the
commands a model's PEX shares with the tool must not need. Keys arrive only as references
(`--key file:...`, `pkcs11:...`, `env:NAME`); no option takes a secret.
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import sys
from typing import TYPE_CHECKING

from modelseal.cli.args import KNOWN_DIGESTS_HELP, REFERENCE, read_known_digests
from modelseal.errors import EXIT_OK, SpecError
from modelseal.format.atomic import write_atomic
from modelseal.format.canonical import TIMESTAMP_FORMAT

if TYPE_CHECKING:
    from modelseal.keys.core import Signer

__all__ = [
    "keygen",
    "keygen_arguments",
    "keys",
    "keys_arguments",
    "layout",
    "layout_arguments",
    "sign",
    "sign_arguments",
]



def _pair(text: str, option: str) -> tuple[str, str]:
    name, sep, value = text.partition("=")
    if not sep or not name or not value:
        raise SpecError(
            what=f"{text!r} is not NAME=VALUE", where=option, remedy=f"write {option} NAME=VALUE"
        )
    return name, value


def _read(path: str) -> bytes:
    with open(path, "rb") as f:
        return f.read()


def _expires(text: str) -> dt.datetime:
    try:
        return dt.datetime.strptime(text, TIMESTAMP_FORMAT).replace(tzinfo=dt.timezone.utc)
    except ValueError:
        raise SpecError(
            what=f"{text!r} is not a UTC time",
            where="--expires",
            remedy="e.g. 2027-11-26T00:00:00Z",
        ) from None


# -- keygen, keys -----------------------------------------------------------------------------


def keygen_arguments(parser: argparse.ArgumentParser) -> None:
    from modelseal.keys.core import KEY_TYPES

    parser.add_argument(
        "--type",
        required=True,
        choices=KEY_TYPES,
        dest="key_type",
        help="the key's algorithm; the release key (model.sig) must be ECDSA",
    )
    parser.add_argument(
        "--out",
        required=True,
        metavar="KEY.pem",
        help="the private key (mode 0600) in an existing directory; the public key goes next to "
        "it as KEY.pub",
    )
    parser.add_argument(
        "--passphrase-file",
        metavar="FILE",
        help="encrypt the key with the first line of FILE; when FILE does not exist and stdin is "
        "a terminal, ask for the passphrase (twice) and create FILE (mode 0600) with it",
    )


def _passphrase(args: argparse.Namespace) -> bytes | None:
    """The passphrase from --passphrase-file; on a terminal, a missing file is created from a
    prompt, so a first key needs no passphrase typed into a shell (and its history)."""
    from modelseal.keys.core import read_secret_file

    path = args.passphrase_file
    if not path:
        return None
    if os.path.lexists(path):
        return read_secret_file(path, f"--passphrase-file {path}", "passphrase")
    if not sys.stdin.isatty():
        raise SpecError(
            what="no such file, and stdin is not a terminal to ask for the passphrase",
            where=f"--passphrase-file {path}",
            remedy="write the passphrase on the file's first line first (e.g. `install -m 600 "
            "/dev/null FILE` and an editor), or run keygen on a terminal, which asks for it "
            "and creates the file",
        )
    import getpass

    first = getpass.getpass(f"passphrase for {args.out}: ").encode("utf-8")
    again = getpass.getpass("the same passphrase again: ").encode("utf-8")
    if not first or first != again:
        raise SpecError(
            what="the passphrases are empty or differ",
            where=f"--passphrase-file {path}",
            remedy="run keygen again and type the same non-empty passphrase twice",
        )
    # O_EXCL: never overwrite a passphrase file created meanwhile; 0600 from the start.
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as f:
        f.write(first + b"\n")
    print(f"modelseal: wrote the passphrase to {path} (mode 0600)", file=sys.stderr)
    return first


def _existing_directory(path: str, option: str) -> None:
    directory = os.path.dirname(os.path.abspath(path))
    if not os.path.isdir(directory):
        raise SpecError(
            what=f"the directory {directory} does not exist",
            where=f"{option} {path}",
            remedy=f"create it first (`mkdir -m 700 -p {directory}`), or choose another {option}",
        )


def keygen(args: argparse.Namespace) -> int:
    from modelseal.keys.core import (
        generate_private_key,
        key_id_of,
        public_path_for,
        write_key_pair,
    )
    from modelseal.keys.ids import key_id_line

    _existing_directory(args.out, "--out")
    for path in (args.out, public_path_for(args.out)):
        if os.path.lexists(path):
            raise SpecError(
                what="refusing to overwrite an existing key file",
                where=path,
                remedy="choose another --out, or move the old key away first",
            )
    if args.passphrase_file:
        _existing_directory(args.passphrase_file, "--passphrase-file")
    created = args.passphrase_file and not os.path.lexists(args.passphrase_file)
    passphrase = _passphrase(args)
    try:
        key = generate_private_key(args.key_type)
        private_path, public_path = write_key_pair(key, args.out, passphrase)
    except BaseException:
        if created and os.path.lexists(args.passphrase_file):
            os.unlink(args.passphrase_file)  # nothing half written
        raise
    key_id = key_id_of(key.public_key())
    print(f"{private_path} {public_path} key id {key_id_line(key_id)}")
    return EXIT_OK


def keys_arguments(parser: argparse.ArgumentParser) -> None:
    from modelseal.cli.revoke import revoke_arguments

    sub = parser.add_subparsers(dest="keys_command", metavar="ACTION", required=True)
    export = sub.add_parser("export-public", help="write <role>.pub for each --key ROLE=REF")
    export.add_argument(
        "--key",
        action="append",
        required=True,
        metavar="ROLE=REF",
        help="a role name (owner, train, package, release, ...) and a key reference; repeat",
    )
    export.add_argument(
        "--dev-keyring",
        metavar="DIR",
        help="first create the development keyring in DIR (absolute) if it does not exist",
    )
    export.add_argument("dir", metavar="DIR", help="where to write ROLE.pub (created if needed)")
    revoke = sub.add_parser(
        "revoke",
        help="add a key to a revocation list (canonical JSON, each key once)",
        description="Add a key to a modelseal.revocations/v1 list, which `modelseal verify "
        "--revocations` and the build read (docs/operations.md, 'Key compromise').",
    )
    revoke_arguments(revoke)


def keys(args: argparse.Namespace) -> int:
    if args.keys_command == "revoke":
        from modelseal.cli.revoke import revoke

        return revoke(args)
    from modelseal.keys.ids import key_id_line
    from modelseal.keys.reference import load_signer

    if args.dev_keyring:
        from modelseal.keys.devkeyring import ensure_dev_keyring

        ensure_dev_keyring(args.dev_keyring)
    os.makedirs(args.dir, exist_ok=True)
    for item in args.key:
        role, reference = _pair(item, "--key")
        if not role.replace("-", "").replace("_", "").isalnum():
            raise SpecError(
                what=f"role {role!r} is not a name", where="--key", remedy="use e.g. owner=REF"
            )
        with load_signer(reference) as signer:
            path = os.path.join(args.dir, f"{role}.pub")
            write_atomic(path, signer.public_key_pem)
            print(f"{path} key id {key_id_line(signer.key_id)}")
    return EXIT_OK


# -- sign -------------------------------------------------------------------------------------


def sign_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--bundle", required=True, metavar="DIR", help="the bundle directory")
    parser.add_argument(
        "--key",
        required=True,
        metavar="REF",
        help="the release key (ECDSA), which signs model.sig and the sign link: "
        "file:PATH[?passphrase-file=PATH], pkcs11:... or env:NAME (docs/signing.md)",
    )
    parser.add_argument(
        "--ignore",
        action="append",
        default=[],
        metavar="PATH",
        help="a bundle path model.sig should not cover (recorded in the signature)",
    )
    parser.add_argument(
        "--known-digests", metavar="JSON", help=KNOWN_DIGESTS_HELP + " (paths in the bundle)"
    )
    parser.add_argument(
        "--out-dir", metavar="DIR",
        help="write the outputs at their bundle paths under DIR instead of into the bundle, which "
        "is then only read (the build does, so Pants can hard-link the weights)",
    )


def sign(args: argparse.Namespace) -> int:
    from modelseal.keys.reference import load_signer
    from modelseal.signing.modelsig import DEFAULT_IGNORE
    from modelseal.signing.release import sign_release

    if not os.path.isdir(args.bundle):
        raise SpecError(what="no such bundle directory", where=args.bundle, remedy="check --bundle")
    with load_signer(args.key) as signer:
        sig, link = sign_release(
            args.bundle,
            signer,
            (*DEFAULT_IGNORE, *args.ignore),
            known=read_known_digests(args.known_digests),
            out_dir=args.out_dir,
        )
    print(f"{sig}\n{link}")
    return EXIT_OK


# -- layout -----------------------------------------------------------------------------------


def layout_arguments(parser: argparse.ArgumentParser) -> None:
    sub = parser.add_subparsers(dest="layout_command", metavar="ACTION", required=True)
    create = sub.add_parser("create", help="write a new owner-signed layout")
    owner_help = "the owner's private key, which signs the layout: " + REFERENCE
    create.add_argument("--owner-key", required=True, metavar="REF", help=owner_help)
    create.add_argument(
        "--step",
        action="append",
        required=True,
        metavar="STEP=PUB[,PUB...]",
        help="a step (train, package, sign) and the public key files allowed to sign its links; "
        "repeat for each step",
    )
    threshold_help = "how many of the step's keys must sign it (default 1); repeatable"
    create.add_argument(
        "--threshold", action="append", default=[], metavar="STEP=N", help=threshold_help
    )
    create.add_argument(
        "--expires",
        required=True,
        metavar="YYYY-MM-DDTHH:MM:SSZ",
        help="when the layout stops verifying (UTC)",
    )
    create.add_argument("--out", required=True, metavar="root.layout", help="where to write it")
    rotate = sub.add_parser("rotate", help="change an existing layout's keys or expiry")
    rotate.add_argument("--layout", required=True, metavar="OLD", help="the current layout")
    rotate.add_argument("--owner-key", required=True, metavar="REF", help=owner_help)
    rotate.add_argument(
        "--add",
        action="append",
        default=[],
        metavar="STEP=PUB",
        help="trust one more public key file for STEP; repeatable",
    )
    rotate.add_argument(
        "--remove",
        action="append",
        default=[],
        metavar="STEP=KEYID",
        help="stop trusting a key for STEP: its key id, or its first 8 characters; repeatable",
    )
    rotate.add_argument(
        "--threshold", action="append", default=[], metavar="STEP=N", help=threshold_help
    )
    rotate.add_argument(
        "--expires", metavar="YYYY-MM-DDTHH:MM:SSZ", help="a new expiry (UTC); default: unchanged"
    )
    rotate.add_argument(
        "--out", required=True, metavar="NEW", help="where to write the new layout (may be OLD)"
    )


def _thresholds(items: list[str]) -> dict[str, int]:
    result = {}
    for item in items:
        step, value = _pair(item, "--threshold")
        if not value.isdigit():
            raise SpecError(what=f"{value!r} is not a number", where="--threshold", remedy="N>=1")
        result[step] = int(value)
    return result


def layout(args: argparse.Namespace) -> int:
    from modelseal.keys.reference import load_signer

    with load_signer(args.owner_key) as owner:
        data = _layout_bytes(args, owner)
    directory = os.path.dirname(os.path.abspath(args.out))
    os.makedirs(directory, exist_ok=True)
    write_atomic(args.out, data)
    print(args.out)
    return EXIT_OK


def _layout_bytes(args: argparse.Namespace, owner: Signer) -> bytes:
    from modelseal.signing.provenance import create_layout, rotate_layout

    if args.layout_command == "create":
        functionaries: dict[str, list[bytes]] = {}
        for item in args.step:
            step, paths = _pair(item, "--step")
            functionaries.setdefault(step, []).extend(_read(p) for p in paths.split(","))
        data = create_layout(
            owner, functionaries, _thresholds(args.threshold), expires=_expires(args.expires)
        )
    else:
        add: dict[str, list[bytes]] = {}
        for item in args.add:
            step, path = _pair(item, "--add")
            add.setdefault(step, []).append(_read(path))
        remove: dict[str, list[str]] = {}
        for item in args.remove:
            step, key_id = _pair(item, "--remove")
            remove.setdefault(step, []).append(key_id)
        data = rotate_layout(
            _read(args.layout),
            owner,
            add=add,
            remove=remove,
            thresholds=_thresholds(args.threshold),
            expires=_expires(args.expires) if args.expires else None,
            source=args.layout,
        )
    return data
