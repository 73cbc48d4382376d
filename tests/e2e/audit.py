"""The audit workspace and the small models in it.

Small models that the audit tests add to a clone: one that builds the same bytes every time and
depends on one pinned package (so that a changed lock entry shows in its PEX), one trained in the
build with the standard library only, and one whose training writes random bytes (so that
`pants reproduce` has something to catch).

The tiny model takes its one package, `packaging`, from the `python-default` resolve (the
requirement 3rdparty/python declares: a second python_requirement for it would make its owner
ambiguous, which `model_artifact` refuses), whose lock the build installs anyway for the modelseal
tool: an uncached build of it costs seconds, not the minute that installing the `models` lock
(numpy, scipy, scikit-learn) takes.

The `e2e-audit` batch (test_rebuild.py, test_release_keys.py, test_remote_cache.py) shares one
workspace, the `keyfiles` fixture below: one clone of HEAD with the tiny and the trained model
committed, release keys in passphrase-protected files outside it, and one pantsd, which
test_rebuild.py's published build starts and the release-key tests' builds reuse (none of them is
about a fresh process: every Pants start costs about 19 s of CPU). The tests that are about a fresh
process or an empty cache run their own: `modelseal rebuild` (a `--no-pantsd` Pants per
rebuild, by design), and the remote cache's first build, which replaces that pantsd with one on
an empty store and the remote profile (its server-down build reuses it), and its clean clone's
build, which starts a pantsd there (its token and server-goes-away builds reuse it). The test
modules load this module as a plugin (`pytest_plugins`), so that its session fixtures exist once
per run, not once per module that imports them."""

from __future__ import annotations

import base64
import os
import shutil
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from e2e.repo import caller_process_env, clone, packaged_tool, shared_cache, stop_pantsd

from core.reference import softhsm2_or_fail

TINY_BUILD = '''\
python_sources(name="lib", resolve="python-default", interpreter_constraints=["CPython==3.11.*"])

model_artifact(
    name="model",
    model_name="tiny",
    version="0.1.0",
    license="MIT",
    entry_point="tiny.handler",
    dependencies=[":lib"],
    weights=["*.bin"],
    metrics={},
    interpreter_constraints=["CPython==3.11.*"],
)
'''

TINY_WEIGHTS = bytes(range(256)) * 64

TINY_HANDLER = '''\
from packaging.version import Version


def load(weights_dir):
    return Version("1.0")


def predict(model, inputs):
    return {"version": str(model)}
'''

def _trained_build(name: str, output: str, data: str = "", description: str = "") -> str:
    """The BUILD file of a model trained in the build from `examples/<name>/train.py`."""
    data_line = f'    data=["{data}"],\n' if data else ""
    description_line = f'    description="{description}",\n' if description else ""
    return f'''\
python_sources(name="lib")

model_training(
    name="train",
    entry_point="{name}.train:train",
{data_line}    dependencies=[":lib"],
    seed=0,
    outputs=["{output}"],
)

model_artifact(
    name="model",
    model_name="{name}",
    version="0.1.0",
{description_line}    license="MIT",
    entry_point="{name}.handler",
    dependencies=["examples/{name}/handler.py:lib"],
    training=":train",
    metrics={{}},
    interpreter_constraints=["CPython==3.11.*"],
)
'''


NONDET_BUILD = _trained_build("nondet", "noise.bin")

NONDET_TRAIN = '''\
import os


def train(data_dir, output_dir, seed, hyperparameters):
    # Ignores the seed: the kind of training that must be attested, since it cannot be reproduced.
    with open(os.path.join(output_dir, "noise.bin"), "wb") as f:
        f.write(os.urandom(64))
    return {}
'''

NONDET_HANDLER = '''\
def load(weights_dir):
    return None


def predict(model, inputs):
    return {}
'''


TRAINED_BUILD = _trained_build(
    "trained",
    "weights.json",
    data="data.csv",
    description="The mean of a column, trained in the build with the standard library only.",
)

TRAINED_TRAIN = '''\
import json
import os


def train(data_dir, output_dir, seed, hyperparameters):
    with open(os.path.join(data_dir, "data.csv"), encoding="utf-8") as f:
        values = [float(line) for line in f if line.strip()]
    with open(os.path.join(output_dir, "weights.json"), "w", encoding="utf-8") as f:
        json.dump({"mean": sum(values) / len(values)}, f)
    return {}
'''

