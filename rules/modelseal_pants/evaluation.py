"""Nothing is signed until the model has run: the smoke test, the evaluation and the measurement
of every `model_artifact`, run in the built `model.pex` (the bytes that ship) in a sandbox.

- `read_evaluation`: the model's `model_evaluation` (if any) as digests and a config: data under
  `evaluation-data/`, examples, schemas (parsed here only to be put in the bundle spec; whether
  they use only the supported subset is decided by the tool) and gates.
- `run_model`: one process, `python model.pex evaluate [--measure-out measurements.json]`:
  without a declared evaluation it is the smoke test alone (import the handler, `load(weights)`),
  its output not kept, and cacheable (deterministic). With one, the same process also runs the
  evaluation (writes `evaluation.json`: deterministic) and the measurement (times predictions
  and reads peak memory, checks the gates on them), so the model's imports and `load()`, most of
  the cost, are paid once. Measurements are never persisted (PER_RESTART_SUCCESSFUL, like
  signing: every new pantsd measures again). The measurement writes the bound each measured gate
  proved (`"p95_latency_ms": "<= 50"`), which the signed evaluate link carries and which is the
  same on every machine whose run passes, so dist/ stays byte-reproducible; the raw numbers are
  logged here, not recorded.

A failure raises with one message naming the target, what failed (the missing module and the
resolve that lacks it, the exception, or the gate's metric, measured value and threshold) and the
fix; `package` then writes nothing to dist/.

Network: a Pants `Process` runs with an empty environment (no proxy variables are passed) but is
not network-isolated by the engine. Where the host allows it, the process runs in a network
namespace of its own (`modelseal_pants.isolation`: `unshare --net`); everywhere, the harness in
model.pex also refuses every socket connection itself while the model's code runs
(modelseal.embedded.evaluation), so a model that reaches for the network during load or predict
fails its smoke test here rather than on a host without network. The log says which was used.
"""

from __future__ import annotations

import json
import logging
import os
from dataclasses import dataclass
from typing import Any

from pants.backend.python.util_rules.interpreter_constraints import InterpreterConstraints
from pants.backend.python.util_rules.pex_environment import PythonExecutable
from pants.engine.addresses import Address, AddressInput
from pants.engine.fs import (
    EMPTY_DIGEST,
    AddPrefix,
    CreateDigest,
    Digest,
    DigestContents,
    DigestEntries,
    DigestSubset,
    FileContent,
    FileEntry,
    MergeDigests,
    PathGlobs,
    RemovePrefix,
)
from pants.engine.process import FallibleProcessResult, Process, ProcessCacheScope
from pants.engine.rules import Get, MultiGet, Rule, collect_rules, rule
from pants.engine.target import InvalidFieldException, WrappedTarget, WrappedTargetRequest
from pants.util.logging import LogLevel

from modelseal_pants.errors import ModelRunError
from modelseal_pants.evaluation_types import (
    DatasetLicenseField,
    DatasetTagsField,
    EvaluationDataField,
    EvaluationExamplesField,
    EvaluationFunctionField,
    EvaluationGatesField,
    InputSchemaField,
    LatencySamplesField,
    ModelEvaluationRefField,
    ModelEvaluationTarget,
    OutputSchemaField,
)
from modelseal_pants.isolation import NetworkIsolation, NetworkIsolationRequest
from modelseal_pants.workspace_files import WorkspaceFiles, WorkspaceFilesRequest

logger = logging.getLogger(__name__)

DATA_DIR = "evaluation-data"
CONFIG_PATH = "evaluation-config.json"
EVALUATION_PATH = "evaluation.json"
MEASUREMENTS_PATH = "measurements.json"
FAILURE_MARKER = "modelseal-failure:"  # modelseal.embedded.evaluation.FAILURE_MARKER


@dataclass(frozen=True)
class EvaluationRequest:
    model: Address


@dataclass(frozen=True)
class DeclaredEvaluation:
    """What the model's `model_evaluation` declares; `declared` False: the smoke test only."""

    declared: bool
    config: bytes = b""  # evaluation-config.json
    data: Digest = EMPTY_DIGEST  # files under evaluation-data/
    data_paths: tuple[str, ...] = ()
    interface: str = ""  # JSON text of {"input": schema, "output": schema}; "" when undeclared


