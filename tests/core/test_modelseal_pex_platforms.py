"""modelseal.pex carries, for every platform and interpreter it claims, a wheel of every
distribution it holds (issue 16, item 5).

The claim is the README's "where it runs": CPython 3.9-3.13 on manylinux2014 (glibc 2.17) x86_64
and aarch64, macOS 11+ arm64 and macOS 10.13+ x86_64, i.e. the complete platforms in
src/modelseal/BUILD. Only two of those twenty can run here (tests/arm64 runs the aarch64 one
under qemu; tests/core/test_modelseal_pex.py the x86_64 ones), so this test reads what is in the
PEX: PEX-INFO's `distributions` and the wheels under `.deps/`, whose tags must meet each claimed
platform's tags as pex itself would match them at run time.
"""

from __future__ import annotations

import json
import zipfile
from pathlib import Path

import pytest
from packaging.tags import Tag
from packaging.utils import canonicalize_name, parse_wheel_filename

MODELSEAL_PEX = Path("modelseal.pex")
PLATFORMS = Path("3rdparty/platforms")
MINORS = ("39", "310", "311", "312", "313")
CLAIMED = {
    # platform file suffix -> (sys_platform, machine) of the hosts it stands for
    "manylinux2014_x86_64": ("linux", "x86_64"),
    "manylinux2014_aarch64": ("linux", "aarch64"),
    "macosx_11_0_arm64": ("darwin", "arm64"),
    "macosx_10_13_x86_64": ("darwin", "x86_64"),
}


def _pex_contents() -> tuple[dict[str, str], set[str]]:
    with zipfile.ZipFile(MODELSEAL_PEX) as pex:
        info = json.loads(pex.read("PEX-INFO"))
        deps = {
            n.split("/")[1] for n in pex.namelist() if n.startswith(".deps/") and n.count("/") > 1
        }
    return info["distributions"], deps


def test_pex_info_lists_exactly_the_wheels_it_holds() -> None:
    distributions, deps = _pex_contents()
    assert set(distributions) == deps
    assert all(name.endswith(".whl") for name in deps)
    # cryptography is what makes the PEX platform-specific: it must be there at all.
    assert any(name.startswith("cryptography-") for name in deps)


@pytest.mark.parametrize("suffix", sorted(CLAIMED))
@pytest.mark.parametrize("minor", MINORS)
def test_a_wheel_of_every_distribution_for(minor: str, suffix: str) -> None:
    platform_file = PLATFORMS / f"cpython{minor}-{suffix}.json"
    platform = json.loads(platform_file.read_text())
    system, machine = CLAIMED[suffix]
    markers = platform["marker_environment"]
    # The file says what the claim says: this interpreter on this OS and architecture.
    assert (markers["sys_platform"], markers["platform_machine"]) == (system, machine)
    assert markers["python_version"] == f"3.{minor[1:]}"
    accepted = {Tag(*tag.split("-")) for tag in platform["compatible_tags"]}

    distributions, _ = _pex_contents()
    wheels: dict[str, list[str]] = {}
    for name in distributions:
        project = canonicalize_name(parse_wheel_filename(name)[0])
        wheels.setdefault(project, []).append(name)
    missing = sorted(
        project
        for project, names in wheels.items()
        if not any(parse_wheel_filename(n)[3] & accepted for n in names)
    )
    assert not missing, f"no wheel for cp{minor} {suffix} of: {', '.join(missing)}"
    # The compiled ones are there for this platform specifically, not by a pure-Python fallback.
    for compiled in ("cryptography", "cffi"):
        fitting = [n for n in wheels[compiled] if parse_wheel_filename(n)[3] & accepted]
        assert any(machine in n or "universal2" in n for n in fitting), (compiled, fitting)
