"""The smoke test and the evaluation, run by the build inside the built `model.pex` before anything
is signed: `python model.pex evaluate|measure --config CONFIG --out FILE`.

They run in the bytes that ship, in a sandbox without network, so that a signature never vouches
for a model that cannot load: the handler is imported, `load(weights)` is called, and `predict`
answers each declared example, whose input and output are checked against the interface's
schemas. With an evaluation declared, the model's own `evaluate(model, dataset_dir) -> metrics`
runs on the evaluation data and every gate on those metrics is checked.

What they produce, and why it is split in two:
- the evaluation is deterministic (metrics, schema checks, the sha256 of the canonical outputs on
  the examples) and goes to `evaluation.json`, which the bundle carries and `model.sig` covers;
- the measurement times N predictions and reads the process's peak memory, and checks them
  against their gates. Those numbers differ from run to run, and the evaluate link that records
  them is in the bundle, which must stay byte-reproducible across machines and caches. So its
  file gets what the measurement proved, which does not vary: per measured gate, the bound it
  held under (`"p95_latency_ms": "<= 50"`) and the number of timed predictions; the raw numbers
  go to stdout, which the build logs (docs/evaluation.md, "Measurements and reproducibility").

The build runs both in one process, `evaluate --measure-out FILE`: the model's imports and
`load()` are most of the cost (scikit-learn alone takes seconds to import), and a second process
paid them again. `measure` alone remains for running the measurement by hand.

A failure prints one line on stderr, `modelseal-failure: {...}` (JSON: what failed, the missing
module or the gate's metric, measured value and threshold), for the build to turn into its
message, and exits 1; the handler's own prints go to stderr too. Standard library only, like
the rest of the runtime.
"""

from __future__ import annotations

import contextlib
import hashlib
import importlib
import json
import os
import sys
import time
import traceback
from collections.abc import Callable, Iterator, Mapping
from typing import Any

from modelseal.embedded.schema import validate
from modelseal.format.canonical import canonical_json, load_json
from modelseal.format.interface import Gate, parse_gate
from modelseal.format.manifest import WEIGHTS_DIR, Manifest

__all__ = ["EVALUATION_SCHEMA", "Failure", "evaluate", "measure"]

EVALUATION_SCHEMA = "modelseal.evaluation/v1"
FAILURE_MARKER = "modelseal-failure:"


class Failure(Exception):
    """A failed smoke test, evaluation or gate: `details` is what the build reports."""

    def __init__(self, kind: str, message: str, **details: Any) -> None:
        super().__init__(message)
        self.details = {"kind": kind, "message": message, **details}


def read_config(path: str) -> dict[str, Any]:
    """The evaluation config the build writes (docs/evaluation.md): examples, evaluate, gates,
    dataset_dir, dataset, latency_samples."""
    with open(path, "rb") as f:
        value = load_json(f.read())
    if not isinstance(value, dict):
        raise Failure("config", f"{path}: expected a JSON object")
    return value


def _call(what: str, function: Callable[..., Any], *args: Any) -> Any:
    try:
        return function(*args)
    except ModuleNotFoundError as e:
        raise Failure(
            "missing_module", f"{what} raised ModuleNotFoundError: {e}", module=e.name or ""
        ) from None
    except Exception as e:  # The model's own code: any exception is a failed smoke test.
        frames = traceback.extract_tb(e.__traceback__)
        at = f" at {os.path.basename(frames[-1].filename)}:{frames[-1].lineno}" if frames else ""
        raise Failure("exception", f"{what} raised {type(e).__name__}: {e}{at}") from None


def _import(entry_point: str, what: str) -> Any:
    module_name, _, attrs = entry_point.partition(":")
    obj = _call(f"importing {module_name}", importlib.import_module, module_name)
    for attr in attrs.split(".") if attrs else ():
        if not hasattr(obj, attr):
            raise Failure("entry_point", f"{what} {entry_point!r}: no attribute {attr!r}")
        obj = getattr(obj, attr)
    return obj


Loaded = tuple[Any, Any]  # (the handler, the model load() returned)


def _load(directory: str, manifest: Manifest) -> Loaded:
    """Import the handler and load the model: the smoke test's first two steps."""
    handler = _import(manifest.entry_point, "entry point")
    for name in ("load", "predict"):
        if not callable(getattr(handler, name, None)):
            raise Failure("entry_point", f"the handler {manifest.entry_point!r} has no {name}()")
    model = _call("load(weights)", handler.load, os.path.join(directory, WEIGHTS_DIR))
    return handler, model


