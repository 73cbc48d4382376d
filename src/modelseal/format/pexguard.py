"""A guard in front of a model PEX's bootstrap: `model.pex` runs only on the interpreters and hosts
it was built for, and otherwise says so in one line (exit code `EXIT_WRONG_INTERPRETER`, 8).

pex (2.1.x) started by an interpreter its PEX cannot use searches `PATH` for another one and
silently re-executes under it, and with none found prints every interpreter it examined and every
wheel tag it tried (docs/formats.md promises one line). It does so for a PEX built for
`complete_platforms` too: such a PEX-INFO has no interpreter constraints, but pex still tests
each interpreter against the wheels it carries. No pex option turns that off for
`python model.pex`: `PEX_PYTHON` is read from the environment only, `--sh-boot` helps only
`./model.pex`, and `--python-path` hides the current interpreter too. So the build rewrites the
PEX's `__main__.py`: a few lines run first that accept only what the PEX can run on, then pin pex
to the running interpreter (`PEX_PYTHON` and `PEX_PYTHON_PATH` = `sys.executable`, which pex
honours over a pexrc and then removes from the environment) and hand over to pex's own bootstrap,
unchanged below them.

What the PEX can run on is decided at build time from two facts: the Python versions its
interpreter constraints allow, and the environments its wheels make up (`cp311
manylinux_2_27_x86_64`, as `modelseal.verify.environments` names them and the manifest records
them). On the host the guard compares the running interpreter's version, OS, machine and C
library (or macOS) version with those, using the standard library only, valid Python 2.7 too
(pex's bootstrap is): an old `python` gets the one line, not a traceback.

The rewrite keeps the bytes reproducible: entries stay in order with their dates and modes, and
the bytes before the zip (the shebang line) are kept.
"""

from __future__ import annotations

import os
import re
import shutil
import tempfile
import zipfile
from collections.abc import Sequence

from modelseal.errors import EXIT_WRONG_INTERPRETER, SpecError

MAIN = "__main__.py"
MARKER = "# modelseal: interpreter guard"
VERSION_RE = re.compile(r"[0-9]+\.[0-9]+")
# One environment of the PEX's wheels, as the guard compares it with the host: Python version
# ("3.11"), OS as `sys.platform` names it ("linux", "darwin"; "" = not judged), machine, C library
# ("glibc", "musl"; "macos" for the macOS version; "" = not judged) and its minimum version.
Rule = tuple[str, str, str, str, tuple[int, int]]
_ENVIRONMENT = re.compile(r"cp3([0-9]+) (\S+)")
_VERSIONED = re.compile(r"(manylinux|musllinux|macosx)_([0-9]+)_([0-9]+)_(\w+)")
_FAMILIES = {"manylinux": ("linux", "glibc"), "musllinux": ("linux", "musl"),
             "macosx": ("darwin", "macos")}

_GUARD = '''{marker}
def __modelseal_guard(implementation, versions, rules, needs, code):
    import os, platform, sys
    running = platform.python_implementation()
    version = "%d.%d" % tuple(sys.version_info[:2])
    system = sys.platform
    if system.startswith("linux"):
        system = "linux"
    machine = platform.machine().lower()
    machine = {{"amd64": "x86_64", "x64": "x86_64"}}.get(machine, machine)
    libc, found = "", None
    if system == "linux":
        try:
            libc, text = os.confstr("CS_GNU_LIBC_VERSION").split()
        except (AttributeError, ValueError, OSError):
            libc, text = platform.libc_ver()  # slower: it reads the interpreter's binary
            libc = "glibc" if libc == "glibc" else "musl"
    elif system == "darwin":
        libc, text = "macos", platform.mac_ver()[0]
    try:
        found = tuple(int(part) for part in (text.split(".") + ["0"])[:2])
    except (NameError, ValueError):
        found = None
    if libc == "macos" and found == (10, 16):
        found = (11, 0)  # a macOS 11+ host answering in compatibility mode

    def fits(rule, wanted):
        if rule[0] != wanted:
            return False
        if not rule[1]:
            return True
        if (rule[1], rule[2]) != (system, machine) or (rule[3] and rule[3] != libc):
            return False
        return found is None or found >= rule[4]

    def runs(wanted):
        return wanted in versions and (not rules or [r for r in rules if fits(r, wanted)])

    if (not implementation or running == implementation) and runs(version):
        os.environ["PEX_PYTHON"] = sys.executable
        os.environ["PEX_PYTHON_PATH"] = sys.executable
        return
    usable = [v for v in versions if runs(v)] if running == (implementation or running) else []
    if usable:
        names = ["python" + v for v in usable]
        hint = "run it with " + (" or ".join(names) if len(names) < 3 else
                                 ", ".join(names[:-1]) + " or " + names[-1])
    else:
        hint = "this host has no interpreter it runs on: rebuild the model with this host's " \\
            "complete platform in its complete_platforms"
    host = "%s %s on %s %s" % (running, platform.python_version(), system, machine)
    if libc and found:
        host += " (%s %d.%d)" % ((libc,) + found)
    sys.stderr.write(
        "model.pex: error: needs %s, not %s at %s: %s\\n" % (needs, host, sys.executable, hint)
    )
    sys.exit(code)


__modelseal_guard({implementation!r}, {versions!r}, {rules!r}, {needs!r}, {code!r})
del __modelseal_guard
'''


