"""The commit being built, whether the work tree differs from it, and SOURCE_DATE_EPOCH, which
every timestamp in a bundle derives from."""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Iterable
from dataclasses import dataclass

from pants.base.build_root import BuildRoot
from pants.core.util_rules.system_binaries import BinaryPathRequest, BinaryPaths
from pants.engine.env_vars import EnvironmentVars, EnvironmentVarsRequest
from pants.engine.process import FallibleProcessResult, Process, ProcessCacheScope
from pants.engine.rules import Get, MultiGet, Rule, collect_rules, rule
from pants.util.logging import LogLevel

from modelseal_pants.errors import DirtyTreeError, SourceDateEpochError
from modelseal_pants.subsystem import ModelsealSubsystem

logger = logging.getLogger(__name__)

# Used when there is neither a git commit nor SOURCE_DATE_EPOCH: the earliest time a zip can hold.
FALLBACK_EPOCH = 315532800  # 1980-01-01T00:00:00Z


@dataclass(frozen=True)
class BuildInfoRequest:
    pass


@dataclass(frozen=True)
class BuildInfo:
    commit: str  # empty outside a git checkout
    source_date_epoch: int
    # The work tree differs from `commit` (uncommitted changes, untracked files that git does not
    # ignore), and the sha256 of `git diff HEAD --binary` followed by the untracked files' names.
    dirty: bool = False
    dirty_sha256: str = ""


def _parse_epoch(value: str) -> int:
    if not value.isdigit():
        raise SourceDateEpochError(
            f"SOURCE_DATE_EPOCH must be a whole number of seconds since 1970, but is {value!r}. "
            "Unset it to use the commit time."
        )
    return int(value)


def _git(git: str, build_root: BuildRoot, *args: str) -> Process:
    # Runs in the build root, not a sandbox; PER_SESSION, since the work tree changes outside
    # Pants' view.
    return Process(
        argv=(git, "-C", build_root.path, *args),
        description=f"Running git {args[0]} in the build root",
        cache_scope=ProcessCacheScope.PER_SESSION,
        level=LogLevel.DEBUG,
    )


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
    dirty, dirty_sha256 = False, ""
    if commit and git.first_path:
        git_path = git.first_path.path
        diff_args = ("diff", "--no-ext-diff", "--no-color", "--binary", "HEAD")
        diff, untracked = await MultiGet(
            Get(FallibleProcessResult, _git(git_path, build_root, *diff_args)),
            Get(
                FallibleProcessResult,
                _git(git_path, build_root, "ls-files", "-z", "--others", "--exclude-standard"),
            ),
        )
        if diff.stdout or untracked.stdout:
            dirty = True
            dirty_sha256 = hashlib.sha256(
                diff.stdout + b"\0untracked\0" + untracked.stdout
            ).hexdigest()
    explicit = env.get("SOURCE_DATE_EPOCH")
    if explicit:
        epoch = _parse_epoch(explicit)
    elif commit_time is not None:
        epoch = commit_time
    else:
        epoch = FALLBACK_EPOCH
    return BuildInfo(
        commit=commit, source_date_epoch=epoch, dirty=dirty, dirty_sha256=dirty_sha256
    )


@dataclass(frozen=True)
class WorktreeCheckRequest:
    dirty: bool
    dirty_sha256: str
    development: bool  # signed with the development keyring, not release keys


@dataclass(frozen=True)
class WorktreeChecked:
    pass


@rule(desc="Checking the work tree against the commit", level=LogLevel.DEBUG)
async def check_worktree(
    request: WorktreeCheckRequest, subsystem: ModelsealSubsystem
) -> WorktreeChecked:
    """A release build must be rebuildable from its commit, so it refuses a dirty work tree
    unless `[modelseal].allow_dirty`; a development build says so once per run (this rule runs
    once per distinct request in a session, whatever the number of models)."""
    if not request.dirty:
        return WorktreeChecked()
    if not request.development and not subsystem.allow_dirty:
        raise DirtyTreeError(
            "The work tree has uncommitted changes or untracked files, and this build signs with "
            "release keys: an auditor rebuilding the commit would not get these bytes. Commit "
            "(or stash) the changes, or set `[modelseal].allow_dirty = true` (the manifest "
            "then records `dirty` and the sha256 of the difference)."
        )
    logger.warning(
        "The work tree differs from the commit (uncommitted changes or untracked files): the "
        f"manifests record `dirty: true` and sha256 {request.dirty_sha256} of the difference."
    )
    return WorktreeChecked()


def rules() -> Iterable[Rule]:
    return collect_rules()
