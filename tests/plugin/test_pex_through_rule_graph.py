"""The offline pex tool works in RuleRunner tests: a real PEX is built through the rule graph."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import toml
from pants.backend.python import target_types_rules
from pants.backend.python.goals import package_pex_binary
from pants.backend.python.goals.package_pex_binary import PexBinaryFieldSet
from pants.backend.python.target_types import PexBinary, PythonSourcesGeneratorTarget
from pants.backend.python.util_rules import pex_from_targets
from pants.build_graph.address import Address
from pants.core.goals.package import BuiltPackage
from pants.testutil.rule_runner import QueryRule, RuleRunner

from modelseal_pants import register


def pex_cli_options() -> list[str]:
    """The [pex-cli] options of the repo's pants.toml, with the path ./pants exported."""
    pex_cli = toml.load("pants.toml")["pex-cli"]
    url = pex_cli["url_template"].replace(
        "%(env.MODELSEAL_PEX_TOOL)s", os.environ["MODELSEAL_PEX_TOOL"]
    )
    return [
        f"--pex-cli-version={pex_cli['version']}",
        f"--pex-cli-known-versions={pex_cli['known_versions']!r}",
        f"--pex-cli-url-template={url}",
    ]


@pytest.fixture
def rule_runner() -> RuleRunner:
    runner = RuleRunner(
        rules=[
            *package_pex_binary.rules(),
            *pex_from_targets.rules(),
            *target_types_rules.rules(),
            QueryRule(BuiltPackage, [PexBinaryFieldSet]),
        ],
        target_types=[PexBinary, PythonSourcesGeneratorTarget],
    )
    runner.set_options(
        [
            *pex_cli_options(),
            "--python-interpreter-constraints=['CPython==3.9.*']",
            "--python-bootstrap-search-path=['<PATH>', '<PYENV>']",
        ],
        env_inherit={"PATH", "PYENV_ROOT", "HOME"},
    )
    return runner


def test_builds_and_runs_a_pex(rule_runner: RuleRunner) -> None:
    rule_runner.write_files(
        {
            "app/BUILD": "python_sources()\npex_binary(name='bin', entry_point='main.py')\n",
            "app/main.py": "import sys\nprint('built offline on', sys.version_info[0])\n",
        }
    )
    target = rule_runner.get_target(Address("app", target_name="bin"))
    built = rule_runner.request(BuiltPackage, [PexBinaryFieldSet.create(target)])
    assert [artifact.relpath for artifact in built.artifacts] == ["app/bin.pex"]

    rule_runner.write_digest(built.digest)
    pex = Path(rule_runner.build_root, "app/bin.pex")
    result = subprocess.run([sys.executable, str(pex)], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "built offline on 3"


def test_pants_toml_loads_the_backend() -> None:
    config = toml.load("pants.toml")["GLOBAL"]
    assert "modelseal_pants" in config["backend_packages"]
    assert "%(buildroot)s/rules" in config["pythonpath"]
    assert register.__name__ == "modelseal_pants.register"
