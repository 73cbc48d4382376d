from __future__ import annotations

import json
import re
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from core.bundles import DATASET, manifest
from modelseal import __version__
from modelseal.errors import SpecError
from modelseal.format.canonical import canonical_json
from modelseal.format.manifest import FileEntry, Manifest, bundle_path_problem, describe

REMEDY = (
    "The manifest was not written by this version of modelseal or was changed afterwards: "
    "re-package the model or re-download the bundle"
)


def _error(document: object, source: str = "manifest.json") -> str:
    data = document if isinstance(document, bytes) else json.dumps(document).encode()
    with pytest.raises(SpecError) as raised:
        Manifest.from_bytes(data, source=source)
    message = str(raised.value)
    assert message.endswith(". " + REMEDY)
    return message[: -len(". " + REMEDY)]


def test_round_trip_is_byte_identical() -> None:
    data = canonical_json(manifest())
    parsed = Manifest.from_bytes(data)
    assert parsed.to_bytes() == data
    assert parsed.to_json() == manifest()
    assert parsed.runtime.pex == "model.pex"
    assert parsed.lineage.training == {
        "kind": "link",
        "path": "train.link",
        "link_sha256": "d" * 64,
    }
    assert [entry.path for entry in parsed.weights] == [
        "weights/model.json",
        "weights/tokenizer/vocab.json",
    ]
    assert parsed.file("model.pex") == FileEntry("model.pex", "b" * 64, 4096)
    assert parsed.file("nope") is None


def test_files_are_written_sorted_by_path() -> None:
    document = manifest()
    document["files"].reverse()
    parsed = Manifest.from_bytes(json.dumps(document).encode())
    assert [f["path"] for f in parsed.to_json()["files"]] == [  # type: ignore[attr-defined]
        "model.pex",
        "weights/model.json",
        "weights/tokenizer/vocab.json",
    ]


def test_ints_and_floats_keep_their_type() -> None:
    parsed = Manifest.from_bytes(json.dumps(manifest(metrics={"a": 1, "b": 1.0})).encode())
    assert b'"metrics":{"a":1,"b":1.0}' in parsed.to_bytes()


def test_training_may_be_null() -> None:
    document = manifest()
    document["lineage"]["training"] = None
    assert Manifest.from_bytes(json.dumps(document).encode()).lineage.training is None


def _with(path: str, value: object) -> dict[str, Any]:
    """manifest() with the value at a dotted path (list indices as numbers) replaced or removed."""
    document = manifest()
    *parents, last = path.split(".")
    target: Any = document
    for part in parents:
        target = target[int(part)] if isinstance(target, list) else target[part]
    key: Any = int(last) if isinstance(target, list) else last
    if value is _DELETE:
        del target[key]
    else:
        target[key] = value
    return document


_DELETE = object()


