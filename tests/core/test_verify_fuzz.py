"""Fuzzing the parsers `verify` feeds untrusted bytes to: they may fail only as ModelsealError."""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from core.signing_fixtures import Keys, make_keys
from core.verify_fixtures import make_signed_bundle, tar_of
from modelseal.errors import ModelsealError
from modelseal.format.manifest import Manifest
from modelseal.format.safe_extract import extract_bundle
from modelseal.keys.core import PublicKey
from modelseal.verify.checks import VerifyOptions, verified_bundle
from modelseal.verify.policy import Policy

FUZZ = settings(
    max_examples=200, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)


@pytest.fixture(scope="module")
def signed(tmp_path_factory: pytest.TempPathFactory) -> tuple[Keys, str, bytes]:
    root = tmp_path_factory.mktemp("fuzz")
    keys = make_keys(str(root / "keys"))
    bundle = make_signed_bundle(str(root / "b"), keys)
    tar = Path(tar_of(bundle, str(root / "iris-1.0.0.tar"))).read_bytes()
    return keys, bundle, tar


def _mutate(data: bytes, edits: list[tuple[int, int]], cut: int | None) -> bytes:
    buffer = bytearray(data)
    for position, value in edits:
        if buffer:
            buffer[position % len(buffer)] = value
    return bytes(buffer[:cut] if cut is not None else buffer)


EDITS = st.lists(st.tuples(st.integers(min_value=0), st.integers(0, 255)), max_size=8)
CUTS = st.none() | st.integers(min_value=0, max_value=20000)


def _extract(data: bytes) -> None:
    directory = tempfile.mkdtemp()
    try:
        archive = os.path.join(directory, "in.tar")
        with open(archive, "wb") as f:
            f.write(data)
        out = os.path.join(directory, "out")
        os.mkdir(out)
        try:
            extract_bundle(archive, out)
        except ModelsealError:
            pass
    finally:
        shutil.rmtree(directory)


@FUZZ
@given(data=st.binary(max_size=4096))
def test_archive_reader_random_bytes(data: bytes) -> None:
    _extract(data)


@FUZZ
@given(edits=EDITS, cut=CUTS)
def test_archive_reader_mutated_tars(
    signed: tuple[Keys, str, bytes], edits: list[tuple[int, int]], cut: int | None
) -> None:
    _extract(_mutate(signed[2], edits, cut))


@FUZZ
@given(edits=EDITS, cut=CUTS)
def test_manifest_parser(
    signed: tuple[Keys, str, bytes], edits: list[tuple[int, int]], cut: int | None
) -> None:
    data = Path(signed[1], "manifest.json").read_bytes()
    try:
        Manifest.from_bytes(_mutate(data, edits, cut))
    except ModelsealError:
        pass


POLICY = (
    b'{"schema":"modelseal.policy/v1","required_steps":["train"],"min_metrics":{"accuracy":0.9},'
    b'"allowed_licenses":["MIT"],"allowed_signer_key_ids":["' + b"a" * 64 + b'"],'
    b'"max_age_days":30,"allow_development":false}'
)


@FUZZ
@given(edits=EDITS, cut=CUTS)
def test_policy_parser(edits: list[tuple[int, int]], cut: int | None) -> None:
    try:
        Policy.from_bytes(_mutate(POLICY, edits, cut))
    except ModelsealError:
        pass


@settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    which=st.sampled_from(["provenance/root.layout", "train", "package", "sign", "model.sig"]),
    edits=EDITS,
    cut=CUTS,
)
def test_verification_of_mutated_metadata(
    signed: tuple[Keys, str, bytes], which: str, edits: list[tuple[int, int]], cut: int | None
) -> None:
    """The full verification, with a mutated layout, link or model.sig: a verdict, never a
    crash (the signature check stops most; the rest reach in-toto's parsers)."""
    keys, bundle, _ = signed
    directory = tempfile.mkdtemp()
    try:
        copy = shutil.copytree(bundle, os.path.join(directory, "iris-1.0.0"))
        (target,) = (p for p in Path(copy).rglob("*") if p.is_file() and which in str(p))
        target.write_bytes(_mutate(target.read_bytes(), edits, cut))
        options = VerifyOptions(
            owner=PublicKey.from_pem(keys.signers["owner"].public_key_pem),
            release=PublicKey.from_pem(keys.signers["release"].public_key_pem),
        )
        with verified_bundle(copy, options) as report:
            assert report.failure is not None or report.ok
    finally:
        shutil.rmtree(directory)
