"""Entry point Pants loads for `backend_packages = ["modelseal_pants"]`."""

from __future__ import annotations

from collections.abc import Iterable

from pants.engine.rules import Rule
from pants.engine.target import Target
from pants.engine.unions import UnionRule

from modelseal_pants import (
    build_info,
    dependencies,
    invocation,
    package,
    publish,
    reproduce_goal,
    signing,
    tool,
    training,
    verify_goal,
)
from modelseal_pants.evaluation_types import ModelEvaluationRefField, ModelEvaluationTarget
from modelseal_pants.target_types import ModelArtifactTarget, ModelTrainingTarget


def target_types() -> Iterable[type[Target]]:
    return (ModelArtifactTarget, ModelTrainingTarget, ModelEvaluationTarget)


def rules() -> Iterable[Rule | UnionRule]:
    return (
        *build_info.rules(),
        *dependencies.rules(),
        *tool.rules(),
        *invocation.rules(),
        *training.rules(),
        *signing.rules(),
        *package.rules(),
        *publish.rules(),
        *verify_goal.rules(),
        *reproduce_goal.rules(),
        # `evaluation=":eval"` on model_artifact (evaluation_types.py).
        ModelArtifactTarget.register_plugin_field(ModelEvaluationRefField),
    )