async def _json_file(field: Any, target: Address) -> Any:
    if not field.value:
        return None
    path = field.file_path
    contents = await Get(DigestContents, PathGlobs([path]))
    if not contents:
        raise InvalidFieldException(
            f"The {field.alias!r} field in target {target} names {path}, which does not exist."
        )
    try:
        return json.loads(contents[0].content)
    except ValueError as e:
        raise InvalidFieldException(
            f"The {field.alias!r} field in target {target}: {path} is not valid JSON ({e}). "
            "Fix the file."
        ) from None


@rule(desc="Reading a model's evaluation", level=LogLevel.DEBUG)
async def read_evaluation(request: EvaluationRequest) -> DeclaredEvaluation:
    model = await Get(
        WrappedTarget,
        WrappedTargetRequest(request.model, description_of_origin="modelseal evaluation"),
    )
    ref = model.target.get(ModelEvaluationRefField)
    if not ref.value:
        return DeclaredEvaluation(False, json.dumps({"examples": []}).encode())
    address = await Get(Address, AddressInput, ref.target_input(request.model))
    wrapped = await Get(
        WrappedTarget,
        WrappedTargetRequest(address, description_of_origin=f"the `evaluation` of {request.model}"),
    )
    target = wrapped.target
    if not isinstance(target, ModelEvaluationTarget):
        raise InvalidFieldException(
            f"The 'evaluation' field in target {request.model} names {address}, a "
            f"`{target.alias}`; it must name a `model_evaluation` target."
        )
    data_field = target[EvaluationDataField]
    data = EMPTY_DIGEST
    if data_field.value:
        # Read as the weights are (workspace_files.py): evaluation sets can be large too.
        data_files = await Get(
            WorkspaceFiles,
            WorkspaceFilesRequest(
                data_field.strict_path_globs(), f"the data of {address}", follow_links=True
            ),
        )
        data = data_files.digest
        if address.spec_path:
            data = await Get(Digest, RemovePrefix(data, address.spec_path))
    data = await Get(Digest, AddPrefix(data, DATA_DIR))
    entries = await Get(DigestEntries, Digest, data)
    files = {e.path: e.file_digest.fingerprint for e in entries if isinstance(e, FileEntry)}
    examples = await _json_file(target[EvaluationExamplesField], address)
    if examples is not None and not isinstance(examples, list):
        raise InvalidFieldException(
            f"The 'examples' field in target {address}: the file must hold a JSON array of "
            "inputs to predict."
        )
    input_schema = await _json_file(target[InputSchemaField], address)
    output_schema = await _json_file(target[OutputSchemaField], address)
    interface = None
    if input_schema is not None or output_schema is not None:
        interface = {
            "input": True if input_schema is None else input_schema,
            "output": True if output_schema is None else output_schema,
        }
    config = {
        "evaluate": target[EvaluationFunctionField].value or "",
        "examples": examples or [],
        "gates": list(target[EvaluationGatesField].value or ()),
        "dataset_dir": DATA_DIR,
        "dataset": {
            "files": files,
            "license": target[DatasetLicenseField].value or "",
            "tags": sorted(target[DatasetTagsField].value or ()),
        },
        "latency_samples": target[LatencySamplesField].value or 0,
    }
    return DeclaredEvaluation(
        True,
        json.dumps(config, sort_keys=True).encode(),
        data,
        tuple(sorted(files)),
        "" if interface is None else json.dumps(interface, sort_keys=True),
    )


@dataclass(frozen=True)
class RunModelRequest:
    """Run `model.pex evaluate` on an unsigned bundle (files at the digest's root): the smoke
    test, and with a declared evaluation also the evaluation and the measurement."""

    model: Address
    bundle: Digest
    evaluation: DeclaredEvaluation
    interpreter_constraints: InterpreterConstraints
    resolve: str
    lockfile: str


@dataclass(frozen=True)
class ModelRun:
    evaluation: Digest  # evaluation.json at the root (EMPTY_DIGEST: the smoke test alone)
    measurements: Digest  # measurements.json at the root (EMPTY_DIGEST: the smoke test alone)