TRAINED_HANDLER = '''\
import json
import os


def load(weights_dir):
    with open(os.path.join(weights_dir, "weights.json"), encoding="utf-8") as f:
        return json.load(f)


def predict(model, inputs):
    return {"mean": model["mean"]}
'''


def add_trained_model(repo: Path) -> str:
    """Write examples/trained (trained in the build, standard library only) into `repo`, commit
    it, and return its address: the smallest model with every step a build has (training,
    model.pex, manifest, signing, archive), for tests about the build rather than about a model."""
    trained = repo / "examples" / "trained"
    trained.mkdir(parents=True)
    (trained / "BUILD").write_text(TRAINED_BUILD)
    (trained / "train.py").write_text(TRAINED_TRAIN)
    (trained / "handler.py").write_text(TRAINED_HANDLER)
    (trained / "data.csv").write_text("1.0\n2.0\n4.5\n")
    commit(repo, "a small trained model")
    return "examples/trained:model"


def add_models(repo: Path, *, nondeterministic: bool = False) -> None:
    """Write examples/tiny (and examples/nondet) into `repo` and commit them."""
    tiny = repo / "examples" / "tiny"
    tiny.mkdir(parents=True)
    (tiny / "BUILD").write_text(TINY_BUILD)
    (tiny / "handler.py").write_text(TINY_HANDLER)
    (tiny / "weights.bin").write_bytes(TINY_WEIGHTS)
    if nondeterministic:
        nondet = repo / "examples" / "nondet"
        nondet.mkdir(parents=True)
        (nondet / "BUILD").write_text(NONDET_BUILD)
        (nondet / "train.py").write_text(NONDET_TRAIN)
        (nondet / "handler.py").write_text(NONDET_HANDLER)
    commit(repo, "audit test models")


def commit(repo: Path, message: str) -> str:
    identity = ["-c", "user.name=auditor", "-c", "user.email=auditor@example.invalid"]
    subprocess.run(["git", "-C", str(repo), "add", "-A"], check=True)
    subprocess.run(["git", "-C", str(repo), *identity, "commit", "--quiet", "-m", message],
                   check=True)
    return subprocess.run(["git", "-C", str(repo), "rev-parse", "HEAD"], check=True,
                          capture_output=True, text=True).stdout.strip()


def require_diffoscope() -> None:
    """The audits write diffoscope's reports only when it is installed: a test of those reports
    fails, naming the fix, where diffoscope is missing (a skip would count as a pass)."""
    if not shutil.which("diffoscope"):
        pytest.fail("diffoscope is not installed: run the tests with ./pants test, which installs "
                    "it (build-support/test-deps), or `apt-get install diffoscope-minimal`",
                    pytrace=False)


PASSPHRASE = "e2e-passphrase-Kq7ZtW"
PIN = "e2e-token-pin-8831"


@dataclass(frozen=True)
class KeyFiles:
    """The audit workspace: release keys in passphrase-protected files (no token), which the
    remote-cache tests sign with, so that only the test about a token's signature needs
    SoftHSM2."""

    repo: Path  # a clone of HEAD with examples/tiny and examples/trained committed
    env: dict[str, str]  # every key a passphrase-protected file, the release key too
    keys: Path  # private keys, passphrase and PIN files: outside the repo
    secrets: tuple[str, ...]  # passphrase, PIN, and a piece of each private key's PEM text
    key_bytes: tuple[bytes, ...]  # a piece of each private key's DER bytes

    @property
    def development_env(self) -> dict[str, str]:
        """`env` without the key references: a build with a development keyring (what
        `modelseal rebuild` does), through the same pantsd."""
        return {name: value for name, value in self.env.items()
                if not name.startswith("PANTS_MODELSEAL_")}


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


@pytest.fixture(scope="session")
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
    add_models(repo)
    add_trained_model(repo)
    env = {
        "PATH": os.environ["PATH"],
        # Locale and certificates as the outer run's: its tool and lock PEXes are cache hits.
        **caller_process_env(),
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
        stop_pantsd(repo)  # the one the published build and the failing builds share


@pytest.fixture(scope="session")
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
