"""The import contracts in .importlinter, run by import-linter on scratch copies of src/modelseal:
they hold on the tree as it is, and break on an upward import or a third-party import in a
standard-library-only layer. (`./pants lint ::` runs the same `lint-imports` through
build-support/pants-plugins/lint_imports.)"""

from __future__ import annotations

import configparser
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

# Each distribution the tool's lock pins, and the top-level modules it installs.
IMPORT_NAMES = {
    "arrow": ("arrow",),
    "asn1crypto": ("asn1crypto",),
    "attrs": ("attr", "attrs"),
    "boolean-py": ("boolean",),
    "certifi": ("certifi",),
    "cffi": ("cffi", "_cffi_backend"),
    "charset-normalizer": ("charset_normalizer",),
    "cryptography": ("cryptography",),
    "cvss": ("cvss",),
    "cyclonedx-python-lib": ("cyclonedx",),
    "defusedxml": ("defusedxml",),
    "exceptiongroup": ("exceptiongroup",),
    "fqdn": ("fqdn",),
    "hypothesis": ("hypothesis",),
    "idna": ("idna",),
    "in-toto": ("in_toto",),
    "iniconfig": ("iniconfig",),
    "iso8601": ("iso8601",),
    "isoduration": ("isoduration",),
    "jsonpointer": ("jsonpointer",),
    "jsonschema": ("jsonschema",),
    "jsonschema-specifications": ("jsonschema_specifications",),
    "lark": ("lark",),
    "license-expression": ("license_expression",),
    "oras": ("oras",),
    "packageurl-python": ("packageurl",),
    "packaging": ("packaging",),
    "pathspec": ("pathspec",),
    "pluggy": ("pluggy",),
    "py": ("py",),
    "py-serializable": ("py_serializable",),
    "pycparser": ("pycparser",),
    "pytest": ("pytest", "_pytest"),
    "python-dateutil": ("dateutil",),
    "python-pkcs11": ("pkcs11",),
    "referencing": ("referencing",),
    "requests": ("requests",),
    "rfc3339-validator": ("rfc3339_validator",),
    "rfc3986-validator": ("rfc3986_validator",),
    "rfc3987-syntax": ("rfc3987_syntax",),
    "rpds-py": ("rpds",),
    "securesystemslib": ("securesystemslib",),
    "six": ("six",),
    "sortedcontainers": ("sortedcontainers",),
    "tomli": ("tomli",),
    "typing-extensions": ("typing_extensions",),
    "tzdata": ("tzdata",),
    "uri-template": ("uri_template",),
    "urllib3": ("urllib3",),
    "webcolors": ("webcolors",),
}


def lint_imports(root: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-c", "import sys; from importlinter.cli import lint_imports_command; "
         "sys.exit(lint_imports_command())", "--config", ".importlinter", "--no-cache"],
        cwd=root, capture_output=True, text=True, env={"NO_COLOR": "1", "TERM": "dumb"},
    )


@pytest.fixture()
def scratch(tmp_path: Path) -> Path:
    shutil.copytree("src/modelseal", tmp_path / "modelseal")
    shutil.copy(".importlinter", tmp_path / ".importlinter")
    return tmp_path


def _plain(result: subprocess.CompletedProcess[str]) -> str:
    return re.sub(r"\x1b\[[0-9;]*m", "", result.stdout + result.stderr)


def test_the_contracts_hold_on_the_tree(scratch: Path) -> None:
    result = lint_imports(scratch)
    assert result.returncode == 0, _plain(result)
    assert "Contracts: 2 kept, 0 broken." in _plain(result)


def test_an_upward_import_breaks_the_layers(scratch: Path) -> None:
    tree = scratch / "modelseal/format/tree.py"
    # embedded is one layer up and stdlib-only itself, so only the layer contract breaks.
    tree.write_text(tree.read_text() + "\nfrom modelseal.embedded import runtime  # noqa\n")
    result = lint_imports(scratch)
    assert result.returncode == 1, _plain(result)
    assert "modelseal.format is not allowed to import modelseal.embedded" in _plain(result)
    assert "modelseal.format.tree -> modelseal.embedded.runtime" in _plain(result)
    assert "Contracts: 1 kept, 1 broken." in _plain(result)


def test_a_third_party_import_breaks_the_stdlib_only_layers(scratch: Path) -> None:
    runtime = scratch / "modelseal/embedded/runtime.py"
    runtime.write_text(runtime.read_text() + "\nimport cryptography  # noqa\n")
    result = lint_imports(scratch)
    assert result.returncode == 1, _plain(result)
    assert "modelseal.embedded is not allowed to import cryptography" in _plain(result)
    assert "Contracts: 1 kept, 1 broken." in _plain(result)


def test_every_locked_distribution_is_forbidden_in_the_stdlib_only_layers() -> None:
    """The forbidden contract names modules, not "anything outside the standard library": a
    distribution added to the tool's lock must be added to it (and to IMPORT_NAMES) too."""
    config = configparser.ConfigParser()
    config.read(".importlinter")
    forbidden = set(config["importlinter:contract:stdlib-only"]["forbidden_modules"].split())
    locked = re.findall(r"^([A-Za-z0-9][A-Za-z0-9._-]*)==", Path("3rdparty/python/lock.txt")
                        .read_text(), flags=re.MULTILINE)
    assert locked
    for name in locked:
        normalized = re.sub(r"[-_.]+", "-", name).lower()
        assert normalized in IMPORT_NAMES, f"add {normalized}'s modules to IMPORT_NAMES"
        missing = set(IMPORT_NAMES[normalized]) - forbidden
        assert not missing, f"add {sorted(missing)} to forbidden_modules in .importlinter"
