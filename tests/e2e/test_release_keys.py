"""Release keys configured by reference: passphrase-protected key files, a SoftHSM2 token for the
release key, `env:` references; training links imported from outside the build. What the build
signs verifies with the reference tools, and no secret reaches Pants' store, caches, logs or dist/
(`check_release_build`, run on the release build of test_remote_cache.py). The failing builds here
share one pantsd: they are about error messages, not about a fresh process.
"""

from __future__ import annotations

import base64
import os
import shutil
import subprocess
import tarfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from e2e.audit import add_trained_model
from e2e.repo import (
    clone,
    packaged_tool,
    reference_tools,
    run_pants,
    shared_cache,
    stop_pantsd,
)

from core.reference import softhsm2_module, softhsm2_or_fail

PASSPHRASE = "e2e-passphrase-Kq7ZtW"
PIN = "e2e-token-pin-8831"
# The smallest model with every step a release build signs (train, package, sign): the tests are
# about keys, not about a model's dependencies (e2e/audit.py).
MODEL = "examples/trained:model"
BUNDLE = "trained-0.1.0"
HANDLER = "def load(weights_dir):\n    return 2\n\n\ndef predict(model, inputs):\n    return 1\n"


@dataclass(frozen=True)
class KeyFiles:
    """Release keys in passphrase-protected files (no token): what the remote-cache tests sign
    with, so that only the test about a token's signature needs SoftHSM2."""

    repo: Path
    env: dict[str, str]  # every key a passphrase-protected file, the release key too
    keys: Path  # private keys, passphrase and PIN files: outside the repo
    secrets: tuple[str, ...]  # passphrase, PIN, and a piece of each private key's PEM text
    key_bytes: tuple[bytes, ...]  # a piece of each private key's DER bytes


@dataclass(frozen=True)
class Release:
    repo: Path
    env: dict[str, str]  # the release key in a SoftHSM2 token, by an `env:` reference
    keys: Path
    publics: Path
    secrets: tuple[str, ...]
    key_bytes: tuple[bytes, ...]


def modelseal(
    *args: str, cwd: Path | None = None, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [shutil.which("python3.11") or "python3", str(packaged_tool()), *args],
        cwd=cwd, env=env, capture_output=True, text=True,
    )


def make_token(root: Path) -> tuple[str, dict[str, str]]:
    """A SoftHSM2 token for the release key (ECDSA P-256), in a directory of its own."""
    module, tool = softhsm2_or_fail()
    (root / "tokens").mkdir(parents=True)
    conf = root / "softhsm2.conf"
    conf.write_text(f"directories.tokendir = {root / 'tokens'}\nobjectstore.backend = file\n")
    env = {**os.environ, "SOFTHSM2_CONF": str(conf)}
    subprocess.run([tool, "--init-token", "--free", "--label", "release-token",
                    "--pin", PIN, "--so-pin", "so-pin-0042"], env=env, check=True,
                   capture_output=True)
    return module, env


@pytest.fixture(scope="module")
def keyfiles(tmp_path_factory: pytest.TempPathFactory) -> Iterator[KeyFiles]:
    root = tmp_path_factory.mktemp("keyfiles")
    keys = root / "keys"
    keys.mkdir(mode=0o700)
    (keys / "passphrase").write_text(PASSPHRASE + "\n")
    (keys / "pin").write_text(PIN + "\n")
    for role in ("owner", "train", "package"):
        made = modelseal("keygen", "--type", "ecdsa-p256",
                         "--out", str(keys / f"{role}.pem"),
                         "--passphrase-file", str(keys / "passphrase"))
        assert made.returncode == 0, made.stderr
    # The release key, for the token (Release imports it there and deletes the file).
    made = modelseal("keygen", "--type", "ecdsa-p256", "--out", str(keys / "release.pem"))
    assert made.returncode == 0, made.stderr
    secrets, key_bytes = [PASSPHRASE, PIN], []
    for pem in keys.glob("*.pem"):
        body = "".join(line for line in pem.read_text().splitlines() if "-----" not in line)
        secrets.append(body[-64:])
        key_bytes.append(base64.b64decode(body)[-40:])

    passphrase = f"?passphrase-file={keys / 'passphrase'}"
    repo = clone(root / "repo")
    assert add_trained_model(repo) == MODEL
    env = {
        "PATH": os.environ["PATH"],
        "HOME": str(root / "home"),
        "XDG_CACHE_HOME": shared_cache(),
        # Key references only, as Pants options in environment variables.
        "PANTS_MODELSEAL_OWNER_KEY": f"file:{keys / 'owner.pem'}{passphrase}",
        "PANTS_MODELSEAL_TRAIN_KEY": f"file:{keys / 'train.pem'}{passphrase}",
        "PANTS_MODELSEAL_PACKAGE_KEY": f"file:{keys / 'package.pem'}{passphrase}",
        "PANTS_MODELSEAL_RELEASE_KEY": f"file:{keys / 'package.pem'}{passphrase}",
        # These tests change the work tree between release builds (keys, imported links, a
        # model's description) and are about keys and caches: a release build refuses a dirty
        # tree unless allowed, which tests/plugin/test_model_rules.py tests both ways.
        "PANTS_MODELSEAL_ALLOW_DIRTY": "true",
    }
    if "PYENV_ROOT" in os.environ:
        env["PYENV_ROOT"] = os.environ["PYENV_ROOT"]
    (root / "home").mkdir()
    try:
        yield KeyFiles(repo, env, keys, tuple(secrets), tuple(key_bytes))
    finally:
        stop_pantsd(repo)  # the one the failing builds below share


