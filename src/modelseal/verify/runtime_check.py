"""Check 5 of `modelseal verify` (docs/verification.md): the interpreter that will run the model
(this one, or `--python`) against the manifest's and the PEX's interpreter constraints and wheel
tags, and the check's one report line. The decisions themselves are `modelseal.verify.hostcheck`'s.
"""

from __future__ import annotations

import os
import sys

from modelseal.errors import RuntimeCheckError
from modelseal.format.manifest import Manifest
from modelseal.verify.host import Host
from modelseal.verify.hostcheck import (
    REBUILD,
    check_constraints,
    check_wheels,
    environments_from_wheels,
    match_environment,
    read_pex_info,
)
from modelseal.verify.report import RuntimeMatch, VerifyOptions

__all__ = ["runtime_line", "verify_5_runtime"]


def verify_5_runtime(root: str, manifest: Manifest, options: VerifyOptions) -> RuntimeMatch:
    """This interpreter (or `--python`) fits the manifest's and the PEX's constraints and wheels;
    what it matched, for the report (`runtime_line` is the check's one line, naming the host
    once)."""
    host = options.host or (Host.of(options.python) if options.python else Host.current())
    wanted = check_constraints(
        manifest.runtime.interpreter_constraints,
        host,
        "manifest.json: runtime.interpreter_constraints",
    )
    pex = os.path.join(root, *manifest.runtime.pex.split("/"))
    info = read_pex_info(pex, manifest.runtime.pex)
    pex_wanted: str | None = None
    if info is None:
        wheels = "no PEX-INFO: wheel compatibility not decided"
    else:
        where = f"{manifest.runtime.pex}: PEX-INFO"
        pex_wanted = check_constraints(info.interpreter_constraints, host, where)
        wheels = _environment(info.wheels, manifest, host)
    return RuntimeMatch(
        python=options.python or sys.executable,
        implementation=host.implementation,
        version=".".join(map(str, host.version)),
        system=host.system,
        machine=host.machine,
        glibc=".".join(map(str, host.glibc)) if host.glibc else None,
        manifest_constraint=wanted,
        pex_constraint=pex_wanted,
        wheels=wheels,
    )


def _environment(wheels: tuple[str, ...], manifest: Manifest, host: Host) -> str:
    """The environment of the PEX's wheels (`environments_from_wheels`, which the manifest
    records) this host is, then every distribution's wheel; RuntimeCheckError naming the
    environments it lacks and why none fits (architecture, glibc, interpreter)."""
    where = f"{manifest.runtime.pex}: .deps"
    environments = environments_from_wheels(wheels)
    matched, why = match_environment(environments, host)
    glibc = f" glibc {host.glibc[0]}.{host.glibc[1]}" if host.glibc else ""
    if matched is None and environments:
        raise RuntimeCheckError(
            what=f"model.pex has no environment for this host ({why})",
            where=where,
            remedy=REBUILD + "; or add this host's complete platform to the model's"
            " complete_platforms (3rdparty/platforms)",
            expected="one of " + ", ".join(environments),
            found=host.describe() + glibc,
        )
    detail = check_wheels(wheels, host, where)
    return detail if matched in (None, "any") else f"{detail}; environment {matched}"


def runtime_line(match: RuntimeMatch) -> str:
    """`CPython 3.11.9 on linux x86_64 satisfies CPython==3.11.* (manifest) and ... (PEX-INFO);
    5 distributions have a wheel it loads`."""
    host = f"{match.implementation} {match.version} on {match.system} {match.machine}"
    met = [f"{match.manifest_constraint or 'no constraint'} (manifest)"]
    if match.pex_constraint is not None:
        met.append(f"{match.pex_constraint or 'no constraint'} (PEX-INFO)")
    return f"{host} satisfies {' and '.join(met)}; {match.wheels}"
