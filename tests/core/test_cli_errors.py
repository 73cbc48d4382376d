"""Every CLI error names the file or option and the fix, with the documented exit code (the cases
of issue 20): keygen, reproduce, rebuild, the runtime and provenance lines of verify, `keys
revoke`, and the help texts."""

from __future__ import annotations

import argparse
import json
import os
import pty
import select
import subprocess
import sys
import tarfile
import time
from pathlib import Path

import pytest

from core.signing_fixtures import Keys, make_keys
from core.verify_fixtures import make_signed_bundle, pex_bytes, resign, tar_of
from modelseal.cli.main import build_parser, main
from modelseal.format.canonical import canonical_json
from modelseal.keys.core import PublicKey, load_file_signer

SRC = str(Path(__import__("modelseal").__path__[0]).resolve().parent)


@pytest.fixture(scope="module")
def keys(tmp_path_factory: pytest.TempPathFactory) -> Keys:
    return make_keys(str(tmp_path_factory.mktemp("keys")))


def _error(capsys: pytest.CaptureFixture[str]) -> str:
    err = capsys.readouterr().err
    assert err.startswith("modelseal: error: ") and err.count("\n") == 1, err
    assert "Traceback" not in err
    return err


# -- keygen -------------------------------------------------------------------------------------


def test_keygen_into_a_missing_directory(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "missing" / "owner.pem"
    assert main(["keygen", "--type", "ecdsa-p256", "--out", str(out)]) == 3
    err = _error(capsys)
    assert f"--out {out}: the directory {out.parent} does not exist." in err
    assert "mkdir -m 700 -p" in err
    assert ".owner.pem." not in err  # no internal temporary name
    assert not (tmp_path / "missing").exists()


def test_keygen_passphrase_file_missing_without_a_terminal(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out, secret = tmp_path / "owner.pem", tmp_path / "owner.pass"
    with open(os.devnull) as devnull:
        sys_stdin, sys.stdin = sys.stdin, devnull
        try:
            code = main(["keygen", "--type", "ecdsa-p256", "--out", str(out),
                         "--passphrase-file", str(secret)])
        finally:
            sys.stdin = sys_stdin
    assert code == 3
    err = _error(capsys)
    assert f"--passphrase-file {secret}: no such file" in err and "run keygen on a terminal" in err
    assert sorted(os.listdir(tmp_path)) == []  # nothing written


def _converse(fd: int, answers: list[bytes], timeout: float = 60) -> bytes:
    """Answer each prompt that ends with ': ' on the terminal `fd`; all that was shown."""
    shown = b""
    deadline = time.monotonic() + timeout
    pending = list(answers)
    while time.monotonic() < deadline:
        ready, _, _ = select.select([fd], [], [], 0.5)
        if not ready:
            continue
        try:
            chunk = os.read(fd, 1024)
        except OSError:
            break
        if not chunk:
            break
        shown += chunk
        if pending and shown.rstrip(b"\r\n").endswith(b":") or shown.endswith(b": "):
            if pending:
                os.write(fd, pending.pop(0) + b"\n")
    return shown


def test_keygen_asks_for_the_passphrase_on_a_terminal(tmp_path: Path) -> None:
    out, secret = tmp_path / "owner.pem", tmp_path / "owner.pass"
    controller, terminal = pty.openpty()
    process = subprocess.Popen(
        [sys.executable, "-m", "modelseal", "keygen", "--type", "ecdsa-p256", "--out", str(out),
         "--passphrase-file", str(secret)],
        stdin=terminal, stdout=subprocess.PIPE, stderr=terminal, start_new_session=True,
        env={**os.environ, "PYTHONPATH": SRC},
    )
    os.close(terminal)
    shown = _converse(controller, [b"correct horse", b"correct horse"])
    stdout = process.communicate(timeout=60)[0].decode()
    os.close(controller)
    assert process.returncode == 0, shown
    assert b"passphrase for" in shown and b"correct horse" not in shown  # not echoed
    assert secret.read_bytes() == b"correct horse\n"
    assert secret.stat().st_mode & 0o777 == 0o600
    signer = load_file_signer(f"file:{out}?passphrase-file={secret}")
    assert signer.key_id[:16] in stdout and signer.key_id in stdout


# -- reproduce and rebuild -----------------------------------------------------------------------


def test_reproduce_outside_git(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["reproduce", "--workspace", str(tmp_path), "examples/iris:model"]) == 3
    err = _error(capsys)
    assert f"--workspace {tmp_path}: not a git checkout." in err
    assert "--repo" not in err


@pytest.fixture
def published(tmp_path: Path, keys: Keys) -> tuple[str, str]:
    bundle = make_signed_bundle(str(tmp_path / "b"), keys)
    return bundle, tar_of(bundle, str(tmp_path / "iris-1.0.0.tar"))


def test_rebuild_outside_git(
    tmp_path: Path, published: tuple[str, str], capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    outside = tmp_path / "not-a-repo"
    outside.mkdir()
    monkeypatch.chdir(outside)
    code = main(["rebuild", "--commit", "HEAD", "--target", "examples/iris:model",
                 "--against", published[1]])
    assert code == 3  # docs/reproducibility.md: 3 for a bad argument
    err = _error(capsys)
    assert "--repo .: not a git checkout." in err and "git clone" in err


def test_rebuild_against_a_directory(
    published: tuple[str, str], capsys: pytest.CaptureFixture[str]
) -> None:
    code = main(["rebuild", "--commit", "HEAD", "--target", "examples/iris:model",
                 "--against", published[0]])
    assert code == 3
    err = _error(capsys)
    assert f"--against {published[0]}: a directory" in err and "Pass the bundle's .tar" in err
    assert "no such file" not in err


# -- verify's lines -----------------------------------------------------------------------------


def _verify(keys: Keys, target: str) -> int:
    return main(["verify", target, "--trust", keys.pub("owner"), "--release-key",
                 keys.pub("release")])


def test_the_runtime_line_names_the_host_once(
    tmp_path: Path, keys: Keys, capsys: pytest.CaptureFixture[str]
) -> None:
    wheels = ("six-1.16.0-py2.py3-none-any.whl",)
    bundle = make_signed_bundle(str(tmp_path / "b"), keys, pex=pex_bytes([">=3.9"], wheels))
    assert _verify(keys, bundle) == 0
    out = capsys.readouterr().out.splitlines()
    (line,) = (x for x in out if x.startswith("ok      runtime"))
    version = ".".join(map(str, sys.version_info[:3]))
    assert line.count(version) == 1, line
    assert "(manifest) and >=3.9 (PEX-INFO); 1 distributions have a wheel it loads" in line


def test_a_provenance_failure_is_one_clean_line(
    tmp_path: Path, keys: Keys, capsys: pytest.CaptureFixture[str]
) -> None:
    bundle = Path(make_signed_bundle(str(tmp_path / "b"), keys))
    (train,) = bundle.glob("provenance/train.*.link")
    train.unlink()
    resign(str(bundle), keys)  # model.sig covers the bundle without it: provenance must refuse
    tar = tar_of(str(bundle), str(tmp_path / "iris-1.0.0.tar"))
    assert _verify(keys, tar) == 12
    err = _error(capsys)
    assert err.startswith("modelseal: error: provenance: provenance/root.layout: in-toto ")
    assert "found '0'" in err and "'.." not in err and ".." not in err.replace("...", "")
    assert "/tmp" not in err and tempfile_root() not in err


def tempfile_root() -> str:
    import tempfile

    return tempfile.gettempdir()


# -- keys revoke --------------------------------------------------------------------------------


def test_keys_revoke(tmp_path: Path, keys: Keys, capsys: pytest.CaptureFixture[str]) -> None:
    listing = tmp_path / "revoked.json"
    owner = PublicKey.from_pem(Path(keys.pub("owner")).read_bytes()).key_id
    release = PublicKey.from_pem(Path(keys.pub("release")).read_bytes()).key_id
    assert main(["keys", "revoke", keys.pub("release"), "--list", str(listing)]) == 0
    assert f"revoked key {release[:16]} ({release})" in capsys.readouterr().out
    assert main(["keys", "revoke", owner, "--list", str(listing)]) == 0
    assert main(["keys", "revoke", owner, "--list", str(listing)]) == 0  # once only
    assert "already revoked" in capsys.readouterr().out
    expected = {"revoked": sorted([owner, release]), "schema": "modelseal.revocations/v1"}
    assert listing.read_bytes() == canonical_json(expected)
    assert json.loads(listing.read_bytes()) == expected
    # The list is what verify reads: the release key is refused now.
    bundle = make_signed_bundle(str(tmp_path / "b"), keys)
    code = main(["verify", bundle, "--trust", keys.pub("owner"), "--release-key",
                 keys.pub("release"), "--revocations", str(listing)])
    assert code == 12
    capsys.readouterr()


@pytest.mark.parametrize(
    ("argument", "what"),
    [("0123456789abcdef", "a shortened key id"), ("not-a-key", "neither a key id")],
)
def test_keys_revoke_refuses_what_names_no_one_key(
    tmp_path: Path, argument: str, what: str, capsys: pytest.CaptureFixture[str]
) -> None:
    listing = tmp_path / "revoked.json"
    assert main(["keys", "revoke", argument, "--list", str(listing)]) == 3
    err = _error(capsys)
    assert f"KEYID_OR_PUB {argument}: {what}" in err and "full key id" in err
    assert not listing.exists()


# -- help ---------------------------------------------------------------------------------------


Parsers = list[tuple[str, argparse.ArgumentParser]]


def _parsers(parser: argparse.ArgumentParser, name: str = "modelseal") -> Parsers:
    found = [(name, parser)]
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for sub_name, sub in action.choices.items():
                found += _parsers(sub, f"{name} {sub_name}")
    return found


@pytest.mark.parametrize("command", ["record", "layout", "keys", "keygen", "sign", "verify", "run"])
def test_every_option_has_help(command: str) -> None:
    for name, parser in _parsers(build_parser()):
        if not name.startswith(f"modelseal {command}"):
            continue
        for action in parser._actions:
            if isinstance(action, (argparse._HelpAction, argparse._SubParsersAction)):
                continue
            assert action.help, f"{name} {'/'.join(action.option_strings) or action.dest}"


def test_run_help_shows_the_model_command(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        main(["run", "--help"])
    out = capsys.readouterr().out
    assert "-- predict|info [ARGS...]" in out and "`-- info`" in out


def test_tar_fixture_is_a_tar(published: tuple[str, str]) -> None:
    assert tarfile.is_tarfile(published[1])


# -- one name for the release signer ------------------------------------------------------------


def test_a_dev_keyring_from_before_keeps_its_release_key(tmp_path: Path) -> None:
    from modelseal.keys.core import generate_private_key, write_key_pair
    from modelseal.keys.devkeyring import DEV_ROLES, ensure_dev_keyring

    keyring = tmp_path / "dev-keyring"
    keyring.mkdir()
    write_key_pair(generate_private_key("ecdsa-p256"), str(keyring / "sign.pem"), None)
    before = load_file_signer(f"file:{keyring / 'sign.pem'}").key_id
    ensure_dev_keyring(str(keyring))
    assert "release" in DEV_ROLES and "sign" not in DEV_ROLES
    assert load_file_signer(f"file:{keyring / 'release.pem'}").key_id == before
    assert not (keyring / "sign.pem").exists() and (keyring / "release.pub").exists()
