"""The `modelseal` command line.

Each subcommand is one entry in `COMMANDS`. `manifest`, `archive`, `link` and the other commands
marked "(internal)" are steps the Pants rules run in their sandbox; people run the others.

Expected failures are `ModelsealError`s: they are printed as one line on stderr, prefixed with
`modelseal: error: `, and the process exits with the error's code (docs/formats.md, "Exit codes").
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Callable

from modelseal import __version__
from modelseal.cli.audit import rebuild, rebuild_arguments, reproduce, reproduce_arguments
from modelseal.cli.build import (
    check_keys,
    check_keys_arguments,
    check_provenance,
    check_provenance_arguments,
    dev_keyring,
    dev_keyring_arguments,
    link,
    link_arguments,
)
from modelseal.cli.signing import (
    keygen,
    keygen_arguments,
    keys,
    keys_arguments,
    layout,
    layout_arguments,
    record,
    record_arguments,
    sign,
    sign_arguments,
)
from modelseal.cli.verify import (
    extract,
    extract_arguments,
    run,
    run_arguments,
    split_passthrough,
    verify,
    verify_arguments,
)
from modelseal.embedded.sources import copy_runtime_sources
from modelseal.errors import EXIT_FAILURE, EXIT_OK, EXIT_USAGE, ModelsealError
from modelseal.format.archive import write_tar
from modelseal.format.atomic import write_atomic
from modelseal.format.bundle import read_bundle
from modelseal.format.canonical import canonical_json
from modelseal.format.manifest import describe
from modelseal.format.spec import BundleSpec

Handler = Callable[[argparse.Namespace], int]
Arguments = Callable[[argparse.ArgumentParser], None]


@dataclass(frozen=True)
class Command:
    name: str
    summary: str
    handler: Handler
    arguments: Arguments | None = None
    description: str | None = None  # For the command's own --help; the summary by default.


def _manifest_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--spec", required=True, metavar="SPEC.json", help="the bundle spec")
    parser.add_argument("--out", required=True, metavar="manifest.json", help="where to write")


def _manifest(args: argparse.Namespace) -> int:
    with open(args.spec, "rb") as f:
        spec = BundleSpec.from_bytes(f.read(), source=args.spec)
    write_atomic(args.out, spec.to_manifest().to_bytes())
    return EXIT_OK


def _archive_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--bundle", required=True, metavar="DIR", help="the bundle directory")
    parser.add_argument("--out", required=True, metavar="FILE.tar", help="where to write")
    parser.add_argument(
        "--mtime",
        required=True,
        type=int,
        metavar="EPOCH",
        help="every entry's modification time, in seconds: the commit's SOURCE_DATE_EPOCH",
    )


def _archive(args: argparse.Namespace) -> int:
    top = os.path.basename(os.path.normpath(os.path.abspath(args.bundle)))
    write_tar(args.bundle, args.out, top=top, mtime=args.mtime)
    return EXIT_OK


def _inspect_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("bundle", metavar="BUNDLE_OR_TAR", help="a bundle directory or its .tar")
    parser.add_argument(
        "--json",
        action="store_true",
        help='print {"manifest": ..., "present": [{"path": ..., "size": ...}]} as canonical JSON',
    )


def _inspect(args: argparse.Namespace) -> int:
    manifest, present = read_bundle(args.bundle)
    if args.json:
        document = {
            "manifest": manifest.to_json(),
            "present": [{"path": p.path, "size": p.size} for p in present],
        }
        sys.stdout.buffer.write(canonical_json(document))
    else:
        sys.stdout.write(describe(manifest, {p.path: p.size for p in present}))
    sys.stdout.flush()
    return EXIT_OK


def _runtime_sources_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("out", metavar="DIR", help="where to write modelseal/...")


def _runtime_sources(args: argparse.Namespace) -> int:
    """Print each copied path: the plugin's process log then says what a model.pex embeds."""
    for path in copy_runtime_sources(args.out):
        print(path)
    return EXIT_OK


