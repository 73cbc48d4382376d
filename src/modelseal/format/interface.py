"""The manifest's `interface` (what `predict` accepts and returns) and `evaluation` (what the build
measured before it signed) sections, and the gates an evaluation is held to.

Both sections are optional, so a manifest without them keeps its bytes; a model that declares a
`model_evaluation` gets both. The schemas are stored as given (JSON Schema, of the subset
`modelseal.embedded.schema` enforces: the build refuses any other keyword before it packages).
Deterministic facts only: measured latency and memory vary from run to run, so they live in the
signed `evaluate` link's byproducts, never here (docs/evaluation.md).
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from modelseal.format.canonical import canonical_json, join_path

__all__ = [
    "GATE_OPS",
    "MEASURED_METRICS",
    "EvaluationSummary",
    "Gate",
    "Interface",
    "InvalidSection",
    "describe_sections",
    "parse_gate",
    "read_evaluation",
    "read_interface",
]

# Metrics the `measure` step takes (wall clock and memory): gated at build time and recorded in
# the evaluate link, never in evaluation.json or the manifest.
MEASURED_METRICS = ("p50_latency_ms", "p95_latency_ms", "max_latency_ms", "peak_rss_mb")
GATE_OPS = (">=", "<=", ">", "<", "==")
_GATE_RE = re.compile(r"\s*([A-Za-z_][A-Za-z0-9_.]*)\s*(>=|<=|==|>|<)\s*(\S+)\s*")


class InvalidSection(ValueError):
    """A malformed section: `path` names the field (the manifest turns it into its own error)."""

    def __init__(self, path: str, what: str) -> None:
        super().__init__(f"{path}: {what}")
        self.path = path
        self.what = what


@dataclass(frozen=True)
class Gate:
    """`metric op threshold`, e.g. accuracy >= 0.9: the build stops when it does not hold."""

    metric: str
    op: str
    threshold: float

    def holds(self, value: float) -> bool:
        return {
            ">=": value >= self.threshold,
            "<=": value <= self.threshold,
            ">": value > self.threshold,
            "<": value < self.threshold,
            "==": value == self.threshold,
        }[self.op]

    @property
    def measured(self) -> bool:
        return self.metric in MEASURED_METRICS

    def __str__(self) -> str:
        return f"{self.metric} {self.op} {_number(self.threshold)}"

    def to_json(self) -> dict[str, object]:
        return {"metric": self.metric, "op": self.op, "threshold": self.threshold}


def _number(value: float) -> str:
    return str(int(value)) if float(value).is_integer() else repr(value)


def parse_gate(text: str, path: str = "gates") -> Gate:
    """`"accuracy >= 0.9"` -> Gate; InvalidSection naming `path` when it is not one."""
    match = _GATE_RE.fullmatch(text)
    if not match:
        raise InvalidSection(
            path, f"{text!r} is not a gate: write METRIC OP NUMBER, e.g. 'accuracy >= 0.9'"
        )
    try:
        threshold = float(match.group(3))
    except ValueError:
        threshold = math.nan
    if not math.isfinite(threshold):
        raise InvalidSection(path, f"{text!r}: the threshold must be a finite number")
    return Gate(match.group(1), match.group(2), threshold)


def _read_gate(value: object, path: str) -> Gate:
    if isinstance(value, str):
        return parse_gate(value, path)
    if not isinstance(value, Mapping) or set(value) != {"metric", "op", "threshold"}:
        raise InvalidSection(path, "expected {metric, op, threshold}")
    threshold = value["threshold"]
    if isinstance(threshold, bool) or not isinstance(threshold, (int, float)):
        raise InvalidSection(join_path(path, "threshold"), "expected a number")
    gate = parse_gate(f"{value['metric']} {value['op']} {threshold}", path)
    return gate


@dataclass(frozen=True)
class Interface:
    """JSON Schemas of `predict`'s input (stdin) and output (stdout)."""

    input_schema: Any
    output_schema: Any

    def to_json(self) -> dict[str, object]:
        return {"input": self.input_schema, "output": self.output_schema}


def read_interface(value: object, path: str = "interface") -> Interface | None:
    if value is None:
        return None
    if not isinstance(value, Mapping) or set(value) != {"input", "output"}:
        raise InvalidSection(path, "expected {input, output}: two JSON Schemas")
    for key in ("input", "output"):
        if not isinstance(value[key], (Mapping, bool)):
            raise InvalidSection(join_path(path, key), "a JSON Schema is an object or a boolean")
    return Interface(value["input"], value["output"])


