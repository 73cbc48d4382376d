"""The signing and provenance subcommands of `modelseal`: keygen, keys, sign, layout, record.

Kept apart from `modelseal.cli.main` because these import `cryptography` and `in_toto`, which the
commands a model's PEX shares with the tool must not need. Keys arrive only as references
(`--key file:...`, `pkcs11:...`, `env:NAME`); no option takes a secret.
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import re
import subprocess
import sys
from typing import TYPE_CHECKING

from modelseal.cli.args import KNOWN_DIGESTS_HELP, artifacts, read_known_digests
from modelseal.errors import EXIT_OK, SigningError, SpecError
from modelseal.format.atomic import write_atomic

if TYPE_CHECKING:
    from modelseal.keys.core import Signer

__all__ = [
    "keygen",
    "keygen_arguments",
    "keys",
    "keys_arguments",
    "layout",
    "layout_arguments",
    "record",
    "record_arguments",
    "sign",
    "sign_arguments",
]



REFERENCE = (
    "a key reference: file:PATH[?passphrase-file=PATH], pkcs11:... or env:NAME (docs/signing.md)"
)


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
        return dt.datetime.strptime(text, "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=dt.timezone.utc)
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


# -- record -----------------------------------------------------------------------------------

# `record start` leaves this in --out for `record stop`: step, key id and material digests only.
RECORD_STATE_SCHEMA = "modelseal.record-state/v1"
STEP_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_-]*\Z")


def record_arguments(parser: argparse.ArgumentParser) -> None:
    sub = parser.add_subparsers(dest="record_command", metavar="ACTION", required=True)
    key_help = "the trainer's key, which signs the link: " + REFERENCE
    materials_help = (
        "files and directories the step reads (data, code), relative to the current directory"
    )
    products_help = "files and directories the step writes (weights, metrics), relative paths"
    out_help = "where to write the link, <step>.<keyid8>.link (default: .)"
    train = sub.add_parser("train", help="run a command and record the signed train link")
    train.add_argument("--key", required=True, metavar="REF", help=key_help)
    train.add_argument("--materials", nargs="*", default=[], metavar="PATH", help=materials_help)
    train.add_argument("--products", nargs="*", default=[], metavar="PATH", help=products_help)
    train.add_argument("--out", default=".", metavar="DIR", help=out_help)
    train.add_argument(
        "cmd", nargs=argparse.REMAINDER, metavar="-- CMD ARGS...", help="the training command"
    )
    start = sub.add_parser(
        "start", help="hash the materials of a multi-command step; `record stop` signs the link"
    )
    step_help = "the step's name in the layout, e.g. train"
    start.add_argument("--step", required=True, metavar="NAME", help=step_help)
    start.add_argument(
        "--key", required=True, metavar="REF", help="checked now, used by stop; " + key_help
    )
    start.add_argument("--materials", nargs="*", default=[], metavar="PATH", help=materials_help)
    start.add_argument(
        "--out", default=".", metavar="DIR", help="where stop writes the link; start leaves its "
        "state file there"
    )
    stop = sub.add_parser("stop", help="hash the products and write <step>.<keyid8>.link")
    stop.add_argument("--step", required=True, metavar="NAME", help=step_help)
    stop.add_argument("--key", required=True, metavar="REF", help="the key `record start` took")
    stop.add_argument("--products", nargs="*", default=[], metavar="PATH", help=products_help)
    stop.add_argument("--out", default=".", metavar="DIR", help="the --out `record start` took")


def record(args: argparse.Namespace) -> int:
    if args.record_command == "start":
        return _record_start(args)
    if args.record_command == "stop":
        return _record_stop(args)
    return _record_train(args)


def _record_train(args: argparse.Namespace) -> int:
    from modelseal.keys.reference import load_signer
    from modelseal.signing.provenance import write_link

    # Before the run: a bad key should not cost a training run.
    with load_signer(args.key) as signer:
        command = list(args.cmd)
        if command and command[0] == "--":
            command = command[1:]
        if not command:
            raise SpecError(what="no command", where="record train", remedy="append -- CMD ARGS...")
        materials = artifacts(args.materials, "--materials")
        # No timeout: training runs for as long as it runs. Output streams straight through.
        returncode = subprocess.run(command).returncode
        if returncode != 0:
            raise SigningError(
                what=f"the command exited with {returncode}; no link was written",
                where=command[0],
                remedy="fix the training run and record it again",
            )
        products = artifacts(args.products, "--products")
        os.makedirs(args.out, exist_ok=True)
        path = write_link(
            "train",
            materials,
            products,
            signer,
            args.out,
            command=command,
            byproducts={"return-value": returncode},
        )
    print(path, file=sys.stderr)
    return EXIT_OK


def _state_path(args: argparse.Namespace) -> str:
    if not STEP_NAME.match(args.step):
        raise SpecError(
            what=f"{args.step!r} is not a step name",
            where="--step",
            remedy="use letters, digits, '-' and '_', e.g. --step train",
        )
    return os.path.join(args.out, f".modelseal-record.{args.step}.json")


def _record_start(args: argparse.Namespace) -> int:
    """Hash the materials now, before the job's commands can change them, and remember them (and
    the key's id, so that stop signs with the same key) in a state file next to the link-to-be.
    The key is loaded now so that a wrong PIN or passphrase fails before hours of work."""
    from modelseal.format.canonical import canonical_json
    from modelseal.keys.reference import load_signer

    state_path = _state_path(args)
    if os.path.lexists(state_path):
        raise SpecError(
            what=f"step {args.step!r} was already started and not stopped",
            where=state_path,
            remedy="run `modelseal record stop` first, or delete the file to start over",
        )
    with load_signer(args.key) as signer:
        key_id = signer.key_id
    materials = artifacts(args.materials, "--materials")
    os.makedirs(args.out, exist_ok=True)
    state = {
        "key_id": key_id,
        "materials": materials,
        "schema": RECORD_STATE_SCHEMA,
        "step": args.step,
    }
    write_atomic(state_path, canonical_json(state))
    print(state_path, file=sys.stderr)
    return EXIT_OK


def _read_state(path: str, step: str) -> tuple[str, dict[str, str]]:
    """(key id, materials) from a state file `record start` wrote; SpecError if it did not."""
    from modelseal.format.canonical import load_json

    try:
        with open(path, "rb") as f:
            document = load_json(f.read())
    except FileNotFoundError:
        raise SpecError(
            what=f"step {step!r} was not started",
            where=path,
            remedy="run `modelseal record start` with the same --step and --out first",
        ) from None
    except ValueError:
        document = None
    if (
        isinstance(document, dict)
        and document.get("schema") == RECORD_STATE_SCHEMA
        and document.get("step") == step
        and isinstance(document.get("key_id"), str)
        and isinstance(document.get("materials"), dict)
        and all(isinstance(k, str) and isinstance(v, str) for k, v in document["materials"].items())
    ):
        return document["key_id"], dict(document["materials"])
    raise SpecError(
        what="not a state file `modelseal record start` wrote",
        where=path,
        remedy="delete it and record the step again from `record start`",
    )


def _record_stop(args: argparse.Namespace) -> int:
    from modelseal.errors import KeyError_
    from modelseal.keys.reference import load_signer
    from modelseal.signing.provenance import write_link

    state_path = _state_path(args)
    key_id, materials = _read_state(state_path, args.step)
    with load_signer(args.key) as signer:
        if signer.key_id != key_id:
            raise KeyError_(
                what=f"record start used the key {key_id[:16]}, this is {signer.key_id[:16]}",
                where=signer.reference,
                remedy="pass the --key that `record start` was given",
            )
        products = artifacts(args.products, "--products")
        path = write_link(args.step, materials, products, signer, args.out)
    os.unlink(state_path)
    print(path, file=sys.stderr)
    return EXIT_OK
