"""`modelseal record`: signed in-toto links for steps run outside the build (`record train`
runs one command; `record start` and `record stop` bracket a multi-command job).

Its own module, apart from the other signing commands (`modelseal.cli.signing`), because its
state file and the start/stop protocol are a concern of their own. Keys arrive only as
references; no option takes a secret.
"""

from __future__ import annotations

import argparse
import os
import re
import subprocess
import sys

from modelseal.cli.args import REFERENCE, artifacts
from modelseal.errors import EXIT_OK, SigningError, SpecError
from modelseal.format.atomic import write_atomic

__all__ = ["record", "record_arguments"]

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
