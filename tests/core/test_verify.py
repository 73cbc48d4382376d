"""`modelseal verify` and `run`: the adversarial suite, each case with its exact exit code."""

from __future__ import annotations

import dataclasses
import datetime as dt
import json
import os
import shutil
import tarfile
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from core.signing_fixtures import Keys, flip_byte, make_keys
from core.verify_fixtures import (
    make_signed_bundle,
    member,
    pex_bytes,
    raw_tar,
    resign,
    tar_of,
)
from modelseal.cli.main import main
from modelseal.errors import (
    EXIT_ARCHIVE,
    EXIT_INTEGRITY_CHECK,
    EXIT_POLICY,
    EXIT_PROVENANCE_CHECK,
    EXIT_RUNTIME,
    EXIT_SIGNATURE,
    EXIT_TRUST,
    RuntimeCheckError,
)
from modelseal.format.canonical import canonical_json
from modelseal.format.manifest import Manifest
from modelseal.keys.core import PublicKey
from modelseal.signing.provenance import LAYOUT_PATH, create_layout, revocations_bytes
from modelseal.verify.environments import environments_from_wheels
from modelseal.verify.hostcheck import (
    Host,
    check_wheels,
    match_environment,
    matches_constraint,
)
from modelseal.verify.report import VerifyOptions
from modelseal.verify.runtime_check import verify_5_runtime

HOST = Host("CPython", (3, 11, 7), "", "linux", "x86_64", (2, 35), None)


@pytest.fixture(scope="module")
def keys(tmp_path_factory: pytest.TempPathFactory) -> Keys:
    return make_keys(str(tmp_path_factory.mktemp("keys")))


@pytest.fixture
def scratch(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """The only place verification may write; it must be empty again afterwards."""
    directory = tmp_path / "scratch"
    directory.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(directory))
    yield directory
    assert list(directory.iterdir()) == []


def _tree(path: Path) -> list[tuple[str, int, int]]:
    return sorted(
        (str(p.relative_to(path)), p.lstat().st_size, p.lstat().st_mtime_ns)
        for p in path.rglob("*")
        if p.name != "scratch"  # Checked to be empty by the `scratch` fixture.
    )


def verify(
    keys: Keys,
    target: str | Path,
    capsys: pytest.CaptureFixture[str],
    *extra: str,
) -> tuple[int, str, str]:
    """Run `modelseal verify`; assert it wrote nothing next to the target and printed no
    traceback; (exit code, stdout, stderr)."""
    parent = Path(target).parent
    before = _tree(parent)
    cwd = os.getcwd()
    code = main(
        [
            "verify",
            str(target),
            "--trust",
            keys.pub("owner"),
            "--release-key",
            keys.pub("release"),
            *extra,
        ]
    )
    out, err = capsys.readouterr()
    assert "Traceback" not in err and "Traceback" not in out
    assert os.getcwd() == cwd
    assert _tree(parent) == before
    return code, out, err


