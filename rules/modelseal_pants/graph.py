"""Reading the build graph the way the model rules need it."""

from __future__ import annotations

from pants.core.target_types import LockfileTarget
from pants.engine.addresses import Addresses
from pants.engine.rules import Get
from pants.engine.target import Dependencies, DependenciesRequest, Targets

from modelseal_pants.evaluation_types import ModelEvaluationTarget
from modelseal_pants.target_types import ModelTrainingTarget


async def pex_roots(dependencies: Dependencies) -> Addresses:
    """The targets a model's PEX is built from: its direct dependencies, target generators (e.g.
    `python_sources`) replaced by the targets they generate, which carry the `resolve` field
    that Pants chooses the lock by. The dependencies `dependencies.py` infers for `pants
    dependents` (the `model_training` and `model_evaluation` targets, the resolve's
    lock file) are not part of the PEX."""
    targets = await Get(Targets, DependenciesRequest(dependencies))
    return Addresses(
        target.address
        for target in targets
        if not isinstance(target, (LockfileTarget, ModelTrainingTarget, ModelEvaluationTarget))
    )