@pytest.fixture(scope="module")
def release(keyfiles: KeyFiles) -> Release:
    """The key files, with the release key moved into a SoftHSM2 token (PIN from a file)."""
    keys = keyfiles.keys
    module, hsm_env = make_token(keys.parent / "hsm")
    imported = subprocess.run(
        ["softhsm2-util", "--import", str(keys / "release.pem"), "--token", "release-token",
         "--label", "release", "--id", "01", "--pin", PIN], env=hsm_env, capture_output=True,
    )
    assert imported.returncode == 0, imported.stderr
    (keys / "release.pem").unlink()  # The token holds it now.

    hsm = (f"pkcs11:token=release-token;object=release"
           f"?module-path={module}&pin-source=file:{keys / 'pin'}")
    env = {
        **keyfiles.env,
        "SOFTHSM2_CONF": hsm_env["SOFTHSM2_CONF"],
        # An `env:` reference to the token.
        "RELEASE_KEY_REF": hsm,
        "PANTS_MODELSEAL_RELEASE_KEY": "env:RELEASE_KEY_REF",
    }
    publics = keys.parent / "publics"
    exported = modelseal(
        "keys", "export-public",
        *(f"--key={role}={env[f'PANTS_MODELSEAL_{role.upper()}_KEY']}"
          for role in ("owner", "train", "package")),
        f"--key=release={hsm}", str(publics), env={**os.environ, **env},
    )
    assert exported.returncode == 0, exported.stderr
    return Release(keyfiles.repo, env, keys, publics, keyfiles.secrets, keyfiles.key_bytes)


def check_release_build(
    release: Release, built: subprocess.CompletedProcess[str], repo: Path, store: Path,
    scratch: Path,
) -> None:
    """A release build of MODEL in `repo` with `release.env` (run with -ldebug and its own local
    store): its bundle verifies with the reference tools under the exported public keys, and no
    passphrase, PIN or key reaches the store, the named caches, .pants.d (with its debug log),
    dist/ or the output. test_remote_cache.py runs it on its token build, whose store starts
    empty: every step there either ran (signing) or was fetched into it, so one build serves both
    (a build of its own here would repeat every uncached step)."""
    assert built.returncode == 0, built.stderr[-5000:]
    bundle_tar = repo / f"dist/examples.trained/model/{BUNDLE}.tar"
    with tarfile.open(bundle_tar) as tar:
        tar.extractall(scratch / "unpacked")
    bundle = scratch / "unpacked" / BUNDLE
    assert '"trust":"release"' in (bundle / "manifest.json").read_text()

    tools = reference_tools()
    verified = subprocess.run(
        [str(tools / "in-toto-verify"), "--layout", "provenance/root.layout", "--verification-keys",
         str(release.publics / "owner.pub"), "--link-dir", "provenance"],
        cwd=bundle, capture_output=True, text=True,
    )
    assert verified.returncode == 0, verified.stdout + verified.stderr
    signed = subprocess.run(
        [str(tools / "model_signing"), "verify", "key", str(bundle), "--signature",
         str(bundle / "model.sig"), "--public_key", str(release.publics / "release.pub")],
        capture_output=True, text=True,
    )
    assert signed.returncode == 0, signed.stdout + signed.stderr

    places = [store, Path(shared_cache()) / "pants" / "named_caches", repo / ".pants.d",
              repo / "dist"]
    logs = built.stdout + built.stderr
    assert not [secret for secret in release.secrets if secret in logs]
    patterns = [arg for secret in release.secrets for arg in ("-e", secret)]
    found = subprocess.run(["grep", "-r", "-l", "-a", "-F", *patterns, *map(str, places)],
                           capture_output=True, text=True)
    assert found.returncode == 1, f"a passphrase, PIN or key text was found in {found.stdout}"
    for place in places[:1] + places[2:]:  # Raw key bytes: everything but the large named caches.
        for path in (p for p in place.rglob("*") if p.is_file()):
            data = path.read_bytes()
            assert not [key for key in release.key_bytes if key in data], path


