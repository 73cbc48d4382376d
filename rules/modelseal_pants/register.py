"""Entry point Pants loads for `backend_packages = ["modelseal_pants"]`."""

from __future__ import annotations

from collections.abc import Iterable

from pants.engine.rules import Rule
from pants.engine.target import Target
from pants.engine.unions import UnionRule


def target_types() -> Iterable[type[Target]]:
    return ()


def rules() -> Iterable[Rule | UnionRule]:
    return ()
