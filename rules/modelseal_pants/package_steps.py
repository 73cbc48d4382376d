"""The build steps of `pants package` for `model_artifact` after the checks: model.pex, the
manifest, the unsigned bundle with Pants' own digests, and the archive (signing is `signing.py`).
Each is a rule with a request and a result of its own, so a step can be added between two."""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from pants.backend.python.subsystems.setup import PythonSetup
from pants.backend.python.target_types import EntryPoint
from pants.backend.python.util_rules.interpreter_constraints import InterpreterConstraints
from pants.backend.python.util_rules.pex import (
    CompletePlatforms,
    Pex,
    PexPlatforms,
    PexRequest,
    ReqStrings,
)
from pants.backend.python.util_rules.pex_from_targets import (
    PexFromTargetsRequest,
)
from pants.backend.python.util_rules.pex_requirements import PexRequirements
from pants.engine.addresses import Address, Addresses, UnparsedAddressInputs
from pants.engine.fs import (
    EMPTY_DIGEST,
    AddPrefix,
    CreateDigest,
    Digest,
    DigestEntries,
    FileContent,
    FileEntry,
    MergeDigests,
)
from pants.engine.process import ProcessResult
from pants.engine.rules import Get, Rule, collect_rules, rule
from pants.util.logging import LogLevel
from pants.version import VERSION as PANTS_VERSION

from modelseal_pants.artifact import CheckedModelArtifact, ModelArtifactFieldSet
from modelseal_pants.build_info import BuildInfo
from modelseal_pants.invocation import GuardPex, ToolInvocation, WriteArchive, WriteManifest
from modelseal_pants.signing import (
    KNOWN_DIGESTS_PATH,
)


def file_rows(entries: DigestEntries, prefix: str) -> list[dict[str, Any]]:
    return [
        {
            "path": f"{prefix}{e.path}",
            "sha256": e.file_digest.fingerprint,
            "size": e.file_digest.serialized_bytes_length,
        }
        for e in entries
        if isinstance(e, FileEntry)
    ]


async def _without_empty_superset(request: PexRequest) -> PexRequest:
    """A model whose code needs no third-party package gets a PEX built without a resolve.

    With a requirements-style lock, Pants builds each PEX as a subset of a repository PEX holding
    the whole lock, and passes it even when the subset is empty: pex then opens that large
    repository for every such model, which made a workspace of many small stdlib-only models
    take minutes to package. The PEX's contents are the same either way."""
    requirements = request.requirements
    if isinstance(requirements, PexRequirements) and requirements.from_superset is not None:
        needed = await Get(ReqStrings, PexRequirements, requirements)
        if not needed.req_strings:
            return dataclasses.replace(request, requirements=PexRequirements())
    return request


@dataclass(frozen=True)
class ModelPexRequest:
    fs: ModelArtifactFieldSet
    roots: Addresses
    runtime: Digest  # the stdlib-only modelseal runtime, model.pex's entry point


@dataclass(frozen=True)
class ModelPex:
    """Step 2: `model.pex`, at the digest's root."""

    digest: Digest
    interpreter_constraints: tuple[str, ...]  # sorted, as the manifest records them


@rule(desc="Building model.pex", level=LogLevel.DEBUG)
async def build_model_pex(request: ModelPexRequest, python_setup: PythonSetup) -> ModelPex:
    fs = request.fs
    complete_platforms = await Get(
        CompletePlatforms, UnparsedAddressInputs, fs.complete_platforms.to_unparsed_address_inputs()
    )
    constraints = fs.interpreter_constraints.value
    pex_request = await Get(
        PexRequest,
        PexFromTargetsRequest(
            request.roots,
            output_filename="model.pex",
            internal_only=False,
            main=EntryPoint("modelseal.embedded.runtime", "main"),
            platforms=PexPlatforms.create_from_platforms_field(fs.platforms),
            complete_platforms=complete_platforms,
            additional_sources=request.runtime,
            hardcoded_interpreter_constraints=InterpreterConstraints(constraints)
            if constraints else None,
            description=f"Building model.pex for {fs.address}",
        ),
    )
    pex = await Get(Pex, PexRequest, await _without_empty_superset(pex_request))
    recorded = tuple(sorted(str(c) for c in pex_request.interpreter_constraints))
    # pex would re-execute a wrong interpreter under another one from PATH: the tool puts a guard
    # in front of its bootstrap that names, in one line, the versions these constraints allow
    # and, for a PEX built for (complete) platforms, the environments its wheels make up.
    versions = pex_request.interpreter_constraints.partition_into_major_minor_versions(
        python_setup.interpreter_versions_universe
    )
    guarded = await Get(
        ProcessResult,
        ToolInvocation(
            GuardPex("model.pex", tuple(versions), recorded),
            pex.digest,
            f"Guarding model.pex for {fs.address} against other interpreters",
            output_files=("model.pex",),
        ),
    )
    return ModelPex(guarded.output_digest, recorded)


