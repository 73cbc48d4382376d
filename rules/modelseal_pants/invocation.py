"""Every command line the rules run, built in one place from a typed request.

Each modelseal subcommand the rules call is a frozen dataclass whose fields are its options; its
`argv()` is the only code that spells the command line. A rule asks for a process with
`Get(ProcessResult, ToolInvocation(command, ...))` (or `FallibleProcessResult`, or `Process`) and
`modelseal_tool_process` turns it into the tool's `VenvPexProcess`. A new step adds a command
class here, not a string tuple in a rule.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Iterable
from dataclasses import dataclass, field

from pants.backend.python.util_rules.pex import VenvPexProcess
from pants.engine.fs import Digest
from pants.engine.process import Process, ProcessCacheScope
from pants.engine.rules import Get, Rule, collect_rules, rule
from pants.util.frozendict import FrozenDict
from pants.util.logging import LogLevel

from modelseal_pants.tool import ModelsealTool, ModelsealToolRequest


class ToolCommand(ABC):
    """One modelseal subcommand with its options (subclasses are frozen dataclasses)."""

    @abstractmethod
    def argv(self) -> tuple[str, ...]:
        """The command line after the tool's own path."""


@dataclass(frozen=True)
class WriteManifest(ToolCommand):
    spec: str
    out: str
    pex: str | None = None  # its wheels give the manifest's runtime.environments
    evaluation: str = ""  # evaluation.json, whose summary the manifest gains

    def argv(self) -> tuple[str, ...]:
        return (
            "manifest", "--spec", self.spec, "--out", self.out,
            *(("--pex", self.pex) if self.pex is not None else ()),
            *(("--evaluation", self.evaluation) if self.evaluation else ()),
        )


@dataclass(frozen=True)
class WriteArchive(ToolCommand):
    bundle: str
    out: str
    mtime: int

    def argv(self) -> tuple[str, ...]:
        return ("archive", "--bundle", self.bundle, "--out", self.out, "--mtime", str(self.mtime))


@dataclass(frozen=True)
class ExportPublicKeys(ToolCommand):
    keys: tuple[tuple[str, str], ...]  # (role, reference)
    out: str
    dev_keyring: str = ""

    def argv(self) -> tuple[str, ...]:
        return (
            "keys", "export-public",
            *((f"--dev-keyring={self.dev_keyring}",) if self.dev_keyring else ()),
            *(f"--key={role}={reference}" for role, reference in self.keys),
            self.out,
        )


@dataclass(frozen=True)
class CheckKeys(ToolCommand):
    revocations: str
    public_keys: tuple[str, ...]

    def argv(self) -> tuple[str, ...]:
        return ("check-keys", f"--revocations={self.revocations}", *self.public_keys)


@dataclass(frozen=True)
class CreateLayout(ToolCommand):
    owner_key: str
    steps: tuple[tuple[str, tuple[str, ...]], ...]  # (step, public key paths)
    thresholds: tuple[tuple[str, int], ...]
    expires: str
    out: str

    def argv(self) -> tuple[str, ...]:
        return (
            "layout", "create", f"--owner-key={self.owner_key}",
            *(f"--step={step}=" + ",".join(keys) for step, keys in self.steps),
            *(f"--threshold={step}={n}" for step, n in self.thresholds),
            f"--expires={self.expires}",
            f"--out={self.out}",
        )


@dataclass(frozen=True)
class RecordLink(ToolCommand):
    step: str
    key: str
    out: str
    known_digests: str
    materials: tuple[str, ...]
    products: tuple[str, ...]
    environment: str = ""
    byproducts: str = ""  # a JSON file: the evaluate step's measurements

    def argv(self) -> tuple[str, ...]:
        return (
            "link", f"--step={self.step}", f"--key={self.key}", f"--out={self.out}",
            *((f"--environment={self.environment}",) if self.environment else ()),
            *((f"--byproducts={self.byproducts}",) if self.byproducts else ()),
            f"--known-digests={self.known_digests}",
            "--materials", *self.materials,
            "--products", *self.products,
        )


@dataclass(frozen=True)
class Seal(ToolCommand):
    """`attest`, `link --step=package` and `sign` in one process (issue #17: one Python start,
    PEX bootstrap and import of cryptography and in-toto instead of three).

    The outputs go to `out_dir`, beside the bundle's directory and not in it: Pants copies,
    instead of hard-linking, every input file below a directory an output is written into, and
    the bundle's weights are gigabytes."""

    bundle: str
    key: str  # the package functionary's: the package link and the SLSA provenance
    release_key: str  # model.sig and the sign link
    lock: str
    target: str
    known_digests: str
    materials: tuple[str, ...]  # outside the bundle, at their repository paths
    bundle_materials: tuple[str, ...]  # paths in the bundle
    products: tuple[str, ...]  # paths in the bundle
    out_dir: str
    advisories: str = ""
    fail_on: str = ""

    def argv(self) -> tuple[str, ...]:
        return (
            "seal", f"--bundle={self.bundle}", f"--key={self.key}",
            f"--release-key={self.release_key}", f"--lock={self.lock}",
            f"--target={self.target}", f"--known-digests={self.known_digests}",
            f"--out-dir={self.out_dir}",
            *((f"--advisories={self.advisories}", f"--fail-on={self.fail_on}")
              if self.advisories else ()),
            "--materials", *self.materials,
            "--bundle-materials", *self.bundle_materials,
            "--products", *self.products,
        )


