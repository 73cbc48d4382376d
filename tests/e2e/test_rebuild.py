"""`modelseal rebuild`: an auditor rebuilds a commit and compares it with a published artifact
(issue #6). The published tar of a small model (examples/tiny: no training, one pinned package) is
built in the audit workspace of e2e/audit.py through its pantsd, with the shared cache and a
development keyring, as `modelseal rebuild` signs (that build is not what is tested, so it starts
the pantsd the release-key tests reuse); it is then rebuilt twice by `modelseal rebuild`, which
runs a fresh Pants with no cache, as it must: once from a dirty checkout (reproduced, with a signed
statement), once from a commit whose lock moved a pinned version and against a copy of the tar
with one changed byte (both causes named). Each rebuild is a whole uncached build, so the
properties share two rebuilds; what the comparison and diffoscope's reports say about two given
tars is tested without a build in tests/core/test_audit_reports.py."""

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
from e2e.audit import TINY_WEIGHTS, KeyFiles, commit, require_diffoscope
from e2e.repo import packaged_tool, run_pants
from securesystemslib.dsse import Envelope
from securesystemslib.signer import SSlibKey

TARGET = "examples/tiny:model"
PUBLISHED = "dist/examples.tiny/model/tiny-0.1.0.tar"
NOT_REPRODUCED = 7

# The audit workspace's fixtures (`keyfiles`), one instance for the whole session.
pytest_plugins = ["e2e.audit"]


@dataclass(frozen=True)
class Audit:
    repo: Path
    commit: str
    published: Path  # the tar `./pants package` built at `commit`, copied out of the repo
    env: dict[str, str]
    modelseal: Path


@pytest.fixture(scope="module")
def audit(keyfiles: KeyFiles, tmp_path_factory: pytest.TempPathFactory) -> Audit:
    root = tmp_path_factory.mktemp("audit")
    repo, env = keyfiles.repo, keyfiles.development_env
    built = run_pants(repo, "package", TARGET, env=env, pantsd=True)
    assert built.returncode == 0, built.stderr[-5000:]
    manifest = repo / PUBLISHED.replace(".tar", "/manifest.json")
    assert '"trust":"development"' in manifest.read_text()  # as `modelseal rebuild` signs
    published = root / "tiny-0.1.0.tar"
    shutil.copyfile(repo / PUBLISHED, published)
    head = subprocess.run(["git", "-C", str(repo), "rev-parse", "HEAD"], check=True,
                          capture_output=True, text=True).stdout.strip()
    return Audit(repo, head, published, env, packaged_tool())


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


# packaging 25.0 instead of the lock's 26.3: a real release, pinned by version and hash.
OLDER_PACKAGING = (
    "packaging==25.0 \\\n"
    "    --hash=sha256:29572ef2b1f17581046b3a2227d5c611fb25ec70ca1ba8554b24b0e69331a484 \\\n"
    "    --hash=sha256:d443872c98d677bf60f6a1f2f8c1cb748e8fe762d2bf9d3148b5599295b0fc4f\n"
)


def flip_a_weight_byte(published: Path, tampered: Path) -> str:
    """A copy of `published` with one byte of weights/weights.bin changed in place (the tar stays
    well formed); returns the changed file's sha256."""
    shutil.copyfile(published, tampered)
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
        return hashlib.sha256(member.read()).hexdigest()


def test_a_moved_pin_and_a_changed_byte_are_each_named(audit: Audit, tmp_path: Path) -> None:
    """One uncached rebuild, two independent causes of difference: the commit rebuilt moved
    packaging's pin in the lock (so model.pex and the manifest, which records the lock's digest,
    differ: the rebuild used that commit's lock, not the caller's), and the published tar had one
    weight byte changed (so weights/weights.bin is named with both digests). Nothing else differs,
    diffoscope's reports name both files, and no statement is written."""
    require_diffoscope()
    tampered = tmp_path / "tiny-0.1.0.tar"
    tampered_digest = flip_a_weight_byte(audit.published, tampered)
    lock = audit.repo / "3rdparty" / "python" / "lock.txt"
    pinned = re.compile(r"^packaging==.*?\n(?!\s+--hash)", re.MULTILINE | re.DOTALL)
    changed_lock, count = pinned.subn(OLDER_PACKAGING, lock.read_text())
    assert count == 1
    lock.write_text(changed_lock)
    changed = commit(audit.repo, "python-default: packaging 25.0")
    report = tmp_path / "report"
    try:
        result = rebuild(audit, changed, tampered, report)
    finally:
        subprocess.run(["git", "-C", str(audit.repo), "reset", "--quiet", "--hard", audit.commit],
                       check=True)
    assert result.returncode == NOT_REPRODUCED, result.stdout + result.stderr[-3000:]
    differing = json.loads((report / "comparison.json").read_text())["differences"]
    assert {d["path"] for d in differing} == {"model.pex", "manifest.json", "weights/weights.bin"}
    committed = hashlib.sha256(TINY_WEIGHTS).hexdigest()
    assert (f"weights/weights.bin: published sha256 {tampered_digest} (16384 bytes), "
            f"rebuilt sha256 {committed} (16384 bytes)") in result.stdout
    assert "model.pex: published sha256" in result.stdout
    assert "3 file(s) differ" in result.stdout
    assert re.search(r"not reproduced: 3 file\(s\) differ \(.*weights/weights\.bin",
                     result.stderr), result.stderr[-3000:]
    assert not (report / "statement.intoto.json").exists()
    text = (report / "diffoscope.txt").read_text()
    assert "weights/weights.bin" in text and "model.pex" in text
    assert "weights.bin" in (report / "diffoscope.html").read_text()
