"""`pants verify ::`: verify the packaged `model_artifact` bundles as a deployment host would,
against the repository's keys and policy, for CI. The bundles are rebuilt (a cache hit after
`package`), since Pants does not read `dist/`."""

from __future__ import annotations

from collections.abc import Iterable

from pants.base.glob_match_error_behavior import GlobMatchErrorBehavior
from pants.core.goals.package import BuiltPackage
from pants.engine.console import Console
from pants.engine.fs import EMPTY_DIGEST, Digest, MergeDigests, PathGlobs
from pants.engine.goal import Goal, GoalSubsystem
from pants.engine.process import FallibleProcessResult
from pants.engine.rules import Get, MultiGet, Rule, collect_rules, goal_rule
from pants.engine.target import Targets
from pants.option.option_types import BoolOption, StrOption
from pants.util.logging import LogLevel
from pants.util.strutil import softwrap

from modelseal_pants.artifact import ModelArtifactFieldSet
from modelseal_pants.invocation import ToolInvocation, VerifyBundle
from modelseal_pants.signing_keys import PublicKeys, PublicKeysRequest


class VerifySubsystem(GoalSubsystem):
    name = "verify"
    help = softwrap(
        """
        Verify the bundles of `model_artifact` targets as `modelseal verify` does on a deployment
        host: archive safety, model.sig, the in-toto layout and links, every digest, runtime
        compatibility and the policy. Trusts the configured keys' public halves.
        """
    )

    policy = StrOption(
        default=None, help="A modelseal.policy/v1 JSON file, relative to the build root."
    )
    allow_development = BoolOption(
        default=True,
        help="Accept bundles signed with the development keyring (no keys configured).",
    )


class Verify(Goal):
    subsystem_cls = VerifySubsystem
    environment_behavior = Goal.EnvironmentBehavior.LOCAL_ONLY


@goal_rule
async def verify_models(targets: Targets, console: Console, subsystem: VerifySubsystem) -> Verify:
    field_sets = [
        ModelArtifactFieldSet.create(t) for t in targets if ModelArtifactFieldSet.is_applicable(t)
    ]
    packages = await MultiGet(Get(BuiltPackage, ModelArtifactFieldSet, fs) for fs in field_sets)
    publics = await Get(PublicKeys, PublicKeysRequest())
    policy = EMPTY_DIGEST
    if subsystem.policy:
        policy = await Get(
            Digest,
            PathGlobs([subsystem.policy], glob_match_error_behavior=GlobMatchErrorBehavior.error,
                      description_of_origin="`[verify].policy`"),
        )
    inputs = await MultiGet(
        Get(Digest, MergeDigests([package.digest, publics.digest, policy])) for package in packages
    )
    results = await MultiGet(
        Get(
            FallibleProcessResult,
            ToolInvocation(
                VerifyBundle(
                    bundle=_bundle_directory(package),
                    trust="keys/owner.pub",
                    release_key="keys/release.pub",
                    policy=subsystem.policy or "",
                    allow_development=publics.development and subsystem.allow_development,
                ),
                digest,
                f"Verifying {fs.address}",
                level=LogLevel.INFO,
            ),
        )
        for fs, package, digest in zip(field_sets, packages, inputs)
    )
    failed = 0
    for fs, result in zip(field_sets, results):
        if result.exit_code == 0:
            console.print_stdout(f"✓ {fs.address}: {_last_line(result.stdout)}")
        else:
            failed += 1
            console.print_stderr(f"✕ {fs.address} (exit code {result.exit_code}):")
            console.print_stderr(result.stderr.decode(errors="replace").rstrip())
    return Verify(exit_code=1 if failed else 0)


def _bundle_directory(package: BuiltPackage) -> str:
    """The bundle directory `package` wrote (always its first artifact; a tar, when the target
    asks for one, comes second): verifying it needs no extraction."""
    relpath = package.artifacts[0].relpath
    assert relpath, "a model_artifact package names its bundle directory"
    return relpath


def _last_line(output: bytes) -> str:
    lines = output.decode(errors="replace").strip().splitlines()
    return lines[-1] if lines else ""


def rules() -> Iterable[Rule]:
    return collect_rules()
