"""The SBOM (CycloneDX 1.6 ML-BOM), the SLSA provenance and the vulnerability gate, on a real
signed bundle whose model.pex ships distributions pinned in the repository's own lock.

The SBOM is checked by cyclonedx-python-lib's own JSON schema validator, the provenance by
securesystemslib's DSSE verifier (neither is the code that wrote them), and the gate with OSV
records written here in OSV's schema for `cryptography` and `packaging` at the lock's versions.
"""

from __future__ import annotations

import base64
import hashlib
import io
import json
import os
import re
import shutil
import zipfile
from pathlib import Path
from typing import Any

import pytest
from cyclonedx.schema import SchemaVersion
from cyclonedx.validation.json import JsonStrictValidator
from securesystemslib.dsse import Envelope
from securesystemslib.exceptions import VerificationError
from securesystemslib.signer import SSlibKey

from core.signing_fixtures import Keys, make_keys
from core.verify_fixtures import make_signed_bundle, resign
from modelseal.cli.main import main
from modelseal.errors import EXIT_PROVENANCE_CHECK, EXIT_VULNERABLE, VulnerabilityError
from modelseal.keys.core import Signer
from modelseal.signing.evidence import write_evidence
from modelseal.signing.modelsig import bundle_digests
from modelseal.signing.sbom import SBOM_PATH
from modelseal.signing.slsa import BUILD_TYPE, PREDICATE_TYPE, PROVENANCE_PATH

LOCK_PATH = "3rdparty/python/lock.txt"


def _lock() -> bytes:
    return Path(LOCK_PATH).read_bytes()


def _pinned(name: str) -> str:
    found = re.search(rf"^{name}==(\S+)", _lock().decode(), re.MULTILINE)
    assert found, name
    return found[1]


def _pex(lock_versions: dict[str, str]) -> bytes:
    """A zip PEX whose .deps/ holds the wheels' METADATA, as pex lays them out."""
    crypto, pkg = lock_versions["cryptography"], lock_versions["packaging"]
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as zip_file:

        class Fixed:  # every entry at 1980-01-01, so equal inputs give equal bytes
            @staticmethod
            def writestr(name: str, data: str | bytes) -> None:
                zip_file.writestr(zipfile.ZipInfo(name, (1980, 1, 1, 0, 0, 0)), data)

        pex = Fixed()
        pex.writestr("__main__.py", b"print('model')\n")
        pex.writestr("PEX-INFO", json.dumps({
            "interpreter_constraints": ["CPython>=3.9,<3.14"],
            "build_properties": {"pex_version": "2.1.148"},
        }))
        # Two wheels of one version, as a PEX built for x86_64 and aarch64 holds.
        for machine in ("x86_64", "aarch64"):
            wheel = f"cryptography-{crypto}-cp311-abi3-manylinux_2_34_{machine}.whl"
            pex.writestr(
                f".deps/{wheel}/cryptography-{crypto}.dist-info/METADATA",
                f"Metadata-Version: 2.4\nName: cryptography\nVersion: {crypto}\n"
                "License-Expression: Apache-2.0 OR BSD-3-Clause\n",
            )
        wheel = f"packaging-{pkg}-py3-none-any.whl"
        pex.writestr(
            f".deps/{wheel}/packaging-{pkg}.dist-info/METADATA",
            f"Metadata-Version: 2.1\nName: packaging\nVersion: {pkg}\n"
            "Classifier: License :: OSI Approved :: Apache Software License\n",
        )
    return buffer.getvalue()


def _bundle(root: str, keys: Keys, *, signed: bool = True) -> str:
    """An iris bundle (verify_fixtures.make_signed_bundle) whose model.pex holds real wheels and
    whose manifest names the real lock, with the SBOM and provenance by the package (builder)
    key written before the layout and model.sig."""
    versions = {name: _pinned(name) for name in ("cryptography", "packaging")}

    def real_lock(document: dict[str, Any]) -> None:
        document["build"]["lock_sha256"] = hashlib.sha256(_lock()).hexdigest()

    def evidence(bundle: str) -> None:
        write_evidence(
            bundle, keys.signers["builder"], lock=_lock(), lock_path=LOCK_PATH,
            target="examples/iris:model",
        )

    return make_signed_bundle(
        root, keys, pex=_pex(versions), model_bin=bytes(range(256)) * 4, hook=real_lock,
        before_signing=evidence, signed=signed,
    )


