"""Provenance and signing of a packaged bundle: the train and package links, the owner-signed
layout, `model.sig` and the sign link.

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
import os
from collections.abc import Iterable
from dataclasses import dataclass

from pants.backend.python.util_rules.pex import VenvPexProcess
from pants.base.glob_match_error_behavior import GlobMatchErrorBehavior
from pants.engine.env_vars import EnvironmentVars, EnvironmentVarsRequest
from pants.engine.fs import (
    EMPTY_DIGEST,
    AddPrefix,
    Digest,
    DigestSubset,
    MergeDigests,
    PathGlobs,
    RemovePrefix,
    Snapshot,
)
from pants.engine.process import ProcessCacheScope, ProcessResult
from pants.engine.rules import Get, Rule, collect_rules, rule
from pants.util.frozendict import FrozenDict
from pants.util.logging import LogLevel

from modelseal_pants.subsystem import ModelsealSubsystem
from modelseal_pants.tool import ModelsealTool, ModelsealToolRequest

ROLES = ("owner", "train", "package", "release")
# The role whose public key each in-toto step trusts: the release key signs the `sign` step.
STEP_ROLES = {"train": "train", "package": "package", "sign": "release"}


@dataclass(frozen=True)
class SigningKeysRequest:
    pass


@dataclass(frozen=True)
class SigningKeys:
    """A key reference per role, and the environment the references need (for `env:NAME`)."""

    references: FrozenDict[str, str]
    env: FrozenDict[str, str]
    development: bool
    keyring: str = ""  # the development keyring's directory, created on first use by the export

    def __getitem__(self, role: str) -> str:
        return self.references[role]


def _env_names(references: Iterable[str]) -> list[str]:
    return sorted({ref[len("env:"):] for ref in references if ref.startswith("env:")})


@rule(desc="Finding the signing keys", level=LogLevel.DEBUG)
async def signing_keys(_: SigningKeysRequest, subsystem: ModelsealSubsystem) -> SigningKeys:
    configured = {role: subsystem.key(role) or "" for role in ROLES}
    missing = [role for role, ref in configured.items() if not ref]
    if missing and len(missing) < len(ROLES):
        raise ValueError(
            "Configure every signing key or none (none means the development keyring): "
            + ", ".join(
                f"`[modelseal].{ModelsealSubsystem.option_name(role)}`" for role in missing
            )
            + " is not set."
        )
    if not missing:
        names = _env_names(configured.values())
        env = await Get(
            EnvironmentVars, EnvironmentVarsRequest([*names, *subsystem.signing_env_vars])
        )
        unset = [name for name in names if not env.get(name)]
        if unset:
            raise ValueError(
                f"The signing key reference `env:{unset[0]}` names an environment variable that "
                f"is not set. Set {unset[0]} to a key reference such as `file:/path/key.pem`."
            )
        present = {name: value for name, value in env.items() if value}
        return SigningKeys(FrozenDict(configured), FrozenDict(present), development=False)

    env = await Get(EnvironmentVars, EnvironmentVarsRequest(["XDG_DATA_HOME", "HOME"]))
    data_home = env.get("XDG_DATA_HOME") or os.path.join(env.get("HOME") or "/", ".local/share")
    keyring = os.path.join(data_home, "modelseal", "dev-keyring")
    # The keys are made (first use only) by the export of the public keys, which every signing
    # process waits for: one process per session instead of two.
    references = {role: f"file:{keyring}/{role}.pem" for role in ROLES}
    return SigningKeys(FrozenDict(references), FrozenDict(), development=True, keyring=keyring)


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


KNOWN_DIGESTS_PATH = ".modelseal/known-digests.json"


@dataclass(frozen=True)
class SignedBundle:
    digest: Digest  # the bundle's files plus provenance/ and model.sig


def _process(
    tool: ModelsealTool,
    keys: SigningKeys,
    argv: tuple[str, ...],
    input_digest: Digest,
    description: str,
    *,
    output_files: tuple[str, ...] = (),
    output_directories: tuple[str, ...] = (),
    reads_keys: bool = False,
) -> VenvPexProcess:
    """A tool process holding key references. `reads_keys`: it learns what the keys are (runs in
    every session); else it must have the exported public keys among its inputs (kept in
    memory for pantsd's life: see the module's docstring)."""
    return VenvPexProcess(
        tool.pex,
        argv=argv,
        input_digest=input_digest,
        extra_env=keys.env,
        output_files=output_files,
        output_directories=output_directories,
        description=description,
        cache_scope=ProcessCacheScope.PER_SESSION
        if reads_keys
        else ProcessCacheScope.PER_RESTART_SUCCESSFUL,
        level=LogLevel.DEBUG,
    )


def _expires(source_date_epoch: int, days: int, address: str) -> str:
    """SOURCE_DATE_EPOCH + days: the layout's bytes must not depend on when the build ran. A
    layout that would already have expired is refused: every verifier would refuse it."""
    start = dt.datetime.fromtimestamp(source_date_epoch, tz=dt.timezone.utc)
    expires = start + dt.timedelta(days=days)
    if expires <= dt.datetime.now(tz=dt.timezone.utc):
        raise ValueError(
            f"The layout for {address} would have expired on {expires:%Y-%m-%d} "
            f"(SOURCE_DATE_EPOCH {start:%Y-%m-%d} + [modelseal].layout_validity_days = {days}). "
            "Set a larger `layout_validity_days`, or SOURCE_DATE_EPOCH (outside git) to package it."
        )
    return expires.strftime("%Y-%m-%dT%H:%M:%SZ")


@dataclass(frozen=True)
class PublicKeysRequest:
    pass


@dataclass(frozen=True)
class PublicKeys:
    """`keys/<role>.pub` (PEM) for each role: what the layout names and what verifiers trust."""

    digest: Digest
    development: bool


@rule(desc="Exporting the public keys", level=LogLevel.DEBUG)
async def export_public_keys(_: PublicKeysRequest) -> PublicKeys:
    keys = await Get(SigningKeys, SigningKeysRequest())
    tool = await Get(ModelsealTool, ModelsealToolRequest())
    exported = await Get(
        ProcessResult,
        _process(
            tool, keys,
            ("keys", "export-public",
             *((f"--dev-keyring={keys.keyring}",) if keys.keyring else ()),
             *(f"--key={r}={keys[r]}" for r in ROLES), "keys"),
            EMPTY_DIGEST, "Exporting the public keys", output_directories=("keys",),
            reads_keys=True,
        ),
    )
    return PublicKeys(exported.output_digest, keys.development)


@rule(desc="Signing a model bundle", level=LogLevel.DEBUG)
async def sign_bundle(request: SignBundleRequest, subsystem: ModelsealSubsystem) -> SignedBundle:
    keys = await Get(SigningKeys, SigningKeysRequest())
    tool = await Get(ModelsealTool, ModelsealToolRequest())
    what = f"{request.address}"
    expires = _expires(request.source_date_epoch, subsystem.layout_validity_days, what)

    publics = await Get(PublicKeys, PublicKeysRequest())
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
    trained = request.train_inputs is not None or request.imported_train_link is not None
    steps = [
        f"--step={step}=" + ",".join([f"keys/{STEP_ROLES[step]}.pub", *extra.get(step, ())])
        for step in ("train", "package", "sign")
        if step != "train" or trained
    ]
    thresholds = [f"--threshold={step}={n}" for step, n in sorted(subsystem.thresholds.items())]
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
            _process(
                tool, keys,
                ("check-keys", f"--revocations={subsystem.revocations}",
                 *(f"keys/{role}.pub" for role in ROLES), *trusted.files),
                await Get(Digest, MergeDigests([layout_inputs, revocations])),
                f"Checking the keys of {what} against the revocation list",
            ),
        )
    layout = await Get(
        ProcessResult,
        _process(
            tool, keys,
            (
                "layout", "create", f"--owner-key={keys['owner']}", *steps, *thresholds,
                f"--expires={expires}",
                "--out=provenance/root.layout",
            ),
            layout_inputs, f"Writing the owner-signed layout for {what}",
            output_files=("provenance/root.layout",),
        ),
    )

    provenance = [layout.output_digest]
    if request.imported_train_link is not None:
        provenance.append(request.imported_train_link)
    elif request.train_inputs is not None:
        inputs = await Get(
            Digest,
            MergeDigests(
                [request.train_inputs, request.bundle, request.known_digests, publics.digest]
            ),
        )
        train = await Get(
            ProcessResult,
            _process(
                tool, keys,
                ("link", "--step=train", f"--key={keys['train']}", "--out=provenance",
                 "--environment=environment.json", f"--known-digests={KNOWN_DIGESTS_PATH}",
                 "--materials", *request.train_materials,
                 "--products", "metrics.json", *request.train_products),
                inputs, f"Recording the train link for {what}", output_directories=("provenance",),
            ),
        )
        provenance.append(train.output_digest)

    package_inputs = await Get(
        Digest,
        MergeDigests(
            [request.bundle, request.package_materials, request.known_digests, publics.digest]
        ),
    )
    package = await Get(
        ProcessResult,
        _process(
            tool, keys,
            ("link", "--step=package", f"--key={keys['package']}", "--out=provenance",
             f"--known-digests={KNOWN_DIGESTS_PATH}",
             "--materials", "weights", *request.package_material_paths,
             "--products", "manifest.json", "model.pex", "weights"),
            package_inputs, f"Recording the package link for {what}",
            output_directories=("provenance",),
        ),
    )
    provenance.append(package.output_digest)

    unsigned = await Get(Digest, MergeDigests([request.bundle, *provenance]))
    unsigned = await Get(Digest, AddPrefix(unsigned, request.bundle_name))
    unsigned = await Get(
        Digest, MergeDigests([unsigned, request.known_digests, publics.digest])
    )
    signed = await Get(
        ProcessResult,
        _process(
            tool, keys,
            ("sign", f"--bundle={request.bundle_name}", f"--key={keys['release']}",
             f"--known-digests={KNOWN_DIGESTS_PATH}"),
            unsigned, f"Signing {what}",
            output_files=(f"{request.bundle_name}/model.sig",),
            output_directories=(f"{request.bundle_name}/provenance",),
        ),
    )
    signature = await Get(Digest, RemovePrefix(signed.output_digest, request.bundle_name))
    only_new = await Get(
        Digest, DigestSubset(signature, PathGlobs(["model.sig", "provenance/sign.*.link"]))
    )
    result = await Get(Digest, MergeDigests([request.bundle, *provenance, only_new]))
    if request.imported_train_link is not None:
        # A link from outside the build: check that a trusted key signed it and that its products
        # are these weights, before anything reaches dist/.
        check_inputs = await Get(Digest, MergeDigests([
            await Get(Digest, AddPrefix(result, request.bundle_name)), publics.digest,
            request.known_digests,
        ]))
        await Get(
            ProcessResult,
            _process(
                tool, keys,
                ("check-provenance", f"--bundle={request.bundle_name}",
                 "--owner-public-key=keys/owner.pub", f"--known-digests={KNOWN_DIGESTS_PATH}"),
                check_inputs, f"Checking the imported training link of {what}",
            ),
        )
    return SignedBundle(result)


def rules() -> Iterable[Rule]:
    return collect_rules()