def _failure_message(
    request: RunModelRequest, result: FallibleProcessResult, isolation: NetworkIsolation
) -> str:
    stderr = result.stderr.decode("utf-8", "replace")
    details: dict[str, Any] = {}
    for line in stderr.splitlines():
        if line.startswith(FAILURE_MARKER):
            details = json.loads(line[len(FAILURE_MARKER):])
    what = "smoke test" if not request.evaluation.declared else "evaluation"
    head = f"The {what} of {request.model} failed before signing (nothing was written to dist/)"
    kind = details.get("kind")
    if kind == "missing_module":
        module = (details.get("module") or "?").split(".")[0]
        return (
            f"{head}: the handler imports {module}, which the resolve `{request.resolve}` lacks "
            f"({details.get('message')}). Set `resolve=` on the handler's python_sources to a "
            f"resolve whose lock has {module}, or add {module} to that lock ({request.lockfile})."
        )
    if kind == "gate":
        return (
            f"{head}: gate failed: metric {details.get('metric')} measured "
            f"{details.get('value')}, threshold {details.get('threshold')}. Improve the model, "
            "or change the gate in its model_evaluation."
        )
    if isolation.namespace and "Network is unreachable" in stderr:
        head += (" (it ran in a network namespace of its own, without network: a model must "
                 "load and predict from its bundle alone)")
    if details:
        return f"{head}: {details.get('message')}. Fix the model's code or its model_evaluation."
    tail = "\n".join(stderr.strip().splitlines()[-15:])
    return f"{head}: model.pex exited with {result.exit_code}:\n{tail}"


@rule(desc="Running a model before it is signed", level=LogLevel.DEBUG)
async def run_model(request: RunModelRequest) -> ModelRun:
    python, isolation = await MultiGet(
        Get(PythonExecutable, InterpreterConstraints, request.interpreter_constraints),
        Get(NetworkIsolation, NetworkIsolationRequest()),
    )
    config = await Get(
        Digest, CreateDigest([FileContent(CONFIG_PATH, request.evaluation.config)])
    )
    inputs = await Get(
        Digest, MergeDigests([request.bundle, config, request.evaluation.data])
    )
    declared = request.evaluation.declared
    argv = [*isolation.prefix, python.path, "model.pex", "evaluate", "--config", CONFIG_PATH,
            "--out", EVALUATION_PATH]
    if declared:
        argv += ["--measure-out", MEASUREMENTS_PATH]
    result = await Get(
        FallibleProcessResult,
        Process(
            argv=tuple(argv),
            input_digest=inputs,
            # No proxy or other variables: an empty environment but PEX's own. PEX_ROOT is
            # Pants' own named cache: the wheels are installed once, not in every sandbox.
            env={"PEX_ROOT": os.path.join(".cache", "pex_root"), "PYTHONHASHSEED": "0"},
            append_only_caches={"pex_root": os.path.join(".cache", "pex_root"),
                                **python.append_only_caches},
            output_files=(EVALUATION_PATH, MEASUREMENTS_PATH) if declared else (),
            description=f"{'Evaluating and measuring' if declared else 'Smoke-testing'} "
            f"{request.model}",
            level=LogLevel.DEBUG,
            # Measurements vary from run to run: never persisted (only pantsd keeps them). The
            # smoke test alone is deterministic.
            cache_scope=ProcessCacheScope.PER_RESTART_SUCCESSFUL
            if declared else ProcessCacheScope.SUCCESSFUL,
        ),
    )
    if result.exit_code != 0:
        raise ModelRunError(_failure_message(request, result, isolation))
    if not declared:
        logger.debug(f"Smoke-tested {request.model} {isolation.description}")
        return ModelRun(EMPTY_DIGEST, EMPTY_DIGEST)
    measured = json.loads(result.stdout.decode("utf-8").strip().splitlines()[-1])
    logger.info(
        f"Evaluated and measured {request.model} {isolation.description} (gates held; the "
        "evaluate link records their bounds): "
        + ", ".join(f"{name} {value}" for name, value in sorted(measured.items()))
    )
    evaluation, measurements = await MultiGet(
        Get(Digest, DigestSubset(result.output_digest, PathGlobs([EVALUATION_PATH]))),
        Get(Digest, DigestSubset(result.output_digest, PathGlobs([MEASUREMENTS_PATH]))),
    )
    return ModelRun(evaluation, measurements)


def rules() -> list[Rule]:
    return list(collect_rules())
