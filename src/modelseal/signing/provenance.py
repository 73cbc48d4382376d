"""in-toto provenance: signed links for the `train`, `package` and `sign` steps, and the
owner-signed layout that chains them.

The metadata is real in-toto (the `in_toto` library's models, signed through a securesystemslib
`Signer` that wraps modelseal's own), so the reference `in-toto-verify` accepts it unchanged:

    cd BUNDLE && in-toto-verify --layout provenance/root.layout \
        --verification-keys owner.pub --link-dir provenance

Artifacts are `{path: {"sha256": hex}}` with POSIX paths relative to the bundle (or training)
directory, never absolute, so links are the same bytes on every machine. Link files are named
`<step>.<keyid[:8]>.link`, where keyid is modelseal's key id (SHA-256 of the DER
SubjectPublicKeyInfo), and are canonical JSON. One exception, forced by `in-toto-verify`, which
computes the owner's key id itself from `owner.pub` with securesystemslib's rule (SHA-256 of the
canonical JSON of keytype, scheme and PEM): the layout's signature carries that id.

The layout's rules chain the steps: weights the `package` step used must be products of `train`;
what `sign` signed must be exactly the products of `package`; and an inspection, run by the
verifier inside the bundle, records every file on disk and requires each one to be a product of
`package` (or the provenance itself, or `model.sig`), so one changed byte anywhere fails it.
"""

from __future__ import annotations

import datetime as dt
import os
from collections.abc import Mapping
from typing import Any

from in_toto import settings, verifylib  # type: ignore[import-untyped]
from in_toto.exceptions import LayoutExpiredError  # type: ignore[import-untyped]
from in_toto.models.link import Link  # type: ignore[import-untyped]

from modelseal.errors import SigningError
from modelseal.format.canonical import TIMESTAMP_FORMAT
from modelseal.keys.core import PublicKey

# Links, the layout and revocations live in their own modules; importers name this one.
from modelseal.signing.layout import create_layout, read_layout, rotate_layout
from modelseal.signing.links import (
    INSPECTION_NAME,
    LAYOUT_PATH,
    STEPS,
    InTotoSigner,
    in_toto_key,
    link_bytes,
    link_file_name,
    owner_key_id,
    working_directory,
    write_link,
)
from modelseal.signing.revocations import load_revocations, revocations_bytes

__all__ = [
    "INSPECTION_NAME",
    "LAYOUT_PATH",
    "STEPS",
    "InTotoSigner",
    "create_layout",
    "in_toto_key",
    "link_bytes",
    "link_file_name",
    "load_revocations",
    "owner_key_id",
    "revocations_bytes",
    "rotate_layout",
    "verify_provenance",
    "write_link",
]

# The most a layout or link may hold when verification reads it.
MAX_METADATA_SIZE = 4 * 1024 * 1024

# -- verification -----------------------------------------------------------------------------


def _only_true_inspections(layout: Any) -> bool:
    """Whether every inspection of the layout runs `true`, which changes no file: its record is
    then the bundle's files before and after, which known digests can stand for."""
    return all(list(inspection.run) == ["true"] for inspection in layout.inspect)


def _inspection_artifacts(
    root: str, known: Mapping[str, tuple[str, int]]
) -> dict[str, dict[str, str]]:
    """What in-toto's inspection records for `.` in `root`: every file, by its normalized
    relative path, except in-toto's default exclude patterns (a matching directory excludes
    everything below it); digests from `known` where given (sizes checked), else hashed."""
    # in-toto matches its exclude patterns with pathspec, a dependency of in-toto.
    from pathspec import GitIgnoreSpec  # pants: no-infer-dep

    from modelseal.signing.modelsig import bundle_digests

    spec = GitIgnoreSpec.from_lines("gitwildmatch", settings.ARTIFACT_EXCLUDE_PATTERNS)
    digests = bundle_digests(root, (), known=known)
    result: dict[str, dict[str, str]] = {}
    for path, digest in digests.items():
        parts = path.split("/")
        if any(spec.match_file("/".join(parts[:i])) for i in range(1, len(parts) + 1)):
            continue
        result[path] = {"sha256": digest}
    return result


def _verify_with_digests(
    metablock: Any, keys: dict[str, Any], root: str, known: Mapping[str, tuple[str, int]]
) -> None:
    """in_toto.verifylib.in_toto_verify, step for step, except that the inspections (all `true`,
    see `_only_true_inspections`) are recorded from digests instead of hashing the bundle twice
    each. Raises what in_toto_verify raises."""
    verifylib.verify_metadata_signatures(metablock, keys)
    layout = metablock.get_payload()
    # The expiry was checked against the caller's clock (`verify_provenance`'s `now`).
    link_dir = os.path.join(root, "provenance")
    steps_metadata = verifylib.load_links_for_layout(layout, link_dir)
    steps_metadata = verifylib.verify_link_signature_thresholds(layout, steps_metadata)
    chain_links = verifylib.verify_sublayouts(
        layout, steps_metadata, link_dir, settings.LINK_CMD_EXEC_TIMEOUT
    )
    verifylib.verify_all_steps_command_alignment(layout, chain_links)
    verifylib.verify_threshold_constraints(layout, chain_links)
    reduced = verifylib.reduce_chain_links(chain_links)
    verifylib.verify_all_item_rules(layout.steps, reduced)
    artifacts = _inspection_artifacts(root, known)
    combined = dict(reduced)
    for inspection in layout.inspect:
        combined[inspection.name] = Link(
            name=inspection.name,
            materials=artifacts,
            products=artifacts,
            command=list(inspection.run),
            byproducts={"return-value": 0},
            environment={},
        )
    verifylib.verify_all_item_rules(layout.inspect, combined)


