"""The `modelseal` command line.

Each subcommand is one entry in `COMMANDS`. `manifest`, `archive`, `link` and the other commands
marked "(internal)" are steps the Pants rules run in their sandbox; people run the others.

Expected failures are `ModelsealError`s: they are printed as one line on stderr, prefixed with
`modelseal: error: `, and the process exits with the error's code (docs/formats.md, "Exit codes").

Commands are named here by module and function, and imported only when they run (or when their
own `--help` is asked for): `modelseal --version` and `modelseal --help` must answer at once on a
deployment host, without loading cryptography, in-toto and every command's code.
"""

from __future__ import annotations

import argparse
import importlib
import os
import sys
from collections.abc import Sequence
from typing import TYPE_CHECKING, Callable, cast

from modelseal import __version__
from modelseal.errors import EXIT_FAILURE, EXIT_OK, EXIT_USAGE, ModelsealError

if TYPE_CHECKING:
    # Never imported at run time (see above), but named here so that Pants' dependency
    # inference puts every command's module into the tool PEX and the tests' sandboxes.
    import modelseal.cli.audit
    import modelseal.cli.build
    import modelseal.cli.distribute
    import modelseal.cli.evidence
    import modelseal.cli.inspect
    import modelseal.cli.intake
    import modelseal.cli.record
    import modelseal.cli.runtime
    import modelseal.cli.seal
    import modelseal.cli.signing
    import modelseal.cli.verify  # noqa: F401

Handler = Callable[[argparse.Namespace], int]
Arguments = Callable[[argparse.ArgumentParser], None]


class Command:
    """A subcommand; `handler` and `arguments` are "module:function" names (a module of
    `modelseal.cli`), or functions of this module, resolved when the command is used. A plain
    class, not a dataclass: `dataclasses` (and `inspect`, which it imports) would cost `--version`
    a tenth of its time budget."""

    __slots__ = ("arguments", "description", "handler", "name", "summary")

    def __init__(
        self,
        name: str,
        summary: str,
        handler: Handler | str,
        arguments: Arguments | str | None = None,
        description: str | None = None,  # For the command's own --help; the summary by default.
    ) -> None:
        self.name = name
        self.summary = summary
        self.handler = handler
        self.arguments = arguments
        self.description = description

    def _resolve(self, target: Callable[..., object] | str) -> Callable[..., object]:
        if not isinstance(target, str):
            return target
        module, _, function = target.partition(":")
        return cast(
            "Callable[..., object]",
            getattr(importlib.import_module(f"modelseal.cli.{module}"), function),
        )

    def run(self, args: argparse.Namespace) -> int:
        return cast(Handler, self._resolve(self.handler))(args)

    def add_arguments(self, parser: argparse.ArgumentParser) -> None:
        if self.arguments is not None:
            cast(Arguments, self._resolve(self.arguments))(parser)


def _manifest_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--spec", required=True, metavar="SPEC.json", help="the bundle spec")
    parser.add_argument("--out", required=True, metavar="manifest.json", help="where to write")
    parser.add_argument(
        "--pex",
        metavar="model.pex",
        help="the built PEX: its wheels give the manifest's runtime.environments",
    )
    parser.add_argument(
        "--evaluation", metavar="evaluation.json", help="add this evaluation's summary"
    )


