"""Can this host run the bundle's PEX? Interpreter constraints and wheel tags, decided offline.

A verified model that then fails to import on the deployment host is an outage that looks like a
bad model, so `verify` says up front when the interpreter is outside the constraints the PEX was
built for, or when for some distribution the PEX carries no wheel this interpreter can load.
Only the forms Pants writes are understood (`CPython==3.11.*`, `CPython<3.14,>=3.11`, a bare
`>=3.9`); a constraint list means "any of these", a comma "all of these". Anything else is
refused rather than guessed at. The third-party `packaging` library is not used: `modelseal.pex`
must run with nothing but the standard library and its pinned cryptography stack.

Wheel tags are judged only where the answer is certain from the tag alone (Python version, ABI,
OS and architecture, the glibc or macOS version when the host reports one); what cannot be decided
(say, `musllinux` on a host whose C library is unknown) counts as compatible, and the report
says so.
"""

from __future__ import annotations

import json
import os
import platform
import re
import subprocess
import sys
import zipfile
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import IO

from modelseal.errors import RuntimeCheckError

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
_CLAUSE = re.compile(r"\s*(~=|==|!=|<=|>=|<|>)\s*([0-9]+(?:\.[0-9]+)*)(\.\*)?\s*")
_IMPL = re.compile(r"\s*([A-Za-z][A-Za-z0-9_]*)?\s*")


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
            "from modelseal.verify.hostcheck import Host; import dataclasses; "
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


# -- interpreter constraints ------------------------------------------------------------------


def _release(text: str) -> tuple[int, ...]:
    return tuple(int(part) for part in text.split("."))


def _pad(version: tuple[int, ...], length: int) -> tuple[int, ...]:
    return version + (0,) * (length - len(version))


def _clause_holds(op: str, wanted: tuple[int, ...], wildcard: bool, have: tuple[int, ...]) -> bool:
    if wildcard:  # ==3.11.* and !=3.11.*: a prefix match.
        prefix = have[: len(wanted)] == _pad(wanted, len(wanted))
        return prefix if op == "==" else not prefix
    size = max(len(wanted), len(have))
    left, right = _pad(have, size), _pad(wanted, size)
    if op == "~=":  # ~=3.11 means >=3.11, ==3.*
        return left >= right and have[: len(wanted) - 1] == wanted[:-1]
    return {
        "==": left == right,
        "!=": left != right,
        "<=": left <= right,
        ">=": left >= right,
        "<": left < right,
        ">": left > right,
    }[op]


def matches_constraint(constraint: str, host: Host) -> bool:
    """Whether `host` satisfies one constraint such as `CPython>=3.11,<3.14`; ValueError when the
    constraint is not one of the understood forms."""
    impl_match = _IMPL.match(constraint)
    assert impl_match is not None  # The pattern matches the empty string.
    implementation = impl_match.group(1)
    rest = constraint[impl_match.end() :]
    if implementation is not None and implementation.lower() != host.implementation.lower():
        return False
    if not rest.strip():
        if implementation is None:
            raise ValueError(f"cannot read {constraint!r}: no version and no implementation")
        return True
    for clause in rest.split(","):
        match = _CLAUSE.fullmatch(clause)
        if match is None:
            raise ValueError(f"cannot read {clause.strip()!r} in {constraint!r}")
        op, text, wildcard = match.group(1), match.group(2), match.group(3) is not None
        if wildcard and op not in ("==", "!="):
            raise ValueError(f"'.*' only goes with == and != in {constraint!r}")
        if op == "~=" and "." not in text:
            raise ValueError(f"~= needs at least two version parts in {constraint!r}")
        if not _clause_holds(op, _release(text), wildcard, host.version):
            return False
    return True


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
    """The environments a PEX's wheels let it run in, as `python-abi-platform` tags every
    compiled distribution has a wheel for; ["any"] when every wheel is pure Python (the
    interpreter constraints then decide alone), [] when the compiled wheels share no tag.
    `modelseal inspect` shows this instead of the manifest's declared platforms, which are empty
    for a model that does not cross-build. Tags are expanded (`cp311.cp312-...` and
    `manylinux_2_17_x86_64.manylinux2014_x86_64` are sets) but not ordered by compatibility: a
    host that loads a newer manylinux may still count. One function, so that a finer model of
    environments from wheels can replace it."""
    compiled: dict[str, set[str]] = {}
    for name in wheels:
        wheel = _parse_wheel(name)
        if wheel is None:
            continue
        if wheel.platform == ("any",) and set(wheel.abi) <= {"none"}:
            continue
        tags = {
            f"{py}-{abi}-{plat}"
            for py in wheel.python
            for abi in wheel.abi
            for plat in wheel.platform
        }
        compiled.setdefault(wheel.project, set()).update(tags)
    if not compiled:
        return ["any"]
    common = set.intersection(*compiled.values())
    return sorted(common)


@dataclass(frozen=True)
class _Wheel:
    filename: str
    project: str
    python: tuple[str, ...]
    abi: tuple[str, ...]
    platform: tuple[str, ...]


def _parse_wheel(filename: str) -> _Wheel | None:
    parts = filename[: -len(".whl")].split("-")
    if len(parts) not in (5, 6):
        return None
    project = re.sub(r"[-_.]+", "-", parts[0]).lower()
    python, abi, plat = parts[-3:]
    return _Wheel(
        filename, project, tuple(python.split(".")), tuple(abi.split(".")), tuple(plat.split("."))
    )


