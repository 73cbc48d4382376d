"""A guard in front of a model PEX's bootstrap: `model.pex` runs only on the interpreters it was
built for, and otherwise says so in one line.

pex (2.1.x) started by an interpreter outside the PEX's interpreter constraints searches `PATH`
for another one and silently re-executes under it, and with none found prints every interpreter it
examined and every wheel tag it tried (docs/formats.md promises one line). No pex option turns
that off for `python model.pex`: `PEX_PYTHON` is read from the environment only, `--sh-boot` helps
only `./model.pex`, and `--python-path` hides the current interpreter too. So the build rewrites
the PEX's `__main__.py`: a few lines run first that accept only the declared Python versions,
then pin pex to the running interpreter (`PEX_PYTHON` = `sys.executable`, which pex honours and
then removes from the environment) and hand over to pex's own bootstrap, unchanged below them.

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

from modelseal.errors import SpecError

# The exit code of a model.pex started by an interpreter it was not built for (docs/formats.md).
EXIT_WRONG_INTERPRETER = 8
MAIN = "__main__.py"
MARKER = "# modelseal: interpreter guard"
VERSION_RE = re.compile(r"[0-9]+\.[0-9]+")

# Valid Python 2.7 too (pex's bootstrap is): an old `python` gets the one line, not a traceback.
_GUARD = '''{marker}
import sys as __ms_sys
__ms_impl = __import__("platform").python_implementation()
if ({implementation!r} and __ms_impl != {implementation!r}) or (
    "%d.%d" % tuple(__ms_sys.version_info[:2]) not in {versions!r}
):
    __ms_sys.stderr.write(
        "model.pex: error: needs {needs} ({constraints}), not %s %d.%d.%d at %s: "
        "run it with {hint}\\n"
        % ((__ms_impl,) + tuple(__ms_sys.version_info[:3]) + (__ms_sys.executable,))
    )
    __ms_sys.exit({code})
__import__("os").environ["PEX_PYTHON"] = __ms_sys.executable
del __ms_sys, __ms_impl
'''


def guard_source(versions: Sequence[str], constraints: Sequence[str]) -> str:
    """The lines put before pex's bootstrap: refuse an interpreter whose `major.minor` is not in
    `versions` (and, when every constraint names CPython, one that is not CPython)."""
    for version in versions:
        if not VERSION_RE.fullmatch(version):
            raise SpecError(what=f"{version!r} is not a MAJOR.MINOR Python version",
                            where="--python", remedy="pass versions such as 3.11")
    if not versions:
        raise SpecError(what="no Python version given", where="--python",
                        remedy="pass the versions the model's interpreter constraints allow")
    cpython = bool(constraints) and all(c.startswith("CPython") for c in constraints)
    name = "CPython" if cpython else "Python"
    return _GUARD.format(
        marker=MARKER,
        implementation="CPython" if cpython else "",
        versions=tuple(versions),
        needs=f"{name} " + " or ".join(versions),
        constraints=", ".join(constraints) or "no constraint",
        hint=" or ".join(f"python{v}" for v in versions),
        code=EXIT_WRONG_INTERPRETER,
    )


def _split_shebang(main: str) -> tuple[str, str]:
    """`#!` and coding lines must stay first; the guard goes right after them."""
    lines = main.splitlines(keepends=True)
    head = 0
    while head < len(lines) and head < 2 and lines[head].startswith("#"):
        head += 1
    return "".join(lines[:head]), "".join(lines[head:])


def guard_pex(pex: str, versions: Sequence[str], constraints: Sequence[str]) -> None:
    """Rewrite the PEX file at `pex` in place (temp file + rename), its `__main__.py` guarded."""
    try:
        with open(pex, "rb") as f:
            data = f.read()
        start = data.find(b"PK\x03\x04")
        with zipfile.ZipFile(pex) as zin:
            infos = zin.infolist()
            names = [info.filename for info in infos]
            if MAIN not in names or start < 0:
                raise SpecError(what="not a PEX: no __main__.py in a zip", where=pex,
                                remedy="pass the model.pex that pex built")
            main = zin.read(MAIN).decode("utf-8")
            if MARKER in main:
                return
            head, rest = _split_shebang(main)
            guarded = head + guard_source(versions, constraints) + rest
            directory = os.path.dirname(os.path.abspath(pex))
            fd, temp = tempfile.mkstemp(prefix=".pexguard-", dir=directory)
            try:
                with os.fdopen(fd, "wb") as out:
                    out.write(data[:start])  # the shebang (and any boot script) before the zip
                    with zipfile.ZipFile(out, "w") as zout:
                        for info in infos:
                            content = guarded.encode() if info.filename == MAIN else (
                                zin.read(info))
                            zout.writestr(info, content, compress_type=info.compress_type)
                shutil.copymode(pex, temp)
                os.replace(temp, pex)
            except BaseException:
                os.unlink(temp)
                raise
    except (OSError, zipfile.BadZipFile) as e:
        raise SpecError(what=f"cannot rewrite the PEX: {e}", where=pex,
                        remedy="pass the model.pex that pex built") from e