def _manifest(args: argparse.Namespace) -> int:
    import dataclasses

    from modelseal.cli.evaluation import check_interface, with_evaluation
    from modelseal.format.atomic import write_atomic
    from modelseal.format.spec import BundleSpec
    from modelseal.verify.environments import environments_from_wheels
    from modelseal.verify.hostcheck import read_pex_info

    with open(args.spec, "rb") as f:
        spec = BundleSpec.from_bytes(f.read(), source=args.spec)
    check_interface(spec, args.spec)
    if args.evaluation:
        spec = with_evaluation(spec, args.evaluation)
    manifest = spec.to_manifest()
    # From the wheels actually in the PEX, not the target's platforms: a lock that lacks some
    # platform's wheels would otherwise be recorded as running there.
    info = None if args.pex is None else read_pex_info(args.pex, args.pex)
    if info is not None:
        runtime = dataclasses.replace(
            manifest.runtime, environments=tuple(environments_from_wheels(info.wheels))
        )
        manifest = dataclasses.replace(manifest, runtime=runtime)
    write_atomic(args.out, manifest.to_bytes())
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
    from modelseal.format.archive import write_tar

    top = os.path.basename(os.path.normpath(os.path.abspath(args.bundle)))
    write_tar(args.bundle, args.out, top=top, mtime=args.mtime)
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
    Command(
        "intake",
        "(internal) copy large workspace files into Pants' store, each read once",
        "intake:intake",
        "intake:intake_arguments",
        "An internal step that the modelseal Pants rules run for a model's weights: hash each "
        "file of at least --min-size bytes while copying it into --store, remember its digest "
        "against its stat in --stat-cache, and print the digests as JSON (docs/benchmarks.md).",
    ),
    Command(
        "inspect",
        "show what a bundle or its tar contains, and who it claims signed it",
        "inspect:inspect",
        "inspect:inspect_arguments",
        "Show a bundle's manifest, its files, where its PEX's wheels let it run, and whether it "
        "is signed and by which keys, as the files claim: nothing is verified (that is "
        "`modelseal verify`) and nothing is extracted.",
    ),
    Command(
        "link",
        "(internal) write a signed in-toto link",
        "build:link",
        "build:link_arguments",
        "An internal step that the modelseal Pants rules run: records the materials and "
        "products of a build step in a signed in-toto link.",
    ),
    Command(
        "check-provenance",
        "(internal) check an imported training link",
        "build:check_provenance",
        "build:check_provenance_arguments",
        "An internal step that the modelseal Pants rules run when a training link was imported.",
    ),
    Command(
        "check-keys",
        "(internal) refuse revoked keys",
        "build:check_keys",
        "build:check_keys_arguments",
        "An internal step that the modelseal Pants rules run before signing.",
    ),
    Command(
        "dev-keyring",
        "(internal) create the development keys",
        "build:dev_keyring",
        "build:dev_keyring_arguments",
        "An internal step that the modelseal Pants rules run when no keys are configured.",
    ),
    Command(
        "attest",
        "(internal) write a bundle's CycloneDX SBOM and SLSA provenance",
        "evidence:attest",
        "evidence:attest_arguments",
        "An internal step that the modelseal Pants rules run before signing: write "
        "DIR/provenance/sbom.cdx.json (CycloneDX 1.6 ML-BOM) and DIR/provenance/build.intoto.jsonl "
        "(SLSA Provenance v1, DSSE, signed with the package key); with --advisories, refuse a "
        "dependency with a known vulnerability first (docs/sbom.md, docs/provenance.md).",
    ),
    Command(
        "audit-deps",
        "check a bundle's SBOM against OSV advisories in a local directory",
        "evidence:audit_deps",
        "evidence:audit_deps_arguments",
        "Match every PyPI component of BUNDLE's SBOM (a bundle directory, its tar, or the SBOM "
        "file) against the OSV records in --advisories; exit 17 naming the package, version, "
        "advisory and fixed version when one is rated --fail-on or higher (docs/sbom.md).",
    ),
    Command(
        "seal",
        "(internal) the package link, SBOM, SLSA provenance and model.sig in one process",
        "seal:seal",
        "seal:seal_arguments",
        "An internal step that the modelseal Pants rules run: `attest`, `link --step=package` "
        "and `sign` on the same bundle, in one process instead of three (docs/benchmarks.md).",
    ),
    Command(
        "sign",
        "sign a bundle and record the sign step",
        "signing:sign",
        "signing:sign_arguments",
        "Write DIR/provenance/sign.<keyid8>.link and DIR/model.sig (OpenSSF Model Signing v1.0) "
        "with the key REF; nothing is written if signing fails (docs/signing.md).",
    ),
    Command(
        "verify",
        "verify a bundle's signatures, provenance, digests and policy",
        "verify:verify",
        "verify:verify_arguments",
        "Check a bundle directory or tar before installing it: archive safety, model.sig, the "
        "in-toto provenance, every file against the manifest, this host's interpreter, and the "
        "policy; stops at the first failure with its own exit code (docs/verification.md).",
    ),
    Command(
        "push",
        "push a bundle to an OCI registry as a ModelPack artifact (docs/distribution.md)",
        "distribute:push",
        "distribute:push_arguments",
    ),
    Command(
        "pull",
        "fetch a bundle from an OCI registry, verify it, then write it into DIR",
        "distribute:pull",
        "distribute:pull_arguments",
    ),
    Command(
        "run",
        "verify a bundle, then run its model",
        "verify:run",
        "verify:run_arguments",
        "Verify as `modelseal verify` does, then run the verified model.pex with the arguments "
        "after `--` (e.g. `-- predict`); nothing runs when verification fails.",
    ),
    Command(
        "extract",
        "verify a bundle tar, then write out exactly the verified files (the safe `tar xf`)",
        "verify:extract",
        "verify:extract_arguments",
        "Verify BUNDLE.tar as `modelseal verify` does, then write the verified bytes to "
        "DIR/<name>-<version> (which must not exist). Nothing is written when verification "
        "fails. Use this instead of `tar xf`: tar readers differ, and only this one is the "
        "reader that was verified.",
    ),
    Command(
        "record",
        "record a signed in-toto link for a step run outside the build",
        "record:record",
        "record:record_arguments",
    ),
    Command(
        "layout",
        "create or rotate the owner-signed in-toto layout",
        "signing:layout",
        "signing:layout_arguments",
    ),
    Command("keygen", "generate a signing key", "signing:keygen", "signing:keygen_arguments"),
    Command(
        "runtime-sources",
        "(internal) copy the embedded runtime's sources",
        "runtime:runtime_sources",
        "runtime:runtime_sources_arguments",
        "Copy modelseal.embedded.runtime, modelseal.embedded.training and the modules they import "
        "into DIR/modelseal/: the plugin adds them to every model.pex when modelseal is "
        "installed from its wheel rather than built from sources in the repository.",
    ),
    Command(
        "guard-pex",
        "(internal) make model.pex refuse, in one line, an interpreter it was not built for",
        "runtime:guard_pex",
        "runtime:guard_pex_arguments",
        "Rewrite a model.pex so that it runs only on the Python versions given with --python: "
        "started by another interpreter, it prints one line naming the ones it needs and exits "
        "8, instead of re-executing under another Python from PATH (docs/formats.md).",
    ),
    Command(
        "keys", "export public keys, revoke keys", "signing:keys", "signing:keys_arguments"
    ),
    Command(
        "rebuild",
        "rebuild a commit and compare it with a published artifact",
        "audit:rebuild",
        "audit:rebuild_arguments",
        "Check out --commit in a new temporary clone (nothing of your working tree is used), "
        "package --target with the checkout's own ./pants (no cache, development keys), and "
        "compare every file of the result with --against, signatures excepted. Reproduced: exit "
        "0 and a signed in-toto statement in the report directory; otherwise exit 7, the files "
        "that differ with both digests, and diffoscope's reports (docs/reproducibility.md).",
    ),
    Command(
        "reproduce",
        "build model_artifact targets twice, apart, and compare (what `pants reproduce` runs)",
        "audit:reproduce",
        "audit:reproduce_arguments",
        "Copy the working tree twice (different paths, HOME, TZ, locale, user and umask), "
        "package the targets in each with no cache, and compare every bundle file by file, "
        "signatures excepted; exit 7 when any differs (docs/reproducibility.md).",
    ),
)


