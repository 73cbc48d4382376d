"""Provenance and signing of a packaged bundle: the train and package links, the owner-signed
layout, `model.sig` and the sign link. The package link, the SBOM and SLSA provenance and
`model.sig` are one process (`modelseal seal`, evidence.py); the layout, and the train and
evaluate links it needs first, are processes of their own here.

Keys travel only as references (`file:`, `pkcs11:`, `env:`); the modelseal tool opens them
outside the sandbox, where Pants cannot see them change. So the processes that read keys to learn
what they are (the development keyring, the export of the public keys) run in every session
(PER_SESSION), and every process that signs has those public keys among its inputs: a rotated
key (same reference, new key) changes the inputs and signs again. Signing processes are kept in
pantsd's memory only (PER_RESTART_SUCCESSFUL), never in the local or remote cache: nothing a key
made is persisted by Pants, and a no-op `pants package` does not sign again. Deterministic ECDSA
gives the same bytes for the same key and bundle either way.

The weights are never hashed here: the bundle's digests Pants already holds (`known_digests`,
from its content-addressed store) are handed to the links and to `model.sig`.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable
from dataclasses import dataclass

from pants.base.glob_match_error_behavior import GlobMatchErrorBehavior
from pants.engine.fs import (
    EMPTY_DIGEST,
    AddPrefix,
    Digest,
    MergeDigests,
    PathGlobs,
    Snapshot,
)
from pants.engine.process import ProcessResult
from pants.engine.rules import Get, MultiGet, Rule, collect_rules, rule
from pants.util.logging import LogLevel

from modelseal_pants import evidence, signing_keys
from modelseal_pants.errors import LayoutExpiredError
from modelseal_pants.evidence import KNOWN_DIGESTS_PATH, Sealed, SealRequest
from modelseal_pants.invocation import CheckKeys, CheckProvenance, CreateLayout, RecordLink
from modelseal_pants.signing_keys import (
    ROLES,
    STEP_ROLES,
    PublicKeys,
    PublicKeysRequest,
    SigningKeys,
    SigningKeysRequest,
    key_invocation,
)
from modelseal_pants.subsystem import ModelsealSubsystem


@dataclass(frozen=True)
class EvaluationForSigning:
    inputs: Digest  # evaluation-data/... and measurements.json
    data_paths: tuple[str, ...]  # evaluation-data/...
    measurements: str  # measurements.json


@dataclass(frozen=True)
class SignBundleRequest:
    """An unsigned bundle (files at the digest's root) and what its provenance is made of."""

    bundle: Digest
    bundle_name: str
    address: str
    source_date_epoch: int
    train_inputs: Digest | None  # an in-build training's materials, metrics and environment
    train_materials: tuple[str, ...]
    train_products: tuple[str, ...]  # bundle paths, e.g. weights/model.skops
    imported_train_link: Digest | None  # provenance/<name>.link, as imported
    package_materials: Digest  # the handler sources and the lock, at their repo paths
    package_material_paths: tuple[str, ...]
    # KNOWN_DIGESTS_PATH: {bundle path: {sha256, size}} of every file of `bundle`, from Pants'
    # own digests of those bytes, so that no step hashes the weights again.
    known_digests: Digest
    # With a declared evaluation: the evaluation data (evaluation-data/...) and the measurements
    # (measurements.json) the evaluate link records; `bundle` then holds evaluation.json.
    evaluation: EvaluationForSigning | None = None
    # The resolve's lock at its repository path: the SBOM's pins and the provenance's
    # resolved dependency (modelseal_pants.evidence).
    lock: Digest = EMPTY_DIGEST
    lock_path: str = ""


@dataclass(frozen=True)
class SignedBundle:
    digest: Digest  # the bundle's files plus provenance/ and model.sig


def _expires(source_date_epoch: int, days: int, address: str) -> str:
    """SOURCE_DATE_EPOCH + days: the layout's bytes must not depend on when the build ran. A
    layout that would already have expired is refused: every verifier would refuse it."""
    start = dt.datetime.fromtimestamp(source_date_epoch, tz=dt.timezone.utc)
    expires = start + dt.timedelta(days=days)
    if expires <= dt.datetime.now(tz=dt.timezone.utc):
        raise LayoutExpiredError(
            f"The layout for {address} would have expired on {expires:%Y-%m-%d} "
            f"(SOURCE_DATE_EPOCH {start:%Y-%m-%d} + [modelseal].layout_validity_days = {days}). "
            "Set a larger `layout_validity_days`, or SOURCE_DATE_EPOCH (outside git) to package it."
        )
    return expires.strftime("%Y-%m-%dT%H:%M:%SZ")


@dataclass(frozen=True)
class SigningStepRequest:
    """What every signing step starts from: the bundle, its key references and public keys."""

    bundle: SignBundleRequest
    keys: SigningKeys
    publics: PublicKeys


@dataclass(frozen=True)
class LayoutRequest:
    step: SigningStepRequest
    expires: str  # ISO 8601, from SOURCE_DATE_EPOCH


@dataclass(frozen=True)
class Layout:
    """`provenance/root.layout`, owner-signed, after the keys passed the revocation list."""

    digest: Digest


@rule(desc="Writing the owner-signed layout", level=LogLevel.DEBUG)
async def write_layout(request: LayoutRequest, subsystem: ModelsealSubsystem) -> Layout:
    bundle, keys, publics = request.step.bundle, request.step.keys, request.step.publics
    extra = {step: tuple(paths) for step, paths in subsystem.trusted_keys.items()}
    trusted = await Get(
        Snapshot,
        PathGlobs(
            sorted({path for paths in extra.values() for path in paths}),
            glob_match_error_behavior=GlobMatchErrorBehavior.error,
            description_of_origin="`[modelseal].trusted_keys`",
        ),
    )
    layout_inputs = await Get(Digest, MergeDigests([publics.digest, trusted.digest]))
    trained = bundle.train_inputs is not None or bundle.imported_train_link is not None
    if subsystem.revocations:
        revocations = await Get(
            Digest,
            PathGlobs(
                [subsystem.revocations],
                glob_match_error_behavior=GlobMatchErrorBehavior.error,
                description_of_origin="`[modelseal].revocations`",
            ),
        )
        await Get(
            ProcessResult,
            key_invocation(
                keys,
                CheckKeys(
                    revocations=subsystem.revocations,
                    public_keys=(*(f"keys/{role}.pub" for role in ROLES), *trusted.files),
                ),
                await Get(Digest, MergeDigests([layout_inputs, revocations])),
                f"Checking the keys of {bundle.address} against the revocation list",
            ),
        )
    layout = await Get(
        ProcessResult,
        key_invocation(
            keys,
            CreateLayout(
                owner_key=keys["owner"],
                steps=tuple(
                    (step, (f"keys/{STEP_ROLES[step]}.pub", *extra.get(step, ())))
                    for step in ("train", "package", "evaluate", "sign")
                    if (step != "train" or trained)
                    and (step != "evaluate" or bundle.evaluation is not None)
                ),
                thresholds=tuple(sorted(subsystem.thresholds.items())),
                expires=request.expires,
                out="provenance/root.layout",
            ),
            layout_inputs, f"Writing the owner-signed layout for {bundle.address}",
            output_files=("provenance/root.layout",),
        ),
    )
    return Layout(layout.output_digest)


@dataclass(frozen=True)
class LinkRequest:
    step: SigningStepRequest
    name: str  # the layout's step: "train" or "evaluate" (the package link: evidence.py)


@dataclass(frozen=True)
class Link:
    """`provenance/<step>.<keyid8>.link`. train: imported as it is, or recorded for an in-build
    training (nothing without either); evaluate (with a declared evaluation): model.pex,
    weights and the evaluation data -> evaluation.json, with the bounds the measured gates
    proved as byproducts (docs/evaluation.md). The package link is recorded by `modelseal
    seal` with model.sig (evidence.py)."""

    digest: Digest


@rule(desc="Recording a link", level=LogLevel.DEBUG)
async def record_link(request: LinkRequest) -> Link:
    """Runs `modelseal link` for the step on the bundle, its known digests and the step's
    materials: the link goes to provenance/."""
    bundle, keys = request.step.bundle, request.step.keys
    if request.name == "train":
        if bundle.imported_train_link is not None:
            return Link(bundle.imported_train_link)
        if bundle.train_inputs is None:
            return Link(EMPTY_DIGEST)
        materials = bundle.train_inputs
        command = RecordLink(
            step="train", key=keys["train"], out="provenance",
            environment="environment.json", known_digests=KNOWN_DIGESTS_PATH,
            materials=bundle.train_materials,
            products=("metrics.json", *bundle.train_products),
        )
    else:
        evaluation = bundle.evaluation
        if evaluation is None:
            return Link(EMPTY_DIGEST)
        materials = evaluation.inputs
        command = RecordLink(
            step="evaluate", key=keys["evaluate"], out="provenance",
            known_digests=KNOWN_DIGESTS_PATH,
            materials=("model.pex", "weights", *evaluation.data_paths),
            products=("evaluation.json",),
            byproducts=evaluation.measurements,
        )
    inputs = await Get(
        Digest,
        MergeDigests([materials, bundle.bundle, bundle.known_digests, request.step.publics.digest]),
    )
    result = await Get(
        ProcessResult,
        key_invocation(
            keys, command, inputs,
            f"Recording the {command.step} link for {bundle.address}",
            output_directories=("provenance",),
        ),
    )
    return Link(result.output_digest)


@dataclass(frozen=True)
class ImportedLinkCheckRequest:
    step: SigningStepRequest
    signed: Digest  # the signed bundle, at the digest's root


@dataclass(frozen=True)
class ImportedLinkChecked:
    pass


@rule(desc="Checking an imported training link", level=LogLevel.DEBUG)
async def check_imported_link(request: ImportedLinkCheckRequest) -> ImportedLinkChecked:
    """A link from outside the build: check that a trusted key signed it and that its products
    are these weights, before anything reaches dist/."""
    bundle, keys, publics = request.step.bundle, request.step.keys, request.step.publics
    inputs = await Get(Digest, MergeDigests([
        await Get(Digest, AddPrefix(request.signed, bundle.bundle_name)), publics.digest,
        bundle.known_digests,
    ]))
    await Get(
        ProcessResult,
        key_invocation(
            keys,
            CheckProvenance(
                bundle=bundle.bundle_name, owner_public_key="keys/owner.pub",
                known_digests=KNOWN_DIGESTS_PATH,
            ),
            inputs, f"Checking the imported training link of {bundle.address}",
        ),
    )
    return ImportedLinkChecked()


@rule(desc="Signing a model bundle", level=LogLevel.DEBUG)
async def sign_bundle(request: SignBundleRequest, subsystem: ModelsealSubsystem) -> SignedBundle:
    """The signing steps, in order: layout (after the revocation check), train link, package
    link, SBOM and SLSA provenance, model.sig with the sign link, then the check of an imported
    train link."""
    expires = _expires(request.source_date_epoch, subsystem.layout_validity_days, request.address)
    keys, publics = await MultiGet(
        Get(SigningKeys, SigningKeysRequest()), Get(PublicKeys, PublicKeysRequest())
    )
    step = SigningStepRequest(request, keys, publics)
    layout = await Get(Layout, LayoutRequest(step, expires))
    train, evaluate = await MultiGet(
        Get(Link, LinkRequest(step, "train")), Get(Link, LinkRequest(step, "evaluate"))
    )
    provenance = await Get(Digest, MergeDigests([layout.digest, train.digest, evaluate.digest]))
    sealed = await Get(Sealed, SealRequest(
        request.bundle, provenance, request.bundle_name, request.address,
        request.known_digests, request.package_materials, request.package_material_paths,
        request.lock, request.lock_path, keys, publics,
    ))
    result = await Get(Digest, MergeDigests([request.bundle, provenance, sealed.digest]))
    if request.imported_train_link is not None:
        await Get(ImportedLinkChecked, ImportedLinkCheckRequest(step, result))
    return SignedBundle(result)


def rules() -> Iterable[Rule]:
    return (*signing_keys.rules(), *evidence.rules(), *collect_rules())

