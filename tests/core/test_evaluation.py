"""The smoke test, evaluation and measurement that run inside model.pex, the interface's schema
validator, the manifest's new sections and the policy rules on them."""

from __future__ import annotations

import datetime as dt
import hashlib
import io
import json
import sys
from pathlib import Path
from typing import Any

import pytest

from core.bundles import manifest as manifest_json
from core.bundles import write_bundle
from modelseal.embedded import runtime
from modelseal.embedded.evaluation import FAILURE_MARKER
from modelseal.embedded.schema import schema_problem, validate
from modelseal.errors import EXIT_SPEC, PolicyError, SpecError
from modelseal.format.canonical import canonical_json, load_json
from modelseal.format.interface import parse_gate
from modelseal.format.manifest import Manifest
from modelseal.verify.policy import Policy, PolicyFacts, evaluate

INPUT = {
    "type": "object",
    "properties": {"x": {"type": "array", "items": {"type": "number"}, "minItems": 1}},
    "required": ["x"],
    "additionalProperties": False,
}
OUTPUT = {"type": "object", "properties": {"y": {"type": "array"}}, "required": ["y"]}

HANDLER = """
import json, os

def load(weights_dir):
    print("loading")  # must not reach stdout
    with open(os.path.join(weights_dir, "w.json")) as f:
        return json.load(f)

def predict(model, inputs):
    return {"y": [model["w"] * x for x in inputs["x"]]}

def evaluate(model, dataset_dir):
    with open(os.path.join(dataset_dir, "labelled.json")) as f:
        rows = json.load(f)
    right = sum(predict(model, {"x": [x]})["y"][0] == y for x, y in rows)
    return {"accuracy": right / len(rows)}
"""

MISSING = "import numpy_that_is_not_installed\n" + HANDLER


@pytest.fixture
def bundle(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, request: Any) -> Path:
    module = "h_" + hashlib.sha256(request.node.nodeid.encode()).hexdigest()[:12]
    handlers = tmp_path / "handlers"
    handlers.mkdir()
    source = MISSING if "missing" in request.node.name else HANDLER
    (handlers / f"{module}.py").write_text(source)
    root = tmp_path / "m-1.0.0"
    write_bundle(
        root,
        {"model.pex": b"not a pex", "weights/w.json": b'{"w": 2}'},
        entry_point=module,
        interface={"input": INPUT, "output": OUTPUT},
    )
    data = root / "evaluation-data"
    data.mkdir()
    (data / "labelled.json").write_text(json.dumps([[1, 2], [2, 4], [3, 7], [4, 8]]))
    monkeypatch.syspath_prepend(str(handlers))
    monkeypatch.setenv("PEX", str(root / "model.pex"))
    monkeypatch.chdir(root)
    return root


def _config(root: Path, **overrides: Any) -> str:
    config = {
        "evaluate": "evaluate",
        "examples": [{"x": [1, 2]}, {"x": [3]}],
        "gates": ["accuracy >= 0.7", "p95_latency_ms <= 10000", "peak_rss_mb <= 100000"],
        "dataset_dir": "evaluation-data",
        "dataset": {"files": {"evaluation-data/labelled.json": "0" * 64}, "license": "CC0-1.0",
                    "tags": ["synthetic"]},
        "latency_samples": 20,
        **overrides,
    }
    (root / "config.json").write_text(json.dumps(config))
    return "config.json"


def _run(argv: list[str], capsys: Any, stdin: bytes = b"") -> tuple[int, str, str]:
    sys.stdin = io.TextIOWrapper(io.BytesIO(stdin))
    try:
        code = runtime.main(argv)
    finally:
        sys.stdin = sys.__stdin__
    out, err = capsys.readouterr()
    return code, out, err


def _failure(err: str) -> dict[str, Any]:
    lines = [line for line in err.splitlines() if line.startswith(FAILURE_MARKER)]
    assert len(lines) == 1, err
    result: dict[str, Any] = json.loads(lines[0][len(FAILURE_MARKER):])
    return result


def test_evaluate_writes_deterministic_evaluation(bundle: Path, capsys: Any) -> None:
    config = _config(bundle)
    code, out, err = _run(["evaluate", "--config", config, "--out", "evaluation.json"], capsys)
    assert code == 0, err
    assert out == ""  # the handler's print went to stderr
    first = (bundle / "evaluation.json").read_bytes()
    report = load_json(first)
    assert isinstance(report, dict)
    assert report["metrics"] == {"accuracy": 0.75}
    assert report["schema_checks"] == {"examples": 2, "interface": True}
    outputs = [{"y": [2, 4]}, {"y": [6]}]
    assert report["outputs_sha256"] == hashlib.sha256(canonical_json(outputs)).hexdigest()
    assert [g["metric"] for g in report["gates_checked"]] == ["accuracy"]
    code, _, _ = _run(["evaluate", "--config", config, "--out", "again.json"], capsys)
    assert code == 0 and (bundle / "again.json").read_bytes() == first


