"""Where the tests find the independent checks: the reference CLIs and SoftHSM2.

An environment variable wins (MODELSEAL_IN_TOTO_VERIFY, MODELSEAL_MODEL_SIGNING,
MODELSEAL_SOFTHSM2_MODULE); otherwise the reference CLIs are installed from their hash-pinned lock
by build-support/reference-tools, and SoftHSM2 is looked for where Debian's package puts it
(`./pants test` installs the Debian package: build-support/test-deps). A test that still finds
nothing fails, saying what is missing and how to install it: a skip would count as a pass.
"""

from __future__ import annotations

import functools
import os
import shutil
import subprocess
from pathlib import Path

import pytest

CLI_NAMES = {
    "MODELSEAL_IN_TOTO_VERIFY": "in-toto-verify",
    "MODELSEAL_MODEL_SIGNING": "model_signing",
}
SOFTHSM2_MODULES = (
    "/usr/lib/softhsm/libsofthsm2.so",
    "/usr/lib/x86_64-linux-gnu/softhsm/libsofthsm2.so",
)


@functools.cache
def _installed_bin() -> str | None:
    script = Path("build-support/reference-tools")
    if not script.is_file():
        return None
    result = subprocess.run(["bash", str(script)], capture_output=True, text=True)
    return result.stdout.strip() if result.returncode == 0 else None


def reference_cli(variable: str) -> str | None:
    if os.environ.get(variable):
        return os.environ[variable]
    bin_dir = _installed_bin()
    return os.path.join(bin_dir, CLI_NAMES[variable]) if bin_dir else None


def softhsm2_module() -> str | None:
    if os.environ.get("MODELSEAL_SOFTHSM2_MODULE"):
        return os.environ["MODELSEAL_SOFTHSM2_MODULE"]
    return next((m for m in SOFTHSM2_MODULES if os.path.exists(m)), None)


def reference_cli_or_fail(variable: str) -> str:
    path = reference_cli(variable)
    if not path:
        pytest.fail(f"{variable} is not set and build-support/reference-tools did not install "
                    "the reference tools (see its output)", pytrace=False)
    return path


def softhsm2_or_fail() -> tuple[str, str]:
    """SoftHSM2's PKCS#11 module and its `softhsm2-util`, or a failure naming how to get them."""
    module = softhsm2_module()
    tool = shutil.which("softhsm2-util")
    if not module or not tool:
        pytest.fail(
            "SoftHSM2 is not installed (no libsofthsm2.so or no softhsm2-util): run the tests with "
            "./pants test, which installs it (build-support/test-deps), or `apt-get install "
            "softhsm2`; MODELSEAL_SOFTHSM2_MODULE names a module elsewhere", pytrace=False)
    return module, tool