def _check(value: Any, schema: Any, what: str) -> None:
    problem = validate(value, schema)
    if problem:
        raise Failure("schema", f"{what} does not match the interface's schema: {problem}")


def _predict_examples(
    handler: Any, model: Any, manifest: Manifest, examples: list[Any]
) -> list[Any]:
    interface = manifest.interface
    outputs = []
    for index, example in enumerate(examples):
        if interface is not None:
            _check(example, interface.input_schema, f"example {index}")
        output = _call(f"predict on example {index}", handler.predict, model, example)
        try:
            output = load_json(canonical_json(output))  # what model.pex predict would print
        except ValueError as e:
            raise Failure("output", f"predict on example {index} returned non-JSON: {e}") from None
        if interface is not None:
            _check(output, interface.output_schema, f"the output of example {index}")
        outputs.append(output)
    return outputs


def _gates(config: Mapping[str, Any]) -> list[Gate]:
    return [parse_gate(text, f"gates[{i}]") for i, text in enumerate(config.get("gates", []))]


def _check_gates(gates: list[Gate], values: Mapping[str, float], measured: bool) -> list[Any]:
    results = []
    for gate in gates:
        if gate.measured != measured:
            continue
        value = values.get(gate.metric)
        if value is None:
            raise Failure(
                "gate", f"the gate {gate} names a metric the evaluation did not report",
                metric=gate.metric, value=None, threshold=f"{gate.op} {gate.threshold}",
            )
        if not gate.holds(value):
            raise Failure(
                "gate", f"gate {gate} failed: {gate.metric} = {value}",
                metric=gate.metric, value=value, threshold=f"{gate.op} {gate.threshold}",
            )
        results.append({**gate.to_json(), "value": value})
    return results


def _metrics(value: Any, entry_point: str) -> dict[str, float]:
    if not isinstance(value, Mapping) or not all(
        isinstance(k, str) and isinstance(v, (int, float)) and not isinstance(v, bool)
        for k, v in value.items()
    ):
        raise Failure("evaluate", f"{entry_point} must return {{metric name: number}}")
    return {k: round(float(v), 6) for k, v in sorted(value.items())}


def evaluate(
    directory: str, manifest: Manifest, config: Mapping[str, Any], loaded: Loaded | None = None
) -> bytes:
    """The smoke test, then the declared evaluation; the canonical evaluation.json."""
    handler, model = loaded or _load(directory, manifest)
    examples = list(config.get("examples", []))
    outputs = _predict_examples(handler, model, manifest, examples)
    metrics: dict[str, float] = {}
    entry = str(config.get("evaluate", ""))
    if entry:
        function = _import(entry, "evaluate") if ":" in entry else getattr(handler, entry, None)
        if not callable(function):
            raise Failure("evaluate", f"no callable evaluate function {entry!r}")
        data_dir = os.path.abspath(str(config.get("dataset_dir", "evaluation-data")))
        metrics = _metrics(_call(f"{entry}(model, dataset_dir)", function, model, data_dir), entry)
    gates = _check_gates(_gates(config), metrics, measured=False)
    report = {
        "schema": EVALUATION_SCHEMA,
        "metrics": metrics,
        "gates": [g.to_json() for g in _gates(config)],
        "gates_checked": gates,
        "schema_checks": {
            "examples": len(examples),
            "interface": manifest.interface is not None,
        },
        "outputs_sha256": hashlib.sha256(canonical_json(outputs)).hexdigest(),
        "dataset": config.get("dataset", {"files": {}, "license": "", "tags": []}),
        "latency_samples": int(config.get("latency_samples", 0)),
    }
    return canonical_json(report)


def _percentile(samples: list[float], fraction: float) -> float:
    ordered = sorted(samples)
    index = min(len(ordered) - 1, max(0, int(round(fraction * len(ordered) + 0.5)) - 1))
    return ordered[index]


def _peak_rss_mb() -> float:
    """The process's peak resident memory. On Linux, VmHWM of /proc/self/status: getrusage's
    ru_maxrss survives execve, so a process forked from a large parent (pantsd) would report
    the parent's size."""
    try:
        with open("/proc/self/status", encoding="ascii") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024
    except OSError:
        pass
    try:
        import resource
    except ImportError:  # Windows: no getrusage.
        return 0.0
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    # Linux reports KiB, macOS bytes.
    return peak / (1024 * 1024) if sys.platform == "darwin" else peak / 1024


