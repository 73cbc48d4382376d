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

from modelseal.errors import RuntimeCheckError
from modelseal.verify.environments import (
    LEGACY_MANYLINUX,
    environments_from_wheels,
    parse_wheel,
    platform_parts,
)
from modelseal.verify.host import Host

__all__ = [
    "Host",
    "PexInfo",
    "check_constraints",
    "check_wheels",
    "environments_from_wheels",
    "match_environment",
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
        for legacy, version in LEGACY_MANYLINUX.items():
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
        legacy = platform.startswith(tuple(LEGACY_MANYLINUX))
        many = legacy or platform.startswith("manylinux_")
        return platform.startswith("musllinux_") or (many and host.glibc is None)
    if host.system == "darwin" and host.macos is None and platform.startswith("macosx_"):
        return any(a == arch for _, a, _ in platform_parts(platform))
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
        parsed = parse_wheel(name)
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


# -- which environment the host is --------------------------------------------------------------


def match_environment(environments: Sequence[str], host: Host) -> tuple[str | None, str]:
    """(the environment of `environments_from_wheels` this host is, "") or (None, why none is),
    the reason being the first an operator can act on: the architecture (or OS), then the C
    library or macOS version, then the interpreter. ["any"] and [] match trivially: pure-Python
    wheels leave it to the constraints, and wheels sharing no environment to `check_wheels`."""
    if list(environments) in (["any"], []):
        return (environments[0] if environments else None), ""
    loads = set(_host_platforms(host))
    own = f"cp{host.version[0]}{host.version[1]}" if host.implementation == "CPython" else ""
    parsed = [(env, *env.split(" ", 1)) for env in environments if " " in env]
    fits = [(env, python) for env, python, plat in parsed
            if plat in loads or _undecidable(plat, host)]
    for env, python in fits:
        if python == own:
            return env, ""
    if fits:
        built = ", ".join(sorted({python for _, python in fits}))
        return None, f"interpreter: built for {built}, this is {_interpreter(host)}"
    arch = sorted({plat for _, _, plat in parsed if _same_arch(plat, host)})
    if not arch:
        built = ", ".join(sorted({plat for _, _, plat in parsed}))
        return None, f"architecture: built for {built}, this is {host.system} {host.machine}"
    if host.system == "darwin":
        found = "macOS " + (".".join(map(str, host.macos)) if host.macos else "unknown")
        return None, f"macOS too old: built for {', '.join(arch)}, this is {found}"
    found = "glibc " + (".".join(map(str, host.glibc)) if host.glibc else "unknown")
    return None, f"glibc too old: built for {', '.join(arch)}, this host has {found}"


def _same_arch(platform: str, host: Host) -> bool:
    """Whether a platform tag is for this host's OS and architecture, at any version."""
    systems = {"manylinux": "linux", "musllinux": "linux", "macosx": "darwin"}
    for family, arch, _ in platform_parts(platform):
        if arch and systems.get(family) == host.system and arch == host.machine:
            return True
        if not arch and platform in _host_platforms(host):
            return True
    return False


def _interpreter(host: Host) -> str:
    return f"{host.implementation} {host.version[0]}.{host.version[1]}"
