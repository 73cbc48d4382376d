"""Entry point of the training PEX that a `model_training` target runs in the sandbox.

Standard library only: like `modelseal.embedded.runtime`, its source is added to a PEX built from
the model's own resolve. It calls the user's training function with a fixed seed and records
the metrics the function returns as canonical JSON, so a retrain from the same inputs writes the
same bytes.
"""

from __future__ import annotations

import argparse
import importlib
import importlib.metadata
import json
import math
import os
import platform
import random
import sys
from collections.abc import Sequence
from typing import Any, Callable

TrainFunction = Callable[[str, str, int, "dict[str, Any]"], "dict[str, float] | None"]


def _load(entry_point: str) -> TrainFunction:
    module_name, _, attr = entry_point.partition(":")
    function = getattr(importlib.import_module(module_name), attr, None)
    if not callable(function):
        raise SystemExit(f"modelseal training: {entry_point}: {attr!r} is not a function")
    return function


def _check_metrics(metrics: Any, entry_point: str) -> dict[str, float]:
    if metrics is None:
        return {}
    if not isinstance(metrics, dict):
        raise SystemExit(f"modelseal training: {entry_point} returned {type(metrics).__name__}, "
                         "expected a dict of metric names to numbers")
    for name, value in metrics.items():
        if (not isinstance(name, str) or isinstance(value, bool)
                or not isinstance(value, (int, float)) or not math.isfinite(value)):
            raise SystemExit(f"modelseal training: {entry_point}: metric {name!r} is {value!r}; "
                             "metrics must be finite numbers")
    return metrics


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="modelseal-training")
    parser.add_argument("--entry-point", required=True)
    parser.add_argument("--data", required=True)
    parser.add_argument("--out", required=True)
    parser.add_argument("--seed", type=int, required=True)
    parser.add_argument("--hyperparameters", required=True)
    parser.add_argument("--metrics", required=True)
    parser.add_argument("--environment", required=True)
    args = parser.parse_args(argv)

    with open(args.hyperparameters, encoding="utf-8") as f:
        hyperparameters = json.load(f)
    random.seed(args.seed)
    os.makedirs(args.out, exist_ok=True)
    train = _load(args.entry_point)
    metrics = _check_metrics(
        train(os.path.abspath(args.data), os.path.abspath(args.out), args.seed, hyperparameters),
        args.entry_point,
    )
    with open(args.metrics, "w", encoding="utf-8") as f:
        f.write(json.dumps(metrics, sort_keys=True, separators=(",", ":")) + "\n")
    with open(args.environment, "w", encoding="utf-8") as f:
        f.write(json.dumps(environment(), sort_keys=True, separators=(",", ":")) + "\n")
    return 0


def environment() -> dict[str, Any]:
    """What the train link records of where training ran: interpreter, platform and package
    versions; no path, host or user name."""
    packages = sorted(
        f"{dist.metadata['Name']}=={dist.version}"
        for dist in importlib.metadata.distributions()
        if dist.metadata["Name"]
    )
    return {
        "interpreter": f"{platform.python_implementation()} {platform.python_version()}",
        "platform": f"{platform.system()}-{platform.machine()}",
        "packages": packages,
    }


if __name__ == "__main__":
    sys.exit(main())