def environment_rule(environment: str) -> Rule:
    """`cp311 manylinux_2_27_x86_64` -> ("3.11", "linux", "x86_64", "glibc", (2, 27)). A platform
    the guard cannot judge from the standard library (say `win_amd64`) leaves the version alone
    to decide: pex then judges the wheels itself."""
    match = _ENVIRONMENT.fullmatch(environment)
    if match is None:
        raise SpecError(what=f"{environment!r} is not an environment such as "
                        "'cp311 manylinux_2_17_x86_64'", where="--environment",
                        remedy="pass the environments of model.pex's wheels")
    version, platform_tag = f"3.{match.group(1)}", match.group(2)
    versioned = _VERSIONED.fullmatch(platform_tag)
    if versioned is not None:
        family, major, minor, arch = versioned.groups()
        system, libc = _FAMILIES[family]
        return (version, system, arch, libc, (int(major), int(minor)))
    if platform_tag.startswith("linux_"):
        return (version, "linux", platform_tag[len("linux_"):], "", (0, 0))
    return (version, "", "", "", (0, 0))


def _platform_name(rule: Rule) -> str:
    _, system, arch, libc, (major, minor) = rule
    if libc == "macos":
        return f"macOS {major}.{minor}+ {arch}"
    if system == "linux":
        return f"Linux {arch}" + (f" ({libc} {major}.{minor}+)" if libc else "")
    return "any platform"


def _or(items: Sequence[str]) -> str:
    return items[0] if len(items) == 1 else ", ".join(items[:-1]) + " or " + items[-1]


def _needs(name: str, versions: Sequence[str], rules: Sequence[Rule]) -> str:
    """`CPython 3.11 on Linux aarch64 (glibc 2.27+) or CPython 3.11 or 3.12 on Linux x86_64
    (glibc 2.27+)`: the versions each platform has wheels for, platforms in the rules' order."""
    if not rules:
        return f"{name} " + _or(list(versions))
    by_platform: dict[str, list[str]] = {}
    for rule in rules:
        by_platform.setdefault(_platform_name(rule), []).append(rule[0])
    return " or ".join(f"{name} {_or(found)} on {platform_name}"
                       for platform_name, found in by_platform.items())


def _version_key(version: str) -> tuple[int, ...]:
    return tuple(int(part) for part in version.split("."))


