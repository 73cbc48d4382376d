"""Entry point Pants loads for `backend_packages = ["lint_imports"]`."""

from __future__ import annotations

from collections.abc import Iterable

from pants.engine.rules import Rule
from pants.engine.unions import UnionRule

from lint_imports import rules as lint_rules


def rules() -> Iterable[Rule | UnionRule]:
    return lint_rules.rules()
