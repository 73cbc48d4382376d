"""`modelseal seal`, the one process the build runs for the package link, the SBOM and SLSA
provenance and model.sig (issue #17): the same bytes as the three commands it replaced, run in
the sandboxes the build used to give them, and nothing signed when the vulnerability gate
refuses."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from core.signing_fixtures import Keys, make_keys
from core.test_evidence import CRITICAL, LOCK_PATH, _advisory, _bundle, _pinned
from modelseal.cli.main import main
from modelseal.errors import EXIT_VULNERABLE
from modelseal.format.canonical import canonical_json
from modelseal.format.digests import sha256_file
from modelseal.format.tree import walk

NAME = "iris-1.0.0"
HANDLER = "examples/iris/handler.py"  # a package link material outside the bundle
LOCK = Path(LOCK_PATH).read_bytes()  # read before the tests change directory


@pytest.fixture(autouse=True)
def _back_to_the_start(monkeypatch: pytest.MonkeyPatch) -> None:
    """The tests change directory into the sandboxes they make; later files of the same pytest
    process (tests/core/BUILD batches them) read paths relative to the sandbox's root."""
    monkeypatch.chdir(os.getcwd())


@pytest.fixture(scope="module")
def keys(tmp_path_factory: pytest.TempPathFactory) -> Keys:
    return make_keys(str(tmp_path_factory.mktemp("keys")))


def _unsealed(root: Path, keys: Keys) -> Path:
    """An unsigned bundle holding what `seal` gets: no package link, SBOM, SLSA provenance,
    sign link or model.sig (the train link stays, as an earlier step's)."""
    bundle = Path(_bundle(str(root), keys, signed=False))
    for path in list((bundle / "provenance").iterdir()):
        if not path.name.startswith("train."):
            path.unlink()
    return bundle


def _sandbox(directory: Path, bundle: Path, *, bundle_at: str) -> Path:
    """A build sandbox: the bundle at `bundle_at`, the lock and a handler at their repository
    paths, and the bundle's known digests (the build passes Pants' own)."""
    shutil.copytree(bundle, directory / bundle_at, dirs_exist_ok=True)
    for path, data in ((LOCK_PATH, LOCK), (HANDLER, b"def main(): ...\n")):
        (directory / path).parent.mkdir(parents=True, exist_ok=True)
        (directory / path).write_bytes(data)
    known = {
        e.path: dict(zip(("sha256", "size"), sha256_file(os.path.join(bundle, e.path))))
        for e in walk(str(bundle)) if not e.is_dir
    }
    (directory / "known.json").write_text(json.dumps(known))
    return directory


def _outputs(out: Path) -> dict[str, bytes]:
    return {p.relative_to(out).as_posix(): p.read_bytes() for p in out.rglob("*") if p.is_file()}


def _three_processes(tmp_path: Path, bundle: Path, keys: Keys) -> dict[str, bytes]:
    """What the build ran before `seal`: `attest` and `link --step=package` (the bundle at the
    sandbox's root), then `sign` over the bundle with both."""
    package, release = (f"--key=file:{keys.directory}/{r}.pem" for r in ("builder", "release"))
    attest = _sandbox(tmp_path / "attest", bundle, bundle_at=NAME)
    os.chdir(attest)
    assert main(["attest", f"--bundle={NAME}", package, f"--lock={LOCK_PATH}",
                 "--target=examples/iris:model", "--known-digests=known.json",
                 "--out-dir=out"]) == 0  # fmt: skip
    link = _sandbox(tmp_path / "link", bundle, bundle_at=".")
    os.chdir(link)
    assert main(["link", "--step=package", package, "--out=provenance",
                 "--known-digests=known.json", "--materials", "weights", HANDLER, LOCK_PATH,
                 "--products", "manifest.json", "model.pex", "weights"]) == 0  # fmt: skip
    sign = _sandbox(tmp_path / "sign", bundle, bundle_at=NAME)
    shutil.copytree(attest / "out" / "provenance", sign / NAME / "provenance", dirs_exist_ok=True)
    for path in (link / "provenance").glob("package.*"):
        shutil.copy(path, sign / NAME / "provenance")
    os.chdir(sign)
    assert main(["sign", f"--bundle={NAME}", release, "--known-digests=known.json",
                 "--out-dir=out"]) == 0  # fmt: skip
    outputs = {**_outputs(attest / "out"), **_outputs(sign / "out")}
    outputs.update({f"provenance/{p.name}": p.read_bytes()
                    for p in (link / "provenance").glob("package.*")})
    return outputs


def _seal(sandbox: Path, keys: Keys, *extra: str) -> int:
    os.chdir(sandbox)
    return main([
        "seal", f"--bundle={NAME}", f"--key=file:{keys.directory}/builder.pem",
        f"--release-key=file:{keys.directory}/release.pem", f"--lock={LOCK_PATH}",
        "--target=examples/iris:model", "--known-digests=known.json", "--out-dir=out", *extra,
        "--materials", HANDLER, LOCK_PATH, "--bundle-materials", "weights",
        "--products", "manifest.json", "model.pex", "weights",
    ])


