"""Dependencies a `model_artifact` has without naming them, so that `pants dependents` and
`--changed-dependents` find every model whose bundle a change alters:

- its `model_training` target (the `training` field): the training's data files and code make the
  weights, so a changed dataset must name the model, not only the training;
- its `model_evaluation` target (the `evaluation` field): the evaluation data, examples and
  schemas go into `evaluation.json` and the manifest, and a changed gate can stop the build, so a
  change to any of them must name the model too;
- the lock file of its resolve: the manifest records the lock's sha256 and the package link lists
  the lock, so a changed lock alters every model of that resolve, also those whose PEX holds no
  third-party package. Pants itself only makes each requirement depend on the lock.

None of them is part of the model's PEX (see `graph.pex_roots`).
"""

from __future__ import annotations

import os
from dataclasses import dataclass

from pants.backend.python.goals.lockfile import (
    PythonSyntheticLockfileTargetsRequest,
    synthetic_lockfile_target_name,
)
from pants.backend.python.subsystems.setup import PythonSetup
from pants.backend.python.target_types import PythonResolveField
from pants.engine.addresses import Address, Addresses, AddressInput
from pants.engine.internals.synthetic_targets import SyntheticTargetsRequest
from pants.engine.rules import Get, Rule, collect_rules, rule
from pants.engine.target import (
    DependenciesRequest,
    ExplicitlyProvidedDependencies,
    FieldSet,
    InferDependenciesRequest,
    InferredDependencies,
    Targets,
)
from pants.engine.unions import UnionMembership, UnionRule
from pants.util.logging import LogLevel

from modelseal_pants.evaluation_types import ModelEvaluationRefField
from modelseal_pants.target_types import ModelArtifactDependenciesField, ModelTrainingRefField


@dataclass(frozen=True)
class ModelArtifactInferenceFieldSet(FieldSet):
    required_fields = (ModelArtifactDependenciesField,)

    dependencies: ModelArtifactDependenciesField
    training: ModelTrainingRefField
    evaluation: ModelEvaluationRefField


class InferModelArtifactDependencies(InferDependenciesRequest):
    infer_from = ModelArtifactInferenceFieldSet


def lockfile_address(
    resolve: str, python: PythonSetup, union_membership: UnionMembership
) -> Address | None:
    """The synthetic target Pants makes for a resolve's lock file (what requirements depend on),
    if Pants makes one."""
    lockfile = python.resolves.get(resolve)
    if (
        not lockfile
        or not python.enable_synthetic_lockfiles
        or PythonSyntheticLockfileTargetsRequest
        not in union_membership.get(SyntheticTargetsRequest)
    ):
        return None
    return Address(
        os.path.dirname(lockfile),
        target_name=synthetic_lockfile_target_name(resolve),
        relative_file_path=os.path.basename(lockfile),
    )


@rule(
    desc="Inferring a model artifact's training, evaluation and lock dependencies",
    level=LogLevel.DEBUG,
)
async def infer_model_artifact_dependencies(
    request: InferModelArtifactDependencies, python: PythonSetup, union_membership: UnionMembership
) -> InferredDependencies:
    fs = request.field_set
    include: list[Address] = []
    ref = fs.training.value
    if ref and not fs.training.is_link_file():
        include.append(await Get(Address, AddressInput, fs.training.target_input(fs.address)))
    if fs.evaluation.value:
        include.append(await Get(Address, AddressInput, fs.evaluation.target_input(fs.address)))
    # The resolve, from the explicitly listed dependencies (the inferred ones are being computed).
    explicit = await Get(ExplicitlyProvidedDependencies, DependenciesRequest(fs.dependencies))
    targets = await Get(Targets, Addresses(explicit.includes))
    resolves = {
        target[PythonResolveField].normalized_value(python)
        for target in targets
        if target.has_field(PythonResolveField)
    }
    if len(resolves) == 1:
        lockfile = lockfile_address(resolves.pop(), python, union_membership)
        if lockfile is not None:
            include.append(lockfile)
    return InferredDependencies(include)


def rules() -> list[Rule | UnionRule]:
    return [
        *collect_rules(),
        UnionRule(InferDependenciesRequest, InferModelArtifactDependencies),
    ]
