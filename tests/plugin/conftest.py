"""The `rule_runner` fixture of every plugin test (tests/plugin/runner.py builds it)."""

from __future__ import annotations

from pathlib import Path

import pytest
from pants.testutil.rule_runner import RuleRunner

from plugin.runner import make_rule_runner, reset


@pytest.fixture(scope="module")
def plugin_engine() -> RuleRunner:
    """One engine per test file: `runner.reset` says why and what each test still gets fresh."""
    return make_rule_runner()


@pytest.fixture
def rule_runner(plugin_engine: RuleRunner, tmp_path: Path) -> RuleRunner:
    reset(plugin_engine, tmp_path)
    return plugin_engine
