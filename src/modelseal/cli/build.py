"""Steps the Pants rules run in their sandboxes to record provenance; people do not run these.

`link` writes a signed in-toto link for files that already exist (the build's own steps run no
command worth recording), `dev-keyring` makes the per-user development keys on first use.
"""

from __future__ import annotations

import argparse
import json
import os

from modelseal.cli.args import KNOWN_DIGESTS_HELP, artifacts, read_known_digests
from modelseal.errors import EXIT_OK, SpecError


def link_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--step", required=True, help="the in-toto step name")
    parser.add_argument("--key", required=True, metavar="REF", help="the functionary's key")
    parser.add_argument("--out", required=True, metavar="DIR", help="where to write the link")
    parser.add_argument("--materials", nargs="*", default=[], metavar="PATH")
    parser.add_argument("--products", nargs="*", default=[], metavar="PATH")
    parser.add_argument(
        "--environment", metavar="JSON", help="a JSON object to record as the link's environment"
    )
    parser.add_argument("--known-digests", metavar="JSON", help=KNOWN_DIGESTS_HELP)
    parser.add_argument(
        "--byproducts",
        metavar="JSON",
        help="a JSON object to record as the link's byproducts (the evaluate step's measurements)",
    )


def link(args: argparse.Namespace) -> int:
    from modelseal.keys.reference import load_signer
    from modelseal.signing.provenance import write_link

    signer = load_signer(args.key)
    known = read_known_digests(args.known_digests)
    materials = artifacts(args.materials, "--materials", known)
    products = artifacts(args.products, "--products", known)
    environment = None
    if args.environment:
        with open(args.environment, encoding="utf-8") as f:
            environment = json.load(f)
    byproducts = None
    if args.byproducts:
        with open(args.byproducts, encoding="utf-8") as f:
            byproducts = json.load(f)
    os.makedirs(args.out, exist_ok=True)
    write_link(
        args.step, materials, products, signer, args.out,
        environment=environment, byproducts=byproducts,
    )
    return EXIT_OK


def check_provenance_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--bundle", required=True, metavar="DIR", help="the signed bundle")
    parser.add_argument("--owner-public-key", required=True, metavar="PEM")
    parser.add_argument(
        "--known-digests", metavar="JSON", help=KNOWN_DIGESTS_HELP + " (paths in the bundle)"
    )


def check_provenance(args: argparse.Namespace) -> int:
    """The build's own check of a bundle whose training link was imported: the link must be
    signed by a trusted train key and its products must be the packaged weights."""
    from modelseal.signing.provenance import verify_provenance

    known = read_known_digests(args.known_digests) if args.known_digests else None
    with open(args.owner_public_key, "rb") as f:
        verify_provenance(args.bundle, f.read(), known=known)
    return EXIT_OK


def check_keys_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--revocations", required=True, metavar="JSON", help="the revocation list")
    parser.add_argument("public_keys", nargs="+", metavar="PEM")


def check_keys(args: argparse.Namespace) -> int:
    """Refuse to sign with, or to trust, a revoked key: the build honours the revocation list
    that verifiers honour."""
    from modelseal.keys.core import PublicKey
    from modelseal.signing.provenance import load_revocations

    with open(args.revocations, "rb") as f:
        revoked = load_revocations(f.read(), args.revocations)
    for path in args.public_keys:
        key = PublicKey.from_file(path)
        if key.key_id in revoked:
            raise SpecError(
                what=f"the key {key.key_id[:16]} is revoked",
                where=path,
                remedy="configure its replacement in [modelseal] and drop it from trusted_keys "
                "(docs/operations.md, Key compromise)",
            )
    return EXIT_OK


def dev_keyring_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--dir", required=True, metavar="DIR", help="the keyring directory")


def dev_keyring(args: argparse.Namespace) -> int:
    """One ECDSA P-256 key per role, made once per user: `./pants package ::` works on a fresh
    machine, and what it signs says `"trust": "development"`."""
    from modelseal.keys.devkeyring import ensure_dev_keyring

    ensure_dev_keyring(args.dir)
    return EXIT_OK
