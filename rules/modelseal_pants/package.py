"""`pants package` for `model_artifact`: runtime PEX + weights + manifest -> bundle and tar.

The rule gathers what Pants already knows as digests (the weights' sha256 and sizes among them, so
nothing is hashed twice), and the modelseal tool decides every byte of the manifest and the tar.
"""

from __future__ import annotations

import dataclasses
import json
import os
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
    VenvPexProcess,
)
from pants.backend.python.util_rules.pex_from_targets import (
    ChosenPythonResolve,
    ChosenPythonResolveRequest,
    PexFromTargetsRequest,
)
from pants.backend.python.util_rules.pex_requirements import PexRequirements
from pants.backend.python.util_rules.python_sources import (
    PythonSourceFiles,
    PythonSourceFilesRequest,
    StrippedPythonSourceFiles,
)
from pants.base.build_root import BuildRoot
from pants.core.goals.package import (
    BuiltPackage,
    BuiltPackageArtifact,
    OutputPathField,
    PackageFieldSet,
)
from pants.engine.addresses import Address, Addresses, AddressInput, UnparsedAddressInputs
from pants.engine.fs import (
    AddPrefix,
    CreateDigest,
    Digest,
    DigestEntries,
    FileContent,
    FileEntry,
    MergeDigests,
    PathGlobs,
    RemovePrefix,
    Snapshot,
)
from pants.engine.process import ProcessResult
from pants.engine.rules import Get, MultiGet, Rule, collect_rules, rule
from pants.engine.target import (
    InvalidFieldException,
    TransitiveTargets,
    TransitiveTargetsRequest,
)
from pants.engine.unions import UnionRule
from pants.util.logging import LogLevel
from pants.version import VERSION as PANTS_VERSION

from modelseal_pants.build_info import BuildInfo, BuildInfoRequest
from modelseal_pants.graph import pex_roots
from modelseal_pants.signing import (
    KNOWN_DIGESTS_PATH,
    SignBundleRequest,
    SignedBundle,
    SigningKeys,
    SigningKeysRequest,
)
from modelseal_pants.target_types import (
    HyperparametersField,
    ModelArtifactDependenciesField,
    ModelCompletePlatformsField,
    ModelDatasetsField,
    ModelDescriptionField,
    ModelEntryPointField,
    ModelInterpreterConstraintsField,
    ModelLicenseField,
    ModelMetricsField,
    ModelNameField,
    ModelPlatformsField,
    ModelTrainingRefField,
    ModelVersionField,
    ModelWeightsField,
)
from modelseal_pants.tool import (
    ModelsealTool,
    ModelsealToolRequest,
    RuntimeSources,
    RuntimeSourcesRequest,
)
from modelseal_pants.training import TrainedModel, TrainModelRequest


@dataclass(frozen=True)
class ModelArtifactFieldSet(PackageFieldSet):
    required_fields = (ModelNameField, ModelVersionField, ModelEntryPointField)

    weights: ModelWeightsField
    dependencies: ModelArtifactDependenciesField
    entry_point: ModelEntryPointField
    model_name: ModelNameField
    version: ModelVersionField
    license: ModelLicenseField
    description: ModelDescriptionField
    datasets: ModelDatasetsField
    metrics: ModelMetricsField
    hyperparameters: HyperparametersField
    training: ModelTrainingRefField
    interpreter_constraints: ModelInterpreterConstraintsField
    platforms: ModelPlatformsField
    complete_platforms: ModelCompletePlatformsField
    output_path: OutputPathField

    @property
    def bundle_name(self) -> str:
        return f"{self.model_name.value}-{self.version.value}"

    def field_error(self, alias: str, problem: str) -> InvalidFieldException:
        return InvalidFieldException(f"The {alias!r} field in target {self.address} {problem}")


@dataclass(frozen=True)
class ModelWeights:
    """The files of `weights/`, relative to it, and where they came from."""

    digest: Digest
    training: dict[str, Any] | None
    measured_metrics: dict[str, float]
    hyperparameters: dict[str, Any]
    train_inputs: Digest | None = None  # what an in-build training's link records
    train_materials: tuple[str, ...] = ()
    imported_link: Digest | None = None  # an imported training link, at provenance/<name>


