"""PKCS#11 signing against a real SoftHSM2 token (`MODELSEAL_SOFTHSM2_MODULE`), and the reference
CLIs (`MODELSEAL_MODEL_SIGNING`, `MODELSEAL_IN_TOTO_VERIFY`) on what the token signed.

The token lives in a private SOFTHSM2_CONF/tokendir under the test's temporary directory; its keys
are generated here with `cryptography` and imported with `softhsm2-util --import`, so no key
material is committed. The PIN is deliberately distinctive, so that finding it anywhere means a
leak and not a coincidence of digits.
"""

from __future__ import annotations

import os
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa

from core.reference import reference_cli_or_fail, softhsm2_or_fail
from core.signing_fixtures import Keys, flip_byte, make_bundle, make_keys
from modelseal.cli.main import main
from modelseal.errors import KeyError_, SigningError
from modelseal.keys.core import PublicKey, Signer, key_id_of
from modelseal.keys.pkcs11 import MODULE_ENV, parse_reference
from modelseal.keys.reference import load_signer
from modelseal.signing.modelsig import verify_bundle_signature
from modelseal.signing.provenance import LAYOUT_PATH, verify_provenance

TOKEN = "modelseal-test"
PIN = "hsm-user-pin-5319"
SO_PIN = "hsm-so-pin-8642"
WRONG_PIN = "not-the-pin-2718"


@dataclass
class Token:
    module: str
    directory: Path
    pin_file: Path
    wrong_pin_file: Path
    public_keys: dict[str, ec.EllipticCurvePublicKey]

    def reference(self, label: str, pin_file: Path | None = None, token: str = TOKEN) -> str:
        return (
            f"pkcs11:token={token};object={label};type=private"
            f"?module-path={self.module}&pin-source=file:{pin_file or self.pin_file}"
        )


def _import(tool: str, key: object, path: Path, label: str, key_id: str) -> None:
    assert isinstance(key, (ec.EllipticCurvePrivateKey, rsa.RSAPrivateKey))
    path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    command = [tool, "--import", str(path), "--token", TOKEN, "--label", label, "--id", key_id]
    subprocess.run([*command, "--pin", PIN], check=True, capture_output=True)
    path.unlink()  # The token holds the key now; nothing on disk does.


@pytest.fixture(scope="module")
def token(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Token]:
    module, tool = softhsm2_or_fail()
    directory = tmp_path_factory.mktemp("softhsm")
    (directory / "tokens").mkdir()
    conf = directory / "softhsm2.conf"
    conf.write_text(
        f"directories.tokendir = {directory / 'tokens'}\nobjectstore.backend = file\n"
        "log.level = ERROR\n"
    )
    previous = os.environ.get("SOFTHSM2_CONF")
    os.environ["SOFTHSM2_CONF"] = str(conf)
    try:
        subprocess.run(
            [tool, "--init-token", "--free", "--label", TOKEN, "--pin", PIN, "--so-pin", SO_PIN],
            check=True,
            capture_output=True,
        )
        keys = {
            "release": ec.generate_private_key(ec.SECP256R1()),
            "owner": ec.generate_private_key(ec.SECP384R1()),
        }
        for number, (label, key) in enumerate(keys.items(), start=1):
            _import(tool, key, directory / f"{label}.pem", label, f"{number:02x}")
        _import(tool, rsa.generate_private_key(65537, 2048), directory / "r.pem", "rsa", "10")
        pin_file = directory / "pin"
        pin_file.write_text(PIN + "\n")
        wrong = directory / "wrong-pin"
        wrong.write_text(WRONG_PIN + "\n")
        yield Token(
            module, directory, pin_file, wrong, {k: v.public_key() for k, v in keys.items()}
        )
    finally:
        if previous is None:
            os.environ.pop("SOFTHSM2_CONF", None)
        else:
            os.environ["SOFTHSM2_CONF"] = previous


def _no_secret(*texts: str) -> None:
    for text in texts:
        assert PIN not in text and WRONG_PIN not in text and SO_PIN not in text


# -- references (no token needed) -------------------------------------------------------------


def test_parse_reference() -> None:
    parsed = parse_reference(
        "pkcs11:token=my%20token;object=release;id=%01%A2;type=private"
        "?module-path=/opt/a+b/lib.so&pin-source=file:/run/pin%3B1",
        {},
    )
    assert parsed.token == {"token": "my token"}
    assert parsed.label == "release" and parsed.key_id == b"\x01\xa2"
    assert parsed.module_path == "/opt/a+b/lib.so"  # '+' is not a space in RFC 7512
    assert parsed.pin_file == "/run/pin;1"
    from_env = parse_reference("pkcs11:object=k?pin-source=file:///p", {MODULE_ENV: "/m.so"})
    assert from_env.module_path == "/m.so" and from_env.pin_file == "/p"
    assert parse_reference("pkcs11:object=k?module-path=/x.so", {MODULE_ENV: "/m.so"}).module_path


