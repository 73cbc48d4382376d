"""Policy rules on what the build's evaluation established (docs/evaluation.md, "Policy"):
metric minima, maxima of what the evaluate step measured, and data governance (the licenses and
tags of the evaluation data), checked at install time.

Latency and memory are read from the verified `evaluate` link's byproducts, which hold, per
measured gate, the bound the build's measurement proved (`"p95_latency_ms": "<= 50"`): the raw
numbers vary from run to run, and the link is part of the byte-reproducible bundle
(docs/evaluation.md). A policy maximum holds when that proven bound is at most the maximum. Metric
minima come from the manifest's metrics and its evaluation summary. A rule on something the bundle
does not record fails: a policy that asks for an evaluated model is not met by one that was never
evaluated.
"""

from __future__ import annotations

import math
import os
from collections.abc import Mapping, Sequence

from modelseal.errors import IntegrityCheckError, PolicyError
from modelseal.format.canonical import load_json
from modelseal.format.manifest import EVALUATION_PATH, PROVENANCE_DIR, Manifest

__all__ = [
    "check_data",
    "check_evaluation_file",
    "check_measurements",
    "metric_value",
    "read_measurements",
]


def read_measurements(root: str) -> dict[str, float]:
    """The byproducts of the bundle's evaluate links, which in-toto verification has already
    checked: only links of the layout's `evaluate` step, by its keys, are read (any other file is
    ignored, as in-toto ignores it). Each is an upper bound; with several links (a threshold
    above 1), the largest bound of each measurement counts. {} when the layout has no evaluate
    step."""
    with open(os.path.join(root, PROVENANCE_DIR, "root.layout"), "rb") as f:
        layout = load_json(f.read())
    steps = layout["signed"]["steps"]  # type: ignore[index]
    result: dict[str, float] = {}
    for step in steps:
        if step["name"] != "evaluate":
            continue
        for key_id in step["pubkeys"]:
            path = os.path.join(root, PROVENANCE_DIR, f"evaluate.{key_id[:8]}.link")
            if not os.path.exists(path):
                continue
            with open(path, "rb") as f:
                link = load_json(f.read())
            for name, value in link["signed"]["byproducts"].items():  # type: ignore[index]
                number = _upper_bound(value)
                if number is not None:
                    result[name] = max(number, result.get(name, float("-inf")))
    return result


def check_evaluation_file(root: str, manifest: Manifest) -> None:
    """evaluation.json is in the bundle exactly when the manifest records an evaluation."""
    present = os.path.isfile(os.path.join(root, EVALUATION_PATH))
    if present != (manifest.evaluation is not None):
        raise IntegrityCheckError(
            what="evaluation.json is present without an evaluation in the manifest"
            if present else "the manifest records an evaluation, but evaluation.json is missing",
            where=os.path.join(root, EVALUATION_PATH),
            remedy="the bundle was changed after packaging: re-download it, or rebuild and "
            "re-sign it",
        )


def _upper_bound(value: object) -> float | None:
    """The bound of an attested measurement, `"<= 50"` or `"< 50"` (text: in-toto's canonical
    JSON has no floats); None for anything else (`samples`, a lower bound)."""
    if not isinstance(value, str):
        return None
    op, _, number = value.partition(" ")
    if op not in ("<=", "<"):
        return None
    try:
        bound = float(number)
    except ValueError:
        return None
    return bound if math.isfinite(bound) else None


def metric_value(manifest: Manifest, name: str) -> float | None:
    """A metric as the manifest records it: declared or trained, else from the evaluation."""
    if name in manifest.metrics:
        return float(manifest.metrics[name])
    if manifest.evaluation is not None and name in manifest.evaluation.metrics:
        return float(manifest.evaluation.metrics[name])
    return None


def check_measurements(
    maxima: Mapping[str, float] | None, measured: Mapping[str, float], where: str, held: list[str]
) -> None:
    for name, maximum in sorted((maxima or {}).items()):
        value = measured.get(name)
        if value is None or value > maximum:
            raise PolicyError(
                what=f"the bound the build proved on {name} is above the policy's maximum",
                where=f"{where}: max_measurements.{name} (the evaluate link's byproducts)",
                remedy=f"gate {name} at most {maximum} in the model_evaluation (the build then "
                "measures against it) and rebuild, or change the policy; a model built without "
                "such a gate records no bound",
                expected=f"<= {maximum}",
                found="no gate measured it" if value is None else f"<= {value:g}",
            )
        held.append(f"{name} <= {value:g} (measured by the build) <= {maximum:g}")


def check_data(
    allowed_licenses: Sequence[str] | None,
    forbidden_tags: Sequence[str] | None,
    manifest: Manifest,
    held: list[str],
) -> None:
    if allowed_licenses is None and forbidden_tags is None:
        return
    evaluation = manifest.evaluation
    if evaluation is None:
        raise PolicyError(
            what="the policy sets dataset rules, but the bundle records no evaluation data",
            where="manifest.json: evaluation",
            remedy="declare a model_evaluation (with its dataset's license and tags) and "
            "rebuild, or change the policy",
            expected="an evaluation dataset with a license",
            found="no evaluation",
        )
    if allowed_licenses is not None:
        if evaluation.dataset_license not in allowed_licenses:
            raise PolicyError(
                what="the evaluation data's license is not allowed",
                where="manifest.json: evaluation.dataset.license",
                remedy="use data under an allowed license, or clear it and add it to "
                "allowed_dataset_licenses",
                expected=" or ".join(allowed_licenses) or "(no license is allowed)",
                found=evaluation.dataset_license or "(none declared)",
            )
        held.append(f"dataset license {evaluation.dataset_license}")
    if forbidden_tags is not None:
        bad = sorted(set(evaluation.dataset_tags) & set(forbidden_tags))
        if bad:
            raise PolicyError(
                what=f"the evaluation data is tagged {bad[0]!r}, which the policy forbids",
                where="manifest.json: evaluation.dataset.tags",
                remedy="evaluate on data without that tag and rebuild, or change the policy",
                expected="none of " + ", ".join(forbidden_tags),
                found=", ".join(evaluation.dataset_tags),
            )
        held.append("no forbidden dataset tags")
