"""The `modelseal.report/v1` documents of `verify --json`, `run --json` and `inspect --json`:
real reports of real signed bundles, validated against docs/report.schema.json (the schema the
docs ship), and what `inspect` says about signed and stripped bundles."""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import re
import shutil
from pathlib import Path
from typing import Any

import jsonschema  # type: ignore[import-untyped]
import pytest

from core.signing_fixtures import Keys, flip_byte, make_keys
from core.verify_fixtures import make_signed_bundle, pex_bytes, tar_of
from modelseal.cli.main import main
from modelseal.keys.core import PublicKey
from modelseal.verify.hostcheck import environments_from_wheels

SCHEMA_PATH = Path("docs/report.schema.json")


@pytest.fixture(scope="module")
def keys(tmp_path_factory: pytest.TempPathFactory) -> Keys:
    return make_keys(str(tmp_path_factory.mktemp("keys")))


@pytest.fixture(scope="module")
def schema() -> dict[str, Any]:
    document: dict[str, Any] = json.loads(SCHEMA_PATH.read_text(encoding="utf-8"))
    jsonschema.Draft202012Validator.check_schema(document)
    return document


def _valid(document: object, schema: dict[str, Any]) -> dict[str, Any]:
    jsonschema.Draft202012Validator(schema).validate(document)
    assert isinstance(document, dict)
    return document


def _verify(keys: Keys, target: str, *extra: str) -> list[str]:
    return ["verify", target, "--trust", keys.pub("owner"), "--release-key", keys.pub("release"),
            "--json", *extra]


def _key_id(path: str) -> str:
    return PublicKey.from_pem(Path(path).read_bytes()).key_id


def test_a_passing_report_has_every_fact(
    tmp_path: Path, keys: Keys, schema: dict[str, Any], capsys: pytest.CaptureFixture[str]
) -> None:
    bundle = make_signed_bundle(str(tmp_path / "b"), keys, pex=pex_bytes(["CPython>=3.9"]))
    tar = tar_of(bundle, str(tmp_path / "iris-1.0.0.tar"))
    assert main(_verify(keys, tar)) == 0
    report = _valid(json.loads(capsys.readouterr().out), schema)
    assert report["ok"] is True and report["verified"] is True and report["failure"] is None
    assert report["artifact"] == {
        "path": tar,
        "kind": "tar",
        "sha256": hashlib.sha256(Path(tar).read_bytes()).hexdigest(),
    }
    assert report["model"]["name"] == "iris" and report["model"]["version"] == "1.0.0"
    manifest_digest = hashlib.sha256(
        Path(bundle, "manifest.json").read_bytes()
    ).hexdigest()
    assert report["model"]["manifest_sha256"] == manifest_digest
    assert report["trust"] == "release"
    assert report["signers"]["owner"] == _key_id(keys.pub("owner"))
    assert report["signers"]["release"] == _key_id(keys.pub("release"))
    steps = {link["step"] for link in report["signers"]["links"]}
    assert steps == {"train", "package", "sign"}
    assert report["layout"]["expires"] == "2099-01-01T00:00:00Z"
    assert report["layout"]["steps"] == ["train", "package", "sign"]
    assert report["runtime"]["pex_constraint"] == "CPython>=3.9"
    assert [c["status"] for c in report["checks"]] == ["passed"] * 7


def test_a_changed_weight_reports_both_digests(
    tmp_path: Path, keys: Keys, schema: dict[str, Any], capsys: pytest.CaptureFixture[str]
) -> None:
    bundle = make_signed_bundle(str(tmp_path / "b"), keys)
    weight = Path(bundle, "weights", "model.bin")
    signed = hashlib.sha256(weight.read_bytes()).hexdigest()
    flip_byte(str(weight), 3)
    changed = hashlib.sha256(weight.read_bytes()).hexdigest()
    assert main(_verify(keys, bundle)) == 11
    report = _valid(json.loads(capsys.readouterr().out), schema)
    failure = report["failure"]
    assert (failure["check"], failure["where"]) == ("signature", "weights/model.bin")
    assert (failure["expected"], failure["found"]) == (signed, changed)
    assert [c["status"] for c in report["checks"]] == ["passed", "failed"] + ["not_run"] * 5
    assert report["artifact"]["kind"] == "directory" and report["artifact"]["sha256"] is None
    assert report["model"] is None  # not trusted before the integrity check


