"""Workspace files as a Pants digest, the large ones read once by the modelseal tool.

Pants 2.17 snapshots a workspace file by streaming it twice through tokio's 8 KiB copy buffer (a
hash pass, then a verified copy into its store): about 10 CPU-seconds per GiB on a 2-core machine,
nine tenths of a cold `pants package` of a 1 GiB model, and still so in Pants' later code
(docs/benchmarks.md, "Issue #17, fourth round"). So a model's weights are not snapshotted by
Pants: the rule lists the matched files (`Paths`: names only, nothing read), and `modelseal
intake` hashes each file of at least Pants' large-file size while copying it into the local
store, where Pants keeps such files (`<store>/immutable/files/<hex[:2]>/<hex>`), and remembers
the digest against the file's stat; the rule names those files by digest (`CreateDigest` of
`FileEntry`s), and Pants snapshots the small ones itself, as before. The resulting digest is the
one Pants' own snapshot gives (tests/plugin/test_workspace_files.py compares them), so cache keys,
remote caching and the bundle's bytes are unchanged.

The intake runs in every session (PER_SESSION): Pants' file watcher invalidates a file's
content, not the list of names this rule depends on, so only the tool's stat check can see that a
weight changed. When nothing changed it reads no weight (its stat cache, a Pants named cache)
and costs one short process; a model with no file of that size runs no intake at all.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Iterable
from dataclasses import dataclass

from pants.base.build_root import BuildRoot
from pants.base.glob_match_error_behavior import GlobMatchErrorBehavior
from pants.engine.fs import (
    EMPTY_DIGEST,
    CreateDigest,
    Digest,
    FileDigest,
    FileEntry,
    MergeDigests,
    PathGlobs,
    Paths,
)
from pants.engine.process import ProcessCacheScope, ProcessResult
from pants.engine.rules import Get, Rule, collect_rules, rule
from pants.option.global_options import GlobalOptions, LocalStoreOptions
from pants.util.frozendict import FrozenDict
from pants.util.logging import LogLevel

from modelseal_pants.errors import ToolVersionError
from modelseal_pants.invocation import Intake, ToolInvocation

# Pants 2.17's LARGE_FILE_SIZE_LIMIT (src/rust/engine/fs/store/src/local.rs): files of this size
# and more are kept as files under the local store's `immutable/files`, smaller ones in LMDB,
# which only Pants writes. The same value in Pants' later releases.
PANTS_LARGE_FILE_BYTES = 512 * 1024
STORE_FILES = os.path.join("immutable", "files")
# The named cache of the intake's stat cache, and where it appears in the sandbox.
STAT_CACHE_NAME = "modelseal_intake"
STAT_CACHE_PATH = ".cache/modelseal_intake"
# What `modelseal intake` prints (modelseal.cli.intake.INTAKE_SCHEMA: the plugin imports nothing of
# the tool, so the two must be changed together).
INTAKE_SCHEMA = "modelseal.intake/v1"
_GLOB_CHARACTERS = re.compile(r"([\[\]*?])")


@dataclass(frozen=True)
class WorkspaceFilesRequest:
    globs: PathGlobs
    description: str  # who asks, for the intake's progress line: "the weights of //a:model"
    # A symbolic link is read through (datasets), or is an error (weights, which the rule checks
    # for links first, with a message naming the field).
    follow_links: bool = False


@dataclass(frozen=True)
class WorkspaceFiles:
    """The matched files at their repository paths, and which of them the intake read."""

    digest: Digest
    large: tuple[str, ...]  # taken in by `modelseal intake`, not by Pants' snapshot


def literal_glob(path: str) -> str:
    """A glob that matches `path` only: Pants' globs read `[`, `]`, `*` and `?` as patterns."""
    return _GLOB_CHARACTERS.sub(r"[\1]", path)


def local_store_files(global_options: GlobalOptions) -> str:
    """Where this Pants keeps its large files: the store directory exactly as Pants resolves it."""
    return os.path.join(LocalStoreOptions.from_options(global_options.options).store_dir,
                        STORE_FILES)