def build_parser(only: str | None = None) -> argparse.ArgumentParser:
    """The parser; with `only`, only that command's arguments are added (and its module
    imported): the others are listed with their summaries, which is all `--help` shows."""
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
        if only is None or only == command.name:
            command.add_arguments(sub)
        sub.set_defaults(command_spec=command)
    return parser


def _command_name(argv: Sequence[str]) -> str | None:
    """The subcommand argparse will pick: the first argument that is not an option."""
    return next((a for a in argv if not a.startswith("-")), None)


def main(argv: Sequence[str] | None = None) -> int:
    from modelseal.cli.passthrough import split_passthrough

    argv, passthrough = split_passthrough(sys.argv[1:] if argv is None else argv)
    parser = build_parser(only=_command_name(argv) or "")
    args = parser.parse_args(argv)
    command: Command | None = getattr(args, "command_spec", None)
    if command is None:
        parser.print_help(sys.stderr)
        return EXIT_USAGE
    if passthrough is not None:
        args.passthrough = passthrough
    try:
        return command.run(args)
    except ModelsealError as e:
        print(f"modelseal: error: {e}", file=sys.stderr)
        return e.exit_code
    except OSError as e:
        # A file that cannot be read or written: its name and the reason are the whole story.
        where = e.filename if e.filename is not None else command.name
        print(f"modelseal: error: {where}: {e.strerror or e}", file=sys.stderr)
        return EXIT_FAILURE
