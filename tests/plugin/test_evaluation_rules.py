"""RuleRunner tests of the smoke test, the evaluation and the per-model import check: real rules,
real PEX builds, model.pex really run in the sandbox before anything is signed."""

from __future__ import annotations

import json
import shutil
import socket
import subprocess
import sys
from pathlib import Path

import pytest
from pants.engine.internals.scheduler import ExecutionError
from pants.testutil.rule_runner import RuleRunner

from plugin.runner import contents, package, write_model

HANDLER = '''\
import json
import os


def load(weights_dir):
    with open(os.path.join(weights_dir, "nested", "scale.txt")) as f:
        return float(f.read())


def predict(model, inputs):
    return {"scaled": [x * model for x in inputs["values"]]}


def evaluate(model, dataset_dir):
    with open(os.path.join(dataset_dir, "data", "pairs.json")) as f:
        pairs = json.load(f)
    right = sum(predict(model, {"values": [x]})["scaled"][0] == y for x, y in pairs)
    return {"accuracy": right / len(pairs)}
'''

INPUT_SCHEMA = {
    "type": "object",
    "properties": {"values": {"type": "array", "items": {"type": "number"}}},
    "required": ["values"],
    "additionalProperties": False,
}
OUTPUT_SCHEMA = {"type": "object", "required": ["scaled"]}


def write_evaluation(
    rule_runner: RuleRunner,
    gates: str,
    input_schema: object = INPUT_SCHEMA,
) -> None:
    write_model(rule_runner, evaluation="':eval'")
    build = Path(rule_runner.build_root, "models/toy/BUILD").read_text()
    rule_runner.write_files(
        {
            "models/toy/BUILD": build
            + "model_evaluation(name='eval', data=['data/pairs.json'], "
            f"gates={gates}, examples='examples.json', input_schema='input.schema.json', "
            "output_schema='output.schema.json', dataset_license='CC0-1.0', "
            "dataset_tags=['synthetic'], latency_samples=10)\n",
            "models/toy/handler.py": HANDLER,
            # 2.5 * x: three right, one wrong -> accuracy 0.75
            "models/toy/data/pairs.json": "[[1, 2.5], [2, 5.0], [4, 10.0], [3, 1]]",
            "models/toy/examples.json": '[{"values": [1, 2]}, {"values": []}]',
            "models/toy/input.schema.json": json.dumps(input_schema),
            "models/toy/output.schema.json": json.dumps(OUTPUT_SCHEMA),
        }
    )


def _error(rule_runner: RuleRunner) -> str:
    with pytest.raises(ExecutionError) as raised:
        package(rule_runner)
    return str(raised.value)


def test_numpy_in_the_wrong_resolve_fails_before_signing(rule_runner: RuleRunner) -> None:
    write_model(rule_runner)
    rule_runner.write_files(
        {"models/toy/handler.py": "import numpy\n"
         "def load(w):\n    return 1\n\ndef predict(m, i):\n    return i\n"}
    )
    message = _error(rule_runner)
    assert "UnownedImportError" in message
    assert "Cannot package models/toy:model: its handler imports numpy" in message
    assert "which the resolve `python-default` lacks" in message
    assert "set `resolve=`" in message and "add numpy to the `python-default` lock (lock.txt)" \
        in message


def test_the_smoke_test_names_a_module_the_inference_was_told_to_skip(
    rule_runner: RuleRunner,
) -> None:
    write_model(rule_runner)
    rule_runner.write_files(
        {"models/toy/handler.py": "import numpy  # pants: no-infer-dep\n"
         "def load(w):\n    return 1\n\ndef predict(m, i):\n    return i\n"}
    )
    message = _error(rule_runner)
    assert "ModelRunError" in message
    assert "The smoke test of models/toy:model failed before signing" in message
    assert "the handler imports numpy, which the resolve `python-default` lacks" in message
    assert "Set `resolve=`" in message


def test_a_handler_that_cannot_load_is_not_signed(rule_runner: RuleRunner) -> None:
    write_model(rule_runner)
    rule_runner.write_files(
        {"models/toy/handler.py": "def load(w):\n    raise RuntimeError('corrupt weights')\n\n"
         "def predict(m, i):\n    return i\n"}
    )
    message = _error(rule_runner)
    assert "load(weights) raised RuntimeError: corrupt weights" in message


def test_evaluation_is_recorded_and_linked(rule_runner: RuleRunner) -> None:
    write_evaluation(rule_runner, "['accuracy >= 0.7', 'p95_latency_ms <= 60000']")
    built = package(rule_runner)
    files = contents(rule_runner, built)
    prefix = "models.toy/model/toy-1.2.3/"
    report = json.loads(files[f"{prefix}evaluation.json"])
    assert report["metrics"] == {"accuracy": 0.75}
    assert report["schema_checks"] == {"examples": 2, "interface": True}
    assert report["dataset"]["license"] == "CC0-1.0"
    assert "p95_latency_ms" not in json.dumps(report["metrics"])  # measured: the link only
    manifest = json.loads(files[f"{prefix}manifest.json"])
    assert manifest["interface"] == {"input": INPUT_SCHEMA, "output": OUTPUT_SCHEMA}
    assert manifest["evaluation"]["metrics"] == {"accuracy": 0.75}
    assert manifest["evaluation"]["dataset"]["files"] == {
        "evaluation-data/data/pairs.json": report["dataset"]["files"][
            "evaluation-data/data/pairs.json"]
    }
    links = [p for p in files if p.startswith(f"{prefix}provenance/evaluate.")]
    assert len(links) == 1
    link = json.loads(files[links[0]])["signed"]
    assert sorted(link["materials"]) == [
        "evaluation-data/data/pairs.json", "model.pex", "weights/README.md",
        "weights/nested/scale.txt",
    ]
    assert list(link["products"]) == ["evaluation.json"]
    # The bound the measured gate proved, the same on every passing run (docs/evaluation.md).
    assert link["byproducts"] == {"p95_latency_ms": "<= 60000", "samples": 10}
    layout = json.loads(files[f"{prefix}provenance/root.layout"])["signed"]
    assert [s["name"] for s in layout["steps"]] == ["package", "evaluate", "sign"]

    rule_runner.write_digest(built.digest)
    pex = Path(rule_runner.build_root, prefix, "model.pex")
    refused = subprocess.run([sys.executable, str(pex), "predict"],
                             input='{"values": ["one"]}', capture_output=True, text=True)
    assert refused.returncode == 3
    assert refused.stdout == ""
    assert refused.stderr.count("\n") == 1 and "values[0]: expected number" in refused.stderr
    ok = subprocess.run([sys.executable, str(pex), "predict"],
                        input='{"values": [2]}', capture_output=True, text=True)
    assert ok.returncode == 0 and json.loads(ok.stdout) == {"scaled": [5.0]}


