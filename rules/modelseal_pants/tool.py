"""The modelseal code the rules need: the tool PEX they run, the runtime sources they embed."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from pants.backend.python.target_types import EntryPoint, PythonRequirementsField, PythonSourceField
from pants.backend.python.util_rules.pex import PexRequest, VenvPex, VenvPexProcess
from pants.backend.python.util_rules.pex_from_targets import PexFromTargetsRequest
from pants.core.util_rules.source_files import SourceFilesRequest
from pants.core.util_rules.stripped_source_files import StrippedSourceFiles
from pants.engine.addresses import Addresses, UnparsedAddressInputs
from pants.engine.fs import Digest, RemovePrefix
from pants.engine.process import ProcessResult
from pants.engine.rules import Get, Rule, collect_rules, rule
from pants.engine.target import TransitiveTargets, TransitiveTargetsRequest
from pants.util.logging import LogLevel

from modelseal_pants.errors import RuntimeDependencyError
from modelseal_pants.subsystem import ModelsealSubsystem


@dataclass(frozen=True)
class ModelsealTool:
    """The modelseal CLI as a venv PEX, run with `VenvPexProcess`."""

    pex: VenvPex


@dataclass(frozen=True)
class ModelsealToolRequest:
    pass


@dataclass(frozen=True)
class RuntimeSourcesRequest:
    pass


@dataclass(frozen=True)
class RuntimeSources:
    """`modelseal.embedded.runtime`, `modelseal.embedded.training` and the stdlib-only modules they
    import, with
    source roots stripped."""

    digest: Digest


RUNTIME_DIR = "__modelseal_runtime"


def _addresses(specs: list[str], option: str) -> UnparsedAddressInputs:
    return UnparsedAddressInputs(
        specs, owning_address=None, description_of_origin=f"the option `[modelseal].{option}`"
    )


TOOL_MAIN = EntryPoint("modelseal.cli.main", "main")


@rule(desc="Building the modelseal tool", level=LogLevel.DEBUG)
async def build_modelseal_tool(
    _: ModelsealToolRequest, subsystem: ModelsealSubsystem
) -> ModelsealTool:
    if subsystem.tool:
        # From sources in this repository (modelseal's own tree sets `[modelseal].tool`).
        addresses = await Get(
            Addresses, UnparsedAddressInputs, _addresses([subsystem.tool], "tool")
        )
        request = await Get(
            PexRequest,
            PexFromTargetsRequest(
                addresses,
                output_filename="modelseal-tool.pex",
                internal_only=True,
                main=TOOL_MAIN,
            ),
        )
    else:
        # Installed: the requirement from the default lock in the plugin wheel, a custom lock, or
        # a user resolve, as for Pants' own tools.
        request = subsystem.to_pex_request(
            interpreter_constraints=subsystem.interpreter_constraints, main=TOOL_MAIN
        )
    return ModelsealTool(await Get(VenvPex, PexRequest, request))


@rule(desc="Gathering the modelseal runtime", level=LogLevel.DEBUG)
async def gather_runtime_sources(
    _: RuntimeSourcesRequest, subsystem: ModelsealSubsystem
) -> RuntimeSources:
    if not subsystem.runtime:
        # The installed tool's own copy, so that a model embeds the runtime of the tool that
        # packages it.
        tool = await Get(ModelsealTool, ModelsealToolRequest())
        result = await Get(
            ProcessResult,
            VenvPexProcess(
                tool.pex,
                argv=("runtime-sources", RUNTIME_DIR),
                output_directories=(RUNTIME_DIR,),
                description="Copying the modelseal runtime from the installed tool",
                level=LogLevel.DEBUG,
            ),
        )
        return RuntimeSources(await Get(Digest, RemovePrefix(result.output_digest, RUNTIME_DIR)))
    addresses = await Get(
        Addresses, UnparsedAddressInputs, _addresses(list(subsystem.runtime), "runtime")
    )
    closure = await Get(TransitiveTargets, TransitiveTargetsRequest(addresses))
    requirements = [t.address for t in closure.closure if t.has_field(PythonRequirementsField)]
    if requirements:
        raise RuntimeDependencyError(
            f"`[modelseal].runtime` ({', '.join(subsystem.runtime)}) must use only the standard "
            f"library, because it is added to every model's PEX; it depends on {requirements[0]}."
        )
    stripped = await Get(
        StrippedSourceFiles,
        SourceFilesRequest(
            [t[PythonSourceField] for t in closure.closure if t.has_field(PythonSourceField)]
        ),
    )
    return RuntimeSources(stripped.snapshot.digest)


def rules() -> Iterable[Rule]:
    return collect_rules()
