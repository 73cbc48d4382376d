"""Bundles and specs built by hand, without Pants, for the core tests."""

from __future__ import annotations

import copy
import hashlib
from pathlib import Path
from typing import Any

from modelseal import __version__
from modelseal.format.canonical import canonical_json

COMMIT = "0123456789abcdef0123456789abcdef01234567"
LOCK_SHA256 = "1" * 64
DATASET = "s3://datasets/iris.csv@sha256:" + "2" * 64

SPEC: dict[str, Any] = {
    "schema": "modelseal.bundle-spec/v1",
    "name": "iris",
    "version": "1.0.0",
    "entry_point": "iris.handler:Model",
    "trust": "development",
    "runtime": {
        "interpreter_constraints": ["CPython<3.14,>=3.9"],
        "platforms": [],
        "complete_platforms": ["3rdparty/platforms:cpython311-linux_x86_64"],
        "pex": "model.pex",
    },
    "files": [
        {"path": "weights/model.json", "sha256": "a" * 64, "size": 120},
        {"path": "model.pex", "sha256": "b" * 64, "size": 4096},
        {"path": "weights/tokenizer/vocab.json", "sha256": "c" * 64, "size": 7},
    ],
    "metrics": {"accuracy": 0.97, "f1": 0.95, "epochs_run": 3},
    "license": "Apache-2.0",
    "description": "Iris classifier.",
    "datasets": {"iris": DATASET},
    "hyperparameters": {"C": 1.0, "kernel": "linear", "max_iter": 100, "shrinking": True},
    "training": {"kind": "link", "path": "train.link", "link_sha256": "d" * 64},
    "build": {
        "commit": COMMIT,
        "source_date_epoch": 1700000000,
        "lock_sha256": LOCK_SHA256,
        "pants_version": "2.17.1",
    },
}


def spec(**overrides: Any) -> dict[str, Any]:
    """A valid bundle spec, with top-level fields replaced."""
    result = copy.deepcopy(SPEC)
    result.update(copy.deepcopy(overrides))
    return result


def manifest(**overrides: Any) -> dict[str, Any]:
    """The manifest JSON value that `spec()` turns into, with top-level fields replaced."""
    source = spec()
    result: dict[str, Any] = {
        "schema": "modelseal.manifest/v1",
        "name": source["name"],
        "version": source["version"],
        "entry_point": source["entry_point"],
        "trust": source["trust"],
        "runtime": source["runtime"],
        "files": sorted(source["files"], key=lambda f: f["path"]),
        "lineage": {
            "datasets": source["datasets"],
            "hyperparameters": source["hyperparameters"],
            "training": source["training"],
        },
        "metrics": source["metrics"],
        "license": source["license"],
        "description": source["description"],
        "build": {
            **source["build"],
            "modelseal_version": __version__,
            "dirty": False,
            "dirty_sha256": "",
        },
    }
    result.update(copy.deepcopy(overrides))
    return result


def file_rows(files: dict[str, bytes]) -> list[dict[str, Any]]:
    return [
        {"path": path, "sha256": hashlib.sha256(data).hexdigest(), "size": len(data)}
        for path, data in sorted(files.items())
    ]


def write_bundle(root: Path, files: dict[str, bytes], **overrides: Any) -> dict[str, Any]:
    """Write `files` (bundle path -> content) and a manifest listing them into `root`."""
    for path, data in files.items():
        target = root.joinpath(*path.split("/"))
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(data)
    document = manifest(files=file_rows(files), **overrides)
    (root / "manifest.json").write_bytes(canonical_json(document))
    return document
