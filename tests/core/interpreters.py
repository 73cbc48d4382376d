"""Finds the CPython 3.9-3.13 interpreters on this machine, for tests that run artifacts on each."""

from __future__ import annotations

import glob
import os
import shutil
import subprocess

SUPPORTED_MINORS = (9, 10, 11, 12, 13)


def _works(python: str, minor: int) -> bool:
    probe = f"import sys; sys.exit(0 if sys.version_info[:2] == (3, {minor}) else 1)"
    return subprocess.run([python, "-c", probe], capture_output=True).returncode == 0


def find_python(minor: int) -> str | None:
    """python3.N on PATH (a pyenv shim counts only if it runs), else pyenv's newest 3.N."""
    on_path = shutil.which(f"python3.{minor}")
    if on_path and _works(on_path, minor):
        return on_path
    pyenv_root = os.environ.get("PYENV_ROOT") or os.path.join(os.path.expanduser("~"), ".pyenv")
    pattern = os.path.join(pyenv_root, "versions", f"3.{minor}.*", "bin", f"python3.{minor}")
    for candidate in sorted(glob.glob(pattern), reverse=True):
        if _works(candidate, minor):
            return candidate
    return None
