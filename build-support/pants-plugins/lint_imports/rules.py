"""`./pants lint` runs `lint-imports` on whole packages: the import contracts in `.importlinter`.

A contract is a property of a package's whole import graph, not of one file: the partitioner
keeps the lint's field sets only to decide whether a covered package is in play (one partition,
or none), and the run always gets every source of the covered packages.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from pants.backend.python.target_types import PythonSourceField
from pants.backend.python.util_rules import pex
from pants.backend.python.util_rules.pex import PexRequest, VenvPex, VenvPexProcess
from pants.base.glob_match_error_behavior import GlobMatchErrorBehavior
from pants.base.specs import RawSpecs, RecursiveGlobSpec
from pants.core.goals.lint import LintResult, LintTargetsRequest, Partitions
from pants.core.util_rules.partitions import Partition
from pants.core.util_rules.source_files import SourceFilesRequest
from pants.core.util_rules.stripped_source_files import StrippedSourceFiles
from pants.engine.fs import Digest, MergeDigests, PathGlobs
from pants.engine.process import FallibleProcessResult
from pants.engine.rules import Get, MultiGet, Rule, collect_rules, rule
from pants.engine.target import FieldSet, Targets
from pants.engine.unions import UnionRule
from pants.util.logging import LogLevel

from lint_imports.subsystem import ImportLinter


@dataclass(frozen=True)
class ImportLinterFieldSet(FieldSet):
    required_fields = (PythonSourceField,)

    source: PythonSourceField


class ImportLinterRequest(LintTargetsRequest):
    field_set_type = ImportLinterFieldSet
    # SkipOption is a descriptor mypy cannot see as the `skip: bool` the protocol asks for.
    tool_subsystem = ImportLinter  # type: ignore[assignment]


@dataclass(frozen=True)
class CoveredPackages:
    """The partition's metadata: the package directories whose contracts are checked."""

    packages: tuple[str, ...]

    @property
    def description(self) -> str:
        return ", ".join(self.packages)


def _covered(field_set: ImportLinterFieldSet, packages: Iterable[str]) -> bool:
    path = field_set.address.spec_path
    return any(path == package or path.startswith(f"{package}/") for package in packages)


@rule
async def partition_import_linter(
    request: ImportLinterRequest.PartitionRequest[ImportLinterFieldSet],
    import_linter: ImportLinter,
) -> Partitions[ImportLinterFieldSet, CoveredPackages]:
    if import_linter.skip:
        return Partitions()
    covered = tuple(fs for fs in request.field_sets if _covered(fs, import_linter.packages))
    if not covered:
        return Partitions()
    return Partitions([Partition(covered, CoveredPackages(tuple(import_linter.packages)))])


@rule(desc="Lint with import-linter", level=LogLevel.DEBUG)
async def run_import_linter(
    request: ImportLinterRequest.Batch[ImportLinterFieldSet, CoveredPackages],
    import_linter: ImportLinter,
) -> LintResult:
    targets = await Get(
        Targets,
        RawSpecs,
        RawSpecs.create(
            [RecursiveGlobSpec(package) for package in import_linter.packages],
            description_of_origin="the option `[import-linter].packages`",
        ),
    )
    tool, sources, config = await MultiGet(
        Get(VenvPex, PexRequest, import_linter.to_pex_request()),
        Get(
            StrippedSourceFiles,
            SourceFilesRequest(
                t[PythonSourceField] for t in targets if t.has_field(PythonSourceField)
            ),
        ),
        Get(
            Digest,
            PathGlobs(
                [import_linter.config],
                glob_match_error_behavior=GlobMatchErrorBehavior.error,
                description_of_origin="the option `[import-linter].config`",
            ),
        ),
    )
    input_digest = await Get(Digest, MergeDigests([sources.snapshot.digest, config]))
    result = await Get(
        FallibleProcessResult,
        VenvPexProcess(
            tool,
            # The packages are at the sandbox's root (source roots stripped): lint-imports puts
            # the working directory on sys.path. No cache: the sandbox is thrown away.
            argv=("--config", import_linter.config, "--no-cache", *import_linter.args),
            input_digest=input_digest,
            description=f"Check the import contracts of {', '.join(import_linter.packages)}",
            level=LogLevel.DEBUG,
        ),
    )
    return LintResult.create(request, result)


def rules() -> Iterable[Rule | UnionRule]:
    return [*collect_rules(), *ImportLinterRequest.rules(), *pex.rules()]
