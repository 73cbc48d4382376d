"""Digests handed over instead of hashed again: the packaging steps take Pants' digests of the
files they were given, and verification hashes every file once for all its checks. The output
must be byte-identical to hashing, and what is checked must be the digests handed over."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
from pathlib import Path

import pytest

from core.signing_fixtures import Keys, flip_byte, make_bundle, make_keys
from modelseal.cli.main import main
from modelseal.errors import IntegrityError, SigningError
from modelseal.format.digests import sha256_file
from modelseal.format.tree import walk
from modelseal.signing.modelsig import bundle_digests, verify_bundle_signature
from modelseal.signing.provenance import verify_provenance
from modelseal.signing.release import sign_release


@pytest.fixture(scope="module")
def keys(tmp_path_factory: pytest.TempPathFactory) -> Keys:
    return make_keys(str(tmp_path_factory.mktemp("keys")))


def known_of(root: str) -> dict[str, tuple[str, int]]:
    return {
        e.path: sha256_file(os.path.join(root, *e.path.split("/")))
        for e in walk(root)
        if not e.is_dir
    }


def test_sign_release_with_known_digests_writes_the_same_bytes(tmp_path: Path, keys: Keys) -> None:
    bundle = make_bundle(str(tmp_path / "a"), keys)
    copy = str(tmp_path / "b" / "iris-1.0.0")
    shutil.copytree(bundle, copy)
    known = {p: d for p, d in known_of(copy).items() if not p.startswith("provenance/")}
    sign_release(copy, keys.signers["release"], known=known)
    for name in ("model.sig", f"provenance/sign.{keys.signers['release'].key_id[:8]}.link"):
        assert Path(bundle, name).read_bytes() == Path(copy, name).read_bytes()


def test_known_digests_are_used_not_the_bytes(tmp_path: Path, keys: Keys) -> None:
    """A known digest stands for the file: a wrong one is signed as given (the caller vouches
    for it), and then the bundle does not verify, since verification hashes the real bytes."""
    bundle = make_bundle(str(tmp_path), keys)
    weights = os.path.join(bundle, "weights", "model.bin")
    size = os.path.getsize(weights)
    sign_release(bundle, keys.signers["release"], known={"weights/model.bin": ("0" * 64, size)})
    with pytest.raises(IntegrityError, match="weights/model.bin"):
        verify_bundle_signature(bundle, keys.signers["release"].public_key_pem)


def test_known_digest_of_another_size_is_refused(tmp_path: Path, keys: Keys) -> None:
    bundle = make_bundle(str(tmp_path), keys)
    digest, size = sha256_file(os.path.join(bundle, "model.pex"))
    with pytest.raises(IntegrityError, match="model.pex"):
        bundle_digests(bundle, known={"model.pex": (digest, size + 1)})
    before = Path(bundle, "model.sig").read_bytes()
    with pytest.raises(IntegrityError):
        sign_release(bundle, keys.signers["release"], known={"model.pex": (digest, size - 1)})
    assert Path(bundle, "model.sig").read_bytes() == before  # Nothing was written.


def test_provenance_from_known_digests_checks_those_digests(tmp_path: Path, keys: Keys) -> None:
    bundle = make_bundle(str(tmp_path), keys)
    owner = keys.signers["owner"].public_key_pem
    known = known_of(bundle)
    verify_provenance(bundle, owner, known=known)
    # The inspection is recorded from `known`: a digest that differs from what the package
    # step produced fails the artifact rules, although the file on disk is intact.
    digest, size = known["weights/model.bin"]
    wrong = dict(known, **{"weights/model.bin": (hashlib.sha256(b"x").hexdigest(), size)})
    with pytest.raises(SigningError, match="in-toto verification failed"):
        verify_provenance(bundle, owner, known=wrong)
    # Files not in `known` are hashed: an extra file is still found, and so is a changed one.
    Path(bundle, "extra.txt").write_bytes(b"not a product of the package step")
    with pytest.raises(SigningError, match="in-toto verification failed"):
        verify_provenance(bundle, owner, known=known)
    os.unlink(os.path.join(bundle, "extra.txt"))
    flip_byte(os.path.join(bundle, "manifest.json"), 2)
    partial = {p: d for p, d in known.items() if p != "manifest.json"}
    with pytest.raises(SigningError, match="in-toto verification failed"):
        verify_provenance(bundle, owner, known=partial)


def test_inspection_record_skips_what_in_toto_skips(tmp_path: Path, keys: Keys) -> None:
    """in-toto-verify leaves provenance/files.link behind and excludes `*.link*`, `.git`,
    `*.pyc`, `*~` from its inspection: so does the record made from digests."""
    bundle = make_bundle(str(tmp_path), keys)
    owner = keys.signers["owner"].public_key_pem
    Path(bundle, "provenance", "files.link").write_text("{}")
    Path(bundle, ".git").mkdir()
    Path(bundle, ".git", "HEAD").write_text("ref: refs/heads/main\n")
    Path(bundle, "weights", "cache.pyc").write_bytes(b"\0")
    verify_provenance(bundle, owner)  # in-toto's own inspection
    verify_provenance(bundle, owner, known=known_of(bundle))


def test_link_cli_with_known_digests(
    tmp_path: Path, keys: Keys, monkeypatch: pytest.MonkeyPatch
) -> None:
    bundle = make_bundle(str(tmp_path), keys)
    monkeypatch.chdir(bundle)
    key = f"file:{keys.directory}/builder.pem"
    args = ["--materials", "weights", "--products", "manifest.json", "model.pex", "weights"]
    assert main(["link", "--step=package", f"--key={key}", "--out=plain", *args]) == 0
    known: dict[str, dict[str, object]] = {
        p: {"sha256": d, "size": s} for p, (d, s) in known_of(".").items()
    }
    Path("known.json").write_text(json.dumps(known))
    assert main(["link", "--step=package", f"--key={key}", "--out=given",
                 "--known-digests=known.json", *args]) == 0  # fmt: skip
    name = f"package.{keys.signers['builder'].key_id[:8]}.link"
    assert Path("given", name).read_bytes() == Path("plain", name).read_bytes()
    known["model.pex"]["size"] = os.path.getsize("model.pex") + 1
    Path("known.json").write_text(json.dumps(known))
    assert main(["link", "--step=package", f"--key={key}", "--out=bad",
                 "--known-digests=known.json", *args]) == 4  # fmt: skip
    Path("known.json").write_text(json.dumps({"model.pex": {"sha256": "xyz", "size": 1}}))
    assert main(["link", "--step=package", f"--key={key}", "--out=bad",
                 "--known-digests=known.json", *args]) == 3  # fmt: skip


def test_sign_out_dir_writes_the_same_signature_beside_an_untouched_bundle(
    tmp_path: Path, keys: Keys
) -> None:
    """`modelseal sign --out-dir` (what the build runs, so Pants can hard-link the weights into
    the signing sandbox: issue #17) writes the model.sig and sign link that signing in place
    writes, and changes nothing in the bundle."""
    bundle = make_bundle(str(tmp_path / "a"), keys)
    link = f"provenance/sign.{keys.signers['release'].key_id[:8]}.link"
    signed = {name: Path(bundle, name).read_bytes() for name in ("model.sig", link)}
    for name in signed:
        os.remove(os.path.join(bundle, name))
    before = {p: Path(bundle, p).read_bytes() for p in bundle_digests(bundle, ())}
    known = tmp_path / "known.json"
    known.write_text(json.dumps(
        {p: {"sha256": d, "size": s} for p, (d, s) in known_of(bundle).items()}
    ))
    out = tmp_path / "out"
    assert main(["sign", f"--bundle={bundle}", f"--key=file:{keys.directory}/release.pem",
                 f"--out-dir={out}", f"--known-digests={known}"]) == 0
    for name, data in signed.items():
        assert (out / name).read_bytes() == data, name
    assert {p: Path(bundle, p).read_bytes() for p in bundle_digests(bundle, ())} == before