@pytest.mark.parametrize(
    ("reference", "message"),
    [
        ("pkcs11:object=k?module-path=/x.so&pin-value=99887766", "may not be written"),
        ("pkcs11:object=k?pin-source=/etc/pin", "must be a file: URI"),
        ("pkcs11:object=k?pin-source=|cat", "must be a file: URI"),
        ("pkcs11:object=k;type=cert", "does not name a private key"),
        ("pkcs11:object=k;object=j", "repeated attribute 'object'"),
        ("pkcs11:label=k", "unknown attribute 'label'"),
        ("pkcs11:object=k?module-name=softhsm2", "unknown attribute 'module-name'"),
        ("pkcs11:slot-id=zero", "slot-id is not a decimal number"),
    ],
)
def test_bad_references(reference: str, message: str) -> None:
    with pytest.raises(KeyError_, match=message) as info:
        load_signer(reference, {})
    assert info.value.exit_code == 5 and "99887766" not in str(info.value)


def test_module_not_found(tmp_path: Path) -> None:
    missing = tmp_path / "libnothing.so"
    reference = f"pkcs11:token={TOKEN};object=k?module-path={missing}&pin-source=file:/p"
    with pytest.raises(KeyError_) as info:
        load_signer(reference, {})
    assert f"the PKCS#11 module {missing} does not exist" in str(info.value)
    assert info.value.where == reference
    with pytest.raises(KeyError_, match=f"set {MODULE_ENV}"):
        load_signer(f"pkcs11:token={TOKEN};object=k?pin-source=file:/p", {})
    not_a_library = tmp_path / "lib.so"
    not_a_library.write_bytes(b"not ELF")
    with pytest.raises(KeyError_, match="cannot load the PKCS#11 module"):
        load_signer(f"pkcs11:object=k?module-path={not_a_library}", {})


# -- the token --------------------------------------------------------------------------------


@pytest.mark.parametrize(("label", "scheme"), [("release", "nistp256"), ("owner", "nistp384")])
def test_token_key_signs_and_verifies(token: Token, label: str, scheme: str) -> None:
    with load_signer(token.reference(label)) as signer:
        assert signer.key_id == key_id_of(token.public_keys[label])
        public = PublicKey.from_pem(signer.public_key_pem)
        assert public.scheme == f"ecdsa-sha2-{scheme}"
        signature = signer.sign(b"data")
        assert signature[0] == 0x30  # DER, like a file key's
        assert public.verify(signature, b"data") and not public.verify(signature, b"datA")
        _no_secret(repr(signer), signer.reference)
    with pytest.raises(SigningError, match="session is closed"):
        signer.sign(b"data")


def test_key_by_id_and_module_from_env(token: Token) -> None:
    reference = f"pkcs11:token={TOKEN};id=%01?pin-source=file:{token.pin_file}"
    with load_signer(reference, {MODULE_ENV: token.module}) as signer:
        assert signer.key_id == key_id_of(token.public_keys["release"])
    with load_signer("env:MS_HSM", {"MS_HSM": token.reference("release")}) as signer:
        assert signer.key_id == key_id_of(token.public_keys["release"])


def test_two_signers_share_the_token(token: Token) -> None:
    """Closing one signer must not log out or finalise under the other."""
    owner = load_signer(token.reference("owner"))
    release = load_signer(token.reference("release"))
    owner.close()
    assert release.public_key().verify(release.sign(b"x"), b"x")
    release.close()
    with load_signer(token.reference("release")) as again:  # re-initialises the module
        assert again.public_key().verify(again.sign(b"y"), b"y")


def test_wrong_pin(token: Token) -> None:
    reference = token.reference("release", token.wrong_pin_file)
    with pytest.raises(KeyError_) as info:
        load_signer(reference)
    message = str(info.value)
    assert f"wrong PIN for token '{TOKEN}' (CKR_PIN_INCORRECT)" in message
    assert info.value.where == reference and info.value.exit_code == 5
    _no_secret(message, repr(info.value))


def test_missing_token_lists_labels(token: Token) -> None:
    with pytest.raises(KeyError_) as info:
        load_signer(token.reference("release", token="no-such-token"))
    message = str(info.value)
    assert "no token labelled 'no-such-token'" in message
    assert f"available token labels: '{TOKEN}'" in message
    _no_secret(message)


def test_missing_key_and_unsupported_type(token: Token) -> None:
    with pytest.raises(KeyError_, match=f"no private key object='nope' in token '{TOKEN}'"):
        load_signer(token.reference("nope"))
    with pytest.raises(KeyError_, match="the key is a RSA key; only EC"):
        load_signer(token.reference("rsa"))
    ambiguous = f"pkcs11:token={TOKEN}?module-path={token.module}&pin-source=file:{token.pin_file}"
    with pytest.raises(KeyError_, match="3 private keys in token"):
        load_signer(ambiguous)


def _hsm_keys(directory: str, token: Token) -> Iterator[Keys]:
    """File keys for the trainer and builder, token keys for the owner and release."""
    keys = make_keys(directory)
    hsm: dict[str, Signer] = {r: load_signer(token.reference(r)) for r in ("owner", "release")}
    try:
        yield Keys(directory, {**keys.signers, **hsm})
    finally:
        for signer in hsm.values():
            signer.close()


