"""`modelseal rebuild`: an auditor rebuilds a commit and compares it with a published artifact
(issue #6). A clone of HEAD gets a small model; its published tar is built once, then rebuilt from
a dirty checkout, compared after one byte was changed, and rebuilt from a commit whose lock moved a
pinned version."""

from __future__ import annotations

import hashlib
import json
import re
import shutil
import subprocess
import sys
import tarfile
from dataclasses import dataclass
from pathlib import Path

import pytest
from e2e.audit import TINY_WEIGHTS, add_models, commit, environment, require_diffoscope
from e2e.repo import Builds, clone, run_pants
from securesystemslib.dsse import Envelope
from securesystemslib.signer import SSlibKey

TARGET = "examples/tiny:model"
PUBLISHED = "dist/examples.tiny/model/tiny-0.1.0.tar"
NOT_REPRODUCED = 7


@dataclass(frozen=True)
class Audit:
    repo: Path
    commit: str
    published: Path  # the tar `./pants package` built at `commit`, copied out of the repo
    env: dict[str, str]
    modelseal: Path


@pytest.fixture(scope="module")
def audit(builds: Builds, tmp_path_factory: pytest.TempPathFactory) -> Audit:
    root = tmp_path_factory.mktemp("audit")
    repo = clone(root / "repo")
    add_models(repo)
    env = environment(root)
    built = run_pants(repo, "package", TARGET, env=env)
    assert built.returncode == 0, built.stderr[-5000:]
    published = root / "tiny-0.1.0.tar"
    shutil.copyfile(repo / PUBLISHED, published)
    head = subprocess.run(["git", "-C", str(repo), "rev-parse", "HEAD"], check=True,
                          capture_output=True, text=True).stdout.strip()
    return Audit(repo, head, published, env, builds.first / "modelseal.pex")


def rebuild(
    audit: Audit, commit: str, against: Path, report: Path
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, str(audit.modelseal), "rebuild", "--repo", str(audit.repo),
         "--commit", commit, "--target", TARGET, "--against", str(against),
         "--report", str(report)],
        env=audit.env, capture_output=True, text=True, timeout=1800,
    )


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_rebuild_reproduces_and_ignores_the_callers_changes(audit: Audit, tmp_path: Path) -> None:
    tiny = audit.repo / "examples" / "tiny"
    # Uncommitted and untracked changes that would each change the bundle if they leaked in: an
    # edited weight, an edited handler, and a new file the weights glob would pick up.
    (tiny / "weights.bin").write_bytes(b"uncommitted weights")
    (tiny / "handler.py").write_text("raise SystemExit('uncommitted handler')\n")
    (tiny / "untracked.bin").write_bytes(b"untracked weights")
    try:
        result = rebuild(audit, "HEAD", audit.published, tmp_path / "report")
    finally:
        subprocess.run(["git", "-C", str(audit.repo), "checkout", "--", "."], check=True)
        (tiny / "untracked.bin").unlink()
    assert result.returncode == 0, result.stdout + result.stderr[-5000:]
    assert f"reproduced: tiny-0.1.0.tar (sha256 {sha256(audit.published)})" in result.stdout
    comparison = json.loads((tmp_path / "report" / "comparison.json").read_text())
    assert comparison["reproduced"] is True
    assert {"model.pex", "manifest.json", "weights/weights.bin"} <= set(comparison["compared"])
    assert "weights/untracked.bin" not in json.dumps(comparison)
    assert "model.sig" in comparison["not_compared"]

    # The statement is a DSSE envelope that securesystemslib (not modelseal) accepts under the
    # auditor's key, and says which artifact, which commit, and that it was reproduced.
    envelope = Envelope.from_dict(
        json.loads((tmp_path / "report" / "statement.intoto.json").read_text()))
    key_id = next(iter(envelope.signatures))
    key = SSlibKey(key_id, "ecdsa", "ecdsa-sha2-nistp256",
                   {"public": (tmp_path / "report" / "auditor.pub").read_text()})
    assert key_id in envelope.verify([key], 1)
    statement = json.loads(envelope.payload)
    assert statement["_type"] == "https://in-toto.io/Statement/v1"
    assert statement["subject"] == [
        {"name": "tiny-0.1.0.tar", "digest": {"sha256": sha256(audit.published)}}]
    predicate = statement["predicate"]
    assert predicate["verificationResult"] == "PASSED"
    assert predicate["reproduction"]["commit"] == audit.commit
    assert predicate["reproduction"]["reproduced"] is True
    assert predicate["reproduction"]["key_id"] == key_id