@pytest.mark.parametrize(
    ("path", "value", "message"),
    [
        ("files.1.sha256", "A" * 64, "files[1].sha256: expected 64 lowercase hex characters"),
        ("files.2.sha256", "a" * 63, "files[2].sha256: expected 64 lowercase hex characters"),
        ("files.0.size", -1, "files[0].size: expected a non-negative integer, found a number"),
        ("files.0.size", True, "files[0].size: expected a non-negative integer, found a boolean"),
        ("files.0.size", 1.0, "files[0].size: expected a non-negative integer, found a number"),
        (
            "files.0.path",
            "/etc/passwd",
            "files[0].path: '/etc/passwd' must be relative to the bundle root",
        ),
        ("files.0.path", "weights/../x", "files[0].path: 'weights/../x' must not contain '..'"),
        (
            "files.0.path",
            "weights\\x",
            "files[0].path: 'weights\\\\x' must use '/' as separator, not a backslash",
        ),
        (
            "files.0.path",
            "weights//x",
            "files[0].path: 'weights//x' must not contain empty segments",
        ),
        (
            "files.0.path",
            "weights/x/",
            "files[0].path: 'weights/x/' must not contain empty segments",
        ),
        ("files.0.path", "./x", "files[0].path: './x' must not contain '.' segments"),
        ("files.0.path", "", "files[0].path: '' must not be empty"),
        ("files.0.path", "a\nb", "files[0].path: 'a\\nb' must not contain control characters"),
        (
            "files.0.path",
            "manifest.json",
            "files[0].path: 'manifest.json' is reserved for the manifest and signatures",
        ),
        (
            "files.0.path",
            "provenance/x.link",
            "files[0].path: 'provenance/x.link' is reserved for the manifest and signatures",
        ),
        (
            "files.0.path",
            "model.sig",
            "files[0].path: 'model.sig' is reserved for the manifest and signatures",
        ),
        (
            "files.0.path",
            "weights/model.json",
            "files[1].path: 'weights/model.json' is listed twice (also at files[0])",
        ),
        (
            "files.0.path",
            "weights",
            "files[1].path: 'weights/model.json' is inside 'weights', which is listed as a file",
        ),
        ("files.0", [], "files[0]: expected an object, found an array"),
        ("files.0.extra", 1, "files[0].extra: unknown field"),
        ("files.0.sha256", _DELETE, "files[0].sha256: required field is missing"),
        ("files", {}, "files: expected an array of files, found an object"),
        (
            "schema",
            "modelseal.manifest/v2",
            "schema: expected 'modelseal.manifest/v1', found 'modelseal.manifest/v2'",
        ),
        (
            "name",
            "iris model",
            "name: 'iris model' is not a valid name: use letters, digits, "
            "'.', '_' and '-', starting with a letter or digit",
        ),
        (
            "version",
            "-1",
            "version: '-1' is not a valid name: use letters, digits, '.', '_' "
            "and '-', starting with a letter or digit",
        ),
        ("version", 1, "version: expected a string, found a number"),
        (
            "entry_point",
            "iris-handler",
            "entry_point: 'iris-handler' is not an entry point: "
            "expected 'package.module[:attr]'",
        ),
        (
            "entry_point",
            "iris:",
            "entry_point: 'iris:' is not an entry point: expected 'package.module[:attr]'",
        ),
        ("trust", "trusted", "trust: 'trusted' is not one of development, release"),
        (
            "runtime.pex",
            "weights/model.pex",
            "runtime.pex: 'weights/model.pex' is not listed in files",
        ),
        (
            "runtime.platforms",
            "linux",
            "runtime.platforms: expected an array of strings, found a string",
        ),
        (
            "runtime.interpreter_constraints",
            [""],
            "runtime.interpreter_constraints[0]: must not be empty",
        ),
        ("metrics.accuracy", True, "metrics.accuracy: expected a number, found a boolean"),
        ("metrics.accuracy", "0.9", "metrics.accuracy: expected a number, found a string"),
        ("metrics", {"": 1}, "metrics: keys must not be empty"),
        (
            "lineage.datasets.iris",
            "iris.csv",
            "lineage.datasets.iris: 'iris.csv' is not pinned: expected 'sha256:<64 hex>' "
            "or a URI ending in '#sha256=<64 hex>' or '@sha256:<64 hex>'",
        ),
        (
            "lineage.hyperparameters.C",
            [1],
            "lineage.hyperparameters.C: expected a string, number or boolean, found an array",
        ),
        (
            "lineage.hyperparameters.C",
            None,
            "lineage.hyperparameters.C: expected a string, number or boolean, found null",
        ),
        ("lineage.training", "x", "lineage.training: expected an object, found a string"),
        ("lineage.training.kind", 1, "lineage.training.kind: expected a string, found a number"),
        ("lineage.training", _DELETE, "lineage.training: required field is missing"),
        (
            "build.commit",
            "abc",
            "build.commit: expected a full git commit id (40 or 64 lowercase "
            "hex characters), or empty",
        ),
        (
            "build.source_date_epoch",
            "1700000000",
            "build.source_date_epoch: expected a non-negative integer, found a string",
        ),
        ("build.lock_sha256", "", "build.lock_sha256: expected 64 lowercase hex characters"),
        ("build.pants_version", "", "build.pants_version: must not be empty"),
        (
            "build.modelseal_version",
            _DELETE,
            "build.modelseal_version: required field is missing",
        ),
        ("license", None, "license: expected a string, found null"),
        ("description", _DELETE, "description: required field is missing"),
        ("extra", {}, "extra: unknown field"),
    ],
)
def test_invalid_fields_are_named(path: str, value: object, message: str) -> None:
    assert _error(_with(path, value)) == f"manifest.json: {message}"


def test_empty_commit_is_allowed() -> None:
    parsed = Manifest.from_bytes(json.dumps(_with("build.commit", "")).encode())
    assert parsed.build.commit == ""


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (b"[]", "manifest.json: expected an object, found an array"),
        (
            b"{",
            "manifest.json: not valid JSON: Expecting property name enclosed in double "
            "quotes: line 1 column 2 (char 1)",
        ),
        (b'{"a":1,"a":1}', "manifest.json: not valid JSON: duplicate key 'a'"),
        (b"\xfe", "manifest.json: not valid JSON: not UTF-8: byte 0 is invalid"),
    ],
)
def test_invalid_documents(data: bytes, message: str) -> None:
    assert _error(data) == message


def test_error_names_the_source() -> None:
    assert _error(_with("files.1.sha256", "x"), source="bundle/manifest.json") == (
        "bundle/manifest.json: files[1].sha256: expected 64 lowercase hex characters"
    )


def test_nan_is_refused() -> None:
    data = canonical_json(manifest()).replace(b'"accuracy":0.97', b'"accuracy":NaN')
    assert _error(data) == "manifest.json: not valid JSON: NaN is not a JSON value"


def test_constructor_rejects_duplicates() -> None:
    parsed = Manifest.from_bytes(canonical_json(manifest()))
    with pytest.raises(ValueError, match="files: 'model.pex' is listed twice"):
        Manifest(
            **{**parsed.__dict__, "files": (*parsed.files, FileEntry("model.pex", "0" * 64, 1))}
        )