COMMANDS: tuple[Command, ...] = (
    Command(
        "manifest",
        "(internal) write a bundle's manifest from a bundle spec",
        _manifest,
        _manifest_arguments,
        "An internal step that the modelseal Pants rules run: write the canonical manifest.json "
        "of a bundle from the bundle spec the rules wrote (docs/formats.md). Files are not read: "
        "their digests come from the spec.",
    ),
    Command(
        "archive",
        "(internal) write a bundle directory as a deterministic tar",
        _archive,
        _archive_arguments,
        "An internal step that the modelseal Pants rules run: write a bundle directory as a tar "
        "whose bytes depend only on the files' paths and contents and on --mtime "
        "(docs/formats.md).",
    ),
    Command("inspect", "show what a bundle or its tar contains", _inspect, _inspect_arguments),
    Command(
        "link",
        "(internal) write a signed in-toto link",
        link,
        link_arguments,
        "An internal step that the modelseal Pants rules run: records the materials and "
        "products of a build step in a signed in-toto link.",
    ),
    Command(
        "check-provenance",
        "(internal) check an imported training link",
        check_provenance,
        check_provenance_arguments,
        "An internal step that the modelseal Pants rules run when a training link was imported.",
    ),
    Command(
        "check-keys",
        "(internal) refuse revoked keys",
        check_keys,
        check_keys_arguments,
        "An internal step that the modelseal Pants rules run before signing.",
    ),
    Command(
        "dev-keyring",
        "(internal) create the development keys",
        dev_keyring,
        dev_keyring_arguments,
        "An internal step that the modelseal Pants rules run when no keys are configured.",
    ),
    Command(
        "sign",
        "sign a bundle and record the sign step",
        sign,
        sign_arguments,
        "Write DIR/provenance/sign.<keyid8>.link and DIR/model.sig (OpenSSF Model Signing v1.0) "
        "with the key REF; nothing is written if signing fails (docs/signing.md).",
    ),
    Command(
        "verify",
        "verify a bundle's signatures, provenance, digests and policy",
        verify,
        verify_arguments,
        "Check a bundle directory or tar before installing it: archive safety, model.sig, the "
        "in-toto provenance, every file against the manifest, this host's interpreter, and the "
        "policy; stops at the first failure with its own exit code (docs/verification.md).",
    ),
    Command(
        "run",
        "verify a bundle, then run its model",
        run,
        run_arguments,
        "Verify as `modelseal verify` does, then run the verified model.pex with the arguments "
        "after `--` (e.g. `-- predict`); nothing runs when verification fails.",
    ),
    Command(
        "extract",
        "verify a bundle tar, then write out exactly the verified files (the safe `tar xf`)",
        extract,
        extract_arguments,
        "Verify BUNDLE.tar as `modelseal verify` does, then write the verified bytes to "
        "DIR/<name>-<version> (which must not exist). Nothing is written when verification "
        "fails. Use this instead of `tar xf`: tar readers differ, and only this one is the "
        "reader that was verified.",
    ),
    Command(
        "record",
        "record a signed in-toto link for a step run outside the build",
        record,
        record_arguments,
    ),
    Command("layout", "create or rotate the owner-signed in-toto layout", layout, layout_arguments),
    Command("keygen", "generate a signing key", keygen, keygen_arguments),
    Command("keys", "export public keys", keys, keys_arguments),
    Command(
        "runtime-sources",
        "(internal) copy the embedded runtime's sources",
        _runtime_sources,
        _runtime_sources_arguments,
        "Copy modelseal.embedded.runtime, modelseal.embedded.training and the modules they import "
        "into DIR/modelseal/: the plugin adds them to every model.pex when modelseal is "
        "installed from its wheel rather than built from sources in the repository.",
    ),
    Command(
        "rebuild",
        "rebuild a commit and compare it with a published artifact",
        rebuild,
        rebuild_arguments,
        "Check out --commit in a new temporary clone (nothing of your working tree is used), "
        "package --target with the checkout's own ./pants (no cache, development keys), and "
        "compare every file of the result with --against, signatures excepted. Reproduced: exit "
        "0 and a signed in-toto statement in the report directory; otherwise exit 7, the files "
        "that differ with both digests, and diffoscope's reports (docs/reproducibility.md).",
    ),
    Command(
        "reproduce",
        "build model_artifact targets twice, apart, and compare (what `pants reproduce` runs)",
        reproduce,
        reproduce_arguments,
        "Copy the working tree twice (different paths, HOME, TZ, locale, user and umask), "
        "package the targets in each with no cache, and compare every bundle file by file, "
        "signatures excepted; exit 7 when any differs (docs/reproducibility.md).",
    ),
)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="modelseal",
        description="Package, sign and verify machine-learning models as reproducible artifacts.",
    )
    parser.add_argument("--version", action="version", version=f"modelseal {__version__}")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND")
    for command in COMMANDS:
        sub = subparsers.add_parser(
            command.name, help=command.summary, description=command.description or command.summary
        )
        if command.arguments is not None:
            command.arguments(sub)
        sub.set_defaults(command_spec=command)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    argv, passthrough = split_passthrough(sys.argv[1:] if argv is None else argv)
    args = parser.parse_args(argv)
    command: Command | None = getattr(args, "command_spec", None)
    if command is None:
        parser.print_help(sys.stderr)
        return EXIT_USAGE
    if passthrough is not None:
        args.passthrough = passthrough
    try:
        return command.handler(args)
    except ModelsealError as e:
        print(f"modelseal: error: {e}", file=sys.stderr)
        return e.exit_code
    except OSError as e:
        # A file that cannot be read or written: its name and the reason are the whole story.
        where = e.filename if e.filename is not None else command.name
        print(f"modelseal: error: {where}: {e.strerror or e}", file=sys.stderr)
        return EXIT_FAILURE