def test_wrong_passphrase_names_the_key_and_writes_nothing(release: Release) -> None:
    env = {**release.env,
           "PANTS_MODELSEAL_PACKAGE_KEY": f"file:{release.keys / 'package.pem'}"
                                          f"?passphrase-file={release.keys / 'pin'}"}
    shutil.rmtree(release.repo / "dist", ignore_errors=True)
    failed = run_pants(release.repo, "package", MODEL, env=env, pantsd=True)
    assert failed.returncode != 0
    assert "package.pem" in failed.stderr and "passphrase" in failed.stderr
    assert PASSPHRASE not in failed.stderr and PIN not in failed.stderr
    assert not (release.repo / "dist" / "examples.trained").exists()


@pytest.mark.parametrize(
    "reference, expected",
    [
        ("pkcs11:token=no-such-token;object=release?module-path={module}&pin-source=file:{pin}",
         "release-token"),  # the available labels are listed
        ("pkcs11:token=release-token;object=release?module-path={module}&pin-source=file:{wrong}",
         "PIN"),
    ],
    ids=["missing-token", "wrong-pin"],
)
def test_token_errors_name_the_key_and_write_nothing(
    release: Release, reference: str, expected: str
) -> None:
    (release.keys / "wrong-pin").write_text("not-the-pin\n")
    env = {**release.env, "RELEASE_KEY_REF": reference.format(
        module=softhsm2_module(), pin=release.keys / "pin", wrong=release.keys / "wrong-pin")}
    shutil.rmtree(release.repo / "dist", ignore_errors=True)
    failed = run_pants(release.repo, "package", MODEL, env=env, pantsd=True)
    assert failed.returncode != 0
    assert expected in failed.stderr
    assert PIN not in failed.stderr
    assert not (release.repo / "dist" / "examples.trained").exists()


def write_imported_model(release: Release, trainer: Path, weight: bytes) -> str:
    """A model whose weights were trained elsewhere and recorded with `modelseal record train`."""
    model = release.repo / "examples" / "imported"
    staging = model.parent / "imported-staging"
    (staging / "weights").mkdir(parents=True, exist_ok=True)
    (staging / "weights" / "model.bin").write_bytes(weight)
    (staging / "data.csv").write_text("1,2\n")
    recorded = modelseal(
        "record", "train", f"--key=file:{trainer}", "--materials", "data.csv",
        "--products", "weights/model.bin", "--out", ".", "--", "true", cwd=staging,
    )
    assert recorded.returncode == 0, recorded.stderr
    (link,) = staging.glob("train.*.link")
    model.mkdir(exist_ok=True)
    shutil.move(str(link), model / link.name)
    shutil.copy(staging / "weights" / "model.bin", model / "model.bin")
    shutil.rmtree(staging)
    (model / "handler.py").write_text(HANDLER)
    (model / "BUILD").write_text(
        "python_sources(name='lib')\n"
        "model_artifact(name='model', model_name='imported', version='1', "
        "entry_point='imported.handler', dependencies=[':lib'], weights=['model.bin'], "
        f"training='{link.name}')\n"
    )
    return link.name


def test_imported_training_link(release: Release, tmp_path: Path) -> None:
    trusted, untrusted = tmp_path / "trainer.pem", tmp_path / "stranger.pem"
    for key in (trusted, untrusted):
        made = modelseal("keygen", "--type", "ecdsa-p256", "--out", str(key))
        assert made.returncode == 0, made.stderr
    shutil.copy(tmp_path / "trainer.pub", release.repo / "trainer.pub")
    env = {**release.env, "PANTS_MODELSEAL_TRUSTED_KEYS": "{'train': ['trainer.pub']}"}

    link = write_imported_model(release, trusted, b"weights v1")
    built = run_pants(release.repo, "package", "examples/imported:model", env=env,
                      pantsd=True)
    assert built.returncode == 0, built.stderr[-3000:]
    bundle = release.repo / "dist/examples.imported/model/imported-1"
    assert (bundle / "provenance" / link).read_bytes() == (
        release.repo / "examples/imported" / link).read_bytes()

    # Weights that differ from what the link recorded: the file is named, nothing is written.
    (release.repo / "examples/imported/model.bin").write_bytes(b"weights v2")
    shutil.rmtree(release.repo / "dist")
    failed = run_pants(release.repo, "package", "examples/imported:model", env=env,
                       pantsd=True)
    assert failed.returncode != 0
    assert "weights/model.bin" in failed.stderr
    assert not (release.repo / "dist" / "examples.imported").exists()

    # A link signed by a key the layout does not trust.
    shutil.rmtree(release.repo / "examples/imported")
    write_imported_model(release, untrusted, b"weights v1")
    failed = run_pants(release.repo, "package", "examples/imported:model", env=env,
                       pantsd=True)
    assert failed.returncode != 0
    assert "train" in failed.stderr
    assert not (release.repo / "dist" / "examples.imported").exists()
