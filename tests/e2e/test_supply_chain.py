"""The standard evidence of a real `./pants package ::` (the shared `builds` workspace): the
CycloneDX SBOM passes cyclonedx-python-lib's schema validator and lists what model.pex ships,
the SLSA provenance verifies with securesystemslib under the development package key and names
the real files, and `[modelseal].advisories` stops a build whose lock pins a seeded advisory.
"""

from __future__ import annotations

import base64
import hashlib
import json
import re
import shutil
import tarfile
import zipfile
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization
from cyclonedx.schema import SchemaVersion
from cyclonedx.validation.json import JsonStrictValidator
from e2e.repo import Builds, run_pants
from securesystemslib.dsse import Envelope
from securesystemslib.signer import SSlibKey

BUNDLES = {
    "examples.iris/model/iris-1.0.0": "examples/iris:model",
    "examples.sentiment/model/sentiment-0.3.0": "examples/sentiment:model",
}


def _unpack(builds: Builds, bundle: str, into: Path) -> Path:
    with tarfile.open(builds.first / f"{bundle}.tar") as tar:
        tar.extractall(into)  # Our own archive, made by the build under test.
    return into / Path(bundle).name


@pytest.mark.parametrize("bundle", sorted(BUNDLES))
def test_sbom_and_slsa_provenance_of_a_real_build(
    builds: Builds, tmp_path: Path, bundle: str
) -> None:
    unpacked = _unpack(builds, bundle, tmp_path)
    sbom_text = (unpacked / "provenance/sbom.cdx.json").read_text()
    assert JsonStrictValidator(SchemaVersion.V1_6).validate_str(sbom_text) is None
    sbom = json.loads(sbom_text)
    with zipfile.ZipFile(unpacked / "model.pex") as pex:
        wheels = {n.split("/")[1] for n in pex.namelist()
                  if n.startswith(".deps/") and n.split("/")[1]}  # not `.deps/` itself
    listed = {
        p["value"] for c in sbom["components"] for p in c.get("properties", [])
        if p["name"] == "modelseal:wheel"
    }
    assert listed == wheels and wheels  # every distribution inside model.pex, no other
    assert all(c["hashes"] for c in sbom["components"] if c["type"] == "library")
    model = sbom["metadata"]["component"]
    assert model["type"] == "machine-learning-model"
    assert model["modelCard"]["quantitativeAnalysis"]["performanceMetrics"]

    raw = json.loads((unpacked / "provenance/build.intoto.jsonl").read_bytes())
    pem = (builds.keyring / "package.pub").read_bytes()
    der = serialization.load_pem_public_key(pem).public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    key_id = hashlib.sha256(der).hexdigest()
    key = SSlibKey(key_id, "ecdsa", "ecdsa-sha2-nistp256", {"public": pem.decode()})
    assert key_id in Envelope.from_dict(dict(raw)).verify([key], 1)
    statement = json.loads(base64.b64decode(raw["payload"]))
    assert statement["predicateType"] == "https://slsa.dev/provenance/v1"
    for subject in statement["subject"]:
        data = (unpacked / subject["name"]).read_bytes()
        assert hashlib.sha256(data).hexdigest() == subject["digest"]["sha256"], subject["name"]
    names = {s["name"] for s in statement["subject"]}
    assert {"manifest.json", "model.pex", "provenance/sbom.cdx.json"} <= names
    assert "model.sig" not in names
    definition = statement["predicate"]["buildDefinition"]
    assert definition["externalParameters"]["target"] == BUNDLES[bundle]


def test_the_build_refuses_a_seeded_advisory(builds: Builds) -> None:
    repo = builds.first.parent
    version = re.search(r"^numpy==(\S+)", (repo / "3rdparty/models/lock.txt").read_text(),
                        re.MULTILINE)
    assert version is not None
    # An untracked directory: this build is dirty (development keys only warn), and the
    # directory is removed afterwards so that later runs in the workspace see a clean tree.
    seeded = repo / "osv-seeded"
    seeded.mkdir()
    try:
        _seed_and_build(seeded, repo, builds, version[1])
    finally:
        shutil.rmtree(seeded)


def _seed_and_build(seeded: Path, repo: Path, builds: Builds, version: str) -> None:
    (seeded / "GHSA-seed-numpy.json").write_text(json.dumps({
        "schema_version": "1.6.0", "id": "GHSA-seed-numpy", "modified": "2026-01-01T00:00:00Z",
        "database_specific": {"severity": "CRITICAL"},
        "affected": [{"package": {"ecosystem": "PyPI", "name": "numpy"},
                      "ranges": [{"type": "ECOSYSTEM",
                                  "events": [{"introduced": "0"}, {"fixed": "99.0"}]}]}],
    }))
    refused = run_pants(repo, "package", "--modelseal-advisories=osv-seeded",
                        "examples/iris:model", env=builds.first_env, pantsd=True)
    assert refused.returncode != 0
    assert f"numpy {version}: GHSA-seed-numpy (critical); fixed in 99.0" in refused.stderr
