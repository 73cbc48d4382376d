"""The `modelseal` command line.

Each subcommand is one entry in `COMMANDS`; subcommands that are not implemented yet exist so that
`--help` shows the whole tool, and fail with exit code 2 and a message saying so.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Callable

from modelseal import __version__

EXIT_OK = 0
EXIT_USAGE = 2  # argparse's own code for usage errors; also "not available in this version".

Handler = Callable[[argparse.Namespace], int]


@dataclass(frozen=True)
class Command:
    name: str
    summary: str
    handler: Handler | None = None  # None: planned, not yet available.


COMMANDS: tuple[Command, ...] = (
    Command("assemble", "assemble a model bundle from a runtime PEX, weights and metadata"),
    Command("inspect", "show what a bundle or its tar contains"),
    Command("sign", "sign a bundle and record the sign step"),
    Command("verify", "verify a bundle's signatures, provenance, digests and policy"),
    Command("run", "verify a bundle, then run its model"),
    Command("record", "record a signed in-toto link for a step run outside the build"),
    Command("layout", "create or rotate the owner-signed in-toto layout"),
    Command("keygen", "generate a signing key"),
    Command("keys", "export public keys"),
    Command("rebuild", "rebuild a commit and compare it with a published artifact"),
)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="modelseal",
        description="Package, sign and verify machine-learning models as reproducible artifacts.",
    )
    parser.add_argument("--version", action="version", version=f"modelseal {__version__}")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND")
    for command in COMMANDS:
        sub = subparsers.add_parser(command.name, help=command.summary, description=command.summary)
        sub.set_defaults(command_spec=command)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    # Unknown arguments are tolerated only long enough for "not yet available" to win over them.
    args, unknown = parser.parse_known_args(argv)
    command: Command | None = getattr(args, "command_spec", None)
    if command is None:
        parser.print_help(sys.stderr)
        return EXIT_USAGE
    if command.handler is None:
        print(
            f"modelseal {command.name}: not yet available in modelseal {__version__}",
            file=sys.stderr,
        )
        return EXIT_USAGE
    if unknown:
        parser.error(f"unrecognized arguments: {' '.join(unknown)}")
    return command.handler(args)
