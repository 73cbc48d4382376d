"""diffoscope's reports of two bundle tars, as `modelseal rebuild` and `modelseal reproduce` write
them when a comparison fails: real tars, real diffoscope, no Pants build (the end-to-end audits
in tests/e2e build once and check the same reports on a real rebuild)."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

from core.bundles import write_bundle
from modelseal.audit.compare import compare_opened, opened_bundle, render
from modelseal.audit.rebuild import diffoscope_reports
from modelseal.format.archive import write_tar

WEIGHTS = bytes(range(256)) * 16
FILES = {"model.pex": b"PK pex bytes", "weights/model.bin": WEIGHTS, "config.json": b"{}"}


def require_diffoscope() -> None:
    """A missing diffoscope fails the test with the fix (a skip would count as a pass)."""
    if not shutil.which("diffoscope"):
        pytest.fail("diffoscope is not installed: run the tests with ./pants test, which installs "
                    "it (build-support/test-deps), or `apt-get install diffoscope-minimal`",
                    pytrace=False)


def bundle_tar(root: Path, weights: bytes, signature: bytes) -> Path:
    """A bundle `tiny-1` with its own signature and link (signers differ), as a tar."""
    directory = root / "tiny-1"
    directory.mkdir(parents=True)
    write_bundle(directory, {**FILES, "weights/model.bin": weights})
    (directory / "model.sig").write_bytes(signature)
    (directory / "provenance").mkdir()
    (directory / "provenance" / "package.abcd.link").write_bytes(signature * 2)
    write_tar(str(directory), str(root / "tiny-1.tar"), top="tiny-1", mtime=0)
    return root / "tiny-1.tar"


def test_one_changed_byte_is_named_and_signatures_are_left_out(tmp_path: Path) -> None:
    require_diffoscope()
    changed = bytearray(WEIGHTS)
    changed[100] ^= 0xFF
    published = bundle_tar(tmp_path / "published", bytes(changed), b"signature one")
    rebuilt = bundle_tar(tmp_path / "rebuilt", WEIGHTS, b"signature two")
    with opened_bundle(str(published)) as a, opened_bundle(str(rebuilt)) as b:
        comparison = compare_opened(a, b)
    # The manifest lists the weights' digest, so it differs with them; nothing else does.
    assert [d.path for d in comparison.differences] == ["manifest.json", "weights/model.bin"]
    assert "weights/model.bin: published sha256" in render(comparison)

    report = tmp_path / "report"
    report.mkdir()
    written = diffoscope_reports(str(published), str(rebuilt), str(report))
    assert written == [str(report / "diffoscope.txt"), str(report / "diffoscope.html")]
    text = (report / "diffoscope.txt").read_text()
    assert "tiny-1/weights/model.bin" in text
    assert "tiny-1/config.json" not in text  # identical files are not reported
    # Signatures differ between any two signers: they are excluded, not reported.
    assert "model.sig" not in text and "provenance" not in text
    assert "weights/model.bin" in (report / "diffoscope.html").read_text()


def test_identical_tars_give_an_empty_report(tmp_path: Path) -> None:
    require_diffoscope()
    published = bundle_tar(tmp_path / "published", WEIGHTS, b"signature one")
    rebuilt = bundle_tar(tmp_path / "rebuilt", WEIGHTS, b"signature two")
    report = tmp_path / "report"
    report.mkdir()
    diffoscope_reports(str(published), str(rebuilt), str(report))
    text = (report / "diffoscope.txt").read_text() if (report / "diffoscope.txt").exists() else ""
    assert "weights" not in text and "model.sig" not in text


def test_without_diffoscope_no_report_is_written(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    published = bundle_tar(tmp_path / "published", WEIGHTS, b"one")
    rebuilt = bundle_tar(tmp_path / "rebuilt", WEIGHTS[::-1], b"two")
    empty = tmp_path / "empty-path"
    empty.mkdir()
    monkeypatch.setenv("PATH", str(empty))
    report = tmp_path / "report"
    report.mkdir()
    assert diffoscope_reports(str(published), str(rebuilt), str(report)) == []
    assert os.listdir(report) == []