def test_an_input_failure_is_a_report_too(
    tmp_path: Path, keys: Keys, schema: dict[str, Any], capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(_verify(keys, str(tmp_path / "missing.tar"))) == 3
    report = _valid(json.loads(capsys.readouterr().out), schema)
    assert report["failure"]["check"] == "input" and report["artifact"]["kind"] == "missing"


def test_run_json_reports_on_stderr_and_runs(
    tmp_path: Path, keys: Keys, schema: dict[str, Any], capfd: pytest.CaptureFixture[str]
) -> None:
    bundle = make_signed_bundle(str(tmp_path / "b"), keys)
    command = _verify(keys, bundle)
    command[0] = "run"
    assert main([*command, "--", "info"]) == 0
    out, err = capfd.readouterr()
    assert json.loads(out)["argv"] == ["info"]  # the model's own output, alone on stdout
    report = _valid(json.loads(err.splitlines()[0]), schema)
    assert report["command"] == "run" and report["ok"] is True


def test_inspect_json_validates_and_is_unverified(
    tmp_path: Path, keys: Keys, schema: dict[str, Any], capsys: pytest.CaptureFixture[str]
) -> None:
    bundle = make_signed_bundle(str(tmp_path / "b"), keys)
    for target in (bundle, tar_of(bundle, str(tmp_path / "iris-1.0.0.tar"))):
        assert main(["inspect", "--json", target]) == 0
        report = _valid(json.loads(capsys.readouterr().out), schema)
        assert report["verified"] is False and report["signed"] is True
        assert report["signers"]["release"] == _key_id(keys.pub("release"))
        assert {c["status"] for c in report["checks"]} == {"not_run"}


def test_inspect_tells_signed_from_stripped(
    tmp_path: Path, keys: Keys, capsys: pytest.CaptureFixture[str]
) -> None:
    bundle = Path(make_signed_bundle(str(tmp_path / "b"), keys))
    assert main(["inspect", str(bundle)]) == 0
    signed = capsys.readouterr().out
    release = _key_id(keys.pub("release"))
    assert re.search(r"\n  model\.sig +present\n", signed)
    assert re.search(rf"\n  release key +{release[:16]}\n", signed)
    assert "expires 2099-01-01T00:00:00Z" in signed
    (bundle / "model.sig").unlink()
    shutil.rmtree(bundle / "provenance")
    assert main(["inspect", str(bundle)]) == 0
    stripped = capsys.readouterr().out
    assert "signed  NO: no model.sig and no provenance/" in stripped
    assert release[:16] not in stripped


def test_inspect_dates_and_platforms(
    tmp_path: Path, keys: Keys, capsys: pytest.CaptureFixture[str]
) -> None:
    wheels = ("numpy-2.0.0-cp311-cp311-manylinux_2_17_x86_64.manylinux2014_x86_64.whl",
              "six-1.16.0-py2.py3-none-any.whl")
    bundle = make_signed_bundle(str(tmp_path / "b"), keys, pex=pex_bytes([], wheels))
    assert main(["inspect", bundle]) == 0
    out = capsys.readouterr().out
    manifest = json.loads(Path(bundle, "manifest.json").read_bytes())
    epoch = manifest["build"]["source_date_epoch"]
    iso = dt.datetime.fromtimestamp(
        epoch, dt.timezone.utc
    ).strftime("%Y-%m-%dT%H:%M:%SZ")
    assert f"source date  {iso} ({epoch})" in out
    assert (
        "platforms    cp311-cp311-manylinux2014_x86_64, cp311-cp311-manylinux_2_17_x86_64 "
        "(from the PEX's wheels)" in out
    )


def test_environments_from_wheels() -> None:
    assert environments_from_wheels(["six-1.16.0-py2.py3-none-any.whl"]) == ["any"]
    both = [
        "a-1-cp311-cp311-manylinux_2_17_x86_64.whl",
        "a-1-cp312-cp312-manylinux_2_17_x86_64.whl",
        "b-1-cp311-cp311-manylinux_2_17_x86_64.whl",
    ]
    assert environments_from_wheels(both) == ["cp311-cp311-manylinux_2_17_x86_64"]
    assert environments_from_wheels([*both, "c-1-cp312-cp312-win_amd64.whl"]) == []


def test_the_documented_example_is_a_valid_report(schema: dict[str, Any]) -> None:
    text = Path("docs/verification.md").read_text(encoding="utf-8")
    examples = [
        json.loads(block)
        for block in re.findall(r"^```json\n(.*?)^```", text, re.S | re.M)
        if '"modelseal.report/v1"' in block
    ]
    assert examples, "docs/verification.md shows no complete report"
    for example in examples:
        _valid(example, schema)
