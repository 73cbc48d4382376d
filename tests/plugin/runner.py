"""The RuleRunner the plugin tests share (tests/plugin/conftest.py makes it the `rule_runner`
fixture, one engine per test file, reset before each test): real Pants rules, real PEX builds,
the real modelseal tool, and a toy model to package.
"""

from __future__ import annotations

import os
from pathlib import Path

from pants.backend.python import register as python_backend
from pants.backend.python import target_types_rules
from pants.backend.python.util_rules import pex_from_targets, python_sources
from pants.build_graph.address import Address
from pants.core.goals import package as package_goal
from pants.core.goals.package import BuiltPackage
from pants.core.target_types import FilesGeneratorTarget, FileTarget
from pants.core.target_types import rules as core_target_type_rules
from pants.core.util_rules import system_binaries
from pants.engine.fs import Digest, DigestContents, PathGlobs
from pants.testutil.rule_runner import QueryRule, RuleRunner
from pants.util.dirutil import recursive_dirname

from modelseal_pants import register
from modelseal_pants.build_info import (
    BuildInfo,
    BuildInfoRequest,
    WorktreeChecked,
    WorktreeCheckRequest,
)
from modelseal_pants.package import ModelArtifactFieldSet
from modelseal_pants.signing import PublicKeys, PublicKeysRequest
from modelseal_pants.tool import RuntimeSources, RuntimeSourcesRequest
from modelseal_pants.training import TrainedModel, TrainModelRequest
from modelseal_pants.workspace_files import WorkspaceFiles, WorkspaceFilesRequest
from plugin.test_pex_through_rule_graph import pex_cli_options

HANDLER = '''\
import os


def load(weights_dir):
    with open(os.path.join(weights_dir, "nested", "scale.txt")) as f:
        return float(f.read())


def predict(model, inputs):
    return {"scaled": [x * model for x in inputs["values"]]}
'''


def modelseal_sources() -> dict[str, str]:
    """The real modelseal package, written into the RuleRunner's build root."""
    files = {
        path.as_posix(): path.read_text()
        for path in sorted(Path("src").glob("modelseal/**/*.py"))
    }
    # One python_sources per package directory, as in the repository.
    for package in {str(Path(name).parent) for name in files}:
        files[f"{package}/BUILD"] = "python_sources(name='lib')"
    return files


def options(validity_days: int = 73000) -> list[str]:
    return [
        *pex_cli_options(),
        "--source-root-patterns=['src', 'models']",
        "--python-interpreter-constraints=['CPython==3.9.*']",
        "--python-enable-resolves",
        "--python-resolves={'python-default': 'lock.txt'}",
        "--python-invalid-lockfile-behavior=ignore",
        "--python-bootstrap-search-path=['<PATH>', '<PYENV>']",
        # Not a git checkout: SOURCE_DATE_EPOCH falls back to 1980; the layout must live long.
        f"--modelseal-layout-validity-days={validity_days}",
        # The tool and runtime from the sources written above, as in this repository's pants.toml.
        "--modelseal-tool=//src/modelseal:lib",
        "--modelseal-runtime=['//src/modelseal/embedded/runtime.py:lib', "
        "'//src/modelseal/embedded/training.py:lib']",
    ]


INHERIT = {"PATH", "PYENV_ROOT", "HOME"}