async def _single_file_entry(path: str) -> FileEntry | None:
    entries = await Get(DigestEntries, PathGlobs([path]))
    files = [e for e in entries if isinstance(e, FileEntry)]
    return files[0] if files else None


async def _declared_weights(fs: ModelArtifactFieldSet, build_root: BuildRoot) -> Digest:
    sources = await Get(Snapshot, PathGlobs, fs.weights.strict_path_globs())
    # Pants follows symbolic links when it snapshots files, so ask the file system itself.
    for path in sources.files:
        if os.path.islink(os.path.join(build_root.path, path)):
            raise fs.field_error(
                ModelWeightsField.alias,
                f"matches {path}, a symbolic link. Weights must be regular files, so that what "
                "is packaged is what the repository holds: copy the file in place of the link.",
            )
    if not fs.address.spec_path:
        return sources.digest
    return await Get(Digest, RemovePrefix(sources.digest, fs.address.spec_path))


@rule(desc="Gathering model weights", level=LogLevel.DEBUG)
async def gather_weights(fs: ModelArtifactFieldSet, build_root: BuildRoot) -> ModelWeights:
    ref = fs.training.value
    if ref and not fs.training.is_link_file():
        if fs.weights.value:
            raise fs.field_error(
                ModelWeightsField.alias,
                f"is set, but `training={ref!r}` names a model_training target whose outputs are "
                "the weights. Remove one of the two.",
            )
        address = await Get(Address, AddressInput, fs.training.target_input(fs.address))
        trained = await Get(
            TrainedModel,
            TrainModelRequest(address, f"The `training` field of {fs.address}"),
        )
        metrics_entry = await Get(DigestEntries, Digest, trained.metrics_digest)
        return ModelWeights(
            digest=trained.outputs,
            training={
                "kind": "model_training",
                "address": str(trained.address),
                "metrics_sha256": metrics_entry[0].file_digest.fingerprint
                if metrics_entry and isinstance(metrics_entry[0], FileEntry) else "",
            },
            measured_metrics=dict(trained.metrics),
            hyperparameters=dict(trained.hyperparameters),
            train_inputs=trained.link_inputs,
            train_materials=trained.link_materials,
        )
    if not fs.weights.value:
        raise fs.field_error(
            ModelWeightsField.alias,
            "is empty: list the model's files, or name a model_training target in `training`.",
        )
    digest = await _declared_weights(fs, build_root)
    training = None
    if ref:
        link_path = f"{fs.address.spec_path}/{ref}" if fs.address.spec_path else ref
        link = await _single_file_entry(link_path)
        if link is None:
            raise fs.field_error(
                ModelTrainingRefField.alias,
                f"names the training link {ref!r}, but there is no such file in "
                f"{fs.address.spec_path or 'the build root'}.",
            )
        training = {"kind": "link", "path": ref, "link_sha256": link.file_digest.fingerprint}
        imported = FileEntry(f"provenance/{os.path.basename(ref)}", link.file_digest)
        link_digest = await Get(Digest, CreateDigest([imported]))
        return ModelWeights(
            digest, training, {}, dict(fs.hyperparameters.value or {}), imported_link=link_digest
        )
    return ModelWeights(digest, training, {}, dict(fs.hyperparameters.value or {}))


async def _check_entry_point(fs: ModelArtifactFieldSet, roots: Addresses) -> Snapshot:
    """Fails unless the entry point's module is among the sources of the PEX's closure; returns
    them (unstripped)."""
    closure = await Get(TransitiveTargets, TransitiveTargetsRequest(roots))
    request = PythonSourceFilesRequest(closure.closure, include_resources=False)
    unstripped = await Get(PythonSourceFiles, PythonSourceFilesRequest, request)
    sources = await Get(StrippedPythonSourceFiles, PythonSourceFiles, unstripped)
    module = (fs.entry_point.value or "").split(":")[0]
    candidates = {module.replace(".", "/") + ".py", module.replace(".", "/") + "/__init__.py"}
    if not candidates & set(sources.stripped_source_files.snapshot.files):
        raise fs.field_error(
            ModelEntryPointField.alias,
            f"names the module {module!r}, which is not among the Python sources the target "
            "depends on. Add the handler's python_sources to `dependencies`, or correct the "
            "module path (relative to its source root).",
        )
    return unstripped.source_files.snapshot


