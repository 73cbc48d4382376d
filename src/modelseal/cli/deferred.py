"""Imports that cost the build more than their use: loaded when first used, not when imported.

`jsonschema` (CycloneDX's schema validator, which checks every SBOM the build writes) imports
`rfc3987_syntax` when it is imported, and that module builds an Earley parser of RFC 3987's
grammar at import time: about 1.7 CPU seconds, four fifths of the SBOM step of a small change
next to big weights (docs/benchmarks.md, "Issue #17, third round"). jsonschema calls it only for
values whose schema format is `iri` or `iri-reference`, which the SBOMs modelseal writes today do
not contain. A stand-in module with the one function jsonschema takes from it loads the real
module at the first such value, so every value is checked exactly as before and the parser is
built only when one needs it.
"""

from __future__ import annotations

import importlib
import importlib.util
import sys
import types
from typing import Any

MODULE = "rfc3987_syntax"


def defer_rfc3987_syntax() -> None:
    """Install the stand-in, unless jsonschema or the module is already loaded or absent (then
    there is nothing to defer: jsonschema skips the IRI formats itself without the module)."""
    if MODULE in sys.modules or "jsonschema" in sys.modules:
        return
    if importlib.util.find_spec(MODULE) is None:
        return
    stand_in = types.ModuleType(MODULE, "loads the real rfc3987_syntax when first used")
    real: list[Any] = []

    def is_valid_syntax(term: str, value: str) -> bool:
        if not real:
            if sys.modules.get(MODULE) is stand_in:
                del sys.modules[MODULE]
            real.append(importlib.import_module(MODULE))
        return bool(real[0].is_valid_syntax(term, value))

    stand_in.is_valid_syntax = is_valid_syntax  # type: ignore[attr-defined]
    sys.modules[MODULE] = stand_in
