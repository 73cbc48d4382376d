"""`model_training`: trains a model in a sandbox and hands its outputs to a `model_artifact`."""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import dataclass

from pants.backend.python.target_types import EntryPoint, PythonSourceField
from pants.backend.python.util_rules.pex import PexRequest, VenvPex, VenvPexProcess
from pants.backend.python.util_rules.pex_from_targets import (
    ChosenPythonResolve,
    ChosenPythonResolveRequest,
    PexFromTargetsRequest,
)
from pants.core.util_rules.source_files import SourceFiles, SourceFilesRequest
from pants.engine.addresses import Address
from pants.engine.fs import (
    AddPrefix,
    CreateDigest,
    Digest,
    DigestContents,
    DigestSubset,
    FileContent,
    MergeDigests,
    PathGlobs,
    RemovePrefix,
    Snapshot,
)
from pants.engine.process import ProcessResult
from pants.engine.rules import Get, Rule, collect_rules, rule
from pants.engine.target import (
    FieldSet,
    InvalidFieldException,
    TransitiveTargets,
    TransitiveTargetsRequest,
    WrappedTarget,
    WrappedTargetRequest,
)
from pants.util.frozendict import FrozenDict
from pants.util.logging import LogLevel

from modelseal_pants.graph import pex_roots
from modelseal_pants.invocation import Train
from modelseal_pants.target_types import (
    HyperparametersField,
    TrainingDataField,
    TrainingDependenciesField,
    TrainingEntryPointField,
    TrainingOutputsField,
    TrainingSeedField,
)
from modelseal_pants.tool import RuntimeSources, RuntimeSourcesRequest
from modelseal_pants.workspace_files import WorkspaceFiles, WorkspaceFilesRequest

METRICS_FILE = "metrics.json"
ENVIRONMENT_FILE = "environment.json"


@dataclass(frozen=True)
class TrainingFieldSet(FieldSet):
    required_fields = (TrainingEntryPointField, TrainingOutputsField)

    data: TrainingDataField
    dependencies: TrainingDependenciesField
    entry_point: TrainingEntryPointField
    seed: TrainingSeedField
    hyperparameters: HyperparametersField
    outputs: TrainingOutputsField


@dataclass(frozen=True)
class TrainModelRequest:
    address: Address
    description_of_origin: str


@dataclass(frozen=True)
class TrainedModel:
    address: Address
    outputs: Digest  # the declared outputs, relative to the training's output directory
    # For the train link: the data, hyper-parameters, training code and lock (materials), the
    # metrics file (a product besides the weights) and environment.json, at the paths it names.
    link_inputs: Digest
    link_materials: tuple[str, ...]
    metrics: FrozenDict[str, float]
    metrics_digest: Digest  # metrics.json, as the training wrote it
    hyperparameters: FrozenDict[str, object]


async def _data_digest(field_set: TrainingFieldSet) -> Digest:
    # Read as the weights are (workspace_files.py): datasets can be large.
    sources = await Get(
        WorkspaceFiles,
        WorkspaceFilesRequest(
            field_set.data.strict_path_globs(), f"the data of {field_set.address}",
            follow_links=True,
        ),
    )
    relative = sources.digest
    if field_set.address.spec_path:
        relative = await Get(Digest, RemovePrefix(relative, field_set.address.spec_path))
    return await Get(Digest, AddPrefix(relative, "data"))