@pytest.fixture
def hsm_keys(tmp_path: Path, token: Token) -> Iterator[Keys]:
    yield from _hsm_keys(str(tmp_path / "keys"), token)


def test_model_signing_cli_accepts_token_signature(tmp_path: Path, hsm_keys: Keys) -> None:
    bundle = make_bundle(str(tmp_path / "b"), hsm_keys)
    release = hsm_keys.signers["release"].public_key_pem
    verify_bundle_signature(bundle, release)
    verify_provenance(bundle, hsm_keys.signers["owner"].public_key_pem)
    tool = reference_cli_or_fail("MODELSEAL_MODEL_SIGNING")
    command = [
        tool, "verify", "key", bundle, "--signature", os.path.join(bundle, "model.sig"),
        "--public_key", hsm_keys.pub("release"),
    ]  # fmt: skip
    ok = subprocess.run(command, capture_output=True, text=True)
    assert ok.returncode == 0, ok.stdout + ok.stderr
    flip_byte(os.path.join(bundle, "weights", "model.bin"), 7)
    assert subprocess.run(command, capture_output=True).returncode != 0


def test_in_toto_verify_accepts_token_layout_and_link(tmp_path: Path, hsm_keys: Keys) -> None:
    tool = reference_cli_or_fail("MODELSEAL_IN_TOTO_VERIFY")
    bundle = make_bundle(str(tmp_path / "b"), hsm_keys)
    command = [
        tool, "--layout", LAYOUT_PATH, "--verification-keys", hsm_keys.pub("owner"),
        "--link-dir", "provenance",
    ]  # fmt: skip
    ok = subprocess.run(command, cwd=bundle, capture_output=True, text=True)
    assert ok.returncode == 0, ok.stdout + ok.stderr
    flip_byte(os.path.join(bundle, "model.pex"), 1)
    bad = subprocess.run(command, cwd=bundle, capture_output=True, text=True)
    assert bad.returncode == 1, bad.stdout + bad.stderr


def test_cli_with_token_writes_no_pin(
    tmp_path: Path, token: Token, capsys: pytest.CaptureFixture[str]
) -> None:
    keys = make_keys(str(tmp_path / "keys"))
    release_ref = token.reference("release")
    owner_ref = token.reference("owner")
    pubs = tmp_path / "pubs"
    assert main(["keys", "export-public", "--key", f"release={release_ref}",
                 "--key", f"owner={owner_ref}", str(pubs)]) == 0  # fmt: skip
    bundle = make_bundle(str(tmp_path / "b"), keys)
    os.unlink(os.path.join(bundle, "model.sig"))
    for name in os.listdir(os.path.join(bundle, "provenance")):
        if name.startswith("sign."):
            os.unlink(os.path.join(bundle, "provenance", name))
    assert main(["layout", "create", "--owner-key", owner_ref,
                 "--step", f"train={keys.pub('trainer')}",
                 "--step", f"package={keys.pub('builder')}",
                 "--step", f"sign={pubs / 'release.pub'}",
                 "--expires", "2099-01-01T00:00:00Z",
                 "--out", os.path.join(bundle, LAYOUT_PATH)]) == 0  # fmt: skip
    before = sorted(str(p) for p in Path(bundle).rglob("*"))
    wrong = token.reference("release", token.wrong_pin_file)
    assert main(["sign", "--bundle", bundle, "--key", wrong]) == 5
    assert sorted(str(p) for p in Path(bundle).rglob("*")) == before  # nothing written
    assert main(["sign", "--bundle", bundle, "--key", release_ref]) == 0
    verify_bundle_signature(bundle, (pubs / "release.pub").read_bytes())
    verify_provenance(bundle, (pubs / "owner.pub").read_bytes())
    stdout, stderr = capsys.readouterr()
    assert "wrong PIN" in stderr
    _no_secret(stdout, stderr)
    for path in tmp_path.rglob("*"):
        if path.is_file() and path.suffix != ".pem":
            data = path.read_bytes()
            assert PIN.encode() not in data and WRONG_PIN.encode() not in data, path


def test_record_start_stop_with_token(
    tmp_path: Path, token: Token, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    Path("data.csv").write_bytes(b"1,2\n")
    reference = token.reference("release")
    assert main(["record", "start", "--step", "finetune", "--key", reference,
                 "--materials", "data.csv", "--out", "prov"]) == 0  # fmt: skip
    Path("model.bin").write_bytes(b"weights")
    assert main(["record", "stop", "--step", "finetune", "--key", reference,
                 "--products", "model.bin", "--out", "prov"]) == 0  # fmt: skip
    key_id = key_id_of(token.public_keys["release"])
    assert os.listdir("prov") == [f"finetune.{key_id[:8]}.link"]
    for path in Path("prov").iterdir():
        assert PIN.encode() not in path.read_bytes()
