"""Signing and provenance with real keys, real in-toto and, when CI names them, the reference
CLIs (`MODELSEAL_IN_TOTO_VERIFY`, `MODELSEAL_MODEL_SIGNING`)."""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import os
import shutil
import subprocess
from pathlib import Path

import pytest

from core.reference import reference_cli_or_fail
from core.signing_fixtures import Keys, flip_byte, make_bundle, make_keys, write_ec_key
from modelseal.cli.main import main
from modelseal.errors import IntegrityError, KeyError_, ModelsealError, SigningError
from modelseal.keys.core import KEY_TYPES, PublicKey, generate_private_key, write_key_pair
from modelseal.keys.reference import load_signer
from modelseal.signing.modelsig import verify_bundle_signature
from modelseal.signing.provenance import (
    LAYOUT_PATH,
    create_layout,
    load_revocations,
    revocations_bytes,
    rotate_layout,
    verify_provenance,
)
from modelseal.signing.release import sign_release

PASSPHRASE = b"correct horse battery staple 7f3a"


@pytest.fixture(scope="module")
def keys(tmp_path_factory: pytest.TempPathFactory) -> Keys:
    return make_keys(str(tmp_path_factory.mktemp("keys")))


# -- keys -------------------------------------------------------------------------------------


@pytest.mark.parametrize("key_type", KEY_TYPES)
def test_each_key_type_signs_and_verifies(tmp_path: Path, key_type: str) -> None:
    out = str(tmp_path / "k.pem")
    write_key_pair(generate_private_key(key_type), out, None)
    assert (os.stat(out).st_mode & 0o777) == 0o600
    signer = load_signer(f"file:{out}")
    public = PublicKey.from_file(str(tmp_path / "k.pub"))
    assert public.key_id == signer.key_id
    signature = signer.sign(b"data")
    assert public.verify(signature, b"data")
    assert not public.verify(signature, b"datA")


def test_ecdsa_is_deterministic(keys: Keys) -> None:
    signer = keys.signers["release"]
    assert signer.sign(b"same input") == signer.sign(b"same input")


def test_model_sig_bytes_are_deterministic(tmp_path: Path, keys: Keys) -> None:
    first = make_bundle(str(tmp_path / "a"), keys)
    second = make_bundle(str(tmp_path / "b"), keys)
    for name in ("model.sig", f"provenance/sign.{keys.signers['release'].key_id[:8]}.link"):
        assert Path(first, name).read_bytes() == Path(second, name).read_bytes()


def test_encrypted_key_and_wrong_passphrase(tmp_path: Path) -> None:
    key = write_ec_key(str(tmp_path / "k.pem"), PASSPHRASE)
    good = tmp_path / "pass"
    good.write_bytes(PASSPHRASE + b"\n")
    load_signer(f"file:{key}?passphrase-file={good}")
    bad = tmp_path / "bad"
    bad.write_bytes(b"not the passphrase\n")
    reference = f"file:{key}?passphrase-file={bad}"
    with pytest.raises(KeyError_) as info:
        load_signer(reference)
    message = str(info.value)
    assert reference in message and "wrong passphrase" in message
    assert "not the passphrase" not in message and PASSPHRASE.decode() not in message
    assert info.value.exit_code == 5
    with pytest.raises(KeyError_, match="no passphrase file"):
        load_signer(f"file:{key}")
    with pytest.raises(KeyError_, match="cannot read the passphrase file"):
        load_signer(f"file:{key}?passphrase-file={tmp_path / 'missing'}")


def test_missing_key_file_and_bad_references(tmp_path: Path) -> None:
    with pytest.raises(KeyError_, match="cannot read the key file.*modelseal keygen"):
        load_signer(f"file:{tmp_path / 'nope.pem'}")
    with pytest.raises(KeyError_, match="not a key reference"):
        load_signer("/some/key.pem")
    with pytest.raises(KeyError_, match="unknown attribute 'password'"):
        load_signer(f"file:{tmp_path}/k.pem?password=x")


def test_env_reference(tmp_path: Path, keys: Keys) -> None:
    key = write_ec_key(str(tmp_path / "k.pem"))
    signer = load_signer("env:MS_KEY", {"MS_KEY": f"file:{key}"})
    assert signer.key_id == load_signer(f"file:{key}").key_id
    pem = Path(key).read_text()
    with pytest.raises(KeyError_) as info:
        load_signer("env:MS_KEY", {"MS_KEY": pem})
    assert "BEGIN" not in str(info.value) and "does not hold" in str(info.value)
    with pytest.raises(KeyError_, match="is not set"):
        load_signer("env:MS_UNSET", {})


