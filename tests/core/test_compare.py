"""modelseal.audit.compare: what an audit counts as the same bundle, on real files and tars."""

from __future__ import annotations

import base64
import json
import os
import tarfile
from pathlib import Path

import pytest

from core.bundles import write_bundle
from modelseal.audit.compare import (
    Comparison,
    compare_opened,
    is_signature_bearing,
    opened_bundle,
    render,
)
from modelseal.errors import ModelsealError
from modelseal.format.archive import write_tar
from modelseal.format.canonical import canonical_json
from modelseal.format.fields import SBOM_PATH, SLSA_PATH

FILES = {"model.pex": b"PK pex bytes", "weights/model.bin": b"\x00" * 1000}


def bundle(root: Path, files: dict[str, bytes] = FILES, **overrides: object) -> Path:
    root.mkdir(parents=True)
    write_bundle(root, files, **overrides)
    (root / "model.pex").chmod(0o755)
    (root / "model.sig").write_bytes(os.urandom(32))  # signatures differ between signers
    (root / "provenance").mkdir()
    (root / "provenance" / f"package.{os.urandom(4).hex()}.link").write_bytes(os.urandom(16))
    return root


def compare(a: Path, b: Path) -> Comparison:
    with opened_bundle(str(a)) as first, opened_bundle(str(b)) as second:
        return compare_opened(first, second)


def with_evidence(
    root: Path, sbom: bytes = b'{"bomFormat": "CycloneDX"}', subject: str = "x"
) -> Path:
    """`root` plus an SBOM and a SLSA envelope whose signature is new on every call, as another
    signer's would be."""
    (root / "provenance" / "sbom.cdx.json").write_bytes(sbom)
    statement = canonical_json({"subject": [{"name": subject}]})
    envelope = {
        "payload": base64.b64encode(statement).decode(),
        "payloadType": "application/vnd.in-toto+json",
        "signatures": [
            {"keyid": os.urandom(8).hex(), "sig": base64.b64encode(os.urandom(64)).decode()}
        ],
    }
    (root / "provenance" / "build.intoto.jsonl").write_bytes(canonical_json(envelope))
    return root


def test_signature_bearing_paths() -> None:
    assert is_signature_bearing("model.sig")
    assert is_signature_bearing("provenance/root.layout")
    assert not is_signature_bearing(SBOM_PATH)
    assert not is_signature_bearing(SLSA_PATH)
    assert not is_signature_bearing("weights/model.sig")
    assert not is_signature_bearing("manifest.json")


def test_same_content_different_signatures_is_reproduced(tmp_path: Path) -> None:
    comparison = compare(bundle(tmp_path / "a"), bundle(tmp_path / "b"))
    assert comparison.reproduced
    assert comparison.compared == ("manifest.json", "model.pex", "weights/model.bin")
    assert "model.sig" in comparison.not_compared
    assert len([p for p in comparison.not_compared if p.startswith("provenance/")]) == 2


def test_the_sbom_and_the_slsa_statement_are_compared(tmp_path: Path) -> None:
    a = with_evidence(bundle(tmp_path / "a"))
    b = with_evidence(bundle(tmp_path / "b"))
    comparison = compare(a, b)
    assert comparison.reproduced, comparison.differences
    assert SBOM_PATH in comparison.compared and SLSA_PATH in comparison.compared
    assert [n for n in comparison.notes if n.startswith(SLSA_PATH)] == [
        f"{SLSA_PATH}: its signed payload is identical; its signatures differ and were not compared"
    ]
    # Another SBOM, or another statement under the signatures, is a difference.
    c = with_evidence(bundle(tmp_path / "c"), sbom=b'{"bomFormat": "CycloneDX", "x": 1}')
    assert [d.path for d in compare(a, c).differences] == [SBOM_PATH]
    d = with_evidence(bundle(tmp_path / "d"), subject="y")
    assert [d.path for d in compare(a, d).differences] == [SLSA_PATH]


