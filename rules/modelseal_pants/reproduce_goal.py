"""`pants reproduce ::`: build every `model_artifact` twice, apart and with caching off, and
compare the bundles, for CI.

Pants cannot run one rule's processes twice within a run, cache off, nor build in two workspaces
at once; so the goal hands the work to `modelseal reproduce`, which copies the working tree twice
and runs each copy's own `./pants package` with no cache (modelseal.audit.rebuild). The goal is the
front door: it picks the targets, builds the tool, and runs it in the foreground so its progress
shows.
"""

from __future__ import annotations

from collections.abc import Iterable

from pants.base.build_root import BuildRoot
from pants.engine.console import Console
from pants.engine.env_vars import CompleteEnvironmentVars
from pants.engine.fs import EMPTY_DIGEST
from pants.engine.goal import Goal, GoalSubsystem
from pants.engine.process import InteractiveProcess, InteractiveProcessResult, Process
from pants.engine.rules import Effect, Get, Rule, collect_rules, goal_rule
from pants.engine.target import Targets
from pants.option.option_types import StrOption
from pants.util.logging import LogLevel
from pants.util.strutil import softwrap

from modelseal_pants.artifact import ModelArtifactFieldSet
from modelseal_pants.invocation import ReproduceModels, ToolInvocation


class ReproduceSubsystem(GoalSubsystem):
    name = "reproduce"
    help = softwrap(
        """
        Build each `model_artifact` twice, each time in its own copy of the working tree (at
        different paths, with different HOME, time zone, locale, user and umask) with no process
        cache, and compare every file of the two bundles, signatures excepted. Fails, naming the
        files that differ and writing diffoscope's reports, when a build is not reproducible.
        See docs/reproducibility.md.
        """
    )

    report = StrOption(
        default="dist/reproduce",
        help="Where to write the comparisons, build logs and diffoscope reports, relative to the "
        "build root.",
    )


class Reproduce(Goal):
    subsystem_cls = ReproduceSubsystem
    environment_behavior = Goal.EnvironmentBehavior.LOCAL_ONLY


@goal_rule
async def reproduce_models(
    targets: Targets,
    console: Console,
    subsystem: ReproduceSubsystem,
    build_root: BuildRoot,
    complete_env: CompleteEnvironmentVars,
) -> Reproduce:
    addresses = sorted(
        t.address.spec for t in targets if ModelArtifactFieldSet.is_applicable(t)
    )
    if not addresses:
        console.print_stderr("No model_artifact targets to reproduce.")
        return Reproduce(exit_code=0)
    process = await Get(
        Process,
        ToolInvocation(
            ReproduceModels(
                workspace=build_root.path,
                report=str(build_root.pathlib_path / subsystem.report),
                addresses=tuple(addresses),
            ),
            EMPTY_DIGEST,
            f"Reproducing {len(addresses)} model(s)",
            level=LogLevel.INFO,
        ),
    )
    # The builds run ./pants, which needs the user's PATH, HOME and caches: the whole environment,
    # as `pants run` gives it. modelseal reproduce drops PANTS_* and PEX_* variables itself.
    interactive = InteractiveProcess(
        argv=process.argv,
        env={**complete_env, **process.env},
        input_digest=process.input_digest,
        append_only_caches=process.append_only_caches,
        immutable_input_digests=process.immutable_input_digests,
    )
    result = await Effect(InteractiveProcessResult, InteractiveProcess, interactive)
    return Reproduce(exit_code=result.exit_code)


def rules() -> Iterable[Rule]:
    return collect_rules()
