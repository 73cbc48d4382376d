"""The examples' model.pex files, the bytes `pants package ::` ships (both are built for
complete platforms, x86_64 and aarch64): started by a CPython they have no wheels for, they print
one line naming the interpreters they need and exit 8, whether or not other Pythons are on PATH
or named by PEX_PYTHON and PEX_PYTHON_PATH, and start no other interpreter; started by a CPython
they declare, they predict, on exactly that interpreter.

"Started no other interpreter" is observed, not inferred: the other Pythons offered are wrapper
scripts that log every start before exec'ing the real interpreter, and the log must stay empty."""

from __future__ import annotations

import functools
import json
import os
import subprocess
from pathlib import Path

import pytest
from e2e.repo import Builds

from core.interpreters import SUPPORTED_MINORS, find_python
from modelseal.errors import EXIT_WRONG_INTERPRETER

EXAMPLES = {
    # bundle directory -> (declared CPython minors, input, expected labels)
    "examples.iris/model/iris-1.0.0": (
        (11,),
        {"instances": [[5.1, 3.5, 1.4, 0.2], [6.7, 3.0, 5.2, 2.3]]},
        ["setosa", "virginica"],
    ),
    "examples.sentiment/model/sentiment-0.3.0": (
        (11, 12, 13),
        {"texts": ["the food was great", "what an awful movie"]},
        ["positive", "negative"],
    ),
}
WRONG = (9, 10)  # CPythons neither example has wheels for
# How the wrong interpreter is started: nothing else to find, or every other Python offered.
SETTINGS = ("bare", "others")


@functools.cache
def python(minor: int) -> str:
    """The interpreter itself, not a launcher script (a pyenv shim needs a PATH): it is what
    the guard names, and it must start with nothing on PATH."""
    found = find_python(minor)
    assert found, f"this test needs CPython 3.{minor}"
    return subprocess.run([found, "-c", "import sys; print(sys.executable)"], check=True,
                          capture_output=True, text=True).stdout.strip()


@pytest.fixture(scope="module")
def pex_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One PEX_ROOT for the module: the examples' wheels are unpacked once, not per test."""
    return tmp_path_factory.mktemp("pex_root")


def offer_others(tmp_path: Path, running: int) -> tuple[dict[str, str], Path]:
    """An environment that offers pex every other CPython 3.9-3.13 three ways (PATH,
    PEX_PYTHON, PEX_PYTHON_PATH), each a wrapper that logs its start; and the log."""
    bin_dir = tmp_path / "other-pythons"
    bin_dir.mkdir()
    log = tmp_path / "started.log"
    others = [minor for minor in SUPPORTED_MINORS if minor != running]
    for minor in others:
        wrapper = bin_dir / f"python3.{minor}"
        wrapper.write_text(f'#!/bin/sh\necho "3.{minor} $*" >> "{log}"\n'
                           f'exec "{python(minor)}" "$@"\n')
        wrapper.chmod(0o755)
    (bin_dir / "python3").symlink_to(f"python3.{others[-1]}")
    (bin_dir / "python").symlink_to(f"python3.{others[-1]}")
    env = {
        "PATH": os.pathsep.join([str(bin_dir), os.environ["PATH"]]),
        "PEX_PYTHON": str(bin_dir / f"python3.{others[0]}"),
        "PEX_PYTHON_PATH": str(bin_dir),
    }
    return env, log


def environment(setting: str, tmp_path: Path, running: int, pex_root: Path
                ) -> tuple[dict[str, str], Path]:
    base = {"HOME": str(tmp_path), "PEX_ROOT": str(pex_root), "LANG": "C.UTF-8"}
    if setting == "bare":
        empty = tmp_path / "empty-bin"
        empty.mkdir()
        return {**base, "PATH": str(empty)}, tmp_path / "started.log"
    others, log = offer_others(tmp_path, running)
    return {**base, **others}, log


@pytest.mark.parametrize("setting", SETTINGS)
@pytest.mark.parametrize("minor", WRONG)
@pytest.mark.parametrize("bundle", sorted(EXAMPLES))
def test_a_wrong_interpreter_gets_one_line_and_exit_8(
    builds: Builds, tmp_path: Path, pex_root: Path, bundle: str, minor: int, setting: str
) -> None:
    directory = builds.first / bundle
    manifest = json.loads((directory / "manifest.json").read_text())
    env, log = environment(setting, tmp_path, minor, pex_root)
    result = subprocess.run(
        [python(minor), str(directory / "model.pex"), "predict"],
        input=json.dumps(EXAMPLES[bundle][1]), capture_output=True, text=True, env=env,
    )
    assert result.returncode == EXIT_WRONG_INTERPRETER == 8, result.stderr
    assert result.stdout == ""
    lines = result.stderr.splitlines()
    assert len(lines) == 1, result.stderr
    line = lines[0]
    assert line.startswith("model.pex: error: needs CPython 3.11 on Linux "), line
    # It names what it needs: every declared version, the machines of its wheels, the constraints.
    for declared in EXAMPLES[bundle][0]:
        assert f"3.{declared}" in line.split(", not ")[0], line
    for environment_name in manifest["runtime"]["environments"]:  # cp311 manylinux_2_27_x86_64
        machine = environment_name.split(" ")[1].split("_", 3)[3]
        assert f"on Linux {machine} (glibc " in line, (environment_name, line)
    assert f"({', '.join(manifest['runtime']['interpreter_constraints'])})" in line, line
    # ... and what it was started by, which is the interpreter that printed the line.
    assert f"not CPython 3.{minor}." in line and f"at {python(minor)}: " in line, line
    assert "run it with python3.11" in line, line
    assert not log.exists(), log.read_text()


@pytest.mark.parametrize(
    ("bundle", "minor"),
    [(bundle, minor) for bundle in sorted(EXAMPLES) for minor in EXAMPLES[bundle][0]],
)
def test_a_declared_interpreter_runs_it_there(
    builds: Builds, tmp_path: Path, pex_root: Path, bundle: str, minor: int
) -> None:
    directory = builds.first / bundle
    _, inputs, labels = EXAMPLES[bundle]
    env, log = environment("others", tmp_path, minor, pex_root)
    result = subprocess.run(
        [python(minor), str(directory / "model.pex"), "predict"],
        input=json.dumps(inputs), capture_output=True, text=True, env=env,
    )
    assert result.returncode == 0, result.stderr
    predicted = json.loads(result.stdout)["predictions"]
    assert [p if isinstance(p, str) else p["label"] for p in predicted] == labels
    # The code inside ran on the interpreter that was started, and pex removed its pins.
    probe = subprocess.run(
        [python(minor), str(directory / "model.pex"), "-c",
         "import os, sys; print(sys.executable, sys.version_info[1], os.environ.get('PEX_PYTHON'),"
         " os.environ.get('PEX_PYTHON_PATH'))"],
        env={**env, "PEX_INTERPRETER": "1"}, capture_output=True, text=True,
    )
    executable, ran_minor, pin, pin_path = probe.stdout.split()
    assert os.path.realpath(executable) == os.path.realpath(python(minor)), probe.stderr
    assert (ran_minor, pin, pin_path) == (str(minor), "None", "None")
    assert not log.exists(), log.read_text()
    # The wrappers do log when something starts them, so an empty log means something.
    subprocess.run([env["PEX_PYTHON"], "-c", "pass"], check=True, env=env)
    assert log.read_text().strip()