def _merge_metrics(fs: ModelArtifactFieldSet, measured: dict[str, float]) -> dict[str, float]:
    declared = dict(fs.metrics.value or {})
    for name, value in measured.items():
        if name in declared and declared[name] != value:
            raise fs.field_error(
                ModelMetricsField.alias,
                f"says {name}={declared[name]!r}, but the training measured {value!r}. Drop the "
                "declared value: measured metrics are recorded as measured.",
            )
    return {**declared, **measured}


async def _lock(fs: ModelArtifactFieldSet, roots: Addresses, python: PythonSetup) -> FileEntry:
    if not python.enable_resolves:
        raise ValueError(
            f"Packaging {fs.address} needs a pinned lock to record in the manifest: set "
            "`[python].enable_resolves = true` and a lockfile for each resolve in pants.toml."
        )
    resolve = await Get(ChosenPythonResolve, ChosenPythonResolveRequest(roots))
    entry = await _single_file_entry(resolve.lockfile.url)
    if entry is None:
        raise ValueError(
            f"The lockfile {resolve.lockfile.url} of the resolve `{resolve.name}`, which "
            f"{fs.address} is built from, does not exist. Generate it."
        )
    return entry


def _file_rows(entries: DigestEntries, prefix: str) -> list[dict[str, Any]]:
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


