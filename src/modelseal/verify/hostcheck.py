"""Can this host run the bundle's PEX? Interpreter constraints and wheel tags, decided offline.

A verified model that then fails to import on the deployment host is an outage that looks like a
bad model, so `verify` says up front when the interpreter is outside the constraints the PEX was
built for, or when for some distribution the PEX carries no wheel this interpreter can load.
Constraints are Pants' forms (`CPython==3.11.*`, `CPython<3.14,>=3.11`, a bare `>=3.9`): an
optional implementation name, then a PEP 440 specifier set that `packaging.specifiers` decides;
a constraint list means "any of these". Anything it cannot read is refused rather than guessed at.

Wheel tags are judged with `packaging`: the wheel's file name by `packaging.utils`, and the tags
the host loads by `packaging.tags`, generated for the described host (which need not be the one
running modelseal). What cannot be decided from the tag alone (say, `musllinux` on a host whose
C library is unknown, or a `manylinux` wheel when the glibc version is unknown) counts as
compatible, and the report says so. The environment model is `modelseal.verify.host`.
"""

from __future__ import annotations

import json
import re
import zipfile
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import IO

from packaging import tags
from packaging.specifiers import InvalidSpecifier, SpecifierSet
from packaging.utils import InvalidWheelFilename, parse_wheel_filename

from modelseal.errors import RuntimeCheckError
from modelseal.verify.host import Host

__all__ = [
    "Host",
    "PexInfo",
    "check_constraints",
    "check_wheels",
    "environments_from_wheels",
    "matches_constraint",
    "read_pex_info",
]

MAX_PEX_INFO_SIZE = 4 * 1024 * 1024  # parsed whole: kept small so memory stays bounded
REBUILD = (
    "rebuild the model for this interpreter (interpreter_constraints of the model_artifact), "
    "or install on a host with a matching Python"
)
_IMPL = re.compile(r"\s*([A-Za-z][A-Za-z0-9_]*)?\s*")


# -- interpreter constraints ------------------------------------------------------------------


def matches_constraint(constraint: str, host: Host) -> bool:
    """Whether `host` satisfies one constraint such as `CPython>=3.11,<3.14`; ValueError when the
    constraint is not an optional implementation name followed by a PEP 440 specifier set."""
    impl_match = _IMPL.match(constraint)
    assert impl_match is not None  # The pattern matches the empty string.
    implementation = impl_match.group(1)
    rest = constraint[impl_match.end() :].strip()
    if not rest and implementation is None:
        raise ValueError(f"cannot read {constraint!r}: no version and no implementation")
    try:
        specifiers = SpecifierSet(rest)
    except InvalidSpecifier as e:
        raise ValueError(f"cannot read {constraint!r}: {e}") from None
    if implementation is not None and implementation.lower() != host.implementation.lower():
        return False
    return specifiers.contains(".".join(map(str, host.version)), prereleases=True)


def check_constraints(constraints: Sequence[str], host: Host, where: str) -> str:
    """RuntimeCheckError unless `host` satisfies at least one of `constraints` (an empty list
    constrains nothing); the constraint it satisfies ("" for an empty list). The caller names the
    host once, not once per decision."""
    if not constraints:
        return ""
    for constraint in constraints:
        try:
            if matches_constraint(constraint, host):
                return constraint
        except ValueError as e:
            raise RuntimeCheckError(
                what=f"an interpreter constraint modelseal cannot decide ({e})",
                where=where,
                remedy="rebuild the model with constraints like 'CPython>=3.11,<3.14'",
            ) from None
    raise RuntimeCheckError(
        what="this interpreter is outside the bundle's interpreter constraints",
        where=where,
        remedy=REBUILD,
        expected=" or ".join(constraints),
        found=host.describe(),
    )


# -- PEX-INFO and wheels ----------------------------------------------------------------------


@dataclass(frozen=True)
class PexInfo:
    """What a PEX says about where it runs: its constraints, and its wheels' file names."""

    interpreter_constraints: tuple[str, ...]
    wheels: tuple[str, ...]


def read_pex_info(pex_path: str | IO[bytes], where: str) -> PexInfo | None:
    """The PEX's `PEX-INFO` and the wheel names under `.deps/`, read from the zip without
    extracting it; None when the zip has no PEX-INFO. RuntimeCheckError when `pex_path` is not a
    zip (it could not run) or PEX-INFO is not the JSON object a PEX holds."""
    try:
        with zipfile.ZipFile(pex_path) as pex:
            names = pex.namelist()
            try:
                info = pex.getinfo("PEX-INFO")
            except KeyError:
                return None
            if info.file_size > MAX_PEX_INFO_SIZE:
                raise RuntimeCheckError(
                    what="PEX-INFO is larger than modelseal reads",
                    where=f"{where}: PEX-INFO",
                    remedy="rebuild the model with `pants package`",
                    expected=f"at most {MAX_PEX_INFO_SIZE} bytes",
                    found=f"{info.file_size} bytes",
                )
            with pex.open(info) as member:
                data = member.read(MAX_PEX_INFO_SIZE + 1)
    except (zipfile.BadZipFile, zipfile.LargeZipFile, NotImplementedError, EOFError) as e:
        raise RuntimeCheckError(
            what=f"model.pex is not a readable zip archive, so it cannot run ({e})",
            where=where,
            remedy="rebuild the model with `pants package`",
        ) from None
    try:
        document = json.loads(data.decode("utf-8"))
    except (UnicodeDecodeError, ValueError, RecursionError):
        document = None
    constraints = document.get("interpreter_constraints", []) if isinstance(document, dict) else 0
    if not isinstance(constraints, list) or not all(isinstance(c, str) for c in constraints):
        raise RuntimeCheckError(
            what="PEX-INFO is not a JSON object with a list of interpreter_constraints",
            where=f"{where}: PEX-INFO",
            remedy="rebuild the model with `pants package`",
        )
    wheels = sorted(
        {
            segment
            for name in names
            if name.startswith(".deps/")
            for segment in name.split("/")[1:2]
            if segment.endswith(".whl")
        }
    )
    return PexInfo(tuple(constraints), tuple(wheels))


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
        parsed = _parse_wheel(name)
        if parsed is None or all(t.platform == "any" and t.abi == "none" for t in parsed[1]):
            continue
        project, wheel_tags = parsed
        found = by_project.setdefault(project, {})
        for tag in wheel_tags:
            minors = _minors(tag)
            for family, arch, version in _platforms(tag.platform):
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
_LEGACY_MANYLINUX = {"manylinux1": (2, 5), "manylinux2010": (2, 12), "manylinux2014": (2, 17)}


