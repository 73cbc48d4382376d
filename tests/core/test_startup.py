"""`--version` and `--help` answer at once (under 0.5 s, median of several runs): the command
modules, cryptography and in-toto are imported only by the command that needs them."""

from __future__ import annotations

import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

import pytest

import modelseal.cli.main  # noqa: F401  (the tool in this test's sandbox)

SRC = str(Path(__import__("modelseal").__path__[0]).resolve().parent)
BUDGET = 0.5  # seconds
HEAVY = ("cryptography", "in_toto", "securesystemslib", "modelseal.verify", "modelseal.signing",
         "modelseal.keys.core", "modelseal.audit", "modelseal.cli.verify")


def median_seconds(
    command: list[str], runs: int = 5, env: dict[str, str] | None = None
) -> float:
    """Median wall time of `command`, after one warm-up run (page cache, a PEX's venv)."""
    env = {**os.environ, "PYTHONPATH": SRC, **(env or {})}
    subprocess.run(command, check=True, capture_output=True, env=env)
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        subprocess.run(command, check=True, capture_output=True, env=env)
        times.append(time.perf_counter() - start)
    return statistics.median(times)


@pytest.mark.parametrize("flag", ["--version", "--help"])
def test_python_m_modelseal_answers_at_once(flag: str) -> None:
    seconds = median_seconds([sys.executable, "-m", "modelseal", flag])
    print(f"python -m modelseal {flag}: median {seconds:.3f} s")
    assert seconds < BUDGET


@pytest.mark.parametrize("flag", ["--version", "--help"])
def test_no_heavy_import(flag: str) -> None:
    probe = (
        "import sys\nfrom modelseal.cli.main import main\n"
        f"try:\n    main([{flag!r}])\nexcept SystemExit:\n    pass\n"
        "print(' '.join(sorted(sys.modules)))"
    )
    result = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True,
                            env={**os.environ, "PYTHONPATH": SRC}, check=True)
    loaded = result.stdout.split()
    assert not [m for m in loaded if m.startswith(HEAVY)]


def test_verify_imports_its_signature_checks_while_it_hashes(tmp_path: Path) -> None:
    """Issue #17: verify's hashing of the weights leaves a core free for one large file, so the
    imports checks 2 and 3 need (in-toto, the signature modules) run while it reads, not after it. A
    fresh interpreter that only hashes a directory the way check 1 does has them loaded when
    the hashing returns, and had none of them before."""
    (tmp_path / "weights.bin").write_bytes(os.urandom(1 << 20))
    probe = (
        "import sys\nfrom modelseal.verify import checks\n"
        "later = ('in_toto', 'modelseal.signing.modelsig', 'modelseal.signing.provenance')\n"
        "before = [m for m in later if m in sys.modules]\n"
        f"files = {{'weights.bin': {str(tmp_path / 'weights.bin')!r}}}\n"
        "digests = checks._hash_all(files, 1 << 20, None, 2)\n"
        "after = [m for m in later if m in sys.modules]\n"
        "print(len(before), ' '.join(after), digests['weights.bin'][1])"
    )
    result = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True,
                            env={**os.environ, "PYTHONPATH": SRC}, check=True)
    count, *loaded, size = result.stdout.split()
    assert count == "0"
    assert loaded == ["in_toto", "modelseal.signing.modelsig", "modelseal.signing.provenance"]
    assert size == str(1 << 20)