@rule(desc="Packaging a model artifact", level=LogLevel.DEBUG)
async def package_model_artifact(fs: ModelArtifactFieldSet, python: PythonSetup) -> BuiltPackage:
    # The PEX is built from the dependencies, whose resolve (and interpreter constraints) it uses.
    roots = await pex_roots(fs.dependencies)
    # Everything the BUILD file can get wrong is checked before anything is built.
    sources = await _check_entry_point(fs, roots)
    weights = await Get(ModelWeights, ModelArtifactFieldSet, fs)
    metrics = _merge_metrics(fs, weights.measured_metrics)
    tool, runtime, info, keys = await MultiGet(
        Get(ModelsealTool, ModelsealToolRequest()),
        Get(RuntimeSources, RuntimeSourcesRequest()),
        Get(BuildInfo, BuildInfoRequest()),
        Get(SigningKeys, SigningKeysRequest()),
    )
    lock = await _lock(fs, roots, python)
    complete_platforms = await Get(
        CompletePlatforms, UnparsedAddressInputs, fs.complete_platforms.to_unparsed_address_inputs()
    )
    constraints = fs.interpreter_constraints.value
    pex_request = await Get(
        PexRequest,
        PexFromTargetsRequest(
            roots,
            output_filename="model.pex",
            internal_only=False,
            main=EntryPoint("modelseal.embedded.runtime", "main"),
            platforms=PexPlatforms.create_from_platforms_field(fs.platforms),
            complete_platforms=complete_platforms,
            additional_sources=runtime.digest,
            hardcoded_interpreter_constraints=InterpreterConstraints(constraints)
            if constraints else None,
            description=f"Building model.pex for {fs.address}",
        ),
    )
    pex = await Get(Pex, PexRequest, await _without_empty_superset(pex_request))
    weight_entries = await Get(DigestEntries, Digest, weights.digest)
    pex_entries = await Get(DigestEntries, Digest, pex.digest)
    spec = {
        "name": fs.model_name.value,
        "version": fs.version.value,
        "entry_point": fs.entry_point.value,
        "trust": "development" if keys.development else "release",
        "runtime": {
            "interpreter_constraints": sorted(str(c) for c in pex_request.interpreter_constraints),
            "platforms": sorted(fs.platforms.value or ()),
            "complete_platforms": sorted(fs.complete_platforms.value or ()),
            "pex": "model.pex",
        },
        "files": sorted(
            _file_rows(weight_entries, "weights/") + _file_rows(pex_entries, ""),
            key=lambda row: row["path"],
        ),
        "metrics": metrics,
        "license": fs.license.value or "",
        "description": fs.description.value or "",
        "datasets": dict(fs.datasets.value or {}),
        "hyperparameters": weights.hyperparameters,
        "training": weights.training,
        "build": {
            "commit": info.commit,
            "source_date_epoch": info.source_date_epoch,
            "lock_sha256": lock.file_digest.fingerprint,
            "pants_version": PANTS_VERSION,
        },
    }
    spec_digest = await Get(
        Digest, CreateDigest([FileContent("spec.json", json.dumps(spec, sort_keys=True).encode())])
    )
    manifest = await Get(
        ProcessResult,
        VenvPexProcess(
            tool.pex,
            argv=("manifest", "--spec", "spec.json", "--out", "manifest.json"),
            input_digest=spec_digest,
            output_files=("manifest.json",),
            description=f"Writing the manifest of {fs.address}",
            level=LogLevel.DEBUG,
        ),
    )
    bundle = await Get(
        Digest,
        MergeDigests(
            [
                await Get(Digest, AddPrefix(weights.digest, "weights")),
                pex.digest,
                manifest.output_digest,
            ]
        ),
    )
    package_materials = await Get(Digest, CreateDigest([lock]))
    # What the PEX was made of: the handler's sources, the modelseal runtime, the lock.
    package_materials = await Get(
        Digest, MergeDigests([package_materials, sources.digest, runtime.digest])
    )
    runtime_files = await Get(Snapshot, Digest, runtime.digest)
    # Pants' own sha256 of every bundle file: the links and model.sig use these, so the weights
    # are hashed once, by Pants, when it snapshots them.
    bundle_entries = await Get(DigestEntries, Digest, bundle)
    known = {
        row["path"]: {"sha256": row["sha256"], "size": row["size"]}
        for row in _file_rows(bundle_entries, "")
    }
    known_digests = await Get(
        Digest,
        CreateDigest(
            [FileContent(KNOWN_DIGESTS_PATH, json.dumps(known, sort_keys=True).encode())]
        ),
    )
    signed = await Get(
        SignedBundle,
        SignBundleRequest(
            bundle=bundle,
            bundle_name=fs.bundle_name,
            address=str(fs.address),
            source_date_epoch=info.source_date_epoch,
            train_inputs=weights.train_inputs,
            train_materials=weights.train_materials,
            train_products=tuple(
                f"weights/{e.path}" for e in weight_entries if isinstance(e, FileEntry)
            ),
            imported_train_link=weights.imported_link,
            package_materials=package_materials,
            package_material_paths=(lock.path, *sources.files, *runtime_files.files),
            known_digests=known_digests,
        ),
    )
    bundle = await Get(Digest, AddPrefix(signed.digest, fs.bundle_name))
    tar_name = f"{fs.bundle_name}.tar"
    archive = await Get(
        ProcessResult,
        VenvPexProcess(
            tool.pex,
            argv=("archive", "--bundle", fs.bundle_name, "--out", tar_name,
                  "--mtime", str(info.source_date_epoch)),
            input_digest=bundle,
            output_files=(tar_name,),
            description=f"Archiving {fs.bundle_name} for {fs.address}",
            level=LogLevel.DEBUG,
        ),
    )
    out_dir = fs.output_path.value_or_default(file_ending=None)
    result = await Get(
        Digest,
        AddPrefix(await Get(Digest, MergeDigests([bundle, archive.output_digest])), out_dir),
    )
    return BuiltPackage(
        result,
        (
            # The directory itself is an artifact, so `package` clears it: no stale file survives.
            BuiltPackageArtifact(f"{out_dir}/{fs.bundle_name}"),
            BuiltPackageArtifact(f"{out_dir}/{tar_name}"),
        ),
    )


def rules() -> list[Rule | UnionRule]:
    return [*collect_rules(), UnionRule(PackageFieldSet, ModelArtifactFieldSet)]
