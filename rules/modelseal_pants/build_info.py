"""The commit being built and SOURCE_DATE_EPOCH, which every timestamp in a bundle derives from."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from pants.base.build_root import BuildRoot
from pants.core.util_rules.system_binaries import BinaryPathRequest, BinaryPaths
from pants.engine.env_vars import EnvironmentVars, EnvironmentVarsRequest
from pants.engine.process import FallibleProcessResult, Process, ProcessCacheScope
from pants.engine.rules import Get, Rule, collect_rules, rule
from pants.util.logging import LogLevel

from modelseal_pants.errors import SourceDateEpochError

# Used when there is neither a git commit nor SOURCE_DATE_EPOCH: the earliest time a zip can hold.
FALLBACK_EPOCH = 315532800  # 1980-01-01T00:00:00Z


@dataclass(frozen=True)
class BuildInfoRequest:
    pass


@dataclass(frozen=True)
class BuildInfo:
    commit: str  # empty outside a git checkout
    source_date_epoch: int


def _parse_epoch(value: str) -> int:
    if not value.isdigit():
        raise SourceDateEpochError(
            f"SOURCE_DATE_EPOCH must be a whole number of seconds since 1970, but is {value!r}. "
            "Unset it to use the commit time."
        )
    return int(value)


@rule(desc="Reading the commit and SOURCE_DATE_EPOCH", level=LogLevel.DEBUG)
async def build_info(_: BuildInfoRequest, build_root: BuildRoot) -> BuildInfo:
    env = await Get(EnvironmentVars, EnvironmentVarsRequest(["SOURCE_DATE_EPOCH"]))
    git = await Get(
        BinaryPaths,
        BinaryPathRequest(binary_name="git", search_path=("/usr/bin", "/bin", "/usr/local/bin")),
    )
    commit, commit_time = "", None
    if git.first_path:
        # Runs in the build root, not a sandbox; PER_SESSION, since HEAD moves outside Pants' view.
        result = await Get(
            FallibleProcessResult,
            Process(
                argv=(git.first_path.path, "-C", build_root.path, "log", "-1", "--format=%H %ct"),
                description="Reading the commit being built",
                cache_scope=ProcessCacheScope.PER_SESSION,
                level=LogLevel.DEBUG,
            ),
        )
        fields = result.stdout.decode().split()
        if result.exit_code == 0 and len(fields) == 2:
            commit, commit_time = fields[0], int(fields[1])
    explicit = env.get("SOURCE_DATE_EPOCH")
    if explicit:
        epoch = _parse_epoch(explicit)
    elif commit_time is not None:
        epoch = commit_time
    else:
        epoch = FALLBACK_EPOCH
    return BuildInfo(commit=commit, source_date_epoch=epoch)


def rules() -> Iterable[Rule]:
    return collect_rules()