def test_pin_value_is_refused_and_never_shown() -> None:
    with pytest.raises(KeyError_) as info:
        load_signer("pkcs11:token=t;object=k?module-path=/x.so&pin-value=123456")
    assert "123456" not in str(info.value)


# -- model.sig --------------------------------------------------------------------------------


def test_own_verifier_accepts_and_names_changed_files(tmp_path: Path, keys: Keys) -> None:
    bundle = make_bundle(str(tmp_path), keys)
    release = keys.signers["release"].public_key_pem
    verified = verify_bundle_signature(bundle, release)
    assert "weights/model.bin" in verified.digests
    assert any(p.startswith("provenance/sign.") for p in verified.digests)
    with pytest.raises(IntegrityError, match="another key"):
        verify_bundle_signature(bundle, keys.signers["owner"].public_key_pem)
    Path(bundle, "extra.txt").write_bytes(b"x")
    with pytest.raises(IntegrityError, match="not signed by model.sig") as info:
        verify_bundle_signature(bundle, release)
    assert info.value.where == "extra.txt"
    os.unlink(os.path.join(bundle, "extra.txt"))
    flip_byte(os.path.join(bundle, "weights", "model.bin"), 100)
    both = "expected [0-9a-f]{64}, found [0-9a-f]{64}"
    differs = f"sha256 differs from the one model.sig signs: {both}"
    with pytest.raises(IntegrityError, match=differs) as info:
        verify_bundle_signature(bundle, release)
    assert info.value.where == "weights/model.bin"


def test_model_sig_needs_an_ec_key(tmp_path: Path) -> None:
    out = str(tmp_path / "ed.pem")
    write_key_pair(generate_private_key("ed25519"), out, None)
    (tmp_path / "b").mkdir()
    (tmp_path / "b" / "f").write_bytes(b"x")
    with pytest.raises(KeyError_, match="ECDSA"):
        sign_release(str(tmp_path / "b"), load_signer(f"file:{out}"))
    assert sorted(p.name for p in (tmp_path / "b").iterdir()) == ["f"]  # nothing written


def test_model_signing_cli_accepts_and_rejects(tmp_path: Path, keys: Keys) -> None:
    tool = reference_cli_or_fail("MODELSEAL_MODEL_SIGNING")
    bundle = make_bundle(str(tmp_path), keys)
    command = [
        tool, "verify", "key", bundle, "--signature", os.path.join(bundle, "model.sig"),
        "--public_key", keys.pub("release"),
    ]  # fmt: skip
    ok = subprocess.run(command, capture_output=True, text=True)
    assert ok.returncode == 0, ok.stdout + ok.stderr
    flip_byte(os.path.join(bundle, "model.pex"), 3)
    bad = subprocess.run(command, capture_output=True, text=True)
    assert bad.returncode != 0


# -- in-toto ----------------------------------------------------------------------------------


def test_own_provenance_verification(tmp_path: Path, keys: Keys) -> None:
    bundle = make_bundle(str(tmp_path), keys)
    owner = keys.signers["owner"].public_key_pem
    verify_provenance(bundle, owner)
    flip_byte(os.path.join(bundle, "manifest.json"), 2)
    with pytest.raises(SigningError, match="in-toto verification failed"):
        verify_provenance(bundle, owner)


@pytest.mark.parametrize("changed", ["weights/model.bin", "model.pex", "manifest.json"])
def test_in_toto_verify_cli(tmp_path: Path, keys: Keys, changed: str) -> None:
    tool = reference_cli_or_fail("MODELSEAL_IN_TOTO_VERIFY")
    bundle = make_bundle(str(tmp_path), keys)
    command = [
        tool, "--layout", LAYOUT_PATH, "--verification-keys", keys.pub("owner"),
        "--link-dir", "provenance",
    ]  # fmt: skip
    ok = subprocess.run(command, cwd=bundle, capture_output=True, text=True)
    assert ok.returncode == 0, ok.stdout + ok.stderr
    # A second run sees the inspection record the first left behind, and still passes.
    again = subprocess.run(command, cwd=bundle, capture_output=True, text=True)
    assert again.returncode == 0, again.stdout + again.stderr
    verify_bundle_signature(bundle, keys.signers["release"].public_key_pem)
    flip_byte(os.path.join(bundle, *changed.split("/")), 1)
    bad = subprocess.run(command, cwd=bundle, capture_output=True, text=True)
    assert bad.returncode == 1, bad.stdout + bad.stderr


