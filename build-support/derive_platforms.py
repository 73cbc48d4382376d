"""Writes complete platforms (tags and markers) for hosts this machine cannot run an interpreter of.

`pex3 interpreter inspect --markers --tags` gives the honest complete platform of an interpreter
that runs here (build-support/inspect-platforms; the arm64 root's CPython 3.11 under qemu). For the
oldest hosts modelseal.pex claims -- glibc 2.17 (manylinux2014) on x86_64 and aarch64, and macOS
on arm64 and x86_64 -- there is no interpreter here, so their tags are derived with the rules
`packaging.tags.sys_tags()` applies on such a host:

- `packaging.tags.cpython_tags()` and `compatible_tags()` (public API) order the interpreter and
  ABI tags, given the host's platform tags;
- Linux platform tags (PEP 600, as `packaging`'s manylinux code orders them): `manylinux_2_M_ARCH`
  for every glibc minor M from the host's down to the oldest defined for the architecture (2.5
  for x86_64, 2.17 for aarch64), each followed by its legacy alias (manylinux2014 = 2.17,
  manylinux2010 = 2.12, manylinux1 = 2.5), then `linux_ARCH`;
- macOS platform tags: `packaging.tags.mac_platforms(version, arch)`.

`python_full_version` is the oldest patch release claimed: 3.X.0, except 3.9.2 for 3.9 because
cryptography refuses 3.9.0 and 3.9.1 (`Requires-Python: !=3.9.0,!=3.9.1,>=3.9`). Markers a derived
platform cannot know (`platform_release`, `platform_version`, `implementation_version`) are left
out, so pex fails loudly rather than guesses if a requirement's marker needs them. `--check`
re-derives the platforms of the interpreters that were inspected for real and compares them with
those files, proving the rules above reproduce what a real interpreter reports.

Run: ./pants run build-support:derive_platforms [-- --check]
"""

from __future__ import annotations

import json
import sys
from collections.abc import Iterator, Sequence
from pathlib import Path

from packaging import tags

PLATFORMS_DIR = Path("3rdparty/platforms")
MINORS = (9, 10, 11, 12, 13)
_LEGACY = {(2, 17): "manylinux2014", (2, 12): "manylinux2010", (2, 5): "manylinux1"}
_OLDEST_PATCH = {9: 2}  # cryptography: Requires-Python !=3.9.0,!=3.9.1
_OLDEST_GLIBC_MINOR = {"x86_64": 5, "i686": 5}  # every other architecture starts at 2.17

# name suffix -> (system, architecture, glibc or macOS version)
DERIVED = {
    "manylinux2014_x86_64": ("linux", "x86_64", (2, 17)),
    "manylinux2014_aarch64": ("linux", "aarch64", (2, 17)),
    "macosx_11_0_arm64": ("darwin", "arm64", (11, 0)),
    "macosx_10_13_x86_64": ("darwin", "x86_64", (10, 13)),
}


def linux_platforms(arch: str, glibc: tuple[int, int]) -> Iterator[str]:
    for minor in range(glibc[1], _OLDEST_GLIBC_MINOR.get(arch, 17) - 1, -1):
        yield f"manylinux_2_{minor}_{arch}"
        if (2, minor) in _LEGACY:
            yield f"{_LEGACY[(2, minor)]}_{arch}"
    yield f"linux_{arch}"


def complete_platform(minor: int, system: str, arch: str, version: tuple[int, int]) -> dict:
    platforms = (
        list(linux_platforms(arch, version))
        if system == "linux"
        else list(tags.mac_platforms(version, arch))
    )
    python = (3, minor)
    interpreter = f"cp3{minor}"
    compatible = [
        *tags.cpython_tags(python, abis=[interpreter], platforms=platforms),
        *tags.compatible_tags(python, interpreter=interpreter, platforms=platforms),
    ]
    return {
        "compatible_tags": [str(tag) for tag in compatible],
        "marker_environment": {
            "implementation_name": "cpython",
            "os_name": "posix",
            "platform_machine": arch,
            "platform_python_implementation": "CPython",
            "platform_system": "Linux" if system == "linux" else "Darwin",
            "python_full_version": f"3.{minor}.{_OLDEST_PATCH.get(minor, 0)}",
            "python_version": f"3.{minor}",
            "sys_platform": system,
        },
    }


def render(document: dict) -> str:
    """The layout build-support/inspect-platforms writes (json.dump, indent 1, sorted keys)."""
    return json.dumps(document, indent=1, sort_keys=True)


def check() -> int:
    """Re-derive each inspected platform from its glibc version and compare the tags."""
    failures = 0
    checked = 0
    for path in sorted(PLATFORMS_DIR.glob("cpython3*-linux_*.json")):
        inspected = json.loads(path.read_text())
        arch = inspected["marker_environment"]["platform_machine"]
        minor = int(inspected["marker_environment"]["python_version"].split(".")[1])
        first = inspected["compatible_tags"][0].split("-")[2]  # manylinux_2_M_ARCH: the host's
        glibc = (2, int(first.split("_")[2]))
        derived = complete_platform(minor, "linux", arch, glibc)["compatible_tags"]
        checked += 1
        if derived != inspected["compatible_tags"]:
            failures += 1
            print(f"{path}: derived tags differ from the inspected ones", file=sys.stderr)
    print(f"{checked} inspected platforms checked, {failures} differ")
    return 1 if failures or not checked else 0


def main(argv: Sequence[str]) -> int:
    if list(argv) == ["--check"]:
        return check()
    for suffix, (system, arch, version) in DERIVED.items():
        for minor in MINORS:
            path = PLATFORMS_DIR / f"cpython3{minor}-{suffix}.json"
            path.write_text(render(complete_platform(minor, system, arch, version)))
            print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
