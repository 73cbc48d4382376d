"""The entry point of every model's `model.pex`: `python model.pex info|predict`.

The PEX sits in its bundle directory next to `manifest.json` and `weights/`, so it finds both from
its own location, and a host needs nothing but Python to run a model. Before the handler (the
model's own code) is imported, every weight file the manifest lists is checked against its sha256
and size: a model never runs on weights that are not the ones it was packaged with, and a changed
file is named, not silently loaded.

The handler is what the manifest's `entry_point` names, `package.module` or `package.module:attr`:
a module, class or object with two callables (docs/formats.md, "Handler interface"):

    load(weights_dir: str) -> model       # once, with the absolute path of the bundle's weights/
    predict(model, inputs) -> outputs     # inputs: the JSON read from stdin; outputs: JSON values

With an interface declared, `predict` refuses input its schema rejects: one line, exit code 3,
and the model's code is never called. `evaluate` and `measure` are the build's smoke test and
evaluation (`modelseal.embedded.evaluation`).

Standard library only, and of modelseal only the stdlib-only modules `manifest`, `interface`,
`canonical`, `digests`, `errors` and the embedded ones: this runs inside every model's PEX,
whose only dependencies are the model's.
"""

from __future__ import annotations

import argparse
import contextlib
import importlib
import os
import sys
from collections.abc import Sequence
from typing import Any, BinaryIO

from modelseal.embedded.schema import validate
from modelseal.errors import (
    EXIT_FAILURE,
    EXIT_INTEGRITY,
    EXIT_OK,
    EXIT_SPEC,
    EXIT_USAGE,
    EXIT_WRONG_INTERPRETER,
    IntegrityError,
    ModelsealError,
    SpecError,
)
from modelseal.format.canonical import canonical_json, load_json
from modelseal.format.digests import check_tree
from modelseal.format.manifest import MANIFEST_PATH, WEIGHTS_DIR, Manifest, describe

__all__ = ["bundle_dir", "load_handler", "load_manifest", "main", "predict"]

PROG = "model.pex"


def bundle_dir() -> str:
    """The directory of the running PEX: `$PEX`, which the pex runtime sets to the PEX's own path,
    or `sys.argv[0]` when run some other way."""
    pex = os.environ.get("PEX") or sys.argv[0]
    return os.path.dirname(os.path.abspath(pex))


def load_manifest(directory: str) -> Manifest:
    path = os.path.join(directory, MANIFEST_PATH)
    try:
        with open(path, "rb") as f:
            data = f.read()
    except FileNotFoundError:
        raise IntegrityError(
            what="missing: model.pex runs from its bundle directory",
            where=path,
            remedy="run the model.pex inside the bundle directory, next to manifest.json "
            "and weights/, not a copy of it",
        ) from None
    return Manifest.from_bytes(data, source=path)


def _entry_point_error(entry_point: str, what: str) -> SpecError:
    return SpecError(
        what=what,
        where=f"entry point {entry_point!r}",
        remedy="fix the model_artifact target's entry_point, or the handler it names, "
        "and re-package",
    )


def load_handler(entry_point: str) -> Any:
    """Import the handler `entry_point` names and check it has callable `load` and `predict`."""
    module_name, _, attrs = entry_point.partition(":")
    try:
        handler: Any = importlib.import_module(module_name)
    except ModuleNotFoundError as e:
        # Only the handler's own module (or a parent package) missing is a naming error; a module
        # the handler imports that is missing is the handler's bug, shown with its traceback.
        if e.name is None or not (module_name + ".").startswith(e.name + "."):
            raise
        raise _entry_point_error(entry_point, f"no module named {e.name!r}") from None
    for attr in attrs.split(".") if attrs else ():
        try:
            handler = getattr(handler, attr)
        except AttributeError:
            raise _entry_point_error(entry_point, f"no attribute {attr!r}") from None
    for name in ("load", "predict"):
        if not callable(getattr(handler, name, None)):
            raise _entry_point_error(entry_point, f"the handler has no callable {name}()")
    return handler