def test_untrusted_training_link(tmp_path: Path, keys: Keys) -> None:
    stranger = load_signer("file:" + write_ec_key(str(tmp_path / "stranger.pem")))
    bundle = make_bundle(str(tmp_path), keys, trainer=stranger)
    with pytest.raises(SigningError, match="train"):
        verify_provenance(bundle, keys.signers["owner"].public_key_pem)


def test_expired_layout(tmp_path: Path, keys: Keys) -> None:
    past = dt.datetime(2020, 1, 1, tzinfo=dt.timezone.utc)
    bundle = make_bundle(str(tmp_path), keys, expires=past)
    with pytest.raises(SigningError, match="expired at 2020-01-01T00:00:00Z"):
        verify_provenance(bundle, keys.signers["owner"].public_key_pem)


def test_revocation_and_rotation(tmp_path: Path, keys: Keys) -> None:
    bundle = make_bundle(str(tmp_path), keys)
    owner = keys.signers["owner"]
    builder_id = keys.signers["builder"].key_id
    revoked = load_revocations(revocations_bytes([builder_id]))
    with pytest.raises(SigningError, match="revoked"):
        verify_provenance(bundle, owner.public_key_pem, revoked=revoked)
    new_builder = load_signer("file:" + write_ec_key(str(tmp_path / "b2.pem")))
    layout = Path(bundle, LAYOUT_PATH).read_bytes()
    rotated = rotate_layout(
        layout,
        owner,
        add={"package": [new_builder.public_key_pem]},
        remove={"package": [builder_id[:8]]},
    )
    assert builder_id.encode() not in rotated and new_builder.key_id.encode() in rotated
    with pytest.raises(ModelsealError, match="threshold 2"):
        create_layout(
            owner,
            {s: [keys.signers["trainer"].public_key_pem] for s in ("train", "package", "sign")},
            {"sign": 2},
            expires=dt.datetime(2099, 1, 1, tzinfo=dt.timezone.utc),
        )


# -- command line and secrets -----------------------------------------------------------------


def test_cli_end_to_end_and_no_secrets_leak(
    tmp_path: Path, keys: Keys, capsys: pytest.CaptureFixture[str]
) -> None:
    work = tmp_path / "work"
    work.mkdir()
    passfile = tmp_path / "pass"
    passfile.write_bytes(PASSPHRASE + b"\n")
    release = str(work / "release.pem")
    assert main(["keygen", "--type", "ecdsa-p256", "--out", release,
                 "--passphrase-file", str(passfile)]) == 0  # fmt: skip
    assert main(["keygen", "--type", "ecdsa-p256", "--out", release]) == 3  # refuses overwrite
    ref = f"file:{release}?passphrase-file={passfile}"
    pubs = work / "pubs"
    assert main(["keys", "export-public", "--key", f"release={ref}",
                 "--key", f"owner=file:{keys.directory}/owner.pem", str(pubs)]) == 0  # fmt: skip
    assert sorted(os.listdir(pubs)) == ["owner.pub", "release.pub"]
    bundle = make_bundle(str(tmp_path / "b"), keys)
    os.unlink(os.path.join(bundle, "model.sig"))
    for name in os.listdir(os.path.join(bundle, "provenance")):
        if name.startswith("sign."):
            os.unlink(os.path.join(bundle, "provenance", name))
    layout_out = os.path.join(bundle, LAYOUT_PATH)
    assert main(["layout", "create", "--owner-key", f"file:{keys.directory}/owner.pem",
                 "--step", f"train={keys.pub('trainer')}",
                 "--step", f"package={keys.pub('builder')}",
                 "--step", f"sign={pubs / 'release.pub'}",
                 "--expires", "2099-01-01T00:00:00Z", "--out", layout_out]) == 0  # fmt: skip
    before = sorted(p.name for p in Path(bundle).rglob("*"))
    bad = tmp_path / "badpass"
    bad.write_bytes(b"wrong-passphrase-value\n")
    code = main(["sign", "--bundle", bundle, "--key", f"file:{release}?passphrase-file={bad}"])
    assert code == 5
    assert sorted(p.name for p in Path(bundle).rglob("*")) == before  # nothing written
    assert main(["sign", "--bundle", bundle, "--key", ref]) == 0
    verify_bundle_signature(bundle, (pubs / "release.pub").read_bytes())
    verify_provenance(bundle, (pubs / "owner.pub").read_bytes())
    out, err = capsys.readouterr()
    private_pem = Path(release).read_bytes()
    body = b"".join(private_pem.splitlines()[1:-1])
    secrets = [PASSPHRASE, b"wrong-passphrase-value", body[:40]]
    written = [p for p in Path(tmp_path).rglob("*") if p.is_file() and p.suffix != ".pem"]
    written = [p for p in written if p.name not in ("pass", "badpass")]
    for secret in secrets:
        assert secret.decode() not in out + err
        for path in written:
            assert secret not in path.read_bytes(), path