def make_rule_runner() -> RuleRunner:
    """The plugin's rules with Pants' Python backend, the real modelseal sources and the real
    lock: what `./pants package` runs, minus the CLI. One per test file (conftest.py's
    `plugin_engine` fixture); `reset` gives each test the same clean build root and options."""
    runner = RuleRunner(
        rules=[
            *pex_from_targets.rules(),
            *python_sources.rules(),
            *target_types_rules.rules(),
            *system_binaries.rules(),
            *register.rules(),
            *package_goal.rules(),
            *core_target_type_rules(),
            QueryRule(BuiltPackage, [ModelArtifactFieldSet]),
            QueryRule(TrainedModel, [TrainModelRequest]),
            QueryRule(RuntimeSources, [RuntimeSourcesRequest]),
            QueryRule(BuildInfo, [BuildInfoRequest]),
            QueryRule(WorktreeChecked, [WorktreeCheckRequest]),
            QueryRule(PublicKeys, [PublicKeysRequest]),
            QueryRule(DigestContents, [Digest]),
            QueryRule(Digest, [PathGlobs]),
            QueryRule(WorkspaceFiles, [WorkspaceFilesRequest]),
        ],
        target_types=[*python_backend.target_types(), *register.target_types(),
                      FileTarget, FilesGeneratorTarget],
    )
    runner.write_files(base_files())
    return runner


def base_files() -> dict[str, str]:
    """What every test's build root starts with: the modelseal sources and the tool's lock."""
    return {
        **modelseal_sources(),
        # The real lock of the tool's resolve: the tool needs cryptography and in-toto.
        "lock.txt": Path("3rdparty/python/lock.txt").read_text(),
    }


def reset(runner: RuleRunner, keyring_home: Path) -> None:
    """Give the next test the build root and options a new RuleRunner would have.

    Why share one: a new RuleRunner is a new engine, which runs again what Pants keeps only for
    a process's lifetime (finding the interpreters and binaries, the development keyring's
    processes) and what it memoizes in memory; the persistent cache does not hold those. Every
    file a test added (a model, a 3rdparty/BUILD, a .git, a symlink, dist/) is removed and the
    base files are written back, and Pants is told of every path, so no test sees another's
    files; a new session with the default options drops options, environment and per-session
    process results (git, the keyring) a test set."""
    root = Path(runner.build_root)
    base = base_files()
    removed = []
    for directory, dirnames, filenames in os.walk(root, topdown=False):
        relative = Path(directory).relative_to(root)
        if relative.parts[:1] == (".pants.d",):
            continue
        for name in [*filenames, *(d for d in dirnames if Path(directory, d).is_symlink())]:
            path = (relative / name).as_posix()
            if path not in base:
                Path(directory, name).unlink()
                removed.append(path)
        if relative.parts and not any(Path(directory).iterdir()):
            Path(directory).rmdir()
            removed.append(relative.as_posix())
    changed = {
        path: text for path, text in base.items()
        if not Path(root, path).is_file() or Path(root, path).read_text() != text
    }
    runner.write_files(changed)
    runner.scheduler.invalidate_files({p for path in removed for p in recursive_dirname(path)})
    # A development keyring of the test's own: no key configured means the development default.
    runner.set_options(options(), env={"XDG_DATA_HOME": str(keyring_home)}, env_inherit=INHERIT)


def write_model(rule_runner: RuleRunner, **fields: str) -> None:
    arguments = {
        "model_name": "'toy'",
        "version": "'1.2.3'",
        "entry_point": "'toy.handler'",
        "dependencies": "['models/toy/handler.py']",
        "weights": "['nested/scale.txt', 'README.md']",
        "metrics": "{'accuracy': 0.5}",
        "license": "'MIT'",
        **fields,
    }
    rendered = ", ".join(f"{key}={value}" for key, value in arguments.items())
    rule_runner.write_files(
        {
            "models/toy/BUILD": f"python_sources()\nmodel_artifact(name='model', {rendered})\n",
            "models/toy/handler.py": HANDLER,
            "models/toy/nested/scale.txt": "2.5",
            "models/toy/README.md": "a toy model\n",
        }
    )


def package(rule_runner: RuleRunner, spec: str = "models/toy:model") -> BuiltPackage:
    address = Address(spec.split(":")[0], target_name=spec.split(":")[1])
    field_set = ModelArtifactFieldSet.create(rule_runner.get_target(address))
    return rule_runner.request(BuiltPackage, [field_set])


def contents(rule_runner: RuleRunner, built: BuiltPackage) -> dict[str, bytes]:
    return {c.path: c.content for c in rule_runner.request(DigestContents, [built.digest])}
