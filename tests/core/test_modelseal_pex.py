"""The tool PEX that `./pants package src/modelseal:modelseal` writes runs on CPython 3.9-3.13."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

from core.interpreters import SUPPORTED_MINORS, find_python
from modelseal import __version__

# Pants builds the pex_binary (a runtime_package_dependency) into the test sandbox.
MODELSEAL_PEX = Path("modelseal.pex")


@pytest.mark.parametrize("minor", SUPPORTED_MINORS, ids=lambda m: f"cpython3.{m}")
def test_modelseal_pex_runs_on(minor: int) -> None:
    python = find_python(minor)
    assert python, f"CPython 3.{minor} is missing: install it (e.g. `pyenv install 3.{minor}`)"
    assert MODELSEAL_PEX.is_file()
    version = subprocess.run(
        [python, str(MODELSEAL_PEX), "--version"], capture_output=True, text=True
    )
    assert version.returncode == 0, version.stderr
    assert version.stdout.strip() == f"modelseal {__version__}"
    # The PEX carries compiled wheels (cryptography and, where needed, cffi) for this interpreter.
    # pex re-executes under another interpreter when the PEX lacks wheels for this one: check
    # which interpreter really ran.
    probe = (
        "import sys, cryptography.hazmat.primitives.asymmetric.ec; "
        "print('loaded on 3.%d' % sys.version_info[1])"
    )
    compiled = subprocess.run(
        [python, str(MODELSEAL_PEX), "-c", probe],
        capture_output=True,
        text=True,
        env={**os.environ, "PEX_INTERPRETER": "1"},
    )
    assert compiled.returncode == 0, compiled.stderr
    assert compiled.stdout.strip() == f"loaded on 3.{minor}"


@pytest.mark.parametrize("flag", ["--version", "--help"])
def test_modelseal_pex_answers_at_once(flag: str) -> None:
    # execution_mode="venv": after the first run the PEX execs its installed virtualenv. What
    # remains is pex's own bootstrap (reading the zip, finding the venv), which modelseal does
    # not control: measured as the same PEX running `-c pass` (PEX_INTERPRETER), and both figures
    # printed. modelseal's part, on top of that floor, must stay under the budget.
    from core.test_startup import BUDGET, median_seconds

    python = find_python(11)
    assert python is not None
    seconds = median_seconds([python, str(MODELSEAL_PEX), flag])
    floor = median_seconds([python, str(MODELSEAL_PEX), "-c", "pass"], env={"PEX_INTERPRETER": "1"})
    print(f"modelseal.pex {flag}: median {seconds:.3f} s; pex bootstrap alone {floor:.3f} s")
    assert seconds - floor < BUDGET


def test_this_machine_has_the_default_interpreter() -> None:
        assert find_python(11) is not None