@pytest.mark.parametrize(
    ("gates", "input_schema", "expected"),
    [
        pytest.param("['accuracy >= 0.9']", INPUT_SCHEMA, (
            "The evaluation of models/toy:model failed before signing",
            "gate failed: metric accuracy measured 0.75, threshold >= 0.9",
        ), id="metric gate"),
        pytest.param("['p95_latency_ms < 0']", INPUT_SCHEMA, (
            "gate failed: metric p95_latency_ms measured", "threshold < 0.0",
        ), id="measured gate"),
        pytest.param("[]", {"oneOf": [{"type": "object"}]}, (
            "the keyword 'oneOf' is not supported", "interface.input",
        ), id="unsupported schema keyword"),
    ],
)
def test_a_failing_evaluation_writes_nothing(
    rule_runner: RuleRunner, gates: str, input_schema: object, expected: tuple[str, ...]
) -> None:
    write_evaluation(rule_runner, gates, input_schema=input_schema)
    message = _error(rule_runner)
    for text in expected:
        assert text in message


def test_an_import_with_two_owners_is_named_ambiguous(rule_runner: RuleRunner) -> None:
    write_model(rule_runner)
    rule_runner.write_files(
        {
            "3rdparty/BUILD": "python_requirement(name='numpy', requirements=['numpy'])\n"
            "python_requirement(name='numpy-again', requirements=['numpy>=1'])\n",
            "models/toy/handler.py": "import numpy\n"
            "def load(w):\n    return 1\n\ndef predict(m, i):\n    return i\n",
        }
    )
    message = _error(rule_runner)
    assert "UnownedImportError" in message
    assert "its handler imports numpy (models/toy/handler.py, line 1), which is ambiguous in " \
        "the resolve `python-default`: 3rdparty:numpy, 3rdparty:numpy-again all provide it" \
        in message
    assert "`dependencies=['3rdparty:numpy']`" in message
    assert "lacks" not in message


def _namespaces_allowed() -> bool:
    """Whether this host lets the build run the model in a network namespace of its own."""
    unshare = shutil.which("unshare")
    return unshare is not None and subprocess.run(
        [unshare, "--net", "--map-root-user", "--", sys.executable, "-c", "pass"],
        capture_output=True,
    ).returncode == 0


# One handler for both ways: the port and the way come in the weights, so both tests (and every
# run) package the same model.pex and only the smoke test that connects runs again.
CONNECTING_HANDLER = '''\
import _socket
import os
import socket


def load(weights_dir):
    with open(os.path.join(weights_dir, "nested", "scale.txt")) as f:
        port, way = f.read().split()
    if way == "_socket":
        connection = _socket.socket()
        connection.connect(("127.0.0.1", int(port)))
    else:
        connection = socket.create_connection(("127.0.0.1", int(port)))
    connection.send(b"model")
    return 1


def predict(model, inputs):
    return inputs
'''


@pytest.mark.parametrize("bypass_the_guard", [False, True], ids=["socket", "_socket"])
def test_a_model_that_connects_to_localhost_is_not_signed(
    rule_runner: RuleRunner, bypass_the_guard: bool
) -> None:
    """load() connects to a server this test really listens on, on 127.0.0.1. Through `socket`,
    the in-process guard refuses it on every host. Through `_socket` (below the guard, as C code
    or a subprocess would be), only the network namespace stops it: where the host allows one,
    the connection is unreachable; where not, the documented limit of the guard shows."""
    with socket.create_server(("127.0.0.1", 0)) as server:
        server.settimeout(0.5)
        port = server.getsockname()[1]
        way = "_socket" if bypass_the_guard else "socket"
        write_model(rule_runner)
        rule_runner.write_files({"models/toy/handler.py": CONNECTING_HANDLER,
                                 "models/toy/nested/scale.txt": f"{port} {way}"})
        if bypass_the_guard and not _namespaces_allowed():
            package(rule_runner)  # the guard alone does not see _socket (docs/evaluation.md)
            server.accept()[0].close()
            return
        message = _error(rule_runner)
        with pytest.raises(socket.timeout):
            server.accept()  # nothing reached the server
    assert "The smoke test of models/toy:model failed before signing" in message
    if bypass_the_guard:
        assert "load(weights) raised OSError: [Errno 101] Network is unreachable" in message
        assert "it ran in a network namespace of its own, without network" in message
    else:
        assert "load(weights) raised OSError: modelseal: no network while the build runs the " \
            "model (create_connection)" in message
