"""Serves the sentiment example with numpy alone: tokenize, average embeddings, linear layer."""

from __future__ import annotations

import json
import os
import re
from dataclasses import dataclass
from typing import Any

import numpy as np
from safetensors.numpy import load_file


@dataclass(frozen=True)
class SentimentModel:
    vocab: dict[str, int]
    unknown: int
    labels: list[str]
    lowercase: bool
    embedding: np.ndarray
    weight: np.ndarray
    bias: np.ndarray


def load(weights_dir: str) -> SentimentModel:
    with open(os.path.join(weights_dir, "config.json"), encoding="utf-8") as f:
        config = json.load(f)
    with open(os.path.join(weights_dir, "tokenizer", "vocab.json"), encoding="utf-8") as f:
        vocab = json.load(f)
    tensors = load_file(os.path.join(weights_dir, "model.safetensors"))
    return SentimentModel(
        vocab=vocab,
        unknown=vocab[config["unknown_token"]],
        labels=config["labels"],
        lowercase=config["lowercase"],
        embedding=tensors["embedding"],
        weight=tensors["classifier.weight"],
        bias=tensors["classifier.bias"],
    )


def predict(model: SentimentModel, inputs: Any) -> Any:
    """inputs: {"texts": ["the food was great", ...]}."""
    results = []
    for text in inputs["texts"]:
        words = re.findall(r"[\w\[\]]+", text.lower() if model.lowercase else text)
        ids = [model.vocab.get(word, model.unknown) for word in words] or [model.unknown]
        logits = model.embedding[ids].mean(axis=0) @ model.weight.T + model.bias
        odds = np.exp(logits - logits.max())
        probabilities = odds / odds.sum()
        results.append({
            "label": model.labels[int(probabilities.argmax())],
            "probabilities": [round(float(p), 6) for p in probabilities],
        })
    return {"predictions": results}


def evaluate(model: SentimentModel, dataset_dir: str) -> dict[str, float]:
    """Accuracy on labelled sentences (evaluation/labelled.json), run by the build against
    model.pex before it signs (docs/evaluation.md)."""
    with open(os.path.join(dataset_dir, "evaluation", "labelled.json"), encoding="utf-8") as f:
        labelled = json.load(f)
    predicted = predict(model, {"texts": [text for text, _ in labelled]})["predictions"]
    right = sum(p["label"] == label for p, (_, label) in zip(predicted, labelled))
    return {"accuracy": right / len(labelled), "sentences": len(labelled)}
