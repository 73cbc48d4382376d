"""`[modelseal]` options: where the plugin finds the modelseal code it runs and embeds; the keys.

The tool is a Python tool like Pants' own (`PythonToolRequirementsBase`): by default it is
`modelseal==<this plugin's version>`, installed from the hash-pinned lock shipped inside the plugin
wheel (`resource://modelseal_pants/modelseal.lock`, written by `build-support/tool-lock`); a
repository may instead install it from one of its own resolves (`install_from_resolve`), or, as
modelseal's own repository does, build it from sources in the tree (`tool`).
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from importlib import metadata
from pathlib import Path
from typing import Any, ClassVar

from pants.backend.python.subsystems.python_tool_base import PythonToolRequirementsBase
from pants.option.option_types import BoolOption, DictOption, IntOption, StrListOption, StrOption
from pants.util.strutil import softwrap

PLUGIN_DISTRIBUTION = "modelseal-pants"


def plugin_version() -> str:
    """The version of this plugin, which is also the version of the modelseal tool it asks for.

    Installed as a wheel, the distribution's metadata says it (the wheel's version comes from
    `src/modelseal/_version.py`). Loaded from modelseal's own tree (`[GLOBAL].pythonpath`), that
    same file is read beside it; anywhere else the version is unknown and the default requirement
    is unpinned.
    """
    try:
        return metadata.version(PLUGIN_DISTRIBUTION)
    except metadata.PackageNotFoundError:
        pass
    in_tree = Path(__file__).resolve().parents[2] / "src" / "modelseal" / "_version.py"
    if in_tree.is_file():
        found = re.search(r'^__version__ = "([^"]+)"$', in_tree.read_text(), re.MULTILINE)
        if found:
            return found.group(1)
    return ""


VERSION = plugin_version()


class ModelsealSubsystem(PythonToolRequirementsBase):
    options_scope = "modelseal"
    help = softwrap(
        """
        Options for packaging `model_artifact` targets with modelseal: the modelseal tool the
        rules run (like Pants' own tools, a requirement installed from a lock) and the keys.

        By default the tool is `modelseal` of the plugin's own version, installed from the
        hash-pinned lock inside the plugin wheel; pip fetches it from `[python-repos]` (the
        package index, or `find_links` naming a directory that holds the modelseal wheels).
        To pin it yourself, set `install_from_resolve` to a resolve of yours that holds
        `modelseal==<version>` (and `requirements = ["modelseal"]`): see docs/adopting.md.
        """
    )

    default_version = f"modelseal=={VERSION}" if VERSION else "modelseal"
    default_requirements = (default_version,)
    register_interpreter_constraints = True
    default_interpreter_constraints: ClassVar[Sequence[str]] = ["CPython>=3.9,<3.14"]
    default_lockfile_resource = ("modelseal_pants", "modelseal.lock")

    owner_key = StrOption(
        default=None,
        help=softwrap(
            """
            The owner's key, which signs the in-toto layout: a reference, never key bytes:
            `file:/path/key.pem[?passphrase-file=/path]`, `pkcs11:token=...;object=...?module-path=
            /path/lib.so&pin-source=file:/path`, or `env:NAME` (NAME holds such a reference).
            With no key configured at all, a per-user development keyring is created on first
            use and bundles say `"trust": "development"`.
            """
        ),
    )
    train_key = StrOption(
        default=None, help="The key that signs `train` links of in-build training (a reference)."
    )
    package_key = StrOption(
        default=None, help="The builder's key, which signs `package` links (a reference)."
    )
    evaluate_key = StrOption(
        default=None,
        help="The key that signs `evaluate` links (the build's smoke test and evaluation of "
        "model.pex): a reference. Unset in a release configuration: the package key signs them.",
    )
    release_key = StrOption(
        default=None,
        help=softwrap(
            """
            The release key, which signs `model.sig` and the `sign` link: ECDSA P-256/P-384, a
            reference. Verifiers pass its public half as `modelseal verify --release-key`.
            """
        ),
    )
    sign_key = StrOption(
        default=None,
        removal_version="3.0.0.dev0",
        removal_hint="Use `[modelseal].release_key`: the same key, under the one name the CLI "
        "and docs use (`--release-key`, `release.pub`).",
        help="Deprecated: `[modelseal].release_key`.",
    )
    oci_registry = StrOption(
        default=None,
        help="The OCI registry (HOST[:PORT]) `pants publish` pushes `model_artifact` bundles to "
        "when their `oci_repository` names no host (docs/distribution.md).",
    )
    oci_registry_config = StrOption(
        default=None,
        help="A docker config.json with the registry's credentials, relative to the build root "
        "(never credentials themselves); default: ~/.docker/config.json of the user running Pants.",
    )
    oci_plain_http = BoolOption(
        default=False,
        help="Push over HTTP instead of HTTPS: for a registry on localhost only.",
    )
    signing_env_vars = StrListOption(
        default=["SOFTHSM2_CONF"],
        advanced=True,
        help=softwrap(
            """
            Environment variables the signing processes receive, for PKCS#11 modules that find
            their configuration through the environment (e.g. SoftHSM2's `SOFTHSM2_CONF`). Their
            values are stored with each process's definition: name configuration, never secrets.
            """
        ),
    )
    trusted_keys = DictOption[Any](
        default={},
        help=softwrap(
            """
            More public keys the generated layout trusts, per step, as PEM files relative to the
            build root, e.g. `{"train": ["keys/cluster-trainer.pub"], "sign":
            ["keys/release-2027.pub"]}`: the keys of training clusters whose links are imported
            (`training="train.<keyid8>.link"`), and during a rotation the next key of a role.
            """
        ),
    )
    thresholds = DictOption[int](
        default={},
        help="How many distinct functionaries must sign each step, e.g. `{\"package\": 2}`.",
    )
    revocations = StrOption(
        default=None,
        help=softwrap(
            """
            A revocation list (canonical JSON `{"revoked": [key ids], "schema":
            "modelseal.revocations/v1"}`, relative to the build root). The build refuses to sign
            with, or to trust, a revoked key; `modelseal verify` refuses bundles that rely on one.
            """
        ),
    )
    archive = BoolOption(
        default=False,
        help=softwrap(
            """
            Also write `<model_name>-<version>.tar`, the deterministic archive of the bundle, next
            to the bundle directory, for every `model_artifact` whose `archive` field is unset.
            Off by default: for a model of gigabytes the tar doubles what `package` reads, hashes
            and writes (docs/benchmarks.md); `modelseal archive --bundle DIR --out FILE.tar`
            writes the same bytes from the directory when a tar is wanted.
            """
        ),
    )
    allow_dirty = BoolOption(
        default=False,
        help=softwrap(
            """
            Let a build that signs with release keys run from a work tree that differs from its
            commit (uncommitted changes, untracked files). Either way the manifest records
            `dirty` and the sha256 of the difference; without this option such a release build
            fails, and a development build warns once.
            """
        ),
    )
    advisories = StrOption(
        default=None,
        help=softwrap(
            """
            A directory of OSV advisories (JSON records in OSV's schema, e.g. OSV's PyPI export
            unpacked; relative to the build root). When set, packaging refuses a model whose
            `model.pex` ships a distribution affected by an advisory rated `fail_on_severity` or
            higher, naming the package, version, advisory and fixed version (docs/sbom.md).
            Nothing is fetched.
            """
        ),
    )
    fail_on_severity = StrOption(
        default="high",
        help="With `advisories`: the lowest severity that fails the build (low, medium, high, "
        "critical; an advisory without a severity counts as above critical).",
    )
    layout_validity_days = IntOption(
        default=365,
        help=softwrap(
            """
            How long a generated layout is valid, counted from SOURCE_DATE_EPOCH (the commit
            time), so that the layout's bytes do not depend on when the build ran.
            """
        ),
    )

    def key(self, role: str) -> str | None:
        """The reference configured for a signing role; `release` falls back to the deprecated
        `sign_key`."""
        if role == "release":
            return self.release_key or self.sign_key
        value: str | None = getattr(self, f"{role}_key")
        return value

    @staticmethod
    def option_name(role: str) -> str:
        return f"{role}_key"

    tool = StrOption(
        default=None,
        advanced=True,
        help=softwrap(
            """
            Build the tool from sources in this repository instead of installing it: the address
            of its python_sources (`modelseal.cli.main:main`), e.g. `//src/modelseal:lib` in
            modelseal's own repository. Unset (the default), the tool is installed from its
            requirement and lock (see `version`, `lockfile`, `install_from_resolve`).
            """
        ),
    )
    runtime = StrListOption(
        default=[],
        advanced=True,
        help=softwrap(
            """
            The stdlib-only modules that model PEXes start in: `modelseal.embedded.runtime` (every
            `model.pex`: reads the manifest beside the PEX, checks the weights' digests, calls
            the handler) and `modelseal.embedded.training` (the PEX a `model_training` target
            runs), as addresses of python_sources in this repository. Empty (the default), they
            are taken from the installed tool (`modelseal runtime-sources`), so a model embeds the
            runtime of the tool that packaged it. Either way they are added to those PEXes
            whatever the model's resolve.
            """
        ),
    )
