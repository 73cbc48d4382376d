"""`modelseal seal` (internal): the package link, the SBOM and SLSA provenance, and `model.sig`
with the sign link, in one process.

The Pants rules used to run `link --step=package`, `attest` and `sign` as three tool processes
on the same sandbox inputs; each paid a Python start, the PEX's bootstrap and the imports of
`cryptography`, in-toto and securesystemslib (docs/benchmarks.md, "Issue #17, third round").
This command does the same three things, with the same functions and so the same bytes, in the
order the single steps had: the SBOM and its vulnerability gate first (a refused dependency
stops the build before anything is signed), then the package link, then the signature over the
bundle with both.

Paths: `--bundle` is the bundle's directory; `--bundle-materials` and `--products` are paths in
it (as the link records them), `--materials` are paths relative to the working directory (the
handler's sources and the lock, at their repository paths). With `--out-dir` every output is
written at its bundle path under that directory, as `attest` and `sign` do; the package link and
the evidence are also copied into the bundle's `provenance/`, because `model.sig` signs them.
"""

from __future__ import annotations

import argparse
import os
import shutil

from modelseal.cli.args import KNOWN_DIGESTS_HELP, REFERENCE, artifacts, read_known_digests
from modelseal.errors import EXIT_OK, SpecError

__all__ = ["seal", "seal_arguments"]


def seal_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--bundle", required=True, metavar="DIR", help="the unsigned bundle")
    parser.add_argument(
        "--key", required=True, metavar="REF",
        help="the package functionary's key (the package link and the SLSA provenance): "
        + REFERENCE,
    )
    parser.add_argument(
        "--release-key", required=True, metavar="REF", help="the key of model.sig: " + REFERENCE
    )
    parser.add_argument("--lock", required=True, metavar="PATH", help="the resolve's lock")
    parser.add_argument("--target", required=True, help="the model_artifact's address")
    parser.add_argument(
        "--known-digests", metavar="JSON", help=KNOWN_DIGESTS_HELP + " (paths in the bundle)"
    )
    parser.add_argument(
        "--materials", nargs="*", default=[], metavar="PATH",
        help="the package link's materials outside the bundle, relative to the working directory",
    )
    parser.add_argument(
        "--bundle-materials", nargs="*", default=[], metavar="PATH",
        help="the package link's materials inside the bundle (e.g. weights)",
    )
    parser.add_argument(
        "--products", nargs="*", default=[], metavar="PATH",
        help="the package link's products, paths in the bundle",
    )
    parser.add_argument(
        "--out-dir", metavar="DIR",
        help="write the outputs at their bundle paths under DIR (the build does, so that Pants "
        "can hard-link the weights into the sandbox)",
    )
    parser.add_argument("--advisories", metavar="DIR", help="OSV records: refuse a vulnerable "
                        "dependency before anything is signed (as `attest --advisories`)")
    parser.add_argument("--fail-on", default="high", metavar="SEVERITY",
                        help="with --advisories: low, medium, high (default), critical")


def seal(args: argparse.Namespace) -> int:
    from modelseal.cli.evidence import attest
    from modelseal.format.manifest import PROVENANCE_DIR
    from modelseal.keys.reference import load_signer
    from modelseal.signing.links import working_directory, write_link
    from modelseal.signing.modelsig import DEFAULT_IGNORE
    from modelseal.signing.release import sign_release

    if not os.path.isdir(args.bundle):
        raise SpecError(what="no such bundle directory", where=args.bundle, remedy="check --bundle")
    out = args.out_dir or args.bundle
    # 1. The SBOM and SLSA provenance (with the vulnerability gate): `attest`'s own code.
    attest(args)
    known = read_known_digests(args.known_digests)
    # The link's bundle paths are relative to the bundle, as `modelseal link` run there.
    with working_directory(args.bundle):
        inside = artifacts(args.bundle_materials, "--bundle-materials", known)
        products = artifacts(args.products, "--products", known)
    materials = {**artifacts(args.materials, "--materials"), **inside}
    provenance = os.path.join(out, PROVENANCE_DIR)
    os.makedirs(provenance, exist_ok=True)
    # 2. The package link.
    with load_signer(args.key) as signer:
        write_link("package", materials, products, signer, provenance)
    if args.out_dir:
        # model.sig covers the link and the evidence: put them where the signature reads.
        target = os.path.join(args.bundle, PROVENANCE_DIR)
        os.makedirs(target, exist_ok=True)
        for name in sorted(os.listdir(provenance)):
            shutil.copyfile(os.path.join(provenance, name), os.path.join(target, name))
    # 3. model.sig and the sign link.
    with load_signer(args.release_key) as signer:
        sign_release(args.bundle, signer, DEFAULT_IGNORE, known=known, out_dir=args.out_dir)
    return EXIT_OK
