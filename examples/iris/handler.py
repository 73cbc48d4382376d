"""Serves the iris classifier: the handler that model.pex calls (see docs/formats.md)."""

from __future__ import annotations

import json
import os
from typing import Any

import numpy as np
import skops.io


class IrisModel:
    def __init__(self, estimator: Any, classes: list[str], features: list[str]) -> None:
        self.estimator = estimator
        self.classes = classes
        self.features = features


def load(weights_dir: str) -> IrisModel:
    with open(os.path.join(weights_dir, "classes.json"), encoding="utf-8") as f:
        labels = json.load(f)
    path = os.path.join(weights_dir, "model.skops")
    # skops loads only the types it trusts by default (scikit-learn's, numpy's): a file naming any
    # other type is refused, never executed. Nothing here is unpickled.
    estimator = skops.io.load(path)
    return IrisModel(estimator, labels["classes"], labels["features"])


def predict(model: IrisModel, inputs: Any) -> Any:
    """inputs: {"instances": [[sepal_length, sepal_width, petal_length, petal_width], ...]}."""
    features = np.asarray(inputs["instances"], dtype=np.float64)
    if features.ndim != 2 or features.shape[1] != len(model.features):
        raise ValueError(f"each instance needs {len(model.features)} numbers: {model.features}")
    probabilities = model.estimator.predict_proba(features)
    return {
        "predictions": [model.classes[int(i)] for i in probabilities.argmax(axis=1)],
        "probabilities": [[round(float(p), 6) for p in row] for row in probabilities],
    }


def evaluate(model: IrisModel, dataset_dir: str) -> dict[str, float]:
    """Accuracy on the held-out split training left out (every fifth row of data/iris.csv):
    the build runs this against model.pex before it signs (docs/evaluation.md)."""
    rows = np.loadtxt(
        os.path.join(dataset_dir, "data", "iris.csv"), delimiter=",", skiprows=1, dtype=str
    )
    held_out = rows[np.arange(len(rows)) % 5 == 0]
    predicted = predict(model, {"instances": held_out[:, :4].astype(np.float64).tolist()})
    right = sum(p == s for p, s in zip(predicted["predictions"], held_out[:, 4]))
    return {"accuracy": right / len(held_out), "held_out_samples": len(held_out)}
