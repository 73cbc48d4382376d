from __future__ import annotations

import hashlib
from pathlib import Path

import pytest

from core.bundles import write_bundle
from modelseal.errors import IntegrityError, SpecError
from modelseal.format.archive import write_tar
from modelseal.format.bundle import read_bundle
from modelseal.format.digests import check_tree
from modelseal.format.manifest import Manifest, is_reserved
from modelseal.format.tree import Entry

FILES = {
    "model.pex": b"pex",
    "weights/model.json": b'{"w": [1, 2]}',
    "weights/tokenizer/vocab.json": b'["a"]',
}
CHANGED_WEIGHTS = b'{"w": [1, 3]}'
CHANGED = ". The bundle was changed after packaging: re-package or re-download it"


@pytest.fixture
def bundle(tmp_path: Path) -> Path:
    root = tmp_path / "iris-1.0.0"
    write_bundle(root, FILES)
    return root


def _present(root: Path) -> list[Entry]:
    return [
        Entry("manifest.json", False, (root / "manifest.json").stat().st_size),
        Entry("model.pex", False, 3),
        Entry("weights/model.json", False, 13),
        Entry("weights/tokenizer/vocab.json", False, 5),
    ]


def test_read_directory_and_tar_agree(bundle: Path, tmp_path: Path) -> None:
    manifest, present = read_bundle(bundle)
    assert manifest.name == "iris"
    assert present == _present(bundle)
    tar = tmp_path / "iris-1.0.0.tar"
    write_tar(bundle, tar, top="iris-1.0.0", mtime=0)
    assert read_bundle(tar) == (manifest, present)


def test_read_errors(tmp_path: Path, bundle: Path) -> None:
    with pytest.raises(SpecError, match="no such bundle directory or tar"):
        read_bundle(tmp_path / "nope")
    (bundle / "manifest.json").unlink()
    with pytest.raises(IntegrityError, match="no manifest.json: not a bundle directory"):
        read_bundle(bundle)
    write_tar(bundle, tmp_path / "x.tar", top="x", mtime=0)
    with pytest.raises(IntegrityError, match="no x/manifest.json: not a bundle archive"):
        read_bundle(tmp_path / "x.tar")


def test_invalid_manifest_in_tar_names_the_member(tmp_path: Path, bundle: Path) -> None:
    (bundle / "manifest.json").write_bytes(b'{"schema": 1}')
    tar = tmp_path / "iris-1.0.0.tar"
    write_tar(bundle, tar, top="iris-1.0.0", mtime=0)
    with pytest.raises(SpecError) as raised:
        read_bundle(tar)
    assert raised.value.where == f"{tar}: iris-1.0.0/manifest.json: name"


def _verify(root: Path) -> None:
    """What verify's integrity check runs: the manifest's files, the reserved paths besides."""
    manifest = Manifest.from_bytes((root / "manifest.json").read_bytes())
    expected = {entry.path: (entry.sha256, entry.size) for entry in manifest.files}
    check_tree(root, expected, unlisted_ok=is_reserved)


def test_verify_accepts_the_bundle_and_reserved_paths(bundle: Path) -> None:
    (bundle / "model.sig").write_bytes(b"sig")
    (bundle / "provenance").mkdir()
    (bundle / "provenance" / "root.layout").write_bytes(b"{}")
    (bundle / "weights" / "empty-dir").mkdir()
    _verify(bundle)


def test_verify_names_changed_file(bundle: Path) -> None:
    (bundle / "weights/model.json").write_bytes(CHANGED_WEIGHTS)
    with pytest.raises(IntegrityError) as raised:
        _verify(bundle)
    assert str(raised.value) == (
        "weights/model.json: sha256 expected "
        f"{hashlib.sha256(FILES['weights/model.json']).hexdigest()} found "
        f"{hashlib.sha256(CHANGED_WEIGHTS).hexdigest()}" + CHANGED
    )


def test_verify_names_resized_file(bundle: Path) -> None:
    (bundle / "model.pex").write_bytes(b"pexx")
    with pytest.raises(IntegrityError) as raised:
        _verify(bundle)
    assert str(raised.value) == "model.pex: size expected 3 found 4" + CHANGED


def test_verify_names_extra_file(bundle: Path) -> None:
    (bundle / "weights" / "extra.bin").write_bytes(b"")
    with pytest.raises(IntegrityError) as raised:
        _verify(bundle)
    assert str(raised.value) == (
        "weights/extra.bin: present in the bundle but not listed in the manifest" + CHANGED
    )


def test_verify_names_missing_file(bundle: Path) -> None:
    (bundle / "weights/tokenizer/vocab.json").unlink()
    with pytest.raises(IntegrityError) as raised:
        _verify(bundle)
    assert raised.value.where == "weights/tokenizer/vocab.json"
    assert raised.value.what.startswith("missing")


def test_verify_refuses_symlink(bundle: Path) -> None:
    target = bundle / "weights/model.json"
    target.rename(bundle.parent / "elsewhere.json")
    target.symlink_to(bundle.parent / "elsewhere.json")
    with pytest.raises(IntegrityError, match="a symbolic link cannot be part of a bundle"):
        _verify(bundle)