@dataclass(frozen=True)
class CheckProvenance(ToolCommand):
    bundle: str
    owner_public_key: str
    known_digests: str

    def argv(self) -> tuple[str, ...]:
        return (
            "check-provenance", f"--bundle={self.bundle}",
            f"--owner-public-key={self.owner_public_key}",
            f"--known-digests={self.known_digests}",
        )


@dataclass(frozen=True)
class VerifyBundle(ToolCommand):
    bundle: str  # a bundle directory or its tar
    trust: str
    release_key: str
    policy: str = ""
    allow_development: bool = False

    def argv(self) -> tuple[str, ...]:
        return (
            "verify", self.bundle, f"--trust={self.trust}", f"--release-key={self.release_key}",
            *((f"--policy={self.policy}",) if self.policy else ()),
            *(("--allow-development",) if self.allow_development else ()),
        )


@dataclass(frozen=True)
class PushBundle(ToolCommand):
    """`modelseal push`: the registry's credentials stay in the docker config.json it names."""

    bundle: str
    reference: str
    registry_config: str = ""
    plain_http: bool = False

    def argv(self) -> tuple[str, ...]:
        return (
            "push", self.bundle, self.reference,
            *((f"--registry-config={self.registry_config}",) if self.registry_config else ()),
            *(("--plain-http",) if self.plain_http else ()),
        )


@dataclass(frozen=True)
class Intake(ToolCommand):
    """Large workspace files into Pants' store, each read once (workspace_files.py says why)."""

    root: str
    store: str
    stat_cache: str
    min_size: int
    paths: tuple[str, ...]
    follow_links: bool = False

    def argv(self) -> tuple[str, ...]:
        return (
            "intake", f"--root={self.root}", f"--store={self.store}",
            f"--stat-cache={self.stat_cache}", f"--min-size={self.min_size}",
            *(("--follow-links",) if self.follow_links else ()), *self.paths,
        )


@dataclass(frozen=True)
class GuardPex(ToolCommand):
    pex: str
    versions: tuple[str, ...]  # MAJOR.MINOR
    constraints: tuple[str, ...]

    def argv(self) -> tuple[str, ...]:
        return (
            "guard-pex", self.pex,
            *(f"--python={v}" for v in self.versions),
            *(f"--constraint={c}" for c in self.constraints),
        )


@dataclass(frozen=True)
class ReproduceModels(ToolCommand):
    workspace: str
    report: str
    addresses: tuple[str, ...]

    def argv(self) -> tuple[str, ...]:
        return ("reproduce", f"--workspace={self.workspace}", f"--report={self.report}",
                *self.addresses)


@dataclass(frozen=True)
class Train:
    """`modelseal.embedded.training`'s command line: the entry point of a model's own training
    PEX (not the tool), so it is no `ToolCommand`; `training.py` runs it in that PEX."""

    entry_point: str
    data: str
    out: str
    seed: int
    hyperparameters: str
    metrics: str
    environment: str

    def argv(self) -> tuple[str, ...]:
        return (
            f"--entry-point={self.entry_point}",
            f"--data={self.data}",
            f"--out={self.out}",
            f"--seed={self.seed}",
            f"--hyperparameters={self.hyperparameters}",
            f"--metrics={self.metrics}",
            f"--environment={self.environment}",
        )


@dataclass(frozen=True)
class ToolInvocation:
    """A run of the modelseal tool in a sandbox: the command, its inputs and outputs."""

    command: ToolCommand
    input_digest: Digest
    description: str
    output_files: tuple[str, ...] = ()
    output_directories: tuple[str, ...] = ()
    extra_env: FrozenDict[str, str] = field(default_factory=FrozenDict)
    # Pants' named caches: {name: path in the sandbox}, kept between runs.
    append_only_caches: FrozenDict[str, str] = field(default_factory=FrozenDict)
    cache_scope: ProcessCacheScope = ProcessCacheScope.SUCCESSFUL
    level: LogLevel = LogLevel.DEBUG


@rule(desc="Preparing a modelseal tool process", level=LogLevel.DEBUG)
async def modelseal_tool_process(invocation: ToolInvocation) -> Process:
    tool = await Get(ModelsealTool, ModelsealToolRequest())
    return await Get(
        Process,
        VenvPexProcess(
            tool.pex,
            argv=invocation.command.argv(),
            input_digest=invocation.input_digest,
            extra_env=invocation.extra_env,
            append_only_caches=invocation.append_only_caches,
            output_files=invocation.output_files,
            output_directories=invocation.output_directories,
            description=invocation.description,
            cache_scope=invocation.cache_scope,
            level=invocation.level,
        ),
    )


def rules() -> Iterable[Rule]:
    return collect_rules()