def in_toto_reason(error: BaseException, root: str) -> str:
    """in-toto's message for `error` as one line for `modelseal: error: ...`: its first line
    (the rest is a multi-line trace of every artifact queue), paths relative to the bundle (the
    extracted copy of a tar lives in a temporary directory the user never sees), and no
    trailing period (the error message adds its own)."""
    text = str(error).replace(root.rstrip(os.sep) + os.sep, "").replace(root, ".")
    first = next((line.strip() for line in text.splitlines() if line.strip()), type(error).__name__)
    return first.rstrip(". ")


def verify_provenance(
    bundle_dir: str | os.PathLike[str],
    owner_public_key: PublicKey | bytes,
    *,
    revoked: frozenset[str] = frozenset(),
    now: dt.datetime | None = None,
    known: Mapping[str, tuple[str, int]] | None = None,
) -> None:
    """Verify the bundle's layout and links as in-toto-verify does (owner signature, expiry,
    link signatures and thresholds, artifact rules, the inspection of the files on disk), after
    refusing any revoked key. SigningError (exit 6) naming the failed check.

    `known`: (sha256, size) of bundle files the caller hashed already (`modelseal.verify.checks`
    hashes every file once for all its checks). in-toto's own inspection would hash the whole bundle
    twice (materials, then products, around `true`); with `known`, the inspection `true` of
    modelseal's layouts is recorded from those digests instead (any file not in `known` is
    hashed), and every other inspection is run by in-toto as usual."""

    root = os.path.abspath(os.fspath(bundle_dir))
    owner = (
        owner_public_key
        if isinstance(owner_public_key, PublicKey)
        else PublicKey.from_pem(owner_public_key, source="owner key")
    )
    layout_path = os.path.join(root, *LAYOUT_PATH.split("/"))
    try:
        with open(layout_path, "rb") as f:
            data = f.read(MAX_METADATA_SIZE + 1)
        if len(data) > MAX_METADATA_SIZE:
            raise SigningError(
                what=f"the layout is larger than {MAX_METADATA_SIZE} bytes",
                where=layout_path,
                remedy="re-download the bundle: no layout modelseal writes is that large",
            )
        metablock = read_layout(data, layout_path)
    except FileNotFoundError:
        raise SigningError(
            what="no in-toto layout",
            where=layout_path,
            remedy="sign the bundle with provenance (docs/operations.md)",
        ) from None
    if owner.key_id in revoked:
        raise SigningError(
            what=f"the owner key {owner.key_id[:16]} is revoked",
            where=layout_path,
            remedy="re-sign the layout with the new owner key (docs/operations.md)",
        )
    layout = metablock.signed
    for step in layout.steps:
        for key_id in step.pubkeys:
            if key_id in revoked:
                raise SigningError(
                    what=f"step {step.name!r} trusts revoked key {key_id[:16]}",
                    where=layout_path,
                    remedy="rotate the layout without it: `modelseal layout rotate --remove`",
                )
    now = now or dt.datetime.now(dt.timezone.utc)
    if (
        dt.datetime.strptime(layout.expires, TIMESTAMP_FORMAT).replace(
            tzinfo=dt.timezone.utc
        )
        <= now
    ):
        raise SigningError(
            what=f"the layout expired at {layout.expires}",
            where=layout_path,
            remedy="the owner must issue a new layout: `modelseal layout rotate --expires ...`",
        )
    owner_key = in_toto_key(owner, owner_key_id(owner))
    try:
        if known is not None and _only_true_inspections(layout):
            _verify_with_digests(
                metablock, {owner_key["keyid"]: owner_key}, root, known
            )
        else:
            with working_directory(root):
                verifylib.in_toto_verify(
                    metablock,
                    {owner_key["keyid"]: owner_key},
                    link_dir_path=os.path.join(root, "provenance"),
                    persist_inspection_links=False,
                )
    except LayoutExpiredError:
        raise SigningError(
            what=f"the layout expired at {layout.expires}",
            where=layout_path,
            remedy="the owner must issue a new layout: `modelseal layout rotate --expires ...`",
        ) from None
    except Exception as e:  # in-toto signals every failed check by an exception.
        raise SigningError(
            what=f"in-toto verification failed: {type(e).__name__}: {in_toto_reason(e, root)}",
            where=layout_path,
            remedy="the bundle, its links or its layout do not match: re-download the bundle, "
            "or check which keys the layout trusts",
        ) from None
