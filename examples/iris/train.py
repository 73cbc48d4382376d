"""Trains the iris classifier from data/iris.csv; run by the `:train` model_training target."""

from __future__ import annotations

import io
import json
import os
import re
import zipfile
from typing import Any

import numpy as np
import skops.io
from sklearn.linear_model import LogisticRegression

FEATURES = ("sepal_length", "sepal_width", "petal_length", "petal_width")


def load_csv(path: str) -> tuple[np.ndarray, np.ndarray]:
    rows = np.loadtxt(path, delimiter=",", skiprows=1, dtype=str)
    return rows[:, :4].astype(np.float64), rows[:, 4]


def deterministic_skops(model: Any) -> bytes:
    """skops names array members by `id()` and stamps the wall clock on zip entries; renumber the
    ids in order of appearance and fix the timestamps, so the same model gives the same bytes."""
    original = zipfile.ZipFile(io.BytesIO(skops.io.dumps(model)))
    schema = original.read("schema.json").decode()
    ids: dict[str, str] = {}
    for object_id, file_id in re.findall(r'"__id__": (\d+)|"(\d+)\.npy"', schema):
        ids.setdefault(object_id or file_id, str(len(ids)))

    def rename(text: str) -> str:
        return re.sub(r"\b(\d{6,})\b", lambda m: ids.get(m.group(1), m.group(1)), text)
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w", compression=zipfile.ZIP_DEFLATED) as normalized:
        for member in sorted(original.infolist(), key=lambda m: rename(m.filename)):
            data = original.read(member.filename)
            if member.filename == "schema.json":
                data = rename(schema).encode()
            info = zipfile.ZipInfo(rename(member.filename), date_time=(1980, 1, 1, 0, 0, 0))
            info.compress_type = zipfile.ZIP_DEFLATED
            normalized.writestr(info, data)
    return out.getvalue()


def train(data_dir: str, output_dir: str, seed: int, hyperparameters: dict[str, Any]) -> dict:
    features, species = load_csv(os.path.join(data_dir, "data", "iris.csv"))
    classes = sorted(set(species))
    labels = np.array([classes.index(s) for s in species])
    # Every fifth sample is held out: a split that needs no random numbers.
    held_out = np.arange(len(labels)) % 5 == 0
    model = LogisticRegression(
        C=float(hyperparameters.get("C", 1.0)),
        max_iter=int(hyperparameters.get("max_iter", 500)),
        random_state=seed,
    ).fit(features[~held_out], labels[~held_out])
    accuracy = float((model.predict(features[held_out]) == labels[held_out]).mean())

    with open(os.path.join(output_dir, "model.skops"), "wb") as f:
        f.write(deterministic_skops(model))
    with open(os.path.join(output_dir, "classes.json"), "w", encoding="utf-8") as f:
        json.dump({"classes": classes, "features": list(FEATURES)}, f, sort_keys=True)
    return {"accuracy": round(accuracy, 6), "held_out_samples": int(held_out.sum())}