def _platforms(tag: str) -> list[tuple[str, str, tuple[int, int]]]:
    """(family, architecture, minimum version) a platform tag stands for."""
    match = _VERSIONED.fullmatch(tag)
    if match:
        family, major, minor, arch = match.groups()
        arches = ("arm64", "x86_64") if arch == "universal2" else (arch,)
        return [(family, a, (int(major), int(minor))) for a in arches]
    for legacy, version in _LEGACY_MANYLINUX.items():
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


def _parse_wheel(filename: str) -> tuple[str, frozenset[tags.Tag]] | None:
    """The wheel's normalised project name and its tags; None for a name that is not a wheel's."""
    try:
        name, _, _, wheel_tags = parse_wheel_filename(filename)
    except InvalidWheelFilename:
        return None
    return str(name), wheel_tags


# -- which wheels the host loads --------------------------------------------------------------


def _host_platforms(host: Host) -> list[str]:
    """The platform tags the host loads, most specific first; [] where they depend on what the
    host does not report (its glibc or macOS version)."""
    arch = host.machine
    if host.system == "linux":
        if host.glibc is None:
            return [f"linux_{arch}"]
        major, newest = host.glibc
        result = [f"manylinux_{major}_{minor}_{arch}" for minor in range(newest, -1, -1)]
        for legacy, version in _LEGACY_MANYLINUX.items():
            if version <= host.glibc:
                result.append(f"{legacy}_{arch}")
        return [*result, f"linux_{arch}"]
    if host.system == "darwin":
        return [] if host.macos is None else list(tags.mac_platforms(host.macos, arch))
    windows = {"x86_64": "win_amd64", "x86": "win32", "arm64": "win_arm64"}.get(arch)
    return [windows] if host.system == "win32" and windows else []


def _host_tags(host: Host, platforms: Sequence[str]) -> Iterator[tags.Tag]:
    """Every tag the host's interpreter loads on `platforms` (pure-Python ones included)."""
    version = (host.version[0], host.version[1])
    short = f"{version[0]}{version[1]}"
    if host.implementation == "CPython":
        interpreter = f"cp{short}"
        abi = interpreter + ("t" if "t" in host.abiflags else "")
        yield from tags.cpython_tags(version, [abi], platforms)
    else:
        interpreter = f"pp{short}" if host.implementation == "PyPy" else f"py{short}"
        yield from tags.generic_tags(interpreter, ["none"], platforms)
    yield from tags.compatible_tags(version, interpreter, platforms)


def _undecidable(platform: str, host: Host) -> bool:
    """Whether a platform tag may fit the host, but only what the host does not report (its C
    library, glibc or macOS version) would tell."""
    arch = host.machine
    if host.system == "linux" and platform.endswith(f"_{arch}"):
        legacy = platform.startswith(tuple(_LEGACY_MANYLINUX))
        many = legacy or platform.startswith("manylinux_")
        return platform.startswith("musllinux_") or (many and host.glibc is None)
    if host.system == "darwin" and host.macos is None and platform.startswith("macosx_"):
        return any(a == arch for _, a, _ in _platforms(platform))
    return False


def _wheel_ok(wheel_tags: frozenset[tags.Tag], host: Host, loads: set[tags.Tag]) -> bool | None:
    """True, False, or None when the tags cannot be decided on this host."""
    if wheel_tags & loads:
        return True
    for tag in wheel_tags:
        if _undecidable(tag.platform, host) and tag in set(_host_tags(host, [tag.platform])):
            return None
    return False


def check_wheels(wheels: Sequence[str], host: Host, where: str) -> str:
    """RuntimeCheckError when some distribution has wheels in the PEX but none this host can
    load; a one-line description of what was decided otherwise."""
    loads = set(_host_tags(host, _host_platforms(host)))
    by_project: dict[str, list[tuple[str, frozenset[tags.Tag]]]] = {}
    unreadable = 0
    for name in wheels:
        parsed = _parse_wheel(name)
        if parsed is None:
            unreadable += 1
            continue
        by_project.setdefault(parsed[0], []).append((name, parsed[1]))
    undecided = 0
    for project in sorted(by_project):
        verdicts = [_wheel_ok(wheel_tags, host, loads) for _, wheel_tags in by_project[project]]
        if True in verdicts:
            continue
        if None in verdicts:
            undecided += 1
            continue
        raise RuntimeCheckError(
            what=f"the PEX has no wheel of {project!r} that this interpreter can load",
            where=where,
            remedy=REBUILD + "; or add this host's platform to the model's platforms",
            expected=", ".join(filename for filename, _ in by_project[project]),
            found=host.describe(),
        )
    detail = f"{len(by_project)} distributions have a wheel it loads"
    if undecided or unreadable:
        detail += f" ({undecided + unreadable} not decidable here)"
    return detail