@dataclass(frozen=True)
class EvaluationSummary:
    """What the evaluation established: its metrics, every gate (those on measured metrics were
    checked by the build and are recorded in the evaluate link), the evaluation data (paths and
    sha256, license, tags), and the sha256 of the canonical outputs on the declared examples."""

    metrics: dict[str, float] = field(default_factory=dict)
    gates: tuple[Gate, ...] = ()
    dataset: dict[str, str] = field(default_factory=dict)
    dataset_license: str = ""
    dataset_tags: tuple[str, ...] = ()
    examples: int = 0
    outputs_sha256: str = ""
    latency_samples: int = 0

    def to_json(self) -> dict[str, object]:
        return {
            "metrics": dict(self.metrics),
            "gates": [gate.to_json() for gate in self.gates],
            "dataset": {
                "files": dict(self.dataset),
                "license": self.dataset_license,
                "tags": list(self.dataset_tags),
            },
            "examples": self.examples,
            "outputs_sha256": self.outputs_sha256,
            "latency_samples": self.latency_samples,
        }


def _strings(value: object, path: str) -> tuple[str, ...]:
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise InvalidSection(path, "expected an array of strings")
    return tuple(value)


def _count(value: object, path: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise InvalidSection(path, "expected a non-negative integer")
    return value


def read_evaluation(value: object, path: str = "evaluation") -> EvaluationSummary | None:
    if value is None:
        return None
    keys = {"metrics", "gates", "dataset", "examples", "outputs_sha256", "latency_samples"}
    if not isinstance(value, Mapping) or set(value) != keys:
        raise InvalidSection(path, f"expected the fields {', '.join(sorted(keys))}")
    metrics = value["metrics"]
    if not isinstance(metrics, Mapping) or not all(
        isinstance(v, (int, float)) and not isinstance(v, bool) for v in metrics.values()
    ):
        raise InvalidSection(join_path(path, "metrics"), "expected {name: number}")
    gates = value["gates"]
    if not isinstance(gates, list):
        raise InvalidSection(join_path(path, "gates"), "expected an array")
    dataset = value["dataset"]
    if not isinstance(dataset, Mapping) or set(dataset) != {"files", "license", "tags"}:
        raise InvalidSection(join_path(path, "dataset"), "expected {files, license, tags}")
    files = dataset["files"]
    if not isinstance(files, Mapping) or not all(
        isinstance(k, str) and isinstance(v, str) for k, v in files.items()
    ):
        raise InvalidSection(join_path(path, "dataset.files"), "expected {path: sha256}")
    if not isinstance(dataset["license"], str) or not isinstance(value["outputs_sha256"], str):
        raise InvalidSection(path, "dataset.license and outputs_sha256 are strings")
    return EvaluationSummary(
        metrics=dict(metrics),
        gates=tuple(_read_gate(g, join_path(join_path(path, "gates"), i)) for i, g in
                    enumerate(gates)),
        dataset=dict(files),
        dataset_license=dataset["license"],
        dataset_tags=_strings(dataset["tags"], join_path(path, "dataset.tags")),
        examples=_count(value["examples"], join_path(path, "examples")),
        outputs_sha256=value["outputs_sha256"],
        latency_samples=_count(value["latency_samples"], join_path(path, "latency_samples")),
    )


def describe_sections(
    interface: Interface | None, evaluation: EvaluationSummary | None
) -> list[str]:
    """The lines `modelseal inspect` and `model.pex info` show for both sections."""
    lines = ["interface"]
    if interface is None:
        lines.append("  (not declared)")
    else:
        schemas = (("input", interface.input_schema), ("output", interface.output_schema))
        for name, schema in schemas:
            lines.append(f"  {name:<7} {canonical_json(schema).decode('utf-8').rstrip()}")
    lines.append("evaluation")
    if evaluation is None:
        lines.append("  (none: no model_evaluation was declared)")
        return lines
    for name, value in sorted(evaluation.metrics.items()):
        lines.append(f"  {name:<16} {value}")
    for gate in evaluation.gates:
        where = "evaluate link" if gate.measured else "evaluation.json"
        lines.append(f"  gate {gate!s:<24} held (recorded in {where})")
    tags = ", ".join(evaluation.dataset_tags) or "no tags"
    lines.append(
        f"  data             {len(evaluation.dataset)} file(s), license "
        f"{evaluation.dataset_license or '(none)'}, {tags}"
    )
    lines.append(
        f"  examples         {evaluation.examples}, outputs sha256 {evaluation.outputs_sha256[:16]}"
    )
    return lines
