"""The manifest's interface and evaluation sections, as the `manifest` step writes them.

The build writes the manifest twice when an evaluation is declared: once with the interface, for
the smoke test and evaluation to run against (`model.pex evaluate` reads the interface from it),
and once more with the evaluation's summary, taken from the `evaluation.json` that run wrote. The
model's files are the same both times; only the manifest gains the summary.
"""

from __future__ import annotations

import dataclasses

from modelseal.embedded.schema import schema_problem
from modelseal.errors import SpecError
from modelseal.format.canonical import load_json
from modelseal.format.interface import InvalidSection, read_evaluation
from modelseal.format.spec import BundleSpec

__all__ = ["check_interface", "with_evaluation"]


def check_interface(spec: BundleSpec, source: str) -> None:
    """Refuse a schema that uses a keyword `model.pex` could not enforce, at build time."""
    if spec.interface is None:
        return
    for name, schema in (("input", spec.interface.input_schema),
                         ("output", spec.interface.output_schema)):
        problem = schema_problem(schema)
        if problem:
            raise SpecError(
                what=f"the {name} schema is outside the JSON Schema subset model.pex enforces: "
                f"{problem}",
                where=f"{source}: interface.{name}",
                remedy=f"fix the model_evaluation's {name}_schema file (docs/evaluation.md, "
                "'Interface')",
            )


def with_evaluation(spec: BundleSpec, evaluation_path: str) -> BundleSpec:
    """`spec` with the evaluation summary of the evaluation.json at `evaluation_path`."""
    with open(evaluation_path, "rb") as f:
        report = load_json(f.read())
    if not isinstance(report, dict):
        raise SpecError(what="expected a JSON object", where=evaluation_path,
                        remedy="re-run the build: model.pex evaluate writes this file")
    keys = ("metrics", "gates", "dataset", "outputs_sha256", "latency_samples")
    try:
        summary = read_evaluation(
            {
                **{key: report.get(key) for key in keys},
                "examples": (report.get("schema_checks") or {}).get("examples", 0),
            },
            "evaluation",
        )
    except InvalidSection as e:
        raise SpecError(what=f"{e.path}: {e.what}", where=evaluation_path,
                        remedy="re-run the build: model.pex evaluate writes this file") from None
    return dataclasses.replace(spec, evaluation=summary)
