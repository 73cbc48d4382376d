"""`pants dependents` names every model a change alters: through its `model_training` target (a
changed dataset), through its `model_evaluation` target (changed evaluation data, examples or
schemas) and through its resolve's lock file (the manifest records the lock's digest), also for a
model whose PEX holds no third-party package."""

from __future__ import annotations

import pytest
from pants.backend.project_info import dependents
from pants.backend.project_info.dependents import DependentsGoal
from pants.backend.python import register as python_backend
from pants.backend.python import target_types_rules
from pants.backend.python.dependency_inference import rules as python_inference
from pants.backend.python.goals import lockfile
from pants.core.target_types import (
    FilesGeneratorTarget,
    FileTarget,
    LockfilesGeneratorTarget,
    LockfileTarget,
)
from pants.core.target_types import rules as core_target_type_rules
from pants.testutil.rule_runner import RuleRunner

from modelseal_pants import dependencies
from modelseal_pants.evaluation_types import ModelEvaluationRefField, ModelEvaluationTarget
from modelseal_pants.target_types import ModelArtifactTarget, ModelTrainingTarget
from plugin.test_pex_through_rule_graph import pex_cli_options

HANDLER = "def load(weights_dir):\n    return 1\n\n\ndef predict(model, inputs):\n    return 1\n"


INHERIT = {"PATH", "PYENV_ROOT", "HOME"}


def options() -> list[str]:
    return [
        *pex_cli_options(),
        "--python-infer-use-rust-parser",
        "--python-bootstrap-search-path=['<PATH>', '<PYENV>']",
        "--source-root-patterns=['models']",
        "--python-enable-resolves",
        "--python-resolves={'a': '3rdparty/a.lock', 'b': '3rdparty/b.lock'}",
        "--python-default-resolve=a",
        "--python-invalid-lockfile-behavior=ignore",
    ]


@pytest.fixture(scope="module")
def rule_runner() -> RuleRunner:
    """One engine for the file: no test writes a file, and each sets its options anew
    (`models_depending_on`), so a new engine per test would only redo Pants' start-up work."""
    runner = RuleRunner(
        rules=[
            *dependencies.rules(),
            *dependents.rules(),
            *lockfile.rules(),
            *target_types_rules.rules(),
            *core_target_type_rules(),
            *python_inference.rules(),
            ModelArtifactTarget.register_plugin_field(ModelEvaluationRefField),
        ],
        target_types=[*python_backend.target_types(), ModelArtifactTarget, ModelTrainingTarget,
                      ModelEvaluationTarget, FileTarget, FilesGeneratorTarget, LockfileTarget,
                      LockfilesGeneratorTarget],
    )
    runner.set_options(options(), env_inherit=INHERIT)
    runner.write_files(
        {
            "3rdparty/a.lock": "six==1.16.0\n",
            "3rdparty/b.lock": "six==1.16.0\n",
            "3rdparty/BUILD": "python_requirement(name='six', requirements=['six'], resolve='a')",
            # trained in the build from a CSV; its handler uses a third-party package
            "models/trained/BUILD": (
                "python_sources(resolve='a')\n"
                "model_training(name='train', entry_point='trained.handler:load', "
                "data=['data.csv'], dependencies=['models/trained/handler.py'], "
                "outputs=['w.bin'])\n"
                "model_artifact(name='model', model_name='t', version='1', "
                "entry_point='trained.handler', dependencies=['models/trained/handler.py'], "
                "training=':train')\n"
            ),
            "models/trained/handler.py": "import six\n\n" + HANDLER,
            "models/trained/data.csv": "x\n1\n",
            # standard library only, same resolve: its manifest still records a.lock's digest
            "models/plain/BUILD": (
                "python_sources(resolve='a')\n"
                "model_artifact(name='model', model_name='p', version='1', "
                "entry_point='plain.handler', dependencies=['models/plain/handler.py'], "
                "weights=['w.bin'])\n"
            ),
            "models/plain/handler.py": HANDLER,
            "models/plain/w.bin": "w",
            # evaluated: its evaluation's data, examples and schemas name it
            "models/evaluated/BUILD": (
                "python_sources(resolve='a')\n"
                "model_artifact(name='model', model_name='e', version='1', "
                "entry_point='evaluated.handler', dependencies=['models/evaluated/handler.py'], "
                "weights=['w.bin'], evaluation=':eval')\n"
                "model_evaluation(name='eval', data=['eval/*.csv'], dataset_license='CC0-1.0', "
                "examples='examples.json', input_schema='in.schema.json', "
                "output_schema='out.schema.json', gates=['accuracy >= 0.5'])\n"
            ),
            "models/evaluated/handler.py": HANDLER,
            "models/evaluated/w.bin": "w",
            "models/evaluated/eval/held-out.csv": "x\n1\n",
            "models/evaluated/examples.json": "[1]",
            "models/evaluated/in.schema.json": "{}",
            "models/evaluated/out.schema.json": "{}",
            # another resolve
            "models/other/BUILD": (
                "python_sources(resolve='b')\n"
                "model_artifact(name='model', model_name='o', version='1', "
                "entry_point='other.handler', dependencies=[':other'], weights=['w.bin'])\n"
            ),
            "models/other/handler.py": HANDLER,
            "models/other/w.bin": "w",
        }
    )
    return runner


def models_depending_on(rule_runner: RuleRunner, spec: str) -> set[str]:
    # run_goal_rule sets the options anew: pass them again.
    result = rule_runner.run_goal_rule(
        DependentsGoal, global_args=options(), args=["--transitive", spec], env_inherit=INHERIT
    )
    assert result.exit_code == 0
    return {line for line in result.stdout.splitlines() if line.endswith(":model")}


def test_a_changed_dataset_names_the_model_trained_on_it(rule_runner: RuleRunner) -> None:
    assert models_depending_on(rule_runner, "models/trained/data.csv") == {"models/trained:model"}


def test_a_changed_lock_names_every_model_of_its_resolve(rule_runner: RuleRunner) -> None:
    assert models_depending_on(rule_runner, "3rdparty/a.lock") == {
        "models/trained:model",
        "models/plain:model",
        "models/evaluated:model",
    }
    assert models_depending_on(rule_runner, "3rdparty/b.lock") == {"models/other:model"}


def test_a_requirement_names_only_the_models_importing_it(rule_runner: RuleRunner) -> None:
    assert models_depending_on(rule_runner, "3rdparty:six") == {"models/trained:model"}


@pytest.mark.parametrize(
    "path", ["eval/held-out.csv", "examples.json", "in.schema.json", "out.schema.json"]
)
def test_a_changed_evaluation_file_names_the_model_evaluated_on_it(
    rule_runner: RuleRunner, path: str
) -> None:
    assert models_depending_on(rule_runner, f"models/evaluated/{path}") == {
        "models/evaluated:model"
    }
    # and only that model: the evaluation target is not a dependency of the others
    assert models_depending_on(rule_runner, "models/evaluated:eval") == {"models/evaluated:model"}
