"""Where a PEX's wheels let it run, named as people name environments: `cp311
manylinux_2_17_x86_64` (CPython 3.11 on Linux with glibc 2.17 or newer, x86_64).

The manifest records these (`runtime.environments`, computed by `modelseal manifest` from the
wheels actually in model.pex, not from the BUILD file's platforms, which a lock may not honour),
`modelseal inspect` shows them, and verify's runtime check names the one this host matched or why
none fits (`modelseal.verify.hostcheck`). Wheel file names are read by `packaging.utils`;
`packaging.tags` only knows the running host's platforms, so the family, minimum version and
architecture of a platform tag are read here.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

from packaging import tags
from packaging.utils import InvalidWheelFilename, parse_wheel_filename

__all__ = ["LEGACY_MANYLINUX", "environments_from_wheels", "parse_wheel", "platform_parts"]


def environments_from_wheels(wheels: Sequence[str]) -> list[str]:
    """The environments a PEX's wheels let it run in, as `cp3N PLATFORM` for every platform
    (C library or OS family and architecture, at the newest minimum version any wheel needs) and
    interpreter for which every compiled distribution has a wheel; ["any"] when every wheel is
    pure Python (the interpreter constraints then decide alone), [] when the compiled wheels share
    no environment. A wheel's several platform tags are alternatives, so its oldest one counts;
    `abi3` wheels serve their CPython and every later one. `modelseal inspect` shows this instead
    of the manifest's declared platforms. One function, so that a finer model can replace it."""
    by_project: dict[str, dict[tuple[str, str], tuple[tuple[int, int], set[int]]]] = {}
    for name in wheels:
        parsed = parse_wheel(name)
        if parsed is None or all(t.platform == "any" and t.abi == "none" for t in parsed[1]):
            continue
        project, wheel_tags = parsed
        found = by_project.setdefault(project, {})
        for tag in wheel_tags:
            minors = _minors(tag)
            for family, arch, version in platform_parts(tag.platform):
                old_version, old_minors = found.get((family, arch), (version, set()))
                found[(family, arch)] = (min(old_version, version), old_minors | minors)
    needs = list(by_project.values())
    if not needs:
        return ["any"]
    result: list[str] = []
    for key in sorted(set.intersection(*(set(need) for need in needs))):
        version = max(need[key][0] for need in needs)
        minors = set.intersection(*(need[key][1] for need in needs))
        family, arch = key
        platform = f"{family}_{version[0]}_{version[1]}_{arch}" if arch else family
        result.extend(f"cp3{minor} {platform}" for minor in sorted(minors))
    return result


_MAX_MINOR = 13  # the newest CPython 3 modelseal runs on: abi3 wheels count up to it
# `packaging` reads platform tags only for the running host; these name a tag's family,
# minimum C library or OS version, and architecture.
_VERSIONED = re.compile(r"(manylinux|musllinux|macosx)_(\d+)_(\d+)_(\w+)")
LEGACY_MANYLINUX = {"manylinux1": (2, 5), "manylinux2010": (2, 12), "manylinux2014": (2, 17)}


def platform_parts(tag: str) -> list[tuple[str, str, tuple[int, int]]]:
    """(family, architecture, minimum version) a platform tag stands for."""
    match = _VERSIONED.fullmatch(tag)
    if match:
        family, major, minor, arch = match.groups()
        arches = ("arm64", "x86_64") if arch == "universal2" else (arch,)
        return [(family, a, (int(major), int(minor))) for a in arches]
    for legacy, version in LEGACY_MANYLINUX.items():
        if tag.startswith(legacy + "_"):
            return [("manylinux", tag[len(legacy) + 1 :], version)]
    return [(tag, "", (0, 0))]  # linux_x86_64, win_amd64, ...: no version to compare


def _minors(tag: tags.Tag) -> set[int]:
    """The CPython 3 minor versions a wheel tag loads on."""
    match = re.fullmatch(r"cp3(\d+)", tag.interpreter)
    if match is None:
        return set(range(_MAX_MINOR + 1)) if tag.interpreter in ("py3", "py30") else set()
    first = int(match.group(1))
    return set(range(first, _MAX_MINOR + 1)) if tag.abi == "abi3" else {first}


def parse_wheel(filename: str) -> tuple[str, frozenset[tags.Tag]] | None:
    """The wheel's normalised project name and its tags; None for a name that is not a wheel's."""
    try:
        name, _, _, wheel_tags = parse_wheel_filename(filename)
    except InvalidWheelFilename:
        return None
    return str(name), wheel_tags
