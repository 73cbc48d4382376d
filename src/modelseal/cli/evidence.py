"""`modelseal attest` (internal: the build's SBOM and SLSA provenance) and `modelseal
audit-deps` (the vulnerability gate over a bundle's SBOM, docs/sbom.md).

Kept apart from the other command modules so that `verify` never imports cyclonedx: only
`attest` generates an SBOM; `audit-deps` and verify read it as plain JSON.
"""

from __future__ import annotations

import argparse
import os
import sys

from modelseal.cli.args import KNOWN_DIGESTS_HELP, read_known_digests
from modelseal.errors import EXIT_OK, SpecError

__all__ = ["attest", "attest_arguments", "audit_deps", "audit_deps_arguments"]


def _gate_arguments(parser: argparse.ArgumentParser, required: bool) -> None:
    parser.add_argument(
        "--advisories", required=required, metavar="DIR",
        help="a directory of OSV JSON records (e.g. OSV's PyPI export, unpacked); nothing is "
        "fetched",
    )
    parser.add_argument(
        "--fail-on", default="high", metavar="SEVERITY",
        help="fail on an advisory rated this or higher: low, medium, high (default), critical",
    )


def attest_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--bundle", required=True, metavar="DIR", help="the unsigned bundle")
    parser.add_argument("--key", required=True, metavar="REF", help="the package functionary's key")
    parser.add_argument("--lock", required=True, metavar="PATH", help="the resolve's lock")
    parser.add_argument("--target", required=True, help="the model_artifact's address")
    parser.add_argument("--known-digests", metavar="JSON", help=KNOWN_DIGESTS_HELP)
    parser.add_argument(
        "--out-dir", metavar="DIR",
        help="write the outputs at their bundle paths under DIR instead of into the bundle, which "
        "is then only read (the build does, so Pants can hard-link the weights)",
    )
    _gate_arguments(parser, required=False)


def _read(path: str, option: str) -> bytes:
    try:
        with open(path, "rb") as f:
            return f.read()
    except OSError as e:
        raise SpecError(what=f"cannot be read ({e.strerror})", where=path,
                        remedy=f"pass an existing file as {option}") from None


def attest(args: argparse.Namespace) -> int:
    from modelseal.cli.deferred import defer_rfc3987_syntax

    defer_rfc3987_syntax()  # before the SBOM's validator imports jsonschema
    from modelseal.keys.reference import load_signer
    from modelseal.signing.evidence import write_evidence

    gate = None
    if args.advisories:
        from modelseal.verify.advisories import severity_name

        threshold = severity_name(args.fail_on, "--fail-on")

        def gate(sbom: bytes) -> None:
            _audit(sbom, f"{args.bundle}/provenance/sbom.cdx.json", args.advisories, threshold)

    with load_signer(args.key) as signer:
        write_evidence(
            args.bundle, signer, lock=_read(args.lock, "--lock"), lock_path=args.lock,
            target=args.target, known=read_known_digests(args.known_digests), gate=gate,
            out_dir=args.out_dir,
        )
    return EXIT_OK


def _audit(sbom: bytes, source: str, advisories: str, threshold: str) -> list[str]:
    from modelseal.verify.advisories import gate, load_advisories, match, sbom_packages

    findings = match(sbom_packages(sbom, source), load_advisories(advisories))
    return [f.line() for f in gate(findings, threshold, f"{source}: components")]


def audit_deps_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "bundle", metavar="BUNDLE",
        help="a bundle directory or tar, or a CycloneDX JSON SBOM file",
    )
    _gate_arguments(parser, required=True)


def audit_deps(args: argparse.Namespace) -> int:
    from modelseal.format.fields import SBOM_PATH
    from modelseal.verify.advisories import severity_name

    threshold = severity_name(args.fail_on, "--fail-on")
    path = args.bundle
    if os.path.isdir(path):
        source = os.path.join(path, *SBOM_PATH.split("/"))
        sbom = _read(source, "BUNDLE")
    elif path.endswith(".tar"):
        from modelseal.format.archive import read_tar_members

        listing = read_tar_members(path, read=(SBOM_PATH,))
        source = f"{path}: {listing.top}/{SBOM_PATH}"
        data = listing.contents.get(SBOM_PATH)
        if data is None:
            raise SpecError(what="no SBOM in the bundle", where=source,
                            remedy="re-package the model with this version of modelseal")
        sbom = data
    else:
        source, sbom = path, _read(path, "BUNDLE")
    below = _audit(sbom, source, args.advisories, threshold)
    for line in below:
        print(f"below {threshold}: {line}")
    print(f"audit-deps: {source}: no advisory rated {threshold} or higher "
          f"({len(below)} lower)", file=sys.stdout)
    return EXIT_OK