def test_failing_gate_names_metric_value_and_threshold(bundle: Path, capsys: Any) -> None:
    config = _config(bundle, gates=["accuracy >= 0.9"])
    code, _, err = _run(["evaluate", "--config", config, "--out", "evaluation.json"], capsys)
    assert code == 1
    assert not (bundle / "evaluation.json").exists()
    failure = _failure(err)
    assert (failure["kind"], failure["metric"], failure["value"]) == ("gate", "accuracy", 0.75)
    assert failure["threshold"] == ">= 0.9"


def test_missing_module_is_named(bundle: Path, capsys: Any) -> None:
    config = _config(bundle)
    code, _, err = _run(["evaluate", "--config", config, "--out", "evaluation.json"], capsys)
    assert code == 1
    failure = _failure(err)
    assert failure["kind"] == "missing_module"
    assert failure["module"] == "numpy_that_is_not_installed"


def test_example_breaking_the_input_schema_fails(bundle: Path, capsys: Any) -> None:
    config = _config(bundle, examples=[{"x": []}])
    code, _, err = _run(["evaluate", "--config", config, "--out", "e.json"], capsys)
    assert code == 1
    assert "example 0 does not match" in _failure(err)["message"]


def test_measure_checks_latency_and_memory_gates(bundle: Path, capsys: Any) -> None:
    code, out, err = _run(["measure", "--config", _config(bundle), "--out", "m.json"], capsys)
    assert code == 0, err
    # The raw numbers, for the build's log: they vary from run to run.
    values = json.loads(out)
    p50, p95, top = (values[k] for k in ("p50_latency_ms", "p95_latency_ms", "max_latency_ms"))
    assert 0 < p50 <= p95 <= top
    assert values["peak_rss_mb"] > 1
    # What the evaluate link records: the bound each measured gate proved (text: in-toto's
    # canonical JSON has no floats), the same bytes on every passing run.
    attested = (bundle / "m.json").read_bytes()
    assert json.loads(attested) == {
        "p95_latency_ms": "<= 10000", "peak_rss_mb": "<= 100000", "samples": 20
    }
    code, _, err = _run(["measure", "--config", _config(bundle), "--out", "again.json"], capsys)
    assert code == 0 and (bundle / "again.json").read_bytes() == attested
    config = _config(bundle, gates=["peak_rss_mb <= 1"])
    code, _, err = _run(["measure", "--config", config, "--out", "m2.json"], capsys)
    assert code == 1 and _failure(err)["metric"] == "peak_rss_mb"


def test_evaluate_with_measure_out_loads_once_and_writes_both(
    bundle: Path, capsys: Any
) -> None:
    """What the build runs for an evaluated model: one process, one import and load()."""
    config = _config(bundle)
    code, out, err = _run(["evaluate", "--config", config, "--out", "e.json",
                           "--measure-out", "m.json"], capsys)
    assert code == 0, err
    assert err.count("loading") == 1  # the handler's load() ran once, its print on stderr
    assert json.loads((bundle / "e.json").read_bytes())["metrics"] == {"accuracy": 0.75}
    assert json.loads((bundle / "m.json").read_bytes())["samples"] == 20
    assert json.loads(out)["p95_latency_ms"] > 0  # the raw numbers, for the log
    # The same evaluation.json as `evaluate` alone writes: the measurement does not touch it.
    code, _, err = _run(["evaluate", "--config", config, "--out", "alone.json"], capsys)
    assert code == 0 and (bundle / "alone.json").read_bytes() == (bundle / "e.json").read_bytes()
    # A failing measured gate writes neither file.
    failing = _config(bundle, gates=["peak_rss_mb <= 1"])
    code, _, err = _run(["evaluate", "--config", failing, "--out", "e2.json",
                         "--measure-out", "m2.json"], capsys)
    assert code == 1 and _failure(err)["metric"] == "peak_rss_mb"
    assert not (bundle / "e2.json").exists() and not (bundle / "m2.json").exists()


def test_predict_refuses_input_the_schema_rejects(bundle: Path, capsys: Any) -> None:
    code, out, err = _run(["predict"], capsys, b'{"x": ["a"]}')
    assert code == EXIT_SPEC
    assert out == ""
    assert err.count("\n") == 1 and "x[0]: expected number, found string" in err
    assert "Traceback" not in err
    code, out, _ = _run(["predict"], capsys, b'{"x": [1.5]}')
    assert code == 0 and json.loads(out) == {"y": [3.0]}


@pytest.mark.parametrize(
    ("value", "schema", "problem"),
    [
        ({"x": [1]}, INPUT, None),
        ({"x": [1], "z": 1}, INPUT, "the property 'z' is not allowed"),
        ({}, INPUT, "the property 'x' is required"),
        (True, {"type": "integer"}, "expected integer, found boolean"),
        (2.0, {"type": "integer", "maximum": 1}, "2.0 breaks maximum 1"),
        ("ab", {"type": "string", "pattern": "^a+$"}, "does not match"),
        ("c", {"enum": ["a", "b"]}, "must be one of"),
    ],
)
def test_validator(value: Any, schema: Any, problem: str | None) -> None:
    assert schema_problem(schema) is None
    found = validate(value, schema)
    assert (found is None) if problem is None else (found is not None and problem in found)


