"""`modelseal push` / `pull` / `verify oci://` against a real registry (Debian's docker-registry,
the CNCF distribution registry) with basic authentication, and skopeo as a second client."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from core.oci_registry import RunningRegistry, start_registry
from core.signing_fixtures import Keys, flip_byte, make_keys
from core.verify_fixtures import make_signed_bundle
from modelseal.cli.main import main
from modelseal.distribution.modelpack import ARTIFACT_TYPE, CONFIG_MEDIA_TYPE, FILEPATH
from modelseal.errors import EXIT_INTEGRITY_CHECK, EXIT_OK, EXIT_SPEC
from modelseal.format.tree import walk


@pytest.fixture(scope="module")
def keys(tmp_path_factory: pytest.TempPathFactory) -> Keys:
    return make_keys(str(tmp_path_factory.mktemp("keys")))


@pytest.fixture(scope="module")
def registry(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningRegistry]:
    running = start_registry(tmp_path_factory.mktemp("registry"), auth=True)
    yield running
    running.stop()


def _auth(registry: RunningRegistry) -> list[str]:
    assert registry.docker_config is not None
    return ["--plain-http", "--registry-config", str(registry.docker_config)]


def _push(registry: RunningRegistry, bundle: str, repository: str, tmp: Path) -> str:
    digest_file = tmp / f"{repository.replace('/', '-')}.ref"
    reference = f"oci://{registry.host}/{repository}"
    code = main(["push", bundle, reference, "--digest-file", str(digest_file), *_auth(registry)])
    assert code == EXIT_OK
    return digest_file.read_text().strip()


def _verify(keys: Keys, registry: RunningRegistry, reference: str, *extra: str) -> int:
    return main(
        ["verify", reference, "--trust", keys.pub("owner"), *_auth(registry), *extra]
    )


def _manifest(registry: RunningRegistry, reference: str) -> dict[str, Any]:
    """The manifest as skopeo, an independent client, reads it."""
    assert registry.docker_config is not None
    out = subprocess.run(
        [
            "skopeo", "inspect", "--raw", "--tls-verify=false",
            "--authfile", str(registry.docker_config),
            "docker://" + reference[len("oci://"):],
        ],
        check=True,
        capture_output=True,
    ).stdout
    document = json.loads(out)
    assert isinstance(document, dict)
    return document


def test_publish_pull_verify_round_trip(
    tmp_path: Path, keys: Keys, registry: RunningRegistry, capsys: pytest.CaptureFixture[str]
) -> None:
    bundle = make_signed_bundle(str(tmp_path / "b"), keys)
    reference = _push(registry, bundle, "models/round-trip", tmp_path)
    assert reference.startswith(f"oci://{registry.host}/models/round-trip@sha256:")

    manifest = _manifest(registry, reference)
    assert manifest["artifactType"] == ARTIFACT_TYPE
    assert manifest["config"]["mediaType"] == CONFIG_MEDIA_TYPE
    layers = manifest["layers"]
    assert isinstance(layers, list)
    files = sorted(e.path for e in walk(bundle) if not e.is_dir)
    # Every bundle file is one layer (so files other helpers add travel too), weights raw.
    assert sorted(layer["annotations"][FILEPATH] for layer in layers) == files
    for layer in layers:
        if layer["annotations"][FILEPATH].startswith("weights/"):
            assert layer["mediaType"] == "application/vnd.cncf.model.weight.v1.raw"

    assert _verify(keys, registry, reference) == EXIT_OK
    out = tmp_path / "pulled"
    code = main(["pull", reference, str(out), "--trust", keys.pub("owner"), *_auth(registry)])
    assert code == EXIT_OK
    pulled = out / "iris-1.0.0"
    assert os.listdir(out) == ["iris-1.0.0"]
    for path in files:
        assert (pulled / path).read_bytes() == (Path(bundle) / path).read_bytes(), path
    # The pulled directory is a bundle directory like any other.
    assert main(["verify", str(pulled), "--trust", keys.pub("owner")]) == EXIT_OK
    capsys.readouterr()


def test_a_repush_uploads_no_unchanged_blob(
    tmp_path: Path, keys: Keys, registry: RunningRegistry, capsys: pytest.CaptureFixture[str]
) -> None:
    bundle = make_signed_bundle(str(tmp_path / "first"), keys)
    before = len(registry.blob_uploads())
    first = _push(registry, bundle, "models/repush", tmp_path)
    uploaded = registry.blob_uploads()[before:]
    assert len(uploaded) == len([e for e in walk(bundle) if not e.is_dir]) + 1  # + the config
    again = _push(registry, bundle, "models/repush", tmp_path)
    assert again == first  # one bundle, one manifest digest
    assert registry.blob_uploads()[before + len(uploaded):] == []

    # A new model whose weights/config.json and model.pex did not change: those blobs stay.
    changed = make_signed_bundle(str(tmp_path / "second"), keys, model_bin=b"new weights" * 99)
    count = len(registry.blob_uploads())
    _push(registry, changed, "models/repush", tmp_path)
    new = set(registry.blob_uploads()[count:])
    digest_of = {layer["annotations"][FILEPATH]: layer["digest"]
                 for layer in _manifest(registry, first)["layers"]}
    assert digest_of["weights/config.json"] not in new
    assert digest_of["model.pex"] not in new
    assert digest_of["weights/model.bin"] not in new
    assert len(new) >= 2  # the new weights and at least the new manifest.json
    capsys.readouterr()


def test_a_tampered_layer_in_the_registry_is_refused(
    tmp_path: Path, keys: Keys, registry: RunningRegistry, capsys: pytest.CaptureFixture[str]
) -> None:
    bundle = make_signed_bundle(str(tmp_path / "b"), keys, model_bin=b"tamper me" * 300)
    reference = _push(registry, bundle, "models/tampered", tmp_path)
    layers = _manifest(registry, reference)["layers"]
    assert isinstance(layers, list)
    weights = next(
        layer for layer in layers if layer["annotations"][FILEPATH] == "weights/model.bin"
    )
    flip_byte(str(registry.blob_path(weights["digest"])), 100)
    capsys.readouterr()

    assert _verify(keys, registry, reference) == EXIT_INTEGRITY_CHECK
    err = capsys.readouterr().err
    assert "weights/model.bin" in err and weights["digest"] in err
    assert len(err.strip().splitlines()) == 1

    out = tmp_path / "pulled"
    code = main(["pull", reference, str(out), "--trust", keys.pub("owner"), *_auth(registry)])
    assert code == EXIT_INTEGRITY_CHECK
    assert os.listdir(out) == []  # nothing unverified left behind


def test_a_forged_artifact_with_valid_blobs_fails_the_bundle_checks(
    tmp_path: Path, keys: Keys, registry: RunningRegistry, capsys: pytest.CaptureFixture[str]
) -> None:
    """Consistent OCI (every digest right), but the weights were changed after signing."""
    bundle = make_signed_bundle(str(tmp_path / "b"), keys)
    flip_byte(os.path.join(bundle, "weights", "model.bin"), 7)
    reference = _push(registry, bundle, "models/forged", tmp_path)
    capsys.readouterr()
    code = _verify(keys, registry, reference)
    assert code not in (EXIT_OK, 1)
    assert "weights/model.bin" in capsys.readouterr().err


def test_verify_refuses_a_tag(
    tmp_path: Path, keys: Keys, registry: RunningRegistry, capsys: pytest.CaptureFixture[str]
) -> None:
    bundle = make_signed_bundle(str(tmp_path / "b"), keys)
    _push(registry, bundle, "models/tagged", tmp_path)
    capsys.readouterr()
    assert _verify(keys, registry, f"oci://{registry.host}/models/tagged:1.0.0") == EXIT_SPEC
    err = capsys.readouterr().err
    assert "digest, not a tag" in err and len(err.strip().splitlines()) == 1


def test_credentials_come_from_a_docker_config(
    tmp_path: Path,
    keys: Keys,
    registry: RunningRegistry,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    bundle = make_signed_bundle(str(tmp_path / "b"), keys)
    reference = _push(registry, bundle, "models/auth", tmp_path)
    capsys.readouterr()
    # No credentials: refused by the registry, one line saying where credentials go.
    monkeypatch.setenv("HOME", str(tmp_path))
    monkeypatch.delenv("DOCKER_CONFIG", raising=False)
    code = main(["verify", reference, "--trust", keys.pub("owner"), "--plain-http"])
    assert code == 1
    err = capsys.readouterr().err
    assert "401" in err and "--registry-config" in err
    # $DOCKER_CONFIG/config.json, as docker, skopeo and oras read it.
    assert registry.docker_config is not None
    monkeypatch.setenv("DOCKER_CONFIG", str(registry.docker_config.parent))
    code = main(["verify", reference, "--trust", keys.pub("owner"), "--plain-http"])
    assert code == EXIT_OK
    capsys.readouterr()


def test_an_artifact_copied_by_skopeo_still_verifies(
    tmp_path: Path, keys: Keys, registry: RunningRegistry, capsys: pytest.CaptureFixture[str]
) -> None:
    bundle = make_signed_bundle(str(tmp_path / "b"), keys)
    reference = _push(registry, bundle, "models/original", tmp_path)
    digest = reference.rsplit("@", 1)[1]
    assert registry.docker_config is not None
    subprocess.run(
        [
            "skopeo", "copy", "--src-tls-verify=false", "--dest-tls-verify=false",
            "--authfile", str(registry.docker_config), "--preserve-digests",
            f"docker://{registry.host}/models/original@{digest}",
            f"docker://{registry.host}/models/copied:v1",
        ],
        check=True,
        capture_output=True,
    )
    copied = f"oci://{registry.host}/models/copied@{digest}"
    assert _verify(keys, registry, copied) == EXIT_OK
    capsys.readouterr()


def test_tools_are_present() -> None:
    for tool in ("docker-registry", "skopeo", "htpasswd"):
        assert shutil.which(tool), f"{tool} is missing: build-support/test-deps installs it"


def test_verify_of_a_directory_never_imports_oras(tmp_path: Path, keys: Keys) -> None:
    """The registry client (and requests) load only when an oci:// reference is given."""
    bundle = make_signed_bundle(str(tmp_path / "b"), keys)
    script = (
        "import sys\n"
        "from modelseal.cli.main import main\n"
        f"code = main(['verify', {bundle!r}, '--trust', {keys.pub('owner')!r}])\n"
        "print(code, sorted(m for m in ('oras', 'requests') if m in sys.modules))\n"
    )
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(p for p in sys.path if p)}
    result = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, env=env, check=True
    )
    assert result.stdout.strip().splitlines()[-1] == "0 []", result.stdout + result.stderr