@rule(desc="Training a model", level=LogLevel.DEBUG)
async def train_model(request: TrainModelRequest) -> TrainedModel:
    wrapped = await Get(
        WrappedTarget, WrappedTargetRequest(request.address, request.description_of_origin)
    )
    if not TrainingFieldSet.is_applicable(wrapped.target):
        raise InvalidFieldException(
            f"{request.description_of_origin} names {request.address}, which is a "
            f"`{wrapped.target.alias}` target, not a `model_training` target."
        )
    field_set = TrainingFieldSet.create(wrapped.target)
    runtime = await Get(RuntimeSources, RuntimeSourcesRequest())
    # Built from the dependencies, so the PEX uses their resolve and interpreter constraints.
    roots = await pex_roots(field_set.dependencies)
    pex_request = await Get(
        PexRequest,
        PexFromTargetsRequest(
            roots,
            output_filename="train.pex",
            internal_only=True,
            main=EntryPoint("modelseal.embedded.training", "main"),
            additional_sources=runtime.digest,
        ),
    )
    pex = await Get(VenvPex, PexRequest, pex_request)
    data = await _data_digest(field_set)
    hyperparameters = dict(field_set.hyperparameters.value or {})
    config = await Get(
        Digest,
        CreateDigest(
            [FileContent("hyperparameters.json", json.dumps(hyperparameters).encode())]
        ),
    )
    inputs = await Get(Digest, MergeDigests([data, config]))
    result = await Get(
        ProcessResult,
        VenvPexProcess(
            pex,
            argv=Train(
                entry_point=field_set.entry_point.value or "",
                data="data",
                out="out",
                seed=field_set.seed.value or 0,
                hyperparameters="hyperparameters.json",
                metrics=METRICS_FILE,
                environment=ENVIRONMENT_FILE,
            ).argv(),
            input_digest=inputs,
            output_directories=("out",),
            output_files=(METRICS_FILE, ENVIRONMENT_FILE),
            # One thread and a fixed hash seed: the same inputs give the same bytes.
            extra_env={
                "PYTHONHASHSEED": str(field_set.seed.value),
                "OMP_NUM_THREADS": "1",
                "OPENBLAS_NUM_THREADS": "1",
                "MKL_NUM_THREADS": "1",
            },
            description=f"Training {field_set.address}",
            level=LogLevel.INFO,
        ),
    )
    written = await Get(Digest, DigestSubset(result.output_digest, PathGlobs(["out/**"])))
    out = await Get(Digest, RemovePrefix(written, "out"))
    declared = field_set.outputs.value or ()
    outputs = await Get(Snapshot, DigestSubset(out, PathGlobs(declared)))
    missing = sorted(set(declared) - set(outputs.files))
    if missing:
        raise InvalidFieldException(
            f"The training of {field_set.address} did not write {', '.join(missing)}, which its "
            f"{TrainingOutputsField.alias!r} field declares. Write them under `output_dir`, or "
            "correct the field."
        )
    metrics_digest = await Get(
        Digest, DigestSubset(result.output_digest, PathGlobs([METRICS_FILE]))
    )
    contents = await Get(DigestContents, Digest, metrics_digest)
    metrics = json.loads(contents[0].content) if contents else {}
    closure = await Get(TransitiveTargets, TransitiveTargetsRequest(roots))
    code = await Get(
        SourceFiles,
        SourceFilesRequest(
            t[PythonSourceField] for t in closure.closure if t.has_field(PythonSourceField)
        ),
    )
    resolve = await Get(ChosenPythonResolve, ChosenPythonResolveRequest(roots))
    lock = await Get(Digest, PathGlobs([resolve.lockfile.url]))
    reported = await Get(
        Digest, DigestSubset(result.output_digest, PathGlobs([METRICS_FILE, ENVIRONMENT_FILE]))
    )
    return TrainedModel(
        address=field_set.address,
        outputs=outputs.digest,
        link_inputs=await Get(Digest, MergeDigests([inputs, code.snapshot.digest, lock, reported])),
        link_materials=("data", "hyperparameters.json", resolve.lockfile.url,
                        *code.snapshot.files),
        metrics=FrozenDict(sorted(metrics.items())),
        metrics_digest=metrics_digest,
        hyperparameters=FrozenDict(sorted(hyperparameters.items())),
    )


def rules() -> Iterable[Rule]:
    return collect_rules()
