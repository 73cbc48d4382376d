"""model.pex on the wrong interpreter: a real PEX (built by the pex tool Pants uses, constrained to
CPython 3.11) started by real CPython 3.12 and 3.9 re-executes under 3.11 from PATH, unguarded;
guarded, it prints one line naming the interpreter it needs and exits 8, and on 3.11 it runs
there, not elsewhere."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

from core.interpreters import find_python
from modelseal.errors import SpecError
from modelseal.format.pexguard import EXIT_WRONG_INTERPRETER, guard_pex, guard_source

PROBE = "import os, sys\nprint('%d.%d' % sys.version_info[:2], os.environ.get('PEX_PYTHON'))\n"


def python(minor: int) -> str:
    found = find_python(minor)
    assert found, f"this test needs CPython 3.{minor}"
    return found


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A PEX whose PEX-INFO says CPython==3.11.*, with an entry point that prints the running
    Python and whether PEX_PYTHON leaked into the program's environment."""
    tool = os.environ.get("MODELSEAL_PEX_TOOL")
    assert tool, "run through ./pants, which exports MODELSEAL_PEX_TOOL (the pex tool's PEX)"
    root = tmp_path_factory.mktemp("pexguard")
    (root / "src").mkdir()
    (root / "src" / "probe.py").write_text(PROBE)
    out = root / "probe.pex"
    subprocess.run(
        [python(11), tool, "-D", str(root / "src"), "-m", "probe", "-o", str(out),
         "--interpreter-constraint", "CPython==3.11.*", "--no-emit-warnings"],
        check=True, capture_output=True, env={**os.environ, "PEX_ROOT": str(root / "pex_root")},
    )
    return out


def run(pex: Path, minor: int, tmp_path: Path) -> subprocess.CompletedProcess[str]:
    # CPython 3.11 is on PATH: pex could find it and re-execute.
    path = os.pathsep.join([os.path.dirname(python(11)), os.environ["PATH"]])
    return subprocess.run(
        [python(minor), str(pex)], capture_output=True, text=True,
        env={"PATH": path, "HOME": str(tmp_path), "PEX_ROOT": str(tmp_path / "pex_root")},
    )


def test_unguarded_pex_reexecutes_silently(built: Path, tmp_path: Path) -> None:
    """The behaviour the guard exists for (if pex stops doing this, the guard may go)."""
    result = run(built, 12, tmp_path)
    assert result.returncode == 0, result.stderr
    assert result.stdout.split()[0] == "3.11"
    assert result.stderr == ""


@pytest.mark.parametrize("minor", [12, 9])
def test_guarded_pex_refuses_in_one_line(
    built: Path, tmp_path: Path, minor: int
) -> None:
    guarded = tmp_path / "guarded.pex"
    shutil.copy(built, guarded)
    guard_pex(str(guarded), ["3.11"], ["CPython==3.11.*"])
    result = run(guarded, minor, tmp_path)
    assert result.returncode == EXIT_WRONG_INTERPRETER == 8
    assert result.stdout == ""
    lines = result.stderr.splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("model.pex: error: needs CPython 3.11 (CPython==3.11.*), not ")
    assert f"CPython 3.{minor}." in lines[0] and "python3.11" in lines[0]


def test_guarded_pex_runs_on_its_interpreter(built: Path, tmp_path: Path) -> None:
    guarded = tmp_path / "guarded.pex"
    shutil.copy(built, guarded)
    guard_pex(str(guarded), ["3.11"], ["CPython==3.11.*"])
    result = run(guarded, 11, tmp_path)
    assert result.returncode == 0, result.stderr
    # It ran here, and pex removed the pin before the program started.
    assert result.stdout.split() == ["3.11", "None"]


def test_guard_is_deterministic_and_idempotent(built: Path, tmp_path: Path) -> None:
    first, second = tmp_path / "a.pex", tmp_path / "b.pex"
    for copy in (first, second):
        shutil.copy(built, copy)
        guard_pex(str(copy), ["3.11", "3.12"], ["CPython<3.13,>=3.11"])
    assert first.read_bytes() == second.read_bytes() != built.read_bytes()
    assert os.stat(first).st_mode == os.stat(built).st_mode
    once = first.read_bytes()
    guard_pex(str(first), ["3.11", "3.12"], ["CPython<3.13,>=3.11"])
    assert first.read_bytes() == once


def test_bad_versions_and_files_are_one_clear_error(tmp_path: Path) -> None:
    with pytest.raises(SpecError, match="MAJOR.MINOR"):
        guard_source(["3"], [])
    not_a_pex = tmp_path / "model.pex"
    not_a_pex.write_text("#!/bin/sh\n")
    with pytest.raises(SpecError, match="not a PEX|cannot rewrite"):
        guard_pex(str(not_a_pex), ["3.11"], [])
    assert not_a_pex.read_text() == "#!/bin/sh\n"
    assert [p.name for p in tmp_path.iterdir()] == ["model.pex"]
