"""`modelseal runtime-sources DIR` (internal): what the plugin embeds in every model.pex when the
tool is installed from its wheel (modelseal.embedded.sources)."""

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
