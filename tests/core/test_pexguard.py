"""model.pex on the wrong interpreter: a real PEX (built by the pex tool Pants uses, constrained to
CPython 3.11) started by real CPython 3.12 and 3.9 re-executes under 3.11 from PATH, unguarded;
guarded, it prints one line naming the interpreter it needs and exits 8, and on 3.11 it runs
there, not elsewhere, whatever PEX_PYTHON and PEX_PYTHON_PATH say. Guarded with the environments
of its wheels (what a PEX built for complete platforms gets), it refuses a host none of them fits
(machine, glibc) in one line too. The examples' own model.pex files are tested in
tests/e2e/test_model_pex_interpreters.py."""

from __future__ import annotations

import glob
import os
import platform
import shutil
import subprocess
from pathlib import Path

import pytest

from core.interpreters import find_python
from modelseal.errors import EXIT_WRONG_INTERPRETER, SpecError
from modelseal.format.pexguard import environment_rule, guard_pex, guard_source

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


def run(
    pex: Path, minor: int, tmp_path: Path, **extra: str
) -> subprocess.CompletedProcess[str]:
    # CPython 3.11 is on PATH: pex could find it and re-execute.
    path = os.pathsep.join([os.path.dirname(python(11)), os.environ["PATH"]])
    return subprocess.run(
        [python(minor), str(pex)], capture_output=True, text=True,
        env={"PATH": path, "HOME": str(tmp_path), "PEX_ROOT": str(tmp_path / "pex_root"),
             **extra},
    )


def guarded_copy(built: Path, tmp_path: Path, environments: list[str]) -> Path:
    guarded = tmp_path / "guarded.pex"
    shutil.copy(built, guarded)
    guard_pex(str(guarded), ["3.11", "3.12"], ["CPython<3.13,>=3.11"], environments)
    return guarded


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


def test_pex_python_and_its_path_cannot_move_it(built: Path, tmp_path: Path) -> None:
    """Without the guard's pin, pex would honour these and re-execute under CPython 3.12."""
    guarded = tmp_path / "guarded.pex"
    shutil.copy(built, guarded)
    guard_pex(str(guarded), ["3.11", "3.12"], ["CPython<3.13,>=3.11"])
    for extra in ({"PEX_PYTHON": python(12)}, {"PEX_PYTHON_PATH": python(12)},
                  {"PEX_PYTHON": python(12), "PEX_PYTHON_PATH": os.path.dirname(python(12))}):
        result = run(guarded, 11, tmp_path, **extra)
        assert result.returncode == 0, result.stderr
        assert result.stdout.split() == ["3.11", "None"], extra


def test_python_2_gets_the_one_line(built: Path, tmp_path: Path) -> None:
    """pex's bootstrap still starts on Python 2.7, so the guard must run there too."""
    old = glob.glob(os.path.join(os.environ.get("PYENV_ROOT", os.path.expanduser("~/.pyenv")),
                                 "versions", "2.7.*", "bin", "python2.7"))
    assert old, "this test needs a CPython 2.7 (pyenv)"
    guarded = guarded_copy(built, tmp_path, ["cp311 manylinux_2_17_x86_64"])
    result = subprocess.run([old[0], str(guarded)], capture_output=True, text=True,
                            env={"PATH": "/nonexistent", "PEX_ROOT": str(tmp_path / "root")})
    assert result.returncode == EXIT_WRONG_INTERPRETER, result.stderr
    assert len(result.stderr.splitlines()) == 1, result.stderr
    assert "not CPython 2.7." in result.stderr


# This host's machine as wheel tags name it, and another one (the tests run on Linux).
ARCH = {"amd64": "x86_64", "arm64": "aarch64"}.get(platform.machine().lower(),
                                                   platform.machine().lower())
OTHER = "aarch64" if ARCH == "x86_64" else "x86_64"


@pytest.mark.parametrize(
    ("environments", "runs", "hint"),
    [
        ([f"cp311 manylinux_2_17_{ARCH}"], True, ""),
        ([f"cp311 linux_{ARCH}", f"cp312 linux_{ARCH}"], True, ""),
        # Wheels for another machine only: no interpreter here would do.
        ([f"cp311 manylinux_2_17_{OTHER}"], False, "rebuild the model with this host's"),
        # This host's glibc is older than the wheels need.
        ([f"cp311 manylinux_2_99_{ARCH}"], False, "rebuild the model with this host's"),
        # Wheels for 3.12 only on this machine: 3.11 is refused, and told to use 3.12.
        ([f"cp311 manylinux_2_17_{OTHER}", f"cp312 manylinux_2_17_{ARCH}"], False,
         "run it with python3.12"),
        (["cp311 macosx_11_0_arm64"], False, "rebuild the model with this host's"),
    ],
)
def test_wheels_environments_decide_the_host(
    built: Path, tmp_path: Path, environments: list[str], runs: bool, hint: str
) -> None:
    result = run(guarded_copy(built, tmp_path, environments), 11, tmp_path)
    if runs:
        assert result.returncode == 0, result.stderr
        assert result.stdout.split() == ["3.11", "None"]
        return
    assert result.returncode == EXIT_WRONG_INTERPRETER, result.stderr
    assert result.stdout == ""
    [line] = result.stderr.splitlines()
    assert line.startswith("model.pex: error: needs CPython 3.1"), line
    assert f" on linux {ARCH} (glibc " in line and hint in line, line


def test_environment_rules() -> None:
    assert environment_rule("cp311 manylinux_2_27_x86_64") == (
        "3.11", "linux", "x86_64", "glibc", (2, 27))
    assert environment_rule("cp313 macosx_11_0_arm64") == ("3.13", "darwin", "arm64", "macos",
                                                           (11, 0))
    assert environment_rule("cp39 musllinux_1_2_aarch64") == ("3.9", "linux", "aarch64", "musl",
                                                              (1, 2))
    assert environment_rule("cp310 win_amd64") == ("3.10", "", "", "", (0, 0))
    source = guard_source(["3.11", "3.12"], ["CPython<3.13,>=3.11"],
                          ["cp311 manylinux_2_27_aarch64", "cp311 manylinux_2_27_x86_64",
                           "cp312 manylinux_2_27_x86_64"])
    assert repr("CPython 3.11 on Linux aarch64 (glibc 2.27+) or CPython 3.11 or 3.12 on Linux "
                "x86_64 (glibc 2.27+) (CPython<3.13,>=3.11)") in source
    with pytest.raises(SpecError, match="allow none of the interpreter versions 3.12"):
        guard_source(["3.12"], ["CPython==3.12.*"], ["cp311 manylinux_2_27_x86_64"])
    with pytest.raises(SpecError, match="not an environment"):
        guard_source(["3.11"], [], ["manylinux_2_27_x86_64"])


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