def measure(
    directory: str, manifest: Manifest, config: Mapping[str, Any], loaded: Loaded | None = None
) -> tuple[bytes, dict[str, float]]:
    """Time N predictions (the examples, in turn) and read the peak memory; check the gates on
    them. Returns (the attested bounds as canonical JSON, for the evaluate link's byproducts;
    the raw measurements, for the build's log). After `evaluate` in the same process, the peak
    memory includes the evaluation's."""
    handler, model = loaded or _load(directory, manifest)
    examples = list(config.get("examples", []))
    samples = int(config.get("latency_samples", 0))
    latencies = []
    if examples:
        for i in range(samples):
            start = time.perf_counter()
            _call("predict", handler.predict, model, examples[i % len(examples)])
            latencies.append((time.perf_counter() - start) * 1000)
    values = {"peak_rss_mb": round(_peak_rss_mb(), 1)}
    if latencies:
        values.update(
            p50_latency_ms=round(_percentile(latencies, 0.50), 3),
            p95_latency_ms=round(_percentile(latencies, 0.95), 3),
            max_latency_ms=round(max(latencies), 3),
        )
    held = _check_gates(_gates(config), values, measured=True)
    # The bound each gate proved, as text (in-toto's canonical JSON has no floats): the same
    # bytes on every run that passes, unlike the numbers themselves.
    attested: dict[str, object] = {
        gate["metric"]: f"{gate['op']} {_plain(gate['threshold'])}" for gate in held
    }
    return canonical_json({**attested, "samples": len(latencies)}), values


def _plain(number: float) -> str:
    return str(int(number)) if float(number).is_integer() else repr(float(number))


@contextlib.contextmanager
def no_network() -> Iterator[list[str]]:
    """Refuse every socket connection and name lookup while the model's code runs (a Pants
    sandbox is not network-isolated); yields the list of attempts, which fail the run even if
    the model's code swallowed the error."""
    import socket

    attempts: list[str] = []

    def refuse(what: str) -> Callable[..., Any]:
        def refused(*args: Any, **kwargs: Any) -> Any:
            attempts.append(f"{what}{args[1:2] if what == 'connect' else args[:1]}")
            raise OSError(f"modelseal: no network while the build runs the model ({what})")

        return refused

    saved = (socket.socket.connect, socket.socket.connect_ex, socket.getaddrinfo,
             socket.create_connection)
    socket.socket.connect = refuse("connect")  # type: ignore[method-assign]
    socket.socket.connect_ex = refuse("connect")  # type: ignore[method-assign]
    socket.getaddrinfo = refuse("getaddrinfo")
    socket.create_connection = refuse("create_connection")
    try:
        yield attempts
    finally:
        (socket.socket.connect, socket.socket.connect_ex, socket.getaddrinfo,  # type: ignore[method-assign]
         socket.create_connection) = saved


def run(
    command: str, directory: str, manifest: Manifest, config_path: str, out: str,
    measure_out: str | None = None,
) -> int:
    """`model.pex evaluate|measure`: 0 and `out` written, or 1 and one failure line on stderr.
    `evaluate` with `measure_out` also measures, on the model it loaded, and writes the attested
    bounds there: nothing is written unless both passed."""
    try:
        config = read_config(config_path)
        measured: dict[str, float] | None = None
        outputs: dict[str, bytes] = {}
        with contextlib.redirect_stdout(sys.stderr), no_network() as attempts:
            if command == "evaluate":
                loaded = _load(directory, manifest)
                outputs[out] = evaluate(directory, manifest, config, loaded)
                if measure_out:
                    outputs[measure_out], measured = measure(directory, manifest, config, loaded)
            else:
                outputs[out], measured = measure(directory, manifest, config)
        if attempts:
            raise Failure("network", f"the model tried to use the network: {attempts[0]}; "
                          "a model must load and predict from its bundle alone")
    except (Failure, ValueError) as e:  # ValueError: a malformed gate or config.
        details = e.details if isinstance(e, Failure) else {"kind": "config", "message": str(e)}
        print(f"{FAILURE_MARKER} {json.dumps(details, sort_keys=True)}", file=sys.stderr)
        return 1
    for path, data in outputs.items():
        with open(path, "wb") as f:
            f.write(data)
    if measured is not None:
        print(json.dumps(measured, sort_keys=True))
    return 0
