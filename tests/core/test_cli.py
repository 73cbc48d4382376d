from __future__ import annotations

import hashlib
import io
import json
import tarfile
import zipfile
from pathlib import Path
from typing import Any

import pytest

from core.bundles import manifest, spec, write_bundle
from modelseal import __version__
from modelseal.cli.main import COMMANDS, EXIT_USAGE, main
from modelseal.format.canonical import canonical_json
from modelseal.format.manifest import Manifest, describe


def test_version(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exited:
        main(["--version"])
    assert exited.value.code == 0
    assert capsys.readouterr().out.strip() == f"modelseal {__version__}"


def test_help_lists_every_command(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exited:
        main(["--help"])
    assert exited.value.code == 0
    out = " ".join(capsys.readouterr().out.split())  # argparse wraps long summaries
    for command in COMMANDS:
        assert command.name in out
        assert " ".join(command.summary.split()) in out


def test_no_command_prints_help_and_fails(capsys: pytest.CaptureFixture[str]) -> None:
    assert main([]) == EXIT_USAGE
    assert "usage: modelseal" in capsys.readouterr().err


@pytest.mark.parametrize("command", [c.name for c in COMMANDS])
def test_unknown_arguments_are_a_usage_error(
    command: str, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as exited:
        main([command, "--no-such-option"])
    assert exited.value.code == EXIT_USAGE
    err = capsys.readouterr().err
    assert f"usage: modelseal {command}" in err and "error:" in err


def test_unknown_command_is_a_usage_error(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exited:
        main(["no-such-command"])
    assert exited.value.code == EXIT_USAGE
    assert "invalid choice" in capsys.readouterr().err


# -- the implemented commands -------------------------------------------------------------------


def _spec_file(tmp_path: Path, document: dict[str, Any]) -> Path:
    path = tmp_path / "spec.json"
    path.write_text(json.dumps(document))
    return path


def test_internal_commands_say_so_in_help(capsys: pytest.CaptureFixture[str]) -> None:
    for name in ("manifest", "archive"):
        with pytest.raises(SystemExit):
            main([name, "--help"])
        assert "An internal step that the modelseal Pants rules run" in " ".join(
            capsys.readouterr().out.split()
        )


def test_manifest(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "manifest.json"
    assert main(["manifest", "--spec", str(_spec_file(tmp_path, spec())), "--out", str(out)]) == 0
    assert out.read_bytes() == canonical_json(manifest())
    assert out.stat().st_mode & 0o777 == 0o644
    assert capsys.readouterr() == ("", "")


def test_manifest_environments_come_from_the_pex_wheels(tmp_path: Path) -> None:
    """`--pex`: runtime.environments from the wheels actually in the PEX (one aarch64 wheel
    here, whatever the spec's platforms say), shown by inspect's description."""
    pex = tmp_path / "model.pex"
    with zipfile.ZipFile(pex, "w") as z:
        z.writestr("PEX-INFO", json.dumps({"interpreter_constraints": []}))
        z.writestr(".deps/numpy-1.26.4-cp311-cp311-manylinux_2_17_aarch64.whl/numpy/x.py", "")
        z.writestr(".deps/six-1.16.0-py2.py3-none-any.whl/six.py", "")
    out = tmp_path / "manifest.json"
    spec_path = str(_spec_file(tmp_path, spec()))
    assert main(["manifest", "--spec", spec_path, "--out", str(out), "--pex", str(pex)]) == 0
    document = json.loads(out.read_bytes())
    assert document["runtime"]["environments"] == ["cp311 manylinux_2_17_aarch64"]
    assert {k: v for k, v in document["runtime"].items() if k != "environments"} == (
        manifest()["runtime"]
    )
    described = describe(Manifest.from_bytes(out.read_bytes()))
    assert "platforms    cp311 manylinux_2_17_aarch64 (from the PEX's wheels)" in described


def test_manifest_error(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "manifest.json"
    path = _spec_file(tmp_path, spec(metrics={"accuracy": "high"}))
    assert main(["manifest", "--spec", str(path), "--out", str(out)]) == 3
    assert capsys.readouterr().err == (
        f"modelseal: error: {path}: metrics.accuracy: expected a number, found a string. "
        "The modelseal Pants rules write this file from the model_artifact target: fix the "
        "target field it names\n"
    )
    assert not out.exists()


def test_missing_spec_is_one_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    spec_path = tmp_path / "nope.json"
    code = main(["manifest", "--spec", str(spec_path), "--out", str(tmp_path / "m.json")])
    assert code == 1
    assert capsys.readouterr().err == f"modelseal: error: {spec_path}: No such file or directory\n"


def test_manifest_requires_its_arguments(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exited:
        main(["manifest", "--spec", "x"])
    assert exited.value.code == EXIT_USAGE
    assert "the following arguments are required: --out" in capsys.readouterr().err


@pytest.fixture
def bundle(tmp_path: Path) -> Path:
    root = tmp_path / "iris-1.0.0"
    write_bundle(root, {"model.pex": b"pex", "weights/model.json": b"{}"})
    return root


def test_archive_and_inspect(
    bundle: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    tar = tmp_path / "iris-1.0.0.tar"
    assert main(["archive", "--bundle", f"{bundle}/", "--out", str(tar), "--mtime", "7"]) == 0
    with tarfile.open(tar) as archive:
        assert archive.getnames()[0] == "iris-1.0.0"
        assert {m.mtime for m in archive.getmembers()} == {7}
    capsys.readouterr()
    assert main(["inspect", str(bundle)]) == 0
    from_dir = capsys.readouterr().out
    assert main(["inspect", str(tar)]) == 0
    assert capsys.readouterr().out == from_dir
    assert from_dir.startswith("iris 1.0.0\n")
    assert f"\n  3  {hashlib.sha256(b'pex').hexdigest()[:12]}  model.pex\n" in from_dir


def test_inspect_json(bundle: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["inspect", "--json", str(bundle)]) == 0
    document = json.loads(capsys.readouterr().out)
    assert document["manifest"] == json.loads((bundle / "manifest.json").read_bytes())
    assert [p["path"] for p in document["files"]] == [
        "manifest.json",
        "model.pex",
        "weights/model.json",
    ]


def test_inspect_marks_missing_and_extra(bundle: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (bundle / "weights/model.json").unlink()
    (bundle / "weights/other.json").write_bytes(b"{}")
    assert main(["inspect", str(bundle)]) == 0
    out = capsys.readouterr().out
    assert "weights/model.json  MISSING\n" in out
    assert "weights/other.json  NOT IN MANIFEST\n" in out


def test_inspect_unsafe_tar(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    tar = tmp_path / "evil.tar"
    with tarfile.open(tar, "w") as archive:
        info = tarfile.TarInfo("../evil")
        archive.addfile(info, io.BytesIO(b""))
    # The exit code and refusal `modelseal verify` gives the same tar (docs/verification.md).
    assert main(["inspect", str(tar)]) == 10
    assert capsys.readouterr().err == (
        f"modelseal: error: {tar}: ../evil: the path must not contain '..': expected a bundle "
        "path, found '../evil'. This is not an archive modelseal wrote: do not install it, "
        "re-download the bundle\n"
    )


def test_archive_refuses_symlink(bundle: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (bundle / "link").symlink_to("model.pex")
    code = main(["archive", "--bundle", str(bundle), "--out", f"{bundle}.tar", "--mtime", "0"])
    assert code == 3
    assert capsys.readouterr().err.startswith(
        f"modelseal: error: {bundle / 'link'}: a symbolic link cannot be part of a bundle."
    )