def test_a_valid_bundle_and_its_tar_verify(
    tmp_path: Path, keys: Keys, scratch: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    bundle = make_signed_bundle(str(tmp_path / "b"), keys)
    code, out, err = verify(keys, bundle, capsys)
    assert (code, err) == (0, "")
    assert "verified iris 1.0.0 (release)" in out
    tar = tar_of(bundle, str(tmp_path / "iris-1.0.0.tar"))
    code, out, _ = verify(keys, tar, capsys, "--json")
    report = json.loads(out)
    assert code == 0 and report["ok"] is True and report["failure"] is None
    assert [c["name"] for c in report["checks"]] == [
        "archive",
        "signature",
        "provenance",
        "integrity",
        "runtime",
        "trust",
        "policy",
    ]


# -- signature: one changed byte anywhere -------------------------------------------------------


@pytest.mark.parametrize(
    "path",
    [
        "weights/model.bin",
        "model.pex",
        "manifest.json",
        LAYOUT_PATH,
        "provenance/train.*.link",
        "provenance/package.*.link",
        "provenance/sign.*.link",
        "model.sig",
    ],
)
def test_a_flipped_byte_in_any_file(
    tmp_path: Path, keys: Keys, scratch: Path, capsys: pytest.CaptureFixture[str], path: str
) -> None:
    bundle = Path(make_signed_bundle(str(tmp_path / "b"), keys))
    (target,) = bundle.glob(path)
    flip_byte(str(target), offset=target.stat().st_size // 2)
    code, out, _ = verify(keys, bundle, capsys, "--json")
    failure = json.loads(out)["failure"]
    assert code == EXIT_SIGNATURE == failure["exit_code"]
    assert failure["check"] == "signature"
    assert failure["remedy"]


@pytest.mark.parametrize("change", ["added", "removed"])
def test_a_file_added_or_removed(
    tmp_path: Path, keys: Keys, scratch: Path, capsys: pytest.CaptureFixture[str], change: str
) -> None:
    bundle = Path(make_signed_bundle(str(tmp_path / "b"), keys))
    if change == "added":
        (bundle / "weights" / "extra.bin").write_bytes(b"x")
    else:
        (bundle / "weights" / "config.json").unlink()
    code, _, err = verify(keys, bundle, capsys)
    assert code == EXIT_SIGNATURE
    assert "weights/" in err


# Another model's weights: the same file names and keys, other bytes.
OTHER_WEIGHTS = bytes(reversed(range(256))) * 16


@pytest.mark.parametrize(
    ("variant", "code", "where"),
    [
        # model.sig records every file's sha256, so A's signature refuses B's weights: the first
        # check that reads the weights, and the cheapest to name (the swapped file itself).
        ("weights", EXIT_SIGNATURE, "weights/model.bin"),
        # B's model.sig verifies with the release key, but it signs B's bundle as a whole: A's
        # manifest.json (and links) record A's weights, so the signature check fires on the first
        # of A's files that B's signature does not cover, never on a weights file alone.
        ("weights and model.sig", EXIT_SIGNATURE, "manifest.json"),
        # An insider with the release key re-signs A after the swap, so model.sig verifies. The
        # builder-signed package link (which the release key cannot forge) still records A's
        # weights, and the layout requires what `sign` signed to match the package's products:
        # provenance fires before the manifest (which would refuse it too) is read.
        ("weights, re-signed", EXIT_PROVENANCE_CHECK, LAYOUT_PATH),
    ],
)
def test_weights_swapped_for_another_models_signed_weights(
    tmp_path: Path,
    keys: Keys,
    scratch: Path,
    capsys: pytest.CaptureFixture[str],
    variant: str,
    code: int,
    where: str,
) -> None:
    a = Path(make_signed_bundle(str(tmp_path / "a"), keys))
    b = Path(make_signed_bundle(str(tmp_path / "b"), keys, model_bin=OTHER_WEIGHTS))
    assert verify(keys, a, capsys)[0] == 0 and verify(keys, b, capsys)[0] == 0
    copied = ["weights/model.bin", *(["model.sig"] if variant == "weights and model.sig" else [])]
    for path in copied:
        shutil.copyfile(b / path, a / path)
    if variant == "weights, re-signed":
        resign(str(a), keys)
    found, out, _ = verify(keys, a, capsys, "--json")
    report = json.loads(out)
    assert found == code == report["failure"]["exit_code"]
    assert report["failure"]["where"].endswith(where)
    assert report["failure"]["remedy"]


def test_another_release_key(
    tmp_path: Path, keys: Keys, scratch: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    bundle = make_signed_bundle(str(tmp_path / "b"), keys)
    code = main(
        ["verify", bundle, "--trust", keys.pub("owner"), "--release-key", keys.pub("builder")]
    )
    assert code == EXIT_SIGNATURE
    assert "another key" in capsys.readouterr().err


# -- provenance -------------------------------------------------------------------------------


def test_a_link_signed_by_a_revoked_key(
    tmp_path: Path, keys: Keys, scratch: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    bundle = make_signed_bundle(str(tmp_path / "b"), keys)
    revocations = tmp_path / "revoked.json"
    revocations.write_bytes(revocations_bytes([keys.signers["trainer"].key_id]))
    code, _, err = verify(keys, bundle, capsys, "--revocations", str(revocations))
    assert code == EXIT_PROVENANCE_CHECK
    assert "revoked" in err


def test_an_expired_layout(
    tmp_path: Path, keys: Keys, scratch: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    past = dt.datetime(2020, 1, 1, tzinfo=dt.timezone.utc)
    bundle = make_signed_bundle(str(tmp_path / "b"), keys, expires=past)
    code, _, err = verify(keys, bundle, capsys)
    assert code == EXIT_PROVENANCE_CHECK
    assert "expired" in err


def test_a_layout_resigned_by_another_key(
    tmp_path: Path, keys: Keys, scratch: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    bundle = make_signed_bundle(str(tmp_path / "b"), keys)
    pems = {
        step: [keys.signers[role].public_key_pem]
        for step, role in (("train", "trainer"), ("package", "builder"), ("sign", "release"))
    }
    layout = create_layout(
        keys.signers["builder"], pems, expires=dt.datetime(2099, 1, 1, tzinfo=dt.timezone.utc)
    )
    Path(bundle, LAYOUT_PATH).write_bytes(layout)
    resign(bundle, keys)
    code, _, _ = verify(keys, bundle, capsys)
    assert code == EXIT_PROVENANCE_CHECK


@pytest.mark.parametrize("resigned", [False, True], ids=["as-is", "re-signed"])
@pytest.mark.parametrize(
    ("older", "replayed"),
    [
        ("weights", ("package",)),
        ("weights", ("train", "package")),
        ("manifest", ("package",)),
    ],
)
def test_a_link_replayed_from_an_older_build(
    tmp_path: Path,
    keys: Keys,
    scratch: Path,
    capsys: pytest.CaptureFixture[str],
    older: str,
    replayed: tuple[str, ...],
    resigned: bool,
) -> None:
    def earlier(document: dict[str, Any]) -> None:
        document["build"]["source_date_epoch"] -= 86400
        if older == "manifest":
            document["metrics"]["accuracy"] = 0.91

    weights = OTHER_WEIGHTS if older == "weights" else None
    old = Path(make_signed_bundle(str(tmp_path / "old"), keys, hook=earlier, model_bin=weights))
    new = Path(make_signed_bundle(str(tmp_path / "new"), keys))
    assert verify(keys, old, capsys)[0] == 0  # The replayed links are authentic.
    if resigned:
        resign(str(new), keys)  # Re-signing alone is harmless: the failure is the replay's.
        assert verify(keys, new, capsys)[0] == 0
    for step in replayed:
        (link,) = old.glob(f"provenance/{step}.*.link")
        shutil.copyfile(link, new / "provenance" / link.name)
    if resigned:
        resign(str(new), keys)
    code, out, _ = verify(keys, new, capsys, "--json")
    report = json.loads(out)
    failure = report["failure"]
    if not resigned:
        # model.sig signs the provenance too: the newer build's signature records its own
        # package link, so the signature check names the replayed link.
        assert code == EXIT_SIGNATURE == failure["exit_code"]
        assert failure["where"].startswith("provenance/package.")
    else:
        # The insider's model.sig and sign link cover the newer files, and every link is
        # authentic, so only the layout's artifact rules can tell: the package step's weights
        # must be the train step's products, and `sign`'s materials (the newer files) the
        # package step's products (the older ones). The manifest matches the files, so
        # integrity would pass: provenance is the check that must, and does, refuse it.
        assert code == EXIT_PROVENANCE_CHECK == failure["exit_code"]
        assert [(c["name"], c["status"]) for c in report["checks"]][:4] == [
            ("archive", "passed"),
            ("signature", "passed"),
            ("provenance", "failed"),
            ("integrity", "not_run"),
        ]
        assert "RuleVerificationError" in failure["message"]
        differing = "weights/model.bin" if older == "weights" else "manifest.json"
        assert differing in failure["message"]


@pytest.mark.parametrize("what", [LAYOUT_PATH, "provenance/train.*.link"])
@pytest.mark.parametrize("damage", ["truncate", "garbage"])
def test_malformed_provenance_json(
    tmp_path: Path,
    keys: Keys,
    scratch: Path,
    capsys: pytest.CaptureFixture[str],
    what: str,
    damage: str,
) -> None:
    bundle = Path(make_signed_bundle(str(tmp_path / "b"), keys))
    (target,) = bundle.glob(what)
    data = target.read_bytes()
    target.write_bytes(data[: len(data) // 2] if damage == "truncate" else b'{"signed": [1,')
    resign(str(bundle), keys)
    code, _, _ = verify(keys, bundle, capsys)
    # model.sig must be signed by a key the layout names for `sign`: an unreadable layout
    # names none, so the signature check refuses it; a damaged link reaches the provenance check.
    assert code == (EXIT_SIGNATURE if what == LAYOUT_PATH else EXIT_PROVENANCE_CHECK)


# -- integrity --------------------------------------------------------------------------------


def test_a_manifest_claiming_another_size(
    tmp_path: Path, keys: Keys, scratch: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    def lie(document: dict[str, Any]) -> None:
        for entry in document["files"]:
            if entry["path"] == "weights/model.bin":
                entry["size"] += 1

    bundle = make_signed_bundle(str(tmp_path / "b"), keys, hook=lie)
    code, out, _ = verify(keys, bundle, capsys, "--json")
    failure = json.loads(out)["failure"]
    assert code == EXIT_INTEGRITY_CHECK
    assert failure["where"] == "weights/model.bin"
    assert failure["expected"] == "4097 bytes" and failure["found"] == "4096 bytes"


def test_a_manifest_with_another_digest(
    tmp_path: Path, keys: Keys, scratch: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    def lie(document: dict[str, Any]) -> None:
        document["files"][0]["sha256"] = "0" * 64

    bundle = make_signed_bundle(str(tmp_path / "b"), keys, hook=lie)
    code, _, err = verify(keys, bundle, capsys)
    assert code == EXIT_INTEGRITY_CHECK
    assert "sha256" in err


@pytest.mark.parametrize("data", [b'{"schema": "modelseal.manifest/v1"', b"\xff\xfe", b"[]"])
def test_a_malformed_manifest(
    tmp_path: Path, keys: Keys, scratch: Path, capsys: pytest.CaptureFixture[str], data: bytes
) -> None:
    bundle = make_signed_bundle(str(tmp_path / "b"), keys, manifest_bytes=data)
    code, _, err = verify(keys, bundle, capsys)
    assert code == EXIT_INTEGRITY_CHECK
    assert "manifest.json" in err


def test_a_file_the_manifest_lacks(
    tmp_path: Path, keys: Keys, scratch: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    def drop(document: dict[str, Any]) -> None:
        document["files"] = [f for f in document["files"] if f["path"] != "weights/config.json"]

    bundle = make_signed_bundle(str(tmp_path / "b"), keys, hook=drop)
    code, _, err = verify(keys, bundle, capsys)
    assert code == EXIT_INTEGRITY_CHECK
    assert "weights/config.json" in err


# -- runtime ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("manifest_constraint", "pex", "found"),
    [
        ("CPython==2.7.*", None, "outside"),
        ("PyPy>=3.9", None, "outside"),
        ("CPython>=3.9", pex_bytes(["CPython<3.0"]), "PEX-INFO"),
        (
            "CPython>=3.9",
            pex_bytes(["CPython>=3.9"], ("numpy-1.26.4-cp27-cp27m-win32.whl",)),
            "numpy",
        ),
        ("CPython>>3.9", None, "cannot decide"),
        ("CPython>=3.9", b"not a zip", "not a readable zip"),
    ],
)
def test_an_incompatible_runtime(
    tmp_path: Path,
    keys: Keys,
    scratch: Path,
    capsys: pytest.CaptureFixture[str],
    manifest_constraint: str,
    pex: bytes | None,
    found: str,
) -> None:
    def constrain(document: dict[str, Any]) -> None:
        document["runtime"]["interpreter_constraints"] = [manifest_constraint]

    bundle = make_signed_bundle(str(tmp_path / "b"), keys, hook=constrain, pex=pex)
    code, _, err = verify(keys, bundle, capsys)
    assert code == EXIT_RUNTIME, err
    assert found in err


def test_constraint_forms() -> None:
    for text, expected in [
        ("CPython==3.11.*", True),
        ("CPython>=3.11,<3.14", True),
        ("CPython<3.14,>=3.12", False),
        (">=3.9", True),
        ("CPython", True),
        ("CPython!=3.11.*", False),
        ("CPython~=3.10", True),
        ("CPython~=3.10.0", False),
        ("CPython==3.11.7", True),
        ("CPython==3.11", False),
        ("PyPy", False),
    ]:
        assert matches_constraint(text, HOST) is expected, text
    for bad in ["CPython>>3", "", "CPython>=3.x", "CPython>=3.*", "3.11"]:
        with pytest.raises(ValueError):
            matches_constraint(bad, HOST)


def test_wheel_tags() -> None:
    ok = [
        "six-1.16.0-py2.py3-none-any.whl",
        "numpy-1.26.4-cp311-cp311-manylinux_2_17_x86_64.manylinux2014_x86_64.whl",
        "numpy-1.26.4-cp311-cp311-macosx_11_0_arm64.whl",
        "cryptography-42.0.0-cp39-abi3-manylinux_2_28_x86_64.whl",
    ]
    assert "3 distributions" in check_wheels(ok, HOST, "pex")
    for only in [
        "numpy-1.26.4-cp312-cp312-manylinux_2_17_x86_64.whl",
        "numpy-1.26.4-cp311-cp311-manylinux_2_39_x86_64.whl",
        "numpy-1.26.4-cp311-cp311-manylinux_2_17_aarch64.whl",
        "numpy-1.26.4-cp311-cp311-win_amd64.whl",
        "cryptography-42.0.0-cp312-abi3-manylinux_2_28_x86_64.whl",
    ]:
        with pytest.raises(Exception) as failed:
            check_wheels([only], HOST, "pex")
        assert type(failed.value).__name__ == "RuntimeCheckError", only
    assert "not decidable" in check_wheels(["x-1-py3-none-musllinux_1_1_x86_64.whl"], HOST, "p")


def test_the_environment_matched_or_why_none_is() -> None:
    """The environments the PEX's wheels make (what the manifest records) against this host's
    real tags: the one it matched, or the first reason an operator can act on."""
    wheels = [
        "six-1.16.0-py2.py3-none-any.whl",
        "numpy-1.26.4-cp311-cp311-manylinux_2_17_x86_64.manylinux2014_x86_64.whl",
        "numpy-1.26.4-cp311-cp311-manylinux_2_17_aarch64.manylinux2014_aarch64.whl",
        "cryptography-42.0.0-cp39-abi3-manylinux_2_28_x86_64.whl",
        "cryptography-42.0.0-cp39-abi3-manylinux_2_28_aarch64.whl",
    ]
    environments = environments_from_wheels(wheels)
    assert environments == ["cp311 manylinux_2_28_aarch64", "cp311 manylinux_2_28_x86_64"]
    assert match_environment(environments, HOST) == ("cp311 manylinux_2_28_x86_64", "")
    arm = dataclasses.replace(HOST, machine="aarch64", glibc=(2, 36))
    assert match_environment(environments, arm) == ("cp311 manylinux_2_28_aarch64", "")
    for host, why in [
        (dataclasses.replace(HOST, glibc=(2, 27)), "glibc too old: built for"
         " manylinux_2_28_x86_64, this host has glibc 2.27"),
        (dataclasses.replace(HOST, machine="riscv64"), "architecture: built for"
         " manylinux_2_28_aarch64, manylinux_2_28_x86_64, this is linux riscv64"),
        (dataclasses.replace(HOST, system="darwin", machine="arm64", glibc=None, macos=(14, 0)),
         "architecture: built for manylinux_2_28_aarch64, manylinux_2_28_x86_64, this is darwin"
         " arm64"),
        (dataclasses.replace(HOST, version=(3, 12, 1)), "interpreter: built for cp311, this is"
         " CPython 3.12"),
    ]:
        assert match_environment(environments, host) == (None, why), host
    assert match_environment(["any"], HOST) == ("any", "")
    assert match_environment([], HOST) == (None, "")


def test_an_x86_64_only_pex_is_refused_in_one_line_naming_the_environment(
    keys: Keys, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """The host verify describes is the one that runs the model: an aarch64 host for a PEX
    whose compiled wheels are x86_64 only gets one line, why, and what the PEX has."""
    pex = pex_bytes([], ("numpy-1.26.4-cp311-cp311-manylinux_2_17_x86_64.whl",))
    bundle = make_signed_bundle(str(tmp_path / "b"), keys, pex=pex)
    with open(os.path.join(bundle, "manifest.json"), "rb") as f:
        manifest = Manifest.from_bytes(f.read())
    owner = PublicKey.from_pem(keys.signers["owner"].public_key_pem)
    arm = dataclasses.replace(HOST, machine="aarch64", glibc=(2, 36))
    with pytest.raises(RuntimeCheckError) as failed:
        verify_5_runtime(bundle, manifest, VerifyOptions(owner=owner, host=arm))
    message = str(failed.value)
    assert "\n" not in message
    assert message.startswith("model.pex: .deps: model.pex has no environment for this host"
                              " (architecture: built for manylinux_2_17_x86_64, this is linux"
                              " aarch64): expected one of cp311 manylinux_2_17_x86_64, found"
                              " CPython 3.11.7 on linux aarch64 glibc 2.36."), message


# -- trust and policy -------------------------------------------------------------------------


def _policy(tmp_path: Path, **fields: Any) -> str:
    path = tmp_path / "policy.json"
    path.write_bytes(canonical_json({"schema": "modelseal.policy/v1", **fields}))
    return str(path)


def test_development_trust(
    tmp_path: Path, keys: Keys, scratch: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    bundle = make_signed_bundle(str(tmp_path / "b"), keys, trust="development")
    assert verify(keys, bundle, capsys)[0] == EXIT_TRUST
    assert verify(keys, bundle, capsys, "--allow-development")[0] == 0
    allowing = _policy(tmp_path, allow_development=True)
    assert verify(keys, bundle, capsys, "--policy", allowing)[0] == 0


@pytest.mark.parametrize(
    ("fields", "where"),
    [
        ({"min_metrics": {"accuracy": 0.99}}, "metrics.accuracy"),
        ({"min_metrics": {"auc": 0.5}}, "metrics.auc"),
        ({"allowed_licenses": ["MIT"]}, "license"),
        ({"allowed_signer_key_ids": ["a" * 64]}, "allowed_signer_key_ids"),
        ({"max_age_days": 1}, "source_date_epoch"),
        ({"required_steps": ["train", "evaluate"]}, "required_steps"),
    ],
)
def test_policy_failures(
    tmp_path: Path,
    keys: Keys,
    scratch: Path,
    capsys: pytest.CaptureFixture[str],
    fields: dict[str, Any],
    where: str,
) -> None:
    bundle = make_signed_bundle(str(tmp_path / "b"), keys)
    code, out, _ = verify(keys, bundle, capsys, "--json", "--policy", _policy(tmp_path, **fields))
    failure = json.loads(out)["failure"]
    assert (code, failure["check"]) == (EXIT_POLICY, "policy")
    assert where in failure["where"]


def test_a_policy_that_holds(
    tmp_path: Path, keys: Keys, scratch: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    bundle = make_signed_bundle(str(tmp_path / "b"), keys)
    signer_ids = [keys.signers[r].key_id for r in ("trainer", "builder", "release")]
    policy = _policy(
        tmp_path,
        required_steps=["train", "package", "sign"],
        min_metrics={"accuracy": 0.9},
        allowed_licenses=["Apache-2.0"],
        allowed_signer_key_ids=signer_ids,
        max_age_days=100000,
        allow_development=False,
    )
    code, out, _ = verify(keys, bundle, capsys, "--policy", policy)
    assert code == 0, out
    assert "accuracy 0.97 >= 0.9" in out


@pytest.mark.parametrize(
    ("document", "field"),
    [
        ({"schema": "modelseal.policy/v2"}, "schema"),
        ({"schema": "modelseal.policy/v1", "min_metric": {}}, "min_metric"),
        ({"schema": "modelseal.policy/v1", "max_age_days": -1}, "max_age_days"),
        ({"schema": "modelseal.policy/v1", "allow_development": "no"}, "allow_development"),
        ({"schema": "modelseal.policy/v1", "allowed_signer_key_ids": ["ab"]}, "[0]"),
    ],
)
def test_invalid_policy_files_name_the_field(
    tmp_path: Path,
    keys: Keys,
    scratch: Path,
    capsys: pytest.CaptureFixture[str],
    document: dict[str, Any],
    field: str,
) -> None:
    path = tmp_path / "policy.json"
    path.write_text(json.dumps(document))
    bundle = make_signed_bundle(str(tmp_path / "b"), keys)
    code, _, err = verify(keys, bundle, capsys, "--policy", str(path))
    assert code == 3
    assert field in err


# -- archives ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("members", "found"),
    [
        ([member("b", tarfile.DIRTYPE), member("b/../evil", size=1)], "'..'"),
        ([member("/etc/evil", size=1)], "absolute"),
        (
            [member("b", tarfile.DIRTYPE), member("b/x", tarfile.SYMTYPE, link="/etc/passwd")],
            "symbolic link",
        ),
        (
            [member("b", tarfile.DIRTYPE), member("b/x", tarfile.LNKTYPE, link="../../etc/passwd")],
            "hard link",
        ),
        ([member("b", tarfile.DIRTYPE), member("b/x", tarfile.FIFOTYPE)], "FIFO"),
        ([member("b", tarfile.DIRTYPE), member("b/x", tarfile.CHRTYPE)], "device"),
        ([member("b", tarfile.DIRTYPE), member("b/x", size=100 * 1024**3)], "size limit"),
        ([member("b", tarfile.DIRTYPE), member("b/x", size=1), member("b/x", size=1)], "duplicate"),
        ([member("b", tarfile.DIRTYPE), member("c", tarfile.DIRTYPE)], "outside the top"),
    ],
)
def test_unsafe_archives(
    tmp_path: Path,
    keys: Keys,
    scratch: Path,
    capsys: pytest.CaptureFixture[str],
    members: list[tarfile.TarInfo],
    found: str,
) -> None:
    contents = [(m, b"x" * m.size if m.isreg() and m.size < 1024 else None) for m in members]
    tar = raw_tar(str(tmp_path / "evil.tar"), contents)
    code, _, err = verify(keys, tar, capsys)
    assert code == EXIT_ARCHIVE, err
    assert found in err
    assert not (tmp_path / "evil").exists() and not Path("/etc/evil").exists()


def test_a_huge_long_name_is_not_read(
    tmp_path: Path, keys: Keys, scratch: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    tar = raw_tar(str(tmp_path / "evil.tar"), [(member("././@LongLink", b"L", 2 * 1024**3), None)])
    code, _, err = verify(keys, tar, capsys)
    assert code == EXIT_ARCHIVE, err


def test_member_size_limit_option(
    tmp_path: Path, keys: Keys, scratch: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    bundle = make_signed_bundle(str(tmp_path / "b"), keys)
    tar = tar_of(bundle, str(tmp_path / "iris-1.0.0.tar"))
    code, _, err = verify(keys, tar, capsys, "--max-member-size", "100")
    assert code == EXIT_ARCHIVE and "size limit" in err


def test_a_symlink_in_a_bundle_directory(
    tmp_path: Path, keys: Keys, scratch: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    bundle = Path(make_signed_bundle(str(tmp_path / "b"), keys))
    (bundle / "weights" / "link").symlink_to("/etc/passwd")
    code, _, _ = verify(keys, bundle, capsys)
    assert code == EXIT_ARCHIVE


def test_a_truncated_tar(
    tmp_path: Path, keys: Keys, scratch: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    bundle = make_signed_bundle(str(tmp_path / "b"), keys)
    tar = Path(tar_of(bundle, str(tmp_path / "iris-1.0.0.tar")))
    data = tar.read_bytes()
    for size in (100, 1536, len(data) // 2):
        tar.write_bytes(data[:size])
        code, _, _ = verify(keys, tar, capsys)
        assert code in (EXIT_ARCHIVE, EXIT_SIGNATURE), size


# -- inputs -----------------------------------------------------------------------------------


def test_bad_inputs_keep_their_codes(
    tmp_path: Path, keys: Keys, scratch: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    bundle = make_signed_bundle(str(tmp_path / "b"), keys)
    not_a_key = tmp_path / "bad.pub"
    not_a_key.write_bytes(b"nope")
    assert (
        main(["verify", bundle, "--trust", str(not_a_key), "--release-key", keys.pub("release")])
        == 5
    )
    assert (
        main(
            [
                "verify",
                str(tmp_path / "missing"),
                "--trust",
                keys.pub("owner"),
                "--release-key",
                keys.pub("release"),
                "--json",
            ]
        )
        == 3
    )
    report = json.loads(capsys.readouterr().out)
    assert report["failure"]["check"] == "input" and report["failure"]["exit_code"] == 3


# -- run --------------------------------------------------------------------------------------


def _run(keys: Keys, target: str, *command: str) -> int:
    return main(
        [
            "run",
            target,
            "--trust",
            keys.pub("owner"),
            "--release-key",
            keys.pub("release"),
            "--",
            *command,
        ]
    )


def test_run_passes_arguments_and_exit_code(
    tmp_path: Path,
    keys: Keys,
    scratch: Path,
    capfd: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    bundle = make_signed_bundle(str(tmp_path / "b"), keys)
    tar = tar_of(bundle, str(tmp_path / "iris-1.0.0.tar"))
    monkeypatch.setenv("MODEL_EXIT", "7")
    for variable in ("PEX_INHERIT_PATH", "PEX_MODULE", "PYTHONPATH", "PYTHONSTARTUP", "LD_PRELOAD"):
        monkeypatch.setenv(variable, str(tmp_path / "elsewhere"))
    assert _run(keys, tar, "predict", "--flag") == 7
    seen = json.loads(capfd.readouterr().out)
    assert seen["argv"] == ["predict", "--flag"]
    # Only what modelseal sets reaches the model: its own, new PEX_ROOT, and no user site.
    assert seen["env"] == ["PEX_ROOT", "PYTHONNOUSERSITE"]
    assert seen["pex_root"].startswith(str(scratch)) and not os.path.exists(seen["pex_root"])


def test_run_runs_nothing_when_verification_fails(
    tmp_path: Path,
    keys: Keys,
    scratch: Path,
    capfd: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    bundle = make_signed_bundle(str(tmp_path / "b"), keys)
    marker = tmp_path / "ran"
    monkeypatch.setenv("MARKER", str(marker))
    flip_byte(os.path.join(bundle, "weights", "model.bin"))
    assert _run(keys, bundle, "predict") == EXIT_SIGNATURE
    assert not marker.exists()
    captured = capfd.readouterr()
    assert captured.out == "" and "Traceback" not in captured.err
    shutil.rmtree(bundle)
    assert _run(keys, bundle) == 3  # Nothing after `--`.


def test_release_key_id_in_report(
    tmp_path: Path, keys: Keys, scratch: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    bundle = make_signed_bundle(str(tmp_path / "b"), keys)
    code, out, _ = verify(keys, bundle, capsys)
    key_id = PublicKey.from_pem(keys.signers["release"].public_key_pem).key_id
    assert code == 0 and key_id[:16] in out