def manifest_spec(
    fs: ModelArtifactFieldSet,
    checked: CheckedModelArtifact,
    pex: ModelPex,
    files: list[dict[str, Any]],
    info: BuildInfo,
    development: bool,
) -> dict[str, Any]:
    """What `modelseal manifest` turns into manifest.json: the target's fields and what the
    build measured. The tool, not the rule, decides the manifest's bytes."""
    return {
        "name": fs.model_name.value,
        "version": fs.version.value,
        "entry_point": fs.entry_point.value,
        "trust": "development" if development else "release",
        "runtime": {
            "interpreter_constraints": list(pex.interpreter_constraints),
            "platforms": sorted(fs.platforms.value or ()),
            "complete_platforms": sorted(fs.complete_platforms.value or ()),
            "pex": "model.pex",
        },
        "files": sorted(files, key=lambda row: row["path"]),
        "metrics": checked.metrics,
        "license": fs.license.value or "",
        "description": fs.description.value or "",
        "datasets": dict(fs.datasets.value or {}),
        "hyperparameters": checked.weights.hyperparameters,
        "training": checked.weights.training,
        "build": {
            "commit": info.commit,
            "source_date_epoch": info.source_date_epoch,
            "lock_sha256": checked.lock.file_digest.fingerprint,
            "pants_version": PANTS_VERSION,
            "dirty": info.dirty,
            "dirty_sha256": info.dirty_sha256,
        },
    }


@dataclass(frozen=True)
class ManifestRequest:
    spec: bytes  # manifest_spec(), as JSON
    address: Address
    pex: Digest  # model.pex at the root: the tool reads its wheels' environments
    evaluation: Digest | None = None  # evaluation.json: the manifest gains its summary


@dataclass(frozen=True)
class Manifest:
    """Step 3: `manifest.json`, at the digest's root."""

    digest: Digest


@rule(desc="Writing a model manifest", level=LogLevel.DEBUG)
async def write_manifest(request: ManifestRequest) -> Manifest:
    spec = await Get(Digest, CreateDigest([FileContent("spec.json", request.spec)]))
    inputs = [spec, request.pex]
    if request.evaluation is not None:
        inputs.append(request.evaluation)
    merged = await Get(Digest, MergeDigests(inputs))
    result = await Get(
        ProcessResult,
        ToolInvocation(
            WriteManifest(
                spec="spec.json", out="manifest.json", pex="model.pex",
                evaluation="evaluation.json" if request.evaluation is not None else "",
            ),
            merged,
            f"Writing the manifest of {request.address}",
            output_files=("manifest.json",),
        ),
    )
    return Manifest(result.output_digest)


@dataclass(frozen=True)
class UnsignedBundleRequest:
    weights: Digest  # relative to weights/
    pex: Digest
    manifest: Digest
    evaluation: Digest = EMPTY_DIGEST  # evaluation.json, when an evaluation is declared


@dataclass(frozen=True)
class UnsignedBundle:
    """Step 4: the bundle's files before provenance and signatures, and Pants' own sha256 of
    each (KNOWN_DIGESTS_PATH): the links and model.sig use these, so the weights are hashed
    once, by Pants, when it snapshots them."""

    digest: Digest
    known_digests: Digest


@rule(desc="Assembling a model bundle", level=LogLevel.DEBUG)
async def assemble_bundle(request: UnsignedBundleRequest) -> UnsignedBundle:
    weights = await Get(Digest, AddPrefix(request.weights, "weights"))
    bundle = await Get(
        Digest, MergeDigests([weights, request.pex, request.manifest, request.evaluation])
    )
    entries = await Get(DigestEntries, Digest, bundle)
    known = {
        row["path"]: {"sha256": row["sha256"], "size": row["size"]}
        for row in file_rows(entries, "")
    }
    known_digests = await Get(
        Digest,
        CreateDigest(
            [FileContent(KNOWN_DIGESTS_PATH, json.dumps(known, sort_keys=True).encode())]
        ),
    )
    return UnsignedBundle(bundle, known_digests)


@dataclass(frozen=True)
class ArchiveRequest:
    bundle: Digest  # the signed bundle, under bundle_name/
    bundle_name: str
    source_date_epoch: int
    address: Address


@dataclass(frozen=True)
class BundleArchive:
    """Step 6: `<bundle_name>.tar`, the deterministic archive of the signed bundle."""

    digest: Digest
    name: str


@rule(desc="Archiving a model bundle", level=LogLevel.DEBUG)
async def archive_bundle(request: ArchiveRequest) -> BundleArchive:
    tar_name = f"{request.bundle_name}.tar"
    result = await Get(
        ProcessResult,
        ToolInvocation(
            WriteArchive(bundle=request.bundle_name, out=tar_name, mtime=request.source_date_epoch),
            request.bundle,
            f"Archiving {request.bundle_name} for {request.address}",
            output_files=(tar_name,),
        ),
    )
    return BundleArchive(result.output_digest, tar_name)


def rules() -> Iterable[Rule]:
    return collect_rules()
