"""`[modelseal]` options: where the plugin finds the modelseal code it runs and embeds."""

from __future__ import annotations

from pants.option.option_types import StrListOption, StrOption
from pants.option.subsystem import Subsystem
from pants.util.strutil import softwrap


class ModelsealSubsystem(Subsystem):
    options_scope = "modelseal"
    help = "Options for packaging `model_artifact` targets with modelseal."

    tool = StrOption(
        default="//src/modelseal:lib",
        advanced=True,
        help=softwrap(
            """
            The python_sources of the modelseal tool (`modelseal.cli:main`), which the package
            rule builds into a PEX and runs in the sandbox to write manifests and archives.
            """
        ),
    )
    runtime = StrListOption(
        default=["//src/modelseal/runtime.py:lib", "//src/modelseal/training.py:lib"],
        advanced=True,
        help=softwrap(
            """
            The stdlib-only modules that model PEXes start in: `modelseal.runtime` (every
            `model.pex`: reads the manifest beside the PEX, checks the weights' digests, calls
            the handler) and `modelseal.training` (the PEX a `model_training` target runs).
            Their sources are added to those PEXes whatever the model's resolve.
            """
        ),
    )