def test_record_train(tmp_path: Path, keys: Keys, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    Path("data.csv").write_bytes(b"1,2\n")
    script = "open('weights/model.bin','wb').write(b'w')"
    os.makedirs("weights")
    python = shutil.which("python3") or "python3"
    code = main(["record", "train", "--key", f"file:{keys.directory}/trainer.pem",
                 "--materials", "data.csv", "--products", "weights", "--out", "prov",
                 "--", python, "-c", script])  # fmt: skip
    assert code == 0
    (link,) = os.listdir("prov")
    assert link == f"train.{keys.signers['trainer'].key_id[:8]}.link"
    text = Path("prov", link).read_text()
    assert '"weights/model.bin"' in text and str(tmp_path) not in text


def test_record_start_stop(tmp_path: Path, keys: Keys, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    Path("data.csv").write_bytes(b"1,2\n")
    os.makedirs("code")
    Path("code", "train.py").write_bytes(b"print(1)\n")
    trainer = f"file:{keys.directory}/trainer.pem"
    start = ["record", "start", "--step", "train", "--key", trainer,
             "--materials", "data.csv", "code", "--out", "prov"]  # fmt: skip
    assert main(start) == 0
    (state,) = os.listdir("prov")
    text = Path("prov", state).read_text()
    assert '"code/train.py"' in text and str(tmp_path) not in text and "PRIVATE" not in text
    assert main(start) == 3  # already started
    # Materials are hashed at start: changing them during the job does not change the link.
    Path("data.csv").write_bytes(b"changed\n")
    os.makedirs("weights")
    Path("weights", "model.bin").write_bytes(b"w")
    stop = ["record", "stop", "--step", "train", "--products", "weights", "--out", "prov"]
    assert main([*stop, "--key", f"file:{keys.directory}/builder.pem"]) == 5  # not start's key
    assert main([*stop, "--key", trainer]) == 0
    link = f"train.{keys.signers['trainer'].key_id[:8]}.link"
    assert os.listdir("prov") == [link]  # the state file is gone
    signed = json.loads(Path("prov", link).read_text())["signed"]
    assert signed["materials"]["data.csv"]["sha256"] == hashlib.sha256(b"1,2\n").hexdigest()
    assert set(signed["materials"]) == {"data.csv", "code/train.py"}
    assert set(signed["products"]) == {"weights/model.bin"}
    assert main([*stop, "--key", trainer]) == 3  # nothing started any more


def test_record_start_stop_bad_input(
    tmp_path: Path, keys: Keys, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.chdir(tmp_path)
    trainer = f"file:{keys.directory}/trainer.pem"
    assert main(["record", "start", "--step", "../x", "--key", trainer]) == 3
    assert main(["record", "start", "--step", "t", "--key", trainer,
                 "--materials", "missing.csv", "--out", "prov"]) == 3  # fmt: skip
    assert main(["record", "start", "--step", "t", "--key", trainer,
                 "--materials", str(tmp_path / "abs"), "--out", "prov"]) == 3  # fmt: skip
    assert main(["record", "start", "--step", "t", "--key", f"file:{tmp_path}/nokey.pem",
                 "--out", "prov"]) == 5  # fmt: skip
    assert not os.path.exists("prov") or os.listdir("prov") == []
    os.makedirs("prov")
    Path("prov", ".modelseal-record.t.json").write_text('{"schema":"other"}')
    assert main(["record", "stop", "--step", "t", "--key", trainer, "--out", "prov"]) == 3
    err = capsys.readouterr().err
    assert "not a state file" in err and "was not started" not in err