@pytest.fixture(scope="module")
def keys(tmp_path_factory: pytest.TempPathFactory) -> Keys:
    return make_keys(str(tmp_path_factory.mktemp("keys")))


def _sslib_key(signer: Signer) -> SSlibKey:
    return SSlibKey(signer.key_id, "ecdsa", "ecdsa-sha2-nistp256",
                    {"public": signer.public_key_pem.decode()})  # fmt: skip


def test_sbom_is_valid_cyclonedx_with_every_distribution_and_the_model(
    tmp_path: Path, keys: Keys
) -> None:
    bundle = _bundle(str(tmp_path), keys)
    data = Path(bundle, SBOM_PATH).read_bytes()
    assert JsonStrictValidator(SchemaVersion.V1_6).validate_str(data.decode()) is None
    sbom = json.loads(data)
    assert sbom["specVersion"] == "1.6"
    components = {c["name"]: c for c in sbom["components"]}
    crypto = components["cryptography"]
    assert crypto["version"] == _pinned("cryptography")
    # One component per wheel, each named by its file (purl's `file_name` qualifier).
    wheels = sorted(c["purl"] for c in sbom["components"] if c["name"] == "cryptography")
    assert wheels == [
        f"pkg:pypi/cryptography@{_pinned('cryptography')}?file_name=cryptography-"
        f"{_pinned('cryptography')}-cp311-abi3-manylinux_2_34_{machine}.whl"
        for machine in ("aarch64", "x86_64")
    ]
    assert [c["bom-ref"] for c in sbom["components"] if c["bom-ref"].startswith("BomRef")] == []
    assert crypto["licenses"] == [{"expression": "Apache-2.0 OR BSD-3-Clause"}]
    lock_text = _lock().decode()
    block = lock_text[lock_text.index(f"cryptography=={_pinned('cryptography')}"):]
    block = block[: block.index("\n\n") if "\n\n" in block else len(block)]
    first_pin = re.search(r"--hash=sha256:([0-9a-f]{64})", block)
    assert first_pin is not None
    assert {"alg": "SHA-256", "content": first_pin[1]} in crypto["hashes"]
    assert components["packaging"]["licenses"] == [{"license": {"name": "Apache Software License"}}]
    model = sbom["metadata"]["component"]
    assert model["type"] == "machine-learning-model"
    assert (model["name"], model["version"]) == ("iris", "1.0.0")
    card = model["modelCard"]
    assert card["modelParameters"]["datasets"] == [{"ref": "dataset:iris"}]
    metrics = {m["type"]: m["value"] for m in card["quantitativeAnalysis"]["performanceMetrics"]}
    assert metrics["accuracy"] == "0.97"
    assert components["iris"]["type"] == "data"  # the dataset, pinned by its digest
    assert components["iris"]["hashes"] == [{"alg": "SHA-256", "content": "2" * 64}]
    assert sbom["metadata"]["timestamp"].startswith("2023-11-14T22:13:20")  # SOURCE_DATE_EPOCH


def test_evidence_is_deterministic_across_paths(tmp_path: Path, keys: Keys) -> None:
    one = _bundle(str(tmp_path / "a"), keys)
    two = _bundle(str(tmp_path / "elsewhere" / "b"), keys)
    for path in (SBOM_PATH, PROVENANCE_PATH, "model.sig"):
        assert Path(one, path).read_bytes() == Path(two, path).read_bytes(), path


