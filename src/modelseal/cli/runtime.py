"""`modelseal runtime-sources DIR` (internal): what the plugin embeds in every model.pex when the
tool is installed from its wheel (modelseal.embedded.sources); `modelseal guard-pex PEX`
(internal): the interpreter guard in front of model.pex's bootstrap (modelseal.format.pexguard)."""

from __future__ import annotations

import argparse

from modelseal.embedded.sources import copy_runtime_sources
from modelseal.errors import EXIT_OK


def runtime_sources_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("out", metavar="DIR", help="where to write modelseal/...")


def runtime_sources(args: argparse.Namespace) -> int:
    """Print each copied path: the plugin's process log then says what a model.pex embeds."""
    for path in copy_runtime_sources(args.out):
        print(path)
    return EXIT_OK


def guard_pex_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("pex", metavar="PEX", help="the model.pex to rewrite in place")
    parser.add_argument(
        "--python", action="append", required=True, metavar="MAJOR.MINOR",
        help="a Python version the PEX runs on (repeat for each): what its interpreter "
        "constraints allow",
    )
    parser.add_argument(
        "--constraint", action="append", default=[], metavar="CONSTRAINT",
        help="an interpreter constraint as the manifest records it, for the error message",
    )


def guard_pex(args: argparse.Namespace) -> int:
    """The guard also needs where the PEX's wheels run: read here from the PEX itself, by the
    function that writes the manifest's `runtime.environments`, so the two always agree."""
    from modelseal.format.pexguard import guard_pex as guard
    from modelseal.verify.environments import environments_from_wheels
    from modelseal.verify.hostcheck import read_pex_info

    info = read_pex_info(args.pex, args.pex)
    environments = environments_from_wheels(info.wheels) if info is not None else []
    guard(args.pex, args.python, args.constraint, environments)
    return EXIT_OK