def test_unsupported_keywords_are_refused() -> None:
    assert "'$ref' is not supported" in str(schema_problem({"$ref": "#/x"}))
    nested: dict[str, Any] = {"properties": {"a": {"items": {"oneOf": []}}}}
    assert "properties.a.items: the keyword 'oneOf'" in str(schema_problem(nested))


def test_manifest_reads_and_writes_the_sections() -> None:
    summary = {
        "metrics": {"accuracy": 0.9},
        "gates": [{"metric": "accuracy", "op": ">=", "threshold": 0.8}],
        "dataset": {"files": {"evaluation-data/a.csv": "1" * 64}, "license": "MIT", "tags": []},
        "examples": 2,
        "outputs_sha256": "2" * 64,
        "latency_samples": 10,
    }
    document = manifest_json(interface={"input": INPUT, "output": OUTPUT}, evaluation=summary)
    parsed = Manifest.from_bytes(canonical_json(document))
    assert parsed.to_json() == document
    assert parsed.evaluation is not None
    assert parsed.evaluation.gates[0] == parse_gate("accuracy>=0.8")
    with pytest.raises(SpecError, match="evaluation.gates"):
        Manifest.from_bytes(canonical_json({**document, "evaluation": {**summary, "gates": 1}}))
    plain = manifest_json()
    assert "interface" not in Manifest.from_bytes(canonical_json(plain)).to_json()


def _facts(evaluation: dict[str, Any] | None, measurements: dict[str, float]) -> PolicyFacts:
    extra = {} if evaluation is None else {"evaluation": evaluation}
    return PolicyFacts(
        manifest=Manifest.from_bytes(canonical_json(manifest_json(**extra))),
        steps=("package", "evaluate", "sign"),
        signer_key_ids=(),
        now=dt.datetime(2026, 1, 1, tzinfo=dt.timezone.utc),
        measurements=measurements,
    )


def test_policy_rules_on_the_evaluation() -> None:
    dataset = {"files": {}, "license": "CC-BY-4.0", "tags": ["public"]}
    summary: dict[str, Any] = {
        "metrics": {"recall": 0.93},  # the manifest's own metrics hold accuracy 0.97
        "gates": [],
        "dataset": dataset,
        "examples": 1,
        "outputs_sha256": "3" * 64,
        "latency_samples": 10,
    }
    policy = Policy.from_bytes(json.dumps({
        "schema": "modelseal.policy/v1",
        "required_steps": ["evaluate"],
        "min_metrics": {"recall": 0.9},
        "max_measurements": {"p95_latency_ms": 50},
        "allowed_dataset_licenses": ["CC-BY-4.0"],
        "forbidden_dataset_tags": ["pii"],
    }).encode())
    held = evaluate(policy, _facts(summary, {"p95_latency_ms": 12.0}), "policy.json")
    assert "recall 0.93 >= 0.9" in held
    assert "p95_latency_ms <= 12 (measured by the build) <= 50" in held
    with pytest.raises(PolicyError, match="p95_latency_ms is above"):
        evaluate(policy, _facts(summary, {"p95_latency_ms": 51.0}), "policy.json")
    with pytest.raises(PolicyError, match="p95_latency_ms is above"):
        evaluate(policy, _facts(summary, {}), "policy.json")
    low = {**summary, "metrics": {"recall": 0.5}}
    with pytest.raises(PolicyError, match="'recall' is below"):
        evaluate(policy, _facts(low, {"p95_latency_ms": 1.0}), "policy.json")
    pii = {**summary, "dataset": {**dataset, "tags": ["pii"]}}
    with pytest.raises(PolicyError, match="tagged 'pii'"):
        evaluate(policy, _facts(pii, {"p95_latency_ms": 1.0}), "policy.json")
    gpl = {**summary, "dataset": {**dataset, "license": "GPL-3.0"}}
    with pytest.raises(PolicyError, match="evaluation data's license is not allowed"):
        evaluate(policy, _facts(gpl, {"p95_latency_ms": 1.0}), "policy.json")
    no_data = Policy.from_bytes(
        b'{"schema": "modelseal.policy/v1", "allowed_dataset_licenses": ["MIT"]}'
    )
    with pytest.raises(PolicyError, match="records no evaluation data"):
        evaluate(no_data, _facts(None, {}), "policy.json")


def test_the_model_may_not_use_the_network(bundle: Path, capsys: Any) -> None:
    module = next((bundle.parent / "handlers").glob("h_*.py"))
    module.write_text(
        HANDLER + "\nimport socket\n_load = load\n"
        "def load(weights_dir):\n"
        "    try:\n"
        "        socket.create_connection(('127.0.0.1', 9))\n"
        "    except OSError:\n"
        "        pass  # swallowed: the attempt still fails the run\n"
        "    return _load(weights_dir)\n"
    )
    code, _, err = _run(["evaluate", "--config", _config(bundle), "--out", "e.json"], capsys)
    assert code == 1
    assert _failure(err)["kind"] == "network"
    import socket

    assert socket.create_connection.__name__ == "create_connection"  # restored
