"""The `rule_runner` fixture of every plugin test (tests/plugin/runner.py builds it)."""

from __future__ import annotations

from pathlib import Path

import pytest
from pants.testutil.rule_runner import RuleRunner

from plugin.runner import make_rule_runner


@pytest.fixture
def rule_runner(tmp_path: Path) -> RuleRunner:
    return make_rule_runner(tmp_path)
