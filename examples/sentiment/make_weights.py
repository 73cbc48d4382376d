"""Writes the sentiment example's model files: run once, by hand; the outputs are committed.

A bag-of-words sentiment classifier small enough to read: an embedding table and a linear layer in
safetensors, the vocabulary in tokenizer/vocab.json, the shapes and labels in config.json.
The embedding is seeded noise plus a hand-set sentiment direction, so predictions are meaningful.
Usage, with numpy and safetensors installed: python3 examples/sentiment/make_weights.py
"""

from __future__ import annotations

import json
import os

import numpy as np
from safetensors.numpy import save_file

HERE = os.path.dirname(os.path.abspath(__file__))
POSITIVE = ["good", "great", "excellent", "love", "wonderful", "happy", "fine", "best"]
NEGATIVE = ["bad", "terrible", "awful", "hate", "poor", "sad", "worst", "broken"]
NEUTRAL = ["the", "a", "is", "it", "this", "movie", "food", "was", "and", "not", "very", "[UNK]"]
DIM = 8


def main() -> None:
    vocab = sorted(POSITIVE + NEGATIVE + NEUTRAL)
    rng = np.random.default_rng(0)
    embedding = rng.normal(0.0, 0.05, size=(len(vocab), DIM)).astype(np.float32)
    for word in POSITIVE:
        embedding[vocab.index(word), 0] += 1.0
    for word in NEGATIVE:
        embedding[vocab.index(word), 0] -= 1.0
    weight = np.zeros((2, DIM), dtype=np.float32)
    weight[1, 0], weight[0, 0] = 4.0, -4.0  # classes: 0 negative, 1 positive
    bias = np.zeros(2, dtype=np.float32)

    weights = HERE
    os.makedirs(os.path.join(weights, "tokenizer"), exist_ok=True)
    save_file({"embedding": embedding, "classifier.weight": weight, "classifier.bias": bias},
              os.path.join(weights, "model.safetensors"))
    with open(os.path.join(weights, "tokenizer", "vocab.json"), "w", encoding="utf-8") as f:
        json.dump({word: i for i, word in enumerate(vocab)}, f, indent=1, sort_keys=True)
        f.write("\n")
    with open(os.path.join(weights, "config.json"), "w", encoding="utf-8") as f:
        json.dump({"dim": DIM, "labels": ["negative", "positive"], "unknown_token": "[UNK]",
                   "lowercase": True}, f, indent=1, sort_keys=True)
        f.write("\n")


if __name__ == "__main__":
    main()
