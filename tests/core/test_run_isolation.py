"""`modelseal run` executes exactly the bytes it verified, whatever a shared PEX cache holds.

pex unpacks a PEX into `$PEX_ROOT/.../<hash from the PEX's own PEX-INFO>` and reuses what it finds
there. A forged PEX that keeps the genuine PEX-INFO, run once, fills that cache with its code;
afterwards the genuine PEX, run with the same PEX_ROOT, runs the forged code. The real PEX here is
`modelseal.pex` itself (a runtime_package_dependency), so the attack and the defence are tested on
what pex really does.
"""

from __future__ import annotations

import copy
import os
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from core.signing_fixtures import Keys, make_keys
from core.verify_fixtures import make_signed_bundle, tar_of
from modelseal import __version__
from modelseal.cli import main as cli_main

GENUINE = Path("modelseal.pex")
# Where the PEX's code spells the version that `--version` prints.
VERSION_FILE = "modelseal/_version.py"
# The command line in a child process (imported here too, so the test depends on all of it).
MAIN = f"import sys; from {cli_main.__name__} import main; sys.exit(main())"


@pytest.fixture(scope="module")
def keys(tmp_path_factory: pytest.TempPathFactory) -> Keys:
    return make_keys(str(tmp_path_factory.mktemp("keys")))


def forge(genuine: Path, out: Path) -> None:
    """The same PEX, PEX-INFO included, with another version string in its code. Its entries are
    stored, not deflated: pex reads either, and compressing the 20-platform PEX's 6,000 entries
    again cost 10.3 CPU seconds against 1.6 (docs/development.md, "Session 7 (issue 12)")."""
    with zipfile.ZipFile(genuine) as source, open(out, "wb") as f:
        f.write(b"#!/usr/bin/env python3\n")
        with zipfile.ZipFile(f, "w") as forged:
            for item in source.infolist():
                data = source.read(item)
                if item.filename == VERSION_FILE:
                    data = data.replace(f'"{__version__}"'.encode(), b'"FORGED"')
                    assert b'"FORGED"' in data, f"{VERSION_FILE} no longer holds the version"
                stored = copy.copy(item)
                stored.compress_type = zipfile.ZIP_STORED
                forged.writestr(stored, data)


def test_run_ignores_a_poisoned_pex_cache(tmp_path: Path, keys: Keys) -> None:
    assert GENUINE.is_file()
    shared = tmp_path / "shared-pex-root"
    env = {**os.environ, "PEX_ROOT": str(shared)}
    forged = tmp_path / "forged.pex"
    forge(GENUINE, forged)
    # The attack: run the forged PEX once, and the genuine one now runs the forged code.
    ran = subprocess.run([sys.executable, str(forged), "--version"], env=env,
                         capture_output=True, text=True)
    assert ran.stdout.strip() == "modelseal FORGED", ran.stderr
    poisoned = subprocess.run([sys.executable, str(GENUINE), "--version"], env=env,
                              capture_output=True, text=True)
    assert poisoned.stdout.strip() == "modelseal FORGED", poisoned.stderr
    # `modelseal run` of the genuine, untouched tar, with the same environment.
    bundle = make_signed_bundle(str(tmp_path / "b"), keys, pex=GENUINE.read_bytes())
    tar = tar_of(bundle, str(tmp_path / "iris-1.0.0.tar"))
    result = subprocess.run(
        [sys.executable, "-c", MAIN, "run", tar, "--trust", keys.pub("owner"),
         f"--python={sys.executable}", "--", "--version"],
        env={**env, "PYTHONPATH": os.pathsep.join(sys.path)}, capture_output=True, text=True,
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == f"modelseal {__version__}"
