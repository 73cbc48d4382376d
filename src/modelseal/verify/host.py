"""The environment model of the host check: what decides whether a host can run a PEX
(implementation, version, ABI flags, OS, machine, C library or macOS version), read from the
running interpreter or from the one that will run the model.

Standard library only, on purpose: `Host.of` runs this module in another interpreter with `-S`
and nothing but the directory holding `modelseal` on its path, so it can import neither
`packaging` nor anything else installed.
"""

from __future__ import annotations

import json
import os
import platform
import subprocess
import sys
from dataclasses import dataclass

from modelseal.errors import RuntimeCheckError

__all__ = ["Host"]


@dataclass(frozen=True)
class Host:
    """What decides compatibility: implementation, version, ABI flags, OS, machine, libc."""

    implementation: str  # "CPython", "PyPy"
    version: tuple[int, int, int]
    abiflags: str
    system: str  # sys.platform: "linux", "darwin", "win32"
    machine: str  # normalised: x86_64, aarch64, arm64, i686, ...
    glibc: tuple[int, int] | None
    macos: tuple[int, int] | None

    @classmethod
    def current(cls) -> Host:
        glibc: tuple[int, int] | None = None
        macos: tuple[int, int] | None = None
        if sys.platform.startswith("linux"):
            lib, version = platform.libc_ver()
            glibc = _two(version) if lib == "glibc" else None
        elif sys.platform == "darwin":
            macos = _two(platform.mac_ver()[0])
        machine = platform.machine().lower()
        machine = {"amd64": "x86_64", "x64": "x86_64"}.get(machine, machine)
        return cls(
            implementation=platform.python_implementation(),
            version=(sys.version_info[0], sys.version_info[1], sys.version_info[2]),
            abiflags=getattr(sys, "abiflags", ""),
            system="linux" if sys.platform.startswith("linux") else sys.platform,
            machine=machine,
            glibc=glibc,
            macos=macos,
        )

    @classmethod
    def of(cls, python: str) -> Host:
        """The host as the interpreter `python` sees it: the one that will run the model, which
        need not be the one running modelseal."""
        if os.path.realpath(python) == os.path.realpath(sys.executable):
            return cls.current()
        script = (
            "import json, sys; sys.path.insert(0, sys.argv[1]); "
            "from modelseal.verify.host import Host; import dataclasses; "
            "print(json.dumps(dataclasses.asdict(Host.current())))"
        )
        # The directory that holds the `modelseal` package (this file is modelseal/verify/...).
        here = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
        try:
            probe = subprocess.run(
                [python, "-S", "-c", script, here], capture_output=True, text=True, timeout=60
            )
            found = json.loads(probe.stdout) if probe.returncode == 0 else None
        except (OSError, ValueError, subprocess.TimeoutExpired):
            found = None
        if not isinstance(found, dict):
            raise RuntimeCheckError(
                what="cannot run the interpreter that would run the model",
                where=python,
                remedy="pass --python with a working interpreter",
            )
        return cls(
            implementation=str(found["implementation"]),
            version=(found["version"][0], found["version"][1], found["version"][2]),
            abiflags=str(found["abiflags"]),
            system=str(found["system"]),
            machine=str(found["machine"]),
            glibc=tuple(found["glibc"]) if found["glibc"] else None,
            macos=tuple(found["macos"]) if found["macos"] else None,
        )

    def describe(self) -> str:
        return f"{self.implementation} {'.'.join(map(str, self.version))} on {self.system} " + (
            f"{self.machine}"
        )


def _two(text: str) -> tuple[int, int] | None:
    parts = text.split(".")
    if len(parts) < 2 or not parts[0].isdigit() or not parts[1].isdigit():
        return None
    return int(parts[0]), int(parts[1])