def test_provenance_verifies_with_securesystemslib_and_names_the_build(
    tmp_path: Path, keys: Keys
) -> None:
    bundle = _bundle(str(tmp_path), keys)
    raw = Path(bundle, PROVENANCE_PATH).read_bytes()
    assert raw.count(b"\n") == 1 and raw.endswith(b"\n")  # one JSON line: .intoto.jsonl
    envelope = Envelope.from_dict(json.loads(raw))
    builder = keys.signers["builder"]
    assert builder.key_id in envelope.verify([_sslib_key(builder)], 1)
    with pytest.raises(VerificationError):
        Envelope.from_dict(json.loads(raw)).verify([_sslib_key(keys.signers["release"])], 1)
    statement = json.loads(base64.b64decode(json.loads(raw)["payload"]))
    assert statement["predicateType"] == PREDICATE_TYPE
    subjects = {s["name"]: s["digest"]["sha256"] for s in statement["subject"]}
    on_disk = bundle_digests(bundle)
    expected = {
        p: d for p, d in on_disk.items()
        if not p.startswith("provenance/") and p != "model.sig"
    }
    expected[SBOM_PATH] = on_disk[SBOM_PATH]
    assert subjects == expected
    definition = statement["predicate"]["buildDefinition"]
    assert definition["buildType"] == BUILD_TYPE
    assert definition["externalParameters"]["target"] == "examples/iris:model"
    assert definition["externalParameters"]["source"]["dirty"] is False
    dependencies = {d["name"]: d for d in definition["resolvedDependencies"]}
    assert dependencies[LOCK_PATH]["digest"]["sha256"] == hashlib.sha256(_lock()).hexdigest()
    assert dependencies["pex"]["uri"] == "pkg:pypi/pex@2.1.148"
    assert dependencies["pants"]["uri"] == "pkg:pypi/pantsbuild.pants@2.17.1"


def _verify(bundle: str, keys: Keys, *extra: str) -> int:
    return main([
        "verify", bundle, "--trust", keys.pub("owner"), "--release-key", keys.pub("release"),
        *extra,
    ])


def test_verify_checks_the_provenance(
    tmp_path: Path, keys: Keys, capsys: pytest.CaptureFixture[str]
) -> None:
    bundle = _bundle(str(tmp_path), keys)
    assert _verify(bundle, keys) == 0
    assert "SLSA provenance by the package key signs 5 files" in capsys.readouterr().out
    # Someone holding the release key but not the package key re-signs the bundle after
    # replacing the provenance with one of their own: model.sig holds, the provenance does not.
    forged = str(tmp_path / "forged")
    shutil.copytree(bundle, forged)
    os.remove(os.path.join(forged, PROVENANCE_PATH))
    write_evidence(
        forged, keys.signers["release"], lock=_lock(), lock_path=LOCK_PATH,
        target="examples/iris:model",
    )
    resign(forged, keys)
    capsys.readouterr()
    assert _verify(forged, keys) == EXIT_PROVENANCE_CHECK
    err = capsys.readouterr().err
    assert "provenance/build.intoto.jsonl: signatures: no valid signature by a package key" in err


def _advisory(directory: Path, package: str, version: str, *, severity: str) -> None:
    """An OSV record (https://ossf.github.io/osv-schema/) affecting `version` of `package`."""
    major = int(version.split(".")[0])
    record = {
        "schema_version": "1.6.0",
        "id": f"GHSA-test-{package}",
        "modified": "2026-01-01T00:00:00Z",
        "summary": f"seeded advisory for {package}",
        "severity": [{"type": "CVSS_V3", "score": severity}],
        "affected": [{
            "package": {"ecosystem": "PyPI", "name": package},
            "ranges": [{"type": "ECOSYSTEM", "events": [
                {"introduced": "0"}, {"fixed": f"{major + 1}.0.0"},
            ]}],
        }],
    }
    directory.mkdir(parents=True, exist_ok=True)
    (directory / f"GHSA-test-{package}.json").write_text(json.dumps(record))


CRITICAL = "CVSS:3.1/AV:N/AC:L/PR:N/UI:N/S:U/C:H/I:H/A:H"  # 9.8
LOW = "CVSS:3.1/AV:L/AC:H/PR:H/UI:R/S:U/C:L/I:N/A:N"  # 1.8


def test_audit_deps_fails_on_a_seeded_advisory_and_passes_without(
    tmp_path: Path, keys: Keys, capsys: pytest.CaptureFixture[str]
) -> None:
    bundle = _bundle(str(tmp_path), keys)
    clean = tmp_path / "clean"
    _advisory(clean, "packaging", "0.1", severity=CRITICAL)  # an old version only: no match
    assert main(["audit-deps", bundle, "--advisories", str(clean)]) == 0
    assert "no advisory rated high or higher (0 lower)" in capsys.readouterr().out
    seeded = tmp_path / "seeded"
    version = _pinned("cryptography")
    _advisory(seeded, "cryptography", version, severity=CRITICAL)
    _advisory(seeded, "packaging", _pinned("packaging"), severity=LOW)
    assert main(["audit-deps", bundle, "--advisories", str(seeded)]) == EXIT_VULNERABLE
    err = capsys.readouterr().err
    fixed = f"{int(version.split('.')[0]) + 1}.0.0"
    assert f"cryptography {version}: GHSA-test-cryptography (critical); fixed in {fixed}" in err
    assert "packaging" not in err  # low: below the threshold
    assert main(["audit-deps", bundle, "--advisories", str(seeded), "--fail-on", "low"]) == 17
    assert main(["audit-deps", bundle, "--advisories", str(seeded), "--fail-on", "bad"]) == 3


