"""Release keys configured by reference: passphrase-protected key files, a SoftHSM2 token for the
release key, `env:` references; training links imported from outside the build. What the build
signs verifies with the reference tools, and no secret reaches Pants' store, caches, logs or dist/
(`check_release_build`, run on the release build of test_remote_cache.py). The failing builds here
run in the audit workspace of e2e/audit.py (`keyfiles`) through its one pantsd, which
test_rebuild.py's published build started: they are about error messages, not about a fresh
process. They leave its work tree as they found it, since test_remote_cache.py builds it next.
"""

from __future__ import annotations

import shutil
import subprocess
import tarfile
from pathlib import Path

import pytest
from e2e.audit import PASSPHRASE, PIN, Release, modelseal
from e2e.repo import reference_tools, run_pants, shared_cache

from core.reference import softhsm2_module

# The audit workspace's fixtures (`keyfiles`, `release`), one instance for the whole session.
pytest_plugins = ["e2e.audit"]

# The smallest model with every step a release build signs (train, package, sign): the tests are
# about keys, not about a model's dependencies (e2e/audit.py).
MODEL = "examples/trained:model"
BUNDLE = "trained-0.1.0"
HANDLER = "def load(weights_dir):\n    return 2\n\n\ndef predict(model, inputs):\n    return 1\n"


def check_release_build(
    release: Release, built: subprocess.CompletedProcess[str], repo: Path, store: Path,
    scratch: Path, named_caches: Path | None = None,
) -> None:
    """A release build of MODEL in `repo` with `release.env` (run with -ldebug and its own local
    store and named caches, by default the shared ones): its bundle verifies with the reference
    tools under the exported public keys, and no passphrase, PIN or key reaches the store, the
    named caches, .pants.d (with its debug log), dist/ or the output. test_remote_cache.py runs it
    on its token build, in the clean clone whose store and named caches were empty before its
    file-key build: every step there either ran (signing) or was fetched into them, so one build
    serves both (a build of its own here would repeat every uncached step)."""
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

    caches = named_caches or Path(shared_cache()) / "pants" / "named_caches"
    places = [store, caches, repo / ".pants.d", repo / "dist"]
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
    try:
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
    finally:
        # The next module builds this work tree: a dirty tree is recorded in the manifest.
        shutil.rmtree(release.repo / "examples/imported", ignore_errors=True)
        (release.repo / "trainer.pub").unlink(missing_ok=True)
        shutil.rmtree(release.repo / "dist", ignore_errors=True)
