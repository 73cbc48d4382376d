"""`modelseal push` and `modelseal pull`, and the `oci://` side of `modelseal verify`.

A registry is one more place a bundle travels through, so what comes back from one gets exactly
the checks a bundle directory gets (modelseal.verify.checks), on a private copy: `pull` moves the
copy into DIR only after every check passed, `verify oci://` removes it. oras (and requests,
which it needs) is imported only here, only when a registry is named.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import sys
from collections.abc import Callable, Iterator

from modelseal.errors import EXIT_OK, SpecError
from modelseal.format.safe_extract import Limits, private_directory, remove_tree

__all__ = ["local_copy", "pull", "pull_arguments", "push", "push_arguments"]

OCI_PREFIX = "oci://"


def _registry_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--plain-http",
        action="store_true",
        help="talk HTTP, not HTTPS, to the registry (a registry on localhost; as oras' "
        "--plain-http and skopeo's --tls-verify=false)",
    )
    parser.add_argument(
        "--registry-config",
        metavar="CONFIG.json",
        help="a docker config.json with the registry's credentials (default: "
        "$DOCKER_CONFIG/config.json, else ~/.docker/config.json); never pass secrets as arguments",
    )


def push_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("bundle", metavar="BUNDLE_OR_TAR", help="a bundle directory or its .tar")
    parser.add_argument(
        "reference",
        metavar="REF",
        help="oci://HOST[:PORT]/REPOSITORY[:TAG]; the tag is the bundle's version by default",
    )
    parser.add_argument(
        "--digest-file",
        metavar="FILE",
        help="also write the pushed oci://...@sha256: reference to FILE (for CI and pants publish)",
    )
    _registry_arguments(parser)


def push(args: argparse.Namespace) -> int:
    from modelseal.distribution.registry import parse_reference
    from modelseal.distribution.transfer import push_bundle
    from modelseal.format.atomic import write_atomic

    reference = parse_reference(args.reference)
    if reference.digest:
        raise SpecError(
            what="a push names a tag, not a digest (the digest is the result)",
            where=args.reference,
            remedy="write oci://HOST/REPOSITORY[:TAG]",
        )
    result = push_bundle(
        args.bundle, reference, plain_http=args.plain_http, auth=args.registry_config
    )
    print(
        f"modelseal: pushed {args.bundle}: {result.uploaded} blobs uploaded "
        f"({result.uploaded_bytes} bytes), {result.skipped} already in the registry",
        file=sys.stderr,
    )
    print(result.reference)
    if args.digest_file:
        write_atomic(args.digest_file, f"{result.reference}\n".encode())
    return EXIT_OK


def oci_arguments(parser: argparse.ArgumentParser) -> None:
    """The registry options `verify` takes for an oci:// reference."""
    _registry_arguments(parser)


@contextlib.contextmanager
def local_copy(
    args: argparse.Namespace, limits: Limits, destination: str | None = None
) -> Iterator[tuple[str, str | None]]:
    """(path to verify, manifest digest hex or None): `args.bundle` itself, or for an oci://
    reference the artifact fetched into a private directory (under `destination` when given)
    that is removed when the context exits, whatever is still in it."""
    if not args.bundle.startswith(OCI_PREFIX):
        yield args.bundle, None
        return
    from modelseal.distribution.registry import parse_reference
    from modelseal.distribution.transfer import fetch_bundle

    reference = parse_reference(args.bundle)
    if reference.digest is None and not getattr(args, "resolve_tag", False):
        raise SpecError(
            what="verify takes a digest, not a tag (a tag can be moved to other bytes)",
            where=args.bundle,
            remedy="write oci://HOST/REPOSITORY@sha256:<digest> (`modelseal push` printed it)",
        )
    parent = destination or private_directory("modelseal-oci-")
    staging = None
    try:
        digest, root = fetch_bundle(
            reference,
            parent,
            limits,
            plain_http=args.plain_http,
            auth=args.registry_config,
        )
        staging = os.path.dirname(root)
        if reference.digest is None:
            print(f"modelseal: {args.bundle} is {reference.pinned(digest)}", file=sys.stderr)
        yield root, digest.split(":", 1)[1]
    finally:
        if staging is not None:
            remove_tree(staging)
        if destination is None:
            remove_tree(parent)


def pull_arguments(parser: argparse.ArgumentParser) -> None:
    from modelseal.cli.verify import verify_arguments

    verify_arguments(parser)
    parser.add_argument(
        "directory", metavar="DIR", help="where to write the verified bundle (DIR/<name>-<version>)"
    )


def pull(args: argparse.Namespace) -> int:
    """Fetch by digest (a tag is resolved, and the digest printed, first), verify, then rename the
    verified directory into DIR: nothing unverified is ever in DIR under its final name."""
    from modelseal.cli.verify import verify_then

    if not args.bundle.startswith(OCI_PREFIX):
        args.bundle = OCI_PREFIX + args.bundle
    args.resolve_tag = True
    os.makedirs(args.directory, exist_ok=True)
    return verify_then(args, _move_into(args.directory), destination=args.directory)


def _move_into(directory: str) -> Callable[[str], int]:
    def move(verified: str) -> int:
        target = os.path.join(directory, os.path.basename(verified))
        if os.path.lexists(target):
            raise SpecError(
                what="already exists", where=target, remedy="remove it or pull somewhere else"
            )
        os.rename(verified, target)
        print(f"modelseal: pulled to {target}", file=sys.stderr)
        return EXIT_OK

    return move