@dataclass(frozen=True)
class IntakeRequest:
    paths: tuple[str, ...]
    description: str
    follow_links: bool


@dataclass(frozen=True)
class IngestedFiles:
    """The large files of an `IntakeRequest`, named by the digests the intake computed."""

    entries: tuple[FileEntry, ...]


@rule(desc="Reading large workspace files", level=LogLevel.DEBUG)
async def ingest_large_files(
    request: IntakeRequest, build_root: BuildRoot, global_options: GlobalOptions
) -> IngestedFiles:
    """A rule of its own, whose only input is the list of names: when a new session re-checks the
    last one's graph, this node is re-run once (its process is per session) and a changed small
    file, which `workspace_files` snapshots, does not cancel and restart the intake."""
    result = await Get(
        ProcessResult,
        ToolInvocation(
            Intake(
                root=build_root.path,
                store=local_store_files(global_options),
                stat_cache=STAT_CACHE_PATH,
                min_size=PANTS_LARGE_FILE_BYTES,
                paths=request.paths,
                follow_links=request.follow_links,
            ),
            EMPTY_DIGEST,
            f"Reading {request.description} ({len(request.paths)} files)",
            append_only_caches=FrozenDict({STAT_CACHE_NAME: STAT_CACHE_PATH}),
            cache_scope=ProcessCacheScope.PER_SESSION,
        ),
    )
    output = json.loads(result.stdout)
    if output.get("schema") != INTAKE_SCHEMA:
        raise ToolVersionError(
            f"`modelseal intake` answered {output.get('schema')!r}, not {INTAKE_SCHEMA!r}: the "
            "modelseal tool is of another release than the modelseal-pants plugin. Install the "
            "modelseal of the plugin's own version (docs/adopting.md, \"The tool and its lock\")."
        )
    return IngestedFiles(tuple(
        FileEntry(f["path"], FileDigest(f["sha256"], f["size"]), f["executable"])
        for f in output["files"]
    ))


def _possibly_large(root: str, paths: Iterable[str], follow_links: bool) -> tuple[str, ...]:
    """The files the intake is asked about: those of Pants' large-file size or more now. Only a
    routing decision, so a stat from rule code is enough: a file left to Pants' snapshot is named
    correctly whatever its size, and Pants' watcher re-runs this rule when it changes."""
    status = os.stat if follow_links else os.lstat
    large = []
    for path in paths:
        try:
            if status(os.path.join(root, path)).st_size >= PANTS_LARGE_FILE_BYTES:
                large.append(path)
        except OSError:
            pass  # gone meanwhile: Pants' snapshot says so, naming the glob
    return tuple(large)


@rule(desc="Reading workspace files", level=LogLevel.DEBUG)
async def workspace_files(request: WorkspaceFilesRequest, build_root: BuildRoot) -> WorkspaceFiles:
    paths = await Get(Paths, PathGlobs, request.globs)
    candidates = _possibly_large(build_root.path, paths.files, request.follow_links)
    # No large file, no process: a model of small files costs nothing per session.
    ingested = await Get(
        IngestedFiles, IntakeRequest(candidates, request.description, request.follow_links)
    ) if candidates else IngestedFiles(())
    large = {entry.path for entry in ingested.entries}
    small = [path for path in paths.files if path not in large]
    parts = []
    if ingested.entries:
        parts.append(await Get(Digest, CreateDigest(ingested.entries)))
    if small:
        parts.append(await Get(Digest, PathGlobs(
            (literal_glob(p) for p in small),
            glob_match_error_behavior=GlobMatchErrorBehavior.error,
            description_of_origin=request.description,
        )))
    digest = await Get(Digest, MergeDigests(parts)) if parts else EMPTY_DIGEST
    return WorkspaceFiles(digest, tuple(sorted(large)))


def rules() -> Iterable[Rule]:
    return collect_rules()
