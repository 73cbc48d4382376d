from __future__ import annotations

import json
from typing import Any

import pytest

from core.bundles import manifest, spec
from modelseal.errors import SpecError
from modelseal.format.canonical import canonical_json
from modelseal.format.spec import BundleSpec

REMEDY = (
    ". The modelseal Pants rules write this file from the model_artifact target: "
    "fix the target field it names"
)


def _load(document: dict[str, Any]) -> BundleSpec:
    return BundleSpec.from_bytes(json.dumps(document).encode(), source="spec.json")


def _error(document: dict[str, Any]) -> str:
    with pytest.raises(SpecError) as raised:
        _load(document)
    message = str(raised.value)
    assert message.endswith(REMEDY)
    assert raised.value.exit_code == 3
    return message[: -len(REMEDY)]


def test_to_manifest() -> None:
    assert _load(spec()).to_manifest().to_bytes() == canonical_json(manifest())


def test_schema_is_optional_but_checked() -> None:
    document = spec()
    del document["schema"]
    assert _load(document).to_manifest().to_bytes() == canonical_json(manifest())
    assert _error(spec(schema="modelseal.bundle-spec/v2")) == (
        "spec.json: schema: expected 'modelseal.bundle-spec/v1', found 'modelseal.bundle-spec/v2'"
    )


def test_files_need_not_exist() -> None:
    # The digests come from Pants: the tool reads nothing but the spec.
    files = [{"path": "model.pex", "sha256": "f" * 64, "size": 10**12}]
    parsed = _load(spec(files=files)).to_manifest()
    assert parsed.files[0].size == 10**12


@pytest.mark.parametrize(
    ("field", "value", "message"),
    [
        (
            "name",
            "iris/../x",
            "name: 'iris/../x' is not a valid name: use letters, digits, '.', "
            "'_' and '-', starting with a letter or digit",
        ),
        (
            "name",
            "",
            "name: '' is not a valid name: use letters, digits, '.', '_' and '-', "
            "starting with a letter or digit",
        ),
        (
            "version",
            "1.0 beta",
            "version: '1.0 beta' is not a valid name: use letters, digits, "
            "'.', '_' and '-', starting with a letter or digit",
        ),
        (
            "entry_point",
            "iris.handler:Model:x",
            "entry_point: 'iris.handler:Model:x' is not an "
            "entry point: expected 'package.module[:attr]'",
        ),
        ("metrics", {"accuracy": True}, "metrics.accuracy: expected a number, found a boolean"),
        (
            "datasets",
            {"iris": "https://example.com/iris.csv"},
            "datasets.iris: "
            "'https://example.com/iris.csv' is not pinned: expected 'sha256:<64 hex>' or a URI "
            "ending in '#sha256=<64 hex>' or '@sha256:<64 hex>'",
        ),
        (
            "hyperparameters",
            {"C": {"x": 1}},
            "hyperparameters.C: expected a string, number or boolean, found an object",
        ),
        ("training", [], "training: expected an object, found an array"),
        (
            "files",
            [{"path": "weights/a", "sha256": "0" * 64, "size": 1}],
            "runtime.pex: 'model.pex' is not listed in files",
        ),
        (
            "build",
            {**spec()["build"], "modelseal_version": "0.1.0"},
            "build.modelseal_version: unknown field",
        ),
        ("trust", "release!", "trust: 'release!' is not one of development, release"),
        ("manifest", {}, "manifest: unknown field"),
    ],
)
def test_invalid(field: str, value: object, message: str) -> None:
    assert _error(spec(**{field: value})) == f"spec.json: {message}"


def test_missing_field() -> None:
    document = spec()
    del document["license"]
    assert _error(document) == "spec.json: license: required field is missing"


def test_not_json() -> None:
    with pytest.raises(SpecError) as raised:
        BundleSpec.from_bytes(b"", source="x/spec.json")
    assert str(raised.value).startswith(
        "x/spec.json: not valid JSON: Expecting value: line 1 column 1 (char 0)"
    )


def test_overflowing_number_is_not_finite() -> None:
    # JSON has no infinity, but Python reads 1e400 as one.
    data = json.dumps(spec(metrics={"accuracy": 0.5})).replace("0.5", "1e400").encode()
    with pytest.raises(SpecError) as raised:
        BundleSpec.from_bytes(data, source="spec.json")
    assert str(raised.value) == "spec.json: metrics.accuracy: expected a finite number" + REMEDY