def _python_ok(tag: str, host: Host) -> bool | None:
    major, minor = host.version[0], host.version[1]
    match = re.fullmatch(r"(py|cp|pp)(\d)(\d*)", tag)
    if match is None:
        return None
    kind, tag_major, tag_minor = match.group(1), int(match.group(2)), match.group(3)
    if kind == "cp" and host.implementation != "CPython":
        return False
    if kind == "pp" and host.implementation != "PyPy":
        return False
    if tag_major != major:
        return False
    return not tag_minor or int(tag_minor) <= minor


def _abi_ok(tag: str, python_tags: tuple[str, ...], host: Host) -> bool | None:
    if tag == "none":
        return True
    own = f"cp{host.version[0]}{host.version[1]}"
    if tag == "abi3":
        return host.implementation == "CPython" and any(
            p.startswith("cp") and _python_ok(p, host) for p in python_tags
        )
    match = re.fullmatch(r"cp(\d+)([a-z]*)", tag)
    if match is None:
        return None
    if host.implementation != "CPython":
        return False
    # Free-threaded builds ("t") load only their own ABI; "m" and "u" flags predate 3.8.
    return f"cp{match.group(1)}" == own and ("t" in match.group(2)) == ("t" in host.abiflags)


def _platform_ok(tag: str, host: Host) -> bool | None:
    if tag == "any":
        return True
    for prefix, system, judge in (
        ("manylinux", "linux", _linux_ok),
        ("musllinux", "linux", _linux_ok),
        ("linux", "linux", _linux_ok),
        ("macosx", "darwin", _macos_ok),
        ("win", "win32", _windows_ok),
    ):
        if tag.startswith(prefix):
            return judge(tag, host) if host.system == system else False
    return None


def _windows_ok(tag: str, host: Host) -> bool | None:
    arch = {"win_amd64": "x86_64", "win32": "x86", "win_arm64": "arm64"}.get(tag)
    return None if arch is None else arch == host.machine


def _linux_ok(tag: str, host: Host) -> bool | None:
    many = re.fullmatch(r"manylinux_(\d+)_(\d+)_(\w+)", tag)
    legacy = re.fullmatch(r"manylinux(1|2010|2014)_(\w+)", tag)
    if many or legacy:
        if many:
            glibc, arch = (int(many.group(1)), int(many.group(2))), many.group(3)
        else:
            assert legacy is not None
            glibc = {"1": (2, 5), "2010": (2, 12), "2014": (2, 17)}[legacy.group(1)]
            arch = legacy.group(2)
        if arch != host.machine:
            return False
        return None if host.glibc is None else glibc <= host.glibc
    simple = re.fullmatch(r"(?:linux|musllinux_\d+_\d+)_(\w+)", tag)
    if simple is None:
        return None
    if simple.group(1) != host.machine:
        return False
    # Whether the host's C library is musl is not something the standard library reports.
    return None if tag.startswith("musllinux") else True


def _macos_ok(tag: str, host: Host) -> bool | None:
    mac = re.fullmatch(r"macosx_(\d+)_(\d+)_(\w+)", tag)
    if mac is None:
        return None
    arches = {"universal2": ("x86_64", "arm64"), "universal": ("x86_64", "i386")}.get(
        mac.group(3), (mac.group(3),)
    )
    if host.machine not in arches:
        return False
    wanted = (int(mac.group(1)), int(mac.group(2)))
    return None if host.macos is None else wanted <= host.macos


def _wheel_ok(wheel: _Wheel, host: Host) -> bool | None:
    """True, False, or None when the tags cannot be decided on this host."""
    verdicts: list[bool | None] = [
        _any(_python_ok(tag, host) for tag in wheel.python),
        _any(_abi_ok(tag, wheel.python, host) for tag in wheel.abi),
        _any(_platform_ok(tag, host) for tag in wheel.platform),
    ]
    if False in verdicts:
        return False
    return None if None in verdicts else True


def _any(verdicts: Iterable[bool | None]) -> bool | None:
    """True if any tag fits, False if none can, None if undecided: the tags of a compressed set
    (`py2.py3`) are alternatives."""
    seen = list(verdicts)
    if True in seen:
        return True
    return None if None in seen else False


def check_wheels(wheels: Sequence[str], host: Host, where: str) -> str:
    """RuntimeCheckError when some distribution has wheels in the PEX but none this host can
    load; a one-line description of what was decided otherwise."""
    by_project: dict[str, list[_Wheel]] = {}
    unreadable = 0
    for name in wheels:
        wheel = _parse_wheel(name)
        if wheel is None:
            unreadable += 1
            continue
        by_project.setdefault(wheel.project, []).append(wheel)
    undecided = 0
    for project in sorted(by_project):
        verdicts = [_wheel_ok(w, host) for w in by_project[project]]
        if True in verdicts:
            continue
        if None in verdicts:
            undecided += 1
            continue
        raise RuntimeCheckError(
            what=f"the PEX has no wheel of {project!r} that this interpreter can load",
            where=where,
            remedy=REBUILD + "; or add this host's platform to the model's platforms",
            expected=", ".join(w.filename for w in by_project[project]),
            found=host.describe(),
        )
    detail = f"{len(by_project)} distributions have a wheel it loads"
    if undecided or unreadable:
        detail += f" ({undecided + unreadable} not decidable here)"
    return detail