def test_the_build_gate_writes_nothing_on_a_seeded_advisory(tmp_path: Path, keys: Keys) -> None:
    from modelseal.verify.advisories import gate, load_advisories, match, sbom_packages

    bundle = _bundle(str(tmp_path), keys, signed=False)
    for path in (SBOM_PATH, PROVENANCE_PATH):
        os.remove(os.path.join(bundle, path))
    seeded = tmp_path / "seeded"
    _advisory(seeded, "packaging", _pinned("packaging"), severity=CRITICAL)

    def refuse(sbom: bytes) -> None:
        gate(match(sbom_packages(sbom, SBOM_PATH), load_advisories(str(seeded))), "high", "sbom")

    with pytest.raises(VulnerabilityError, match="GHSA-test-packaging"):
        write_evidence(
            bundle, keys.signers["builder"], lock=_lock(), lock_path=LOCK_PATH,
            target="examples/iris:model", gate=refuse,
        )
    assert not os.path.exists(os.path.join(bundle, SBOM_PATH))
    assert not os.path.exists(os.path.join(bundle, PROVENANCE_PATH))


def test_verify_policy_refuses_a_vulnerable_bundle(
    tmp_path: Path, keys: Keys, capsys: pytest.CaptureFixture[str]
) -> None:
    bundle = _bundle(str(tmp_path), keys)
    _advisory(tmp_path / "policy" / "osv", "cryptography", _pinned("cryptography"),
              severity=CRITICAL)
    policy = tmp_path / "policy" / "policy.json"
    policy.write_text(json.dumps({
        "schema": "modelseal.policy/v1", "advisories": "osv", "fail_on_severity": "critical",
    }))
    assert _verify(bundle, keys, "--policy", str(policy)) == EXIT_VULNERABLE
    assert "GHSA-test-cryptography" in capsys.readouterr().err
    (tmp_path / "policy" / "osv" / "GHSA-test-cryptography.json").unlink()
    assert _verify(bundle, keys, "--policy", str(policy)) == 0
    assert "no advisory rated critical or higher" in capsys.readouterr().out


def test_inspect_shows_the_sbom_and_the_provenance(
    tmp_path: Path, keys: Keys, capsys: pytest.CaptureFixture[str]
) -> None:
    bundle = _bundle(str(tmp_path), keys)
    assert main(["inspect", bundle]) == 0
    out = capsys.readouterr().out
    assert "CycloneDX 1.6: machine-learning-model iris 1.0.0, 2 distributions in 3 wheels" in out
    short = keys.signers["builder"].key_id[:16]
    assert f"https://slsa.dev/provenance/v1, key {short}, 5 subjects" in out
    Path(bundle, PROVENANCE_PATH).write_bytes(b"{}\n")
    assert main(["inspect", bundle]) == 0
    assert f"{PROVENANCE_PATH} is not a DSSE envelope" in capsys.readouterr().out


def test_out_dir_writes_the_same_evidence_beside_an_untouched_bundle(
    tmp_path: Path, keys: Keys
) -> None:
    """The build writes the SBOM and provenance outside the bundle's directory (`--out-dir`), so
    Pants can hard-link the weights into the sandbox (issue #17): the same bytes as written into
    the bundle, and the bundle itself not changed."""
    bundle = _bundle(str(tmp_path / "a"), keys, signed=False)
    before = {p: Path(bundle, p).read_bytes() for p in bundle_digests(bundle)}
    out = tmp_path / "out"
    written = write_evidence(
        bundle, keys.signers["builder"], lock=_lock(), lock_path=LOCK_PATH,
        target="examples/iris:model", out_dir=str(out),
    )
    assert written == (str(out / SBOM_PATH), str(out / PROVENANCE_PATH))
    for path in (SBOM_PATH, PROVENANCE_PATH):
        assert (out / path).read_bytes() == before[path], path
    assert {p: Path(bundle, p).read_bytes() for p in bundle_digests(bundle)} == before
