"""`pants publish` of a `model_artifact` to a real OCI registry, then `modelseal pull` and `verify
oci://` with the packaged modelseal.pex: the round trip a release takes, on the shared packaged
workspace (conftest.py), so no new build of `::`."""

from __future__ import annotations

import re
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
from e2e.repo import Builds, run_pants

from core.interpreters import find_python
from core.oci_registry import RunningRegistry, start_registry


@pytest.fixture(scope="module")
def registry(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningRegistry]:
    running = start_registry(tmp_path_factory.mktemp("registry"), auth=True)
    yield running
    running.stop()


def _tool(builds: Builds, *args: str) -> subprocess.CompletedProcess[str]:
    python = str(find_python(11))
    return subprocess.run(
        [python, str(builds.first / "modelseal.pex"), *args, f"--python={python}"],
        capture_output=True, text=True, timeout=600,
    )


def test_publish_pull_verify_round_trip(
    builds: Builds, registry: RunningRegistry, tmp_path: Path
) -> None:
    repo = builds.first.parent
    assert registry.docker_config is not None
    # What publish packages must be what the workspace packaged: a clean tree (an untracked file
    # left by an earlier test would make it a dirty build, with other bytes).
    status = subprocess.run(["git", "status", "--porcelain"], cwd=repo, capture_output=True,
                            text=True, check=True)
    assert status.stdout == "", status.stdout
    options = (
        f"--modelseal-oci-registry={registry.host}",
        "--modelseal-oci-plain-http",
        f"--modelseal-oci-registry-config={registry.docker_config}",
    )
    published = run_pants(repo, *options, "publish", "examples/iris:model",
                          env=builds.first_env, pantsd=True)
    assert published.returncode == 0, published.stderr[-3000:]
    output = published.stdout + published.stderr
    found = re.search(
        rf"oci://{re.escape(registry.host)}/modelseal/examples/iris@sha256:[0-9a-f]{{64}}", output
    )
    assert found, output[-3000:]
    reference = found.group(0)
    first_uploads = registry.blob_uploads()
    assert first_uploads, "the registry saw no blob upload"
    # The password went through the config file only.
    assert "insecure-test-password" not in output

    # Publishing again sends no blob: every one is already there (HEAD before upload).
    again = run_pants(repo, *options, "publish", "examples/iris:model",
                      env=builds.first_env, pantsd=True)
    assert again.returncode == 0, again.stderr[-3000:]
    assert reference in again.stdout + again.stderr
    assert registry.blob_uploads() == first_uploads

    keys = ("--trust", str(builds.keyring / "owner.pub"),
            "--release-key", str(builds.keyring / "release.pub"), "--allow-development",
            "--plain-http", f"--registry-config={registry.docker_config}")
    verified = _tool(builds, "verify", reference, *keys)
    assert verified.returncode == 0, verified.stdout + verified.stderr
    pulled = _tool(builds, "pull", reference, str(tmp_path / "models"), *keys)
    assert pulled.returncode == 0, pulled.stdout + pulled.stderr
    bundle = tmp_path / "models" / "iris-1.0.0"
    packaged = builds.first / "examples.iris" / "model" / "iris-1.0.0"
    files = sorted(p.relative_to(packaged) for p in packaged.rglob("*") if p.is_file())
    assert sorted(p.relative_to(bundle) for p in bundle.rglob("*") if p.is_file()) == files
    for path in files:
        assert (bundle / path).read_bytes() == (packaged / path).read_bytes(), path