def test_one_changed_byte_is_named_with_a_diffoscope_report(audit: Audit, tmp_path: Path) -> None:
    require_diffoscope()
    tampered = tmp_path / "tiny-0.1.0.tar"
    shutil.copyfile(audit.published, tampered)
    with tarfile.open(tampered) as tar:
        offset = tar.getmember("tiny-0.1.0/weights/weights.bin").offset_data
    with open(tampered, "r+b") as f:
        f.seek(offset + 100)
        byte = f.read(1)[0]
        f.seek(offset + 100)
        f.write(bytes([byte ^ 0xFF]))
    with tarfile.open(tampered) as tar:
        member = tar.extractfile("tiny-0.1.0/weights/weights.bin")
        assert member is not None
        tampered_digest = hashlib.sha256(member.read()).hexdigest()
    report = tmp_path / "report"
    result = rebuild(audit, audit.commit, tampered, report)
    assert result.returncode == NOT_REPRODUCED, result.stdout + result.stderr[-3000:]
    committed = hashlib.sha256(TINY_WEIGHTS).hexdigest()
    assert (f"weights/weights.bin: published sha256 {tampered_digest} (16384 bytes), "
            f"rebuilt sha256 {committed} (16384 bytes)") in result.stdout
    assert "1 file(s) differ" in result.stdout
    assert "not reproduced: 1 file(s) differ (weights/weights.bin)" in result.stderr
    assert not (report / "statement.intoto.json").exists()
    text = (report / "diffoscope.txt").read_text()
    assert "weights/weights.bin" in text
    assert "weights.bin" in (report / "diffoscope.html").read_text()


# packaging 25.0 instead of the lock's 26.3: a real release, pinned by version and hash.
OLDER_PACKAGING = (
    "packaging==25.0 \\\n"
    "    --hash=sha256:29572ef2b1f17581046b3a2227d5c611fb25ec70ca1ba8554b24b0e69331a484 \\\n"
    "    --hash=sha256:d443872c98d677bf60f6a1f2f8c1cb748e8fe762d2bf9d3148b5599295b0fc4f\n"
)


def test_a_changed_lock_pin_is_named_in_the_pex(audit: Audit, tmp_path: Path) -> None:
    lock = audit.repo / "3rdparty" / "python" / "lock.txt"
    pinned = re.compile(r"^packaging==.*?\n(?!\s+--hash)", re.MULTILINE | re.DOTALL)
    changed_lock, count = pinned.subn(OLDER_PACKAGING, lock.read_text())
    assert count == 1
    lock.write_text(changed_lock)
    changed = commit(audit.repo, "python-default: packaging 25.0")
    try:
        result = rebuild(audit, changed, audit.published, tmp_path / "report")
    finally:
        subprocess.run(["git", "-C", str(audit.repo), "reset", "--quiet", "--hard", audit.commit],
                       check=True)
    assert result.returncode == NOT_REPRODUCED, result.stdout + result.stderr[-3000:]
    differing = json.loads((tmp_path / "report" / "comparison.json").read_text())["differences"]
    paths = {d["path"] for d in differing}
    assert "model.pex" in paths, differing
    assert paths <= {"model.pex", "manifest.json"}, differing  # the weights are the same
    assert "model.pex: published sha256" in result.stdout
