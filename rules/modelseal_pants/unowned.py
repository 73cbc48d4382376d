"""A `model_artifact` refuses imports in its closure that Pants cannot map to the chosen resolve.

Pants' own check (`[python-infer].unowned_dependency_behavior`) is global and warns by default:
a handler importing numpy from a `python_sources` in a resolve without numpy got a warning, and a
`model.pex` that died on its first prediction was signed. A model's PEX holds exactly the
resolve's distributions that its imports map to, so for a model an unowned import is a missing
module, whatever the global setting: this check runs Pants' own inference (the same parser and
owner lookup, memoized with the inference that runs anyway) on every Python source in the model's
closure, and fails before anything is built or signed. Imports listed in
`[python-infer].ignored_unowned_imports`, weak imports (inside `try/except ImportError`) and lines
marked `# pants: no-infer-dep` are allowed, as Pants allows them.

Pants reports an import with two or more owners (say two `python_requirement`s that both provide
numpy) as unowned too, after warning that it is ambiguous; the model then lacks the module just
the same, but the fix differs: the message names the owners and says how to choose one.
"""

from __future__ import annotations

from dataclasses import dataclass

from pants.backend.python.dependency_inference.module_mapper import (
    PythonModuleOwners,
    PythonModuleOwnersRequest,
)
from pants.backend.python.dependency_inference.parse_python_dependencies import (
    ParsedPythonDependencies,
    ParsePythonDependenciesRequest,
)
from pants.backend.python.dependency_inference.rules import (
    ImportOwnerStatus,
    PythonImportDependenciesInferenceFieldSet,
    ResolvedParsedPythonDependencies,
    ResolvedParsedPythonDependenciesRequest,
    UnownedImportPossibleOwnerRequest,
    UnownedImportPossibleOwners,
)
from pants.backend.python.dependency_inference.subsystem import PythonInferSubsystem
from pants.backend.python.subsystems.setup import PythonSetup
from pants.backend.python.util_rules.interpreter_constraints import InterpreterConstraints
from pants.engine.addresses import Addresses
from pants.engine.rules import Get, MultiGet, Rule, collect_rules, rule
from pants.engine.target import TransitiveTargets, TransitiveTargetsRequest
from pants.util.logging import LogLevel


@dataclass(frozen=True)
class UnownedImportsRequest:
    roots: Addresses
    model: str  # the model_artifact's address, for the message


@dataclass(frozen=True)
class UnownedImport:
    source: str  # the python_source target's address
    module: str
    line: int
    resolve: str
    other_resolves: tuple[str, ...]  # resolves where Pants would find it
    ambiguous: tuple[str, ...] = ()  # its owners in `resolve`, when more than one provides it


@dataclass(frozen=True)
class UnownedImports:
    imports: tuple[UnownedImport, ...]

    def message(self, model: str, lockfiles: dict[str, str]) -> str:
        first = self.imports[0]
        top = first.module.split(".")[0]
        more = (
            f" ({len(self.imports) - 1} more: "
            + ", ".join(f"{i.module} in {i.source}" for i in self.imports[1:4])
            + ")"
            if len(self.imports) > 1 else ""
        )
        where = f"Cannot package {model}: its handler imports {top} ({first.source}, line " \
            f"{first.line}), which "
        if first.ambiguous:
            owners = ", ".join(first.ambiguous)
            return (
                where + f"is ambiguous in the resolve `{first.resolve}`: {owners} all provide "
                f"it; keep one of them, or choose one in that python_sources target's "
                f"`dependencies` (e.g. `dependencies=['{first.ambiguous[0]}']`, or "
                f"`'!{first.ambiguous[-1]}'` to exclude the other). Nothing was built or signed."
                + more
            )
        elsewhere = (
            f" (the resolve{'s' if len(first.other_resolves) > 1 else ''} "
            f"{', '.join(f'`{r}`' for r in first.other_resolves)} "
            f"{'have' if len(first.other_resolves) > 1 else 'has'} it)"
            if first.other_resolves else ""
        )
        lock = lockfiles.get(first.resolve)
        return (
            where + f"the resolve `{first.resolve}` lacks{elsewhere}; set "
            f"`resolve=` on that python_sources target to a resolve whose lock has {top}, or "
            f"add {top} to the `{first.resolve}` lock"
            + (f" ({lock})" if lock else "")
            + f". Nothing was built or signed.{more}"
        )


@rule(desc="Checking the imports of a model's closure", level=LogLevel.DEBUG)
async def unowned_model_imports(
    request: UnownedImportsRequest, python: PythonSetup, infer: PythonInferSubsystem
) -> UnownedImports:
    if not infer.imports:
        return UnownedImports(())
    closure = await Get(TransitiveTargets, TransitiveTargetsRequest(request.roots))
    field_sets = [
        PythonImportDependenciesInferenceFieldSet.create(target)
        for target in closure.closure
        if PythonImportDependenciesInferenceFieldSet.is_applicable(target)
    ]
    parsed = await MultiGet(
        Get(
            ParsedPythonDependencies,
            ParsePythonDependenciesRequest(
                fs.source,
                InterpreterConstraints.create_from_compatibility_fields(
                    [fs.interpreter_constraints], python
                ),
            ),
        )
        for fs in field_sets
    )
    resolved = await MultiGet(
        Get(
            ResolvedParsedPythonDependencies,
            ResolvedParsedPythonDependenciesRequest(
                fs, deps, fs.resolve.normalized_value(python)
            ),
        )
        for fs, deps in zip(field_sets, parsed)
    )
    ignored = tuple(infer.ignored_unowned_imports)
    found: list[tuple[str, str, int, str]] = []
    for fs, deps, result in zip(field_sets, parsed, resolved):
        for module, status in sorted(result.resolve_results.items()):
            if status.status != ImportOwnerStatus.unowned:
                continue
            if any(module == i or module.startswith(f"{i}.") for i in ignored):
                continue
            found.append(
                (str(fs.address), module, deps.imports[module].lineno,
                 fs.resolve.normalized_value(python))
            )
    others = await MultiGet(
        Get(UnownedImportPossibleOwners, UnownedImportPossibleOwnerRequest(module, resolve))
        for _, module, _, resolve in found
    )
    owners = await MultiGet(
        Get(PythonModuleOwners, PythonModuleOwnersRequest(module, resolve))
        for _, module, _, resolve in found
    )
    return UnownedImports(
        tuple(
            UnownedImport(source, module, line, resolve,
                          tuple(sorted({name for _, name in other.value})),
                          tuple(sorted(str(a) for a in owner.ambiguous)))
            for (source, module, line, resolve), other, owner in zip(found, others, owners)
        )
    )


def rules() -> list[Rule]:
    return list(collect_rules())