def test_evidence_is_not_compared_when_the_trust_labels_differ(tmp_path: Path) -> None:
    a = with_evidence(bundle(tmp_path / "a", trust="release"))
    b = with_evidence(bundle(tmp_path / "b", trust="development"), sbom=b"{}")
    comparison = compare(a, b)
    assert comparison.reproduced
    assert SBOM_PATH in comparison.not_compared and SLSA_PATH in comparison.not_compared
    assert any(n.startswith(f"{SBOM_PATH}: not compared") for n in comparison.notes)


def test_a_changed_byte_names_the_file_with_both_digests(tmp_path: Path) -> None:
    a = bundle(tmp_path / "a")
    b = bundle(tmp_path / "b", {**FILES, "weights/model.bin": b"\x00" * 999 + b"\x01"})
    comparison = compare(a, b)
    assert [d.path for d in comparison.differences] == ["manifest.json", "weights/model.bin"]
    text = render(comparison)
    weights = next(d for d in comparison.differences if d.path == "weights/model.bin")
    assert weights.expected and weights.found
    assert (f"weights/model.bin: published sha256 {weights.expected.sha256} (1000 bytes), "
            f"rebuilt sha256 {weights.found.sha256} (1000 bytes)") in text


def test_missing_extra_and_mode_differences(tmp_path: Path) -> None:
    a = bundle(tmp_path / "a")
    b = bundle(tmp_path / "b")
    (b / "weights" / "extra.bin").write_bytes(b"x")
    (a / "weights" / "model.bin").chmod(0o755)
    comparison = compare(a, b)
    described = {d.path: d.describe() for d in comparison.differences}
    assert described["weights/extra.bin"].startswith("weights/extra.bin: only in the rebuilt")
    assert "executable=True published, executable=False rebuilt" in described["weights/model.bin"]


def test_trust_label_alone_is_explained_not_a_difference(tmp_path: Path) -> None:
    a = bundle(tmp_path / "a", trust="release")
    b = bundle(tmp_path / "b", trust="development")
    comparison = compare(a, b)
    assert comparison.reproduced
    assert "manifest.json" in comparison.compared
    assert comparison.notes and "trust label" in comparison.notes[0]
    # Any other change to the manifest is still a difference.
    c = bundle(tmp_path / "c", trust="development", license="MIT")
    assert [d.path for d in compare(a, c).differences] == ["manifest.json"]


def test_tars_are_compared_with_their_recorded_modes(tmp_path: Path) -> None:
    a = bundle(tmp_path / "a" / "tiny-1")
    b = bundle(tmp_path / "b" / "tiny-1")
    write_tar(str(a), str(tmp_path / "a.tar"), top="tiny-1", mtime=0)
    write_tar(str(b), str(tmp_path / "b.tar"), top="tiny-1", mtime=0)
    comparison = compare(tmp_path / "a.tar", tmp_path / "b.tar")
    assert comparison.reproduced
    with opened_bundle(str(tmp_path / "a.tar")) as (_, states):
        assert states["model.pex"].executable
        assert not states["weights/model.bin"].executable
    # A tar against a directory: the same files, so the same answer.
    assert compare(tmp_path / "a.tar", b).reproduced


def test_an_unsafe_tar_is_refused_before_comparing(tmp_path: Path) -> None:
    evil = tmp_path / "evil.tar"
    with tarfile.open(evil, "w") as tar:
        info = tarfile.TarInfo("top/../../escape")
        info.size = 0
        tar.addfile(info)
    with pytest.raises(ModelsealError) as refused:
        compare(evil, bundle(tmp_path / "b"))
    assert "evil.tar" in str(refused.value)


def test_report_is_json(tmp_path: Path) -> None:
    comparison = compare(bundle(tmp_path / "a"), bundle(tmp_path / "b", license="MIT"))
    document = json.loads(canonical_json(comparison.to_json()))
    assert document["reproduced"] is False
    assert document["differences"][0]["path"] == "manifest.json"