def guard_source(
    versions: Sequence[str], constraints: Sequence[str], environments: Sequence[str] = ()
) -> str:
    """The lines put before pex's bootstrap: refuse an interpreter whose `major.minor` is not in
    `versions`, one that is not CPython when every constraint names CPython or the wheels are
    CPython's, and a host none of the wheels' `environments` fits (none given, or `any`: pure
    Python wheels, the versions alone decide)."""
    for version in versions:
        if not VERSION_RE.fullmatch(version):
            raise SpecError(what=f"{version!r} is not a MAJOR.MINOR Python version",
                            where="--python", remedy="pass versions such as 3.11")
    if not versions:
        raise SpecError(what="no Python version given", where="--python",
                        remedy="pass the versions the model's interpreter constraints allow")
    versions = sorted(set(versions), key=_version_key)
    named = [e for e in environments if e != "any"]
    rules = [r for r in map(environment_rule, named) if r[0] in versions]
    if named and not rules:
        raise SpecError(
            what=f"the wheels' environments ({', '.join(named)}) allow none of the interpreter "
            f"versions {', '.join(versions)}", where="model.pex",
            remedy="make the model's interpreter_constraints and its complete_platforms agree",
        )
    versions = [v for v in versions if not rules or any(r[0] == v for r in rules)]
    cpython = bool(rules) or (bool(constraints) and all(c.startswith("CPython")
                                                        for c in constraints))
    name = "CPython" if cpython else "Python"
    return _GUARD.format(
        marker=MARKER,
        implementation="CPython" if cpython else "",
        versions=tuple(versions),
        rules=tuple(rules),
        needs=f"{_needs(name, versions, rules)} ({', '.join(constraints) or 'no constraint'})",
        code=EXIT_WRONG_INTERPRETER,
    )


def _split_shebang(main: str) -> tuple[str, str]:
    """`#!` and coding lines must stay first; the guard goes right after them."""
    lines = main.splitlines(keepends=True)
    head = 0
    while head < len(lines) and head < 2 and lines[head].startswith("#"):
        head += 1
    return "".join(lines[:head]), "".join(lines[head:])


def guard_pex(
    pex: str, versions: Sequence[str], constraints: Sequence[str],
    environments: Sequence[str] = (),
) -> None:
    """Rewrite the PEX file at `pex` in place (temp file + rename), its `__main__.py` guarded.

    Only `__main__.py` and the few entries pex writes after it are written again: everything
    before it (the shebang and the wheels, most of a model.pex's bytes) is copied as it is, not
    recompressed, which for a PEX of a few hundred MB is the difference between seconds and
    minutes. Entries keep their order, dates and modes, so the result is reproducible."""
    try:
        with zipfile.ZipFile(pex) as zin:
            names = zin.namelist()
            if MAIN not in names:
                raise SpecError(what="not a PEX: no __main__.py in a zip", where=pex,
                                remedy="pass the model.pex that pex built")
            main = zin.read(MAIN).decode("utf-8")
            if MARKER in main:
                return
            head, rest = _split_shebang(main)
            guarded = head + guard_source(versions, constraints, environments) + rest
            directory = os.path.dirname(os.path.abspath(pex))
            fd, temp = tempfile.mkstemp(prefix=".pexguard-", dir=directory)
            try:
                with os.fdopen(fd, "wb") as out, open(pex, "rb") as original:
                    shutil.copyfileobj(original, out)
                _rewrite_from_main(temp, zin, guarded.encode())
                shutil.copymode(pex, temp)
                os.replace(temp, pex)
            except BaseException:
                os.unlink(temp)
                raise
    except (OSError, zipfile.BadZipFile) as e:
        raise SpecError(what=f"cannot rewrite the PEX: {e}", where=pex,
                        remedy="pass the model.pex that pex built") from e


def _rewrite_from_main(path: str, original: zipfile.ZipFile, main: bytes) -> None:
    """In the copy at `path`, write `__main__.py` (as `main`) and every entry stored after it
    again, over the old ones, then the central directory. zipfile's append mode writes new
    entries where its `start_dir` points and truncates the file after the central directory;
    pointing it at the old `__main__.py` drops that entry and those after it."""
    with zipfile.ZipFile(path, "a") as zout:
        infos = zout.infolist()
        cut = [info.filename for info in infos].index(MAIN)
        offset = infos[cut].header_offset
        if any(info.header_offset >= offset for info in infos[:cut]) or any(
            info.header_offset < offset for info in infos[cut:]
        ):
            raise zipfile.BadZipFile("its central directory is not in the order of its entries")
        tail = infos[cut:]
        del zout.filelist[cut:]
        for info in tail:
            del zout.NameToInfo[info.filename]
        zout.start_dir = offset
        for info in tail:
            content = main if info.filename == MAIN else original.read(info.filename)
            zout.writestr(info, content, compress_type=info.compress_type)
