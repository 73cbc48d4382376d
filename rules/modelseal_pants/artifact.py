"""Step 1 of `pants package` for `model_artifact`: the target's fields, its weights (declared, or
trained in the build) and every check of what the BUILD file can get wrong, before anything is
built."""

from __future__ import annotations

import os
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from pants.backend.python.subsystems.setup import PythonSetup
from pants.backend.python.util_rules.pex_from_targets import (
    ChosenPythonResolve,
    ChosenPythonResolveRequest,
)
from pants.backend.python.util_rules.python_sources import (
    PythonSourceFiles,
    PythonSourceFilesRequest,
    StrippedPythonSourceFiles,
)
from pants.base.build_root import BuildRoot
from pants.core.goals.package import (
    OutputPathField,
    PackageFieldSet,
)
from pants.engine.addresses import Address, Addresses, AddressInput
from pants.engine.fs import (
    CreateDigest,
    Digest,
    DigestEntries,
    FileEntry,
    PathGlobs,
    Paths,
    RemovePrefix,
    Snapshot,
)
from pants.engine.rules import Get, Rule, collect_rules, rule
from pants.engine.target import (
    InvalidFieldException,
    TransitiveTargets,
    TransitiveTargetsRequest,
)
from pants.util.logging import LogLevel

from modelseal_pants import workspace_files
from modelseal_pants.errors import LockfileError
from modelseal_pants.graph import pex_roots
from modelseal_pants.target_types import (
    HyperparametersField,
    ModelArchiveField,
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
    archive: ModelArchiveField
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
    globs = fs.weights.strict_path_globs()
    # Pants follows symbolic links when it lists files, so ask the file system itself.
    for path in (await Get(Paths, PathGlobs, globs)).files:
        if os.path.islink(os.path.join(build_root.path, path)):
            raise fs.field_error(
                ModelWeightsField.alias,
                f"matches {path}, a symbolic link. Weights must be regular files, so that what "
                "is packaged is what the repository holds: copy the file in place of the link.",
            )
    # Not a Pants snapshot: large weights are read once, by the tool (workspace_files.py).
    files = await Get(
        workspace_files.WorkspaceFiles,
        workspace_files.WorkspaceFilesRequest(globs, f"the weights of {fs.address}"),
    )
    if not fs.address.spec_path:
        return files.digest
    return await Get(Digest, RemovePrefix(files.digest, fs.address.spec_path))


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
        raise LockfileError(
            f"Packaging {fs.address} needs a pinned lock to record in the manifest: set "
            "`[python].enable_resolves = true` and a lockfile for each resolve in pants.toml."
        )
    resolve = await Get(ChosenPythonResolve, ChosenPythonResolveRequest(roots))
    entry = await _single_file_entry(resolve.lockfile.url)
    if entry is None:
        raise LockfileError(
            f"The lockfile {resolve.lockfile.url} of the resolve `{resolve.name}`, which "
            f"{fs.address} is built from, does not exist. Generate it."
        )
    return entry


@dataclass(frozen=True)
class CheckedModelArtifact:
    """Step 1: everything the BUILD file can get wrong, checked before anything is built."""

    roots: Addresses  # what model.pex is built from (its resolve and interpreter constraints)
    sources: Snapshot  # the handler's sources, unstripped: materials of the package link
    weights: ModelWeights
    metrics: dict[str, float]  # declared and measured
    lock: FileEntry  # the resolve's lockfile, recorded in the manifest


@rule(desc="Checking a model artifact", level=LogLevel.DEBUG)
async def check_model_artifact(
    fs: ModelArtifactFieldSet, python: PythonSetup
) -> CheckedModelArtifact:
    roots = await pex_roots(fs.dependencies)
    sources = await _check_entry_point(fs, roots)
    weights = await Get(ModelWeights, ModelArtifactFieldSet, fs)
    metrics = _merge_metrics(fs, weights.measured_metrics)
    lock = await _lock(fs, roots, python)
    return CheckedModelArtifact(roots, sources, weights, metrics, lock)


def rules() -> Iterable[Rule]:
    return (*collect_rules(), *workspace_files.rules())