@pytest.mark.parametrize(
    "path", ["model.pex", "weights/tokenizer/vocab.json", "weights/é.bin", "a..b", ".hidden"]
)
def test_valid_bundle_paths(path: str) -> None:
    assert bundle_path_problem(path) is None


@pytest.mark.parametrize(
    "ref",
    [
        "sha256:" + "0" * 64,
        "https://example.com/data/iris.csv#sha256=" + "0" * 64,
        "s3://bucket/iris/train.parquet@sha256:" + "0" * 64,
        "hf://datasets/iris@sha256:" + "0" * 64,
    ],
)
def test_pinned_datasets(ref: str) -> None:
    document = manifest()
    document["lineage"]["datasets"] = {"iris": ref}
    Manifest.from_bytes(json.dumps(document).encode())


@pytest.mark.parametrize(
    "ref",
    [
        "sha256:" + "0" * 63,
        "https://example.com/iris.csv",
        "https://example.com/iris.csv#sha256=" + "A" * 64,
        "https://example.com/iris csv#sha256=" + "0" * 64,
        "iris.csv#sha256=" + "0" * 64,
        "s3://bucket/key@sha256:" + "0" * 64 + "x",
    ],
)
def test_unpinned_datasets(ref: str) -> None:
    document = manifest()
    document["lineage"]["datasets"] = {"iris": ref}
    assert "is not pinned" in _error(document)


def test_describe() -> None:
    parsed = Manifest.from_bytes(canonical_json(manifest()))
    text = describe(parsed, {"model.pex": 4096, "weights/model.json": 3, "extra.txt": 5})
    assert text.splitlines()[0] == "iris 1.0.0"
    assert "  entry point  iris.handler:Model" in text
    assert "  4096  bbbbbbbbbbbb  model.pex\n" in text
    assert "   120  aaaaaaaaaaaa  weights/model.json  SIZE DIFFERS: 3 bytes present" in text
    assert "     7  cccccccccccc  weights/tokenizer/vocab.json  MISSING" in text
    assert "     5  ------------  extra.txt  NOT IN MANIFEST" in text
    assert re.search(
        r"^metrics\n  accuracy    0.97\n  epochs_run  3\n  f1          0.95$", text, re.M
    )
    assert re.search(r"^  param kernel +linear$", text, re.M)
    assert re.search(r"^  param shrinking +true$", text, re.M)
    assert re.search(rf"^  dataset iris +{re.escape(DATASET)}$", text, re.M)
    assert re.search(r"^  training kind +link$", text, re.M)
    assert text.endswith(f"  modelseal    {__version__}\n")


# -- property: the bytes are a pure function of the content --------------------------------------

names = st.text(st.characters(blacklist_categories=("Cs", "Cc")), min_size=1, max_size=8)
finite = st.floats(allow_nan=False, allow_infinity=False)
segments = st.text("abcé_.-", min_size=1, max_size=4).filter(lambda s: s not in (".", ".."))


@st.composite
def manifests(draw: st.DrawFn) -> dict[str, Any]:
    paths = draw(
        st.lists(
            st.lists(segments, min_size=1, max_size=3).map(lambda p: "weights/" + "/".join(p)),
            max_size=6,
            unique=True,
        )
    )
    leaves = [p for p in paths if not any(q.startswith(p + "/") for q in paths)]
    files = [
        {
            "path": p,
            "sha256": draw(st.from_regex(r"[0-9a-f]{64}", fullmatch=True)),
            "size": draw(st.integers(0, 2**40)),
        }
        for p in [*leaves, "model.pex"]
    ]
    return manifest(
        files=files,
        metrics=draw(st.dictionaries(names, st.integers() | finite, max_size=5)),
        lineage={
            "datasets": draw(st.dictionaries(names, st.just("sha256:" + "e" * 64), max_size=3)),
            "hyperparameters": draw(
                st.dictionaries(names, st.booleans() | st.integers() | finite | names, max_size=5)
            ),
            "training": draw(st.none() | st.dictionaries(names, names, max_size=3)),
        },
    )


def _shuffled(value: Any, data: st.DataObject) -> Any:
    if isinstance(value, dict):
        items = data.draw(st.permutations(list(value.items())))
        return {key: _shuffled(item, data) for key, item in items}
    if isinstance(value, list) and value and isinstance(value[0], dict) and "sha256" in value[0]:
        return [_shuffled(item, data) for item in data.draw(st.permutations(value))]
    return value


# Generating whole manifests is slow on a loaded 2-core machine: the health check is about speed,
# not about what this property checks.
@settings(suppress_health_check=[HealthCheck.too_slow], deadline=None)
@given(manifests(), st.data())
def test_manifest_bytes_depend_only_on_content(
    document: dict[str, Any], data: st.DataObject
) -> None:
    reordered = _shuffled(document, data)
    first = Manifest.from_bytes(json.dumps(document).encode())
    second = Manifest.from_bytes(json.dumps(reordered).encode())
    assert first == second
    assert first.to_bytes() == second.to_bytes()
    assert Manifest.from_bytes(first.to_bytes()).to_bytes() == first.to_bytes()
