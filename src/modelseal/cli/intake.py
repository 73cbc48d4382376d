"""`modelseal intake` (internal): large workspace files into Pants' store, read once.

The Pants rules run it for a model's weights instead of letting Pants snapshot them
(modelseal.format.intake says why); it prints one JSON object on stdout, the files of at least
`--min-size` bytes with their digests, which the rules turn into a Pants digest. Smaller files are
left to Pants.
"""

from __future__ import annotations

import argparse
import json
import sys

from modelseal.errors import EXIT_OK

__all__ = ["intake", "intake_arguments"]

INTAKE_SCHEMA = "modelseal.intake/v1"


def intake_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--root", required=True, metavar="DIR", help="the directory PATHs are relative to"
    )
    parser.add_argument(
        "--store", required=True, metavar="DIR",
        help="the content-addressed directory to copy into, as <hex[:2]>/<hex>",
    )
    parser.add_argument(
        "--stat-cache", required=True, metavar="DIR",
        help="where the digests of files already read are kept, against their stat",
    )
    parser.add_argument(
        "--min-size", required=True, type=int, metavar="BYTES",
        help="files smaller than this are left out of the output",
    )
    parser.add_argument(
        "--follow-links", action="store_true",
        help="read the file a symbolic link names (default: a link is an error)",
    )
    parser.add_argument("paths", nargs="*", metavar="PATH", help="files, relative to --root")


def intake(args: argparse.Namespace) -> int:
    from modelseal.format.intake import ingest_files

    files = ingest_files(
        args.root, list(args.paths), args.store, args.stat_cache, args.min_size,
        follow_links=args.follow_links,
    )
    json.dump(
        {"schema": INTAKE_SCHEMA, "files": [f.to_json() for f in files]},
        sys.stdout, sort_keys=True,
    )
    sys.stdout.write("\n")
    return EXIT_OK
