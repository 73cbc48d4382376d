"""`[import-linter]` options: where the contracts are and which packages they cover."""

from __future__ import annotations

from pants.backend.python.subsystems.python_tool_base import PythonToolBase
from pants.backend.python.target_types import ConsoleScript
from pants.option.option_types import ArgsListOption, SkipOption, StrListOption, StrOption
from pants.util.strutil import softwrap


class ImportLinter(PythonToolBase):
    options_scope = "import-linter"
    name = "import-linter"
    help = softwrap(
        """
        import-linter's `lint-imports`: checks the import contracts (e.g. layers) of whole
        packages. Runs once for every `lint` that includes a file of those packages.
        """
    )

    default_version = "import-linter>=2.1,<3"
    default_requirements = ["import-linter>=2.1,<3"]  # noqa: RUF012 (Pants declares the type)
    default_main = ConsoleScript("lint-imports")
    register_interpreter_constraints = True
    default_interpreter_constraints = ["CPython>=3.9,<3.14"]  # noqa: RUF012
    # Pants 2.17 insists on a built-in lockfile; this backend ships none: install it from a
    # resolve of the repository (`[import-linter].install_from_resolve`).
    default_lockfile_resource = ("lint_imports", "import-linter.lock")

    skip = SkipOption("lint")
    args = ArgsListOption(example="--verbose")
    config = StrOption(
        default=".importlinter",
        help="The import-linter configuration (INI) with the contracts, relative to the root.",
    )
    packages = StrListOption(
        default=["src/modelseal"],
        help=softwrap(
            """
            The directories of the packages the contracts cover, relative to the build root. The
            linter sees every Python source under them (source roots stripped), whichever of
            their files `lint` was asked about: a contract holds for a whole import graph.
            """
        ),
    )