def predict(directory: str, manifest: Manifest, stdin: BinaryIO, stdout: BinaryIO) -> None:
    """Verify the weights, load the model and answer one JSON document from `stdin`."""
    # Every file in weights/ listed, none a link, each with its sha256: a handler loads a
    # directory, so an unlisted file there would be loaded unchecked.
    expected = {entry.path: (entry.sha256, entry.size) for entry in manifest.weights}
    check_tree(directory, expected, below=WEIGHTS_DIR)
    try:
        inputs = load_json(stdin.read())
    except ValueError as e:
        raise SpecError(
            what=f"the input is not valid JSON: {e}",
            where="stdin",
            remedy="pass one JSON document on standard input",
        ) from None
    if manifest.interface is not None:
        problem = validate(inputs, manifest.interface.input_schema)
        if problem:
            raise SpecError(
                what=f"the input does not match the model's input schema: {problem}",
                where="stdin",
                remedy="send input of the shape `model.pex info` shows under interface",
            )
    handler = load_handler(manifest.entry_point)
    # The handler's own prints go to stderr: stdout carries only the predictions.
    with contextlib.redirect_stdout(sys.stderr):
        model = handler.load(os.path.join(directory, WEIGHTS_DIR))
        outputs = handler.predict(model, inputs)
    try:
        encoded = canonical_json(outputs)
    except ValueError as e:
        raise ModelsealError(
            what=f"predict() returned a value JSON cannot hold: {e}",
            where=f"entry point {manifest.entry_point!r}",
            remedy="return lists, dicts, strings, finite numbers, booleans and None",
        ) from None
    stdout.write(encoded)
    stdout.flush()


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog=PROG,
        description="Run the model packaged in this bundle. Weights are verified against "
        "manifest.json before the model's code is loaded.",
        # The codes a script running a model can act on (docs/formats.md, "Exit codes").
        epilog=f"exit codes: {EXIT_OK} success; {EXIT_FAILURE} a file could not be read, or the "
        f"outputs are not JSON; {EXIT_USAGE} bad arguments; {EXIT_SPEC} invalid "
        f"input (the JSON on stdin, the manifest, the entry point); {EXIT_INTEGRITY} a weight "
        f"file differs from the manifest; {EXIT_WRONG_INTERPRETER} started by a Python this "
        "model.pex was not built for (one line names the interpreters it needs; it never "
        "switches to another Python by itself)",
    )
    commands = parser.add_subparsers(dest="command", metavar="COMMAND")
    commands.add_parser("info", help="show the bundle's manifest: model, runtime, files, lineage")
    commands.add_parser(
        "predict",
        help="verify the weights, then read one JSON document on stdin and write the model's "
        "predictions as canonical JSON on stdout",
    )
    for name, text in (
        ("evaluate", "(the build's smoke test and evaluation) write evaluation.json"),
        ("measure", "(the build's measurement) time predictions, read peak memory"),
    ):
        command = commands.add_parser(name, help=text)
        command.add_argument("--config", required=True, help="the evaluation config (JSON)")
        command.add_argument("--out", required=True, help="where to write the result (JSON)")
        if name == "evaluate":
            command.add_argument(
                "--measure-out",
                help="also measure, in this process, and write the measured gates' bounds here",
            )
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = _parser()
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help(sys.stderr)
        return EXIT_USAGE
    try:
        directory = bundle_dir()
        manifest = load_manifest(directory)
        if args.command == "info":
            sys.stdout.write(describe(manifest))
        elif args.command in ("evaluate", "measure"):
            from modelseal.embedded.evaluation import run

            return run(args.command, directory, manifest, args.config, args.out,
                       getattr(args, "measure_out", None))
        else:
            sys.stdout.flush()
            predict(directory, manifest, sys.stdin.buffer, sys.stdout.buffer)
    except IntegrityError as e:
        print(f"{PROG}: refusing to load: {e.where}: {e.what}; {e.remedy}", file=sys.stderr)
        return e.exit_code
    except ModelsealError as e:
        print(f"{PROG}: error: {e}", file=sys.stderr)
        return e.exit_code
    return 0


if __name__ == "__main__":
    sys.exit(main())