def test_seal_writes_what_the_three_steps_wrote(
    tmp_path: Path, keys: Keys, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(os.getcwd())  # restored after the test's chdirs
    bundle = _unsealed(tmp_path / "unsealed", keys)
    expected = _three_processes(tmp_path, bundle, keys)
    assert sorted(p.split(".")[0] for p in expected) == [
        "model", "provenance/build", "provenance/package", "provenance/sbom", "provenance/sign",
    ]
    sandbox = _sandbox(tmp_path / "seal", bundle, bundle_at=NAME)
    assert _seal(sandbox, keys) == 0
    assert _outputs(sandbox / "out") == expected
    # The bundle's own files are only read: the weights stay hard-linkable.
    for entry in walk(str(bundle)):
        if not entry.is_dir:
            assert (sandbox / NAME / entry.path).read_bytes() == (bundle / entry.path).read_bytes()


def test_seal_signs_nothing_when_the_gate_refuses(
    tmp_path: Path, keys: Keys, monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    monkeypatch.chdir(os.getcwd())
    bundle = _unsealed(tmp_path / "unsealed", keys)
    seeded = tmp_path / "seeded"
    _advisory(seeded, "packaging", _pinned("packaging"), severity=CRITICAL)
    sandbox = _sandbox(tmp_path / "seal", bundle, bundle_at=NAME)
    assert _seal(sandbox, keys, f"--advisories={seeded}") == EXIT_VULNERABLE
    assert "GHSA-test-packaging" in capsys.readouterr().err
    assert not (sandbox / "out").exists() or _outputs(sandbox / "out") == {}


def _python(code: str, cwd: Path) -> str:
    """`code` in a new interpreter with this test's path: jsonschema is already loaded here."""
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(os.path.abspath(p) for p in sys.path if p)}
    done = subprocess.run([sys.executable, "-c", code], cwd=cwd, env=env, capture_output=True,
                          text=True, check=False)
    assert done.returncode == 0, done.stderr
    return done.stdout


@pytest.mark.parametrize("datasets", [False, True])
def test_the_iri_parser_is_built_only_for_an_sbom_with_iris(
    tmp_path: Path, keys: Keys, datasets: bool
) -> None:
    """rfc3987_syntax builds its grammar's parser when imported (1.7 CPU-s); `attest` and
    `seal` load it only when the SBOM has a value of an IRI format to validate (a dataset's
    URL), and then validate it as before."""
    bundle = _unsealed(tmp_path / "unsealed", keys)
    if not datasets:
        manifest = json.loads((bundle / "manifest.json").read_bytes())
        manifest["lineage"]["datasets"] = {}
        (bundle / "manifest.json").write_bytes(canonical_json(manifest))
    sandbox = _sandbox(tmp_path / "seal", bundle, bundle_at=NAME)
    sealed = _python(
        "import sys\nfrom modelseal.cli.main import main\n"
        f"rc = main(['seal', '--bundle={NAME}', '--key=file:{keys.directory}/builder.pem', "
        f"'--release-key=file:{keys.directory}/release.pem', '--lock={LOCK_PATH}', "
        "'--target=examples/iris:model', '--known-digests=known.json', '--out-dir=out', "
        f"'--materials', '{HANDLER}', '--bundle-materials', 'weights', '--products', "
        "'manifest.json', 'model.pex', 'weights'])\n"
        "print(rc, 'jsonschema' in sys.modules, 'rfc3987_syntax.syntax_helpers' in sys.modules)",
        sandbox,
    )
    assert sealed.split() == ["0", "True", str(datasets)]
    sbom = (sandbox / "out" / "provenance" / "sbom.cdx.json").read_text()
    assert ("s3://datasets/iris.csv" in sbom) is datasets
    assert (sandbox / "out" / "model.sig").is_file()


def test_the_deferred_iri_check_checks_as_before(tmp_path: Path) -> None:
    checked = _python(
        "import sys\nfrom modelseal.cli.deferred import defer_rfc3987_syntax\n"
        "defer_rfc3987_syntax()\nimport jsonschema\nchecker = jsonschema.FormatChecker()\n"
        "before = 'rfc3987_syntax.syntax_helpers' in sys.modules\n"
        "print(before, checker.conforms('https://example.org/caf\\u00e9', 'iri'),\n"
        "      checker.conforms('not an iri', 'iri'), checker.conforms('a b', 'iri-reference'),\n"
        "      'rfc3987_syntax.syntax_helpers' in sys.modules)",
        tmp_path,
    )
    assert checked.split() == ["False", "True", "False", "False", "True"]
