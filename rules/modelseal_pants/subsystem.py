"""`[modelseal]` options: where the plugin finds the modelseal code it runs and embeds."""

from __future__ import annotations

from typing import Any

from pants.option.option_types import DictOption, IntOption, StrListOption, StrOption
from pants.option.subsystem import Subsystem
from pants.util.strutil import softwrap


class ModelsealSubsystem(Subsystem):
    options_scope = "modelseal"
    help = "Options for packaging `model_artifact` targets with modelseal."

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
        default="//src/modelseal:lib",
        advanced=True,
        help=softwrap(
            """
            The python_sources of the modelseal tool (`modelseal.cli.main:main`), which the package
            rule builds into a PEX and runs in the sandbox to write manifests and archives.
            """
        ),
    )
    runtime = StrListOption(
        default=[
            "//src/modelseal/embedded/runtime.py:lib",
            "//src/modelseal/embedded/training.py:lib",
        ],
        advanced=True,
        help=softwrap(
            """
            The stdlib-only modules that model PEXes start in: `modelseal.embedded.runtime` (every
            `model.pex`: reads the manifest beside the PEX, checks the weights' digests, calls
            the handler) and `modelseal.embedded.training` (the PEX a `model_training` target runs).
            Their sources are added to those PEXes whatever the model's resolve.
            """
        ),
    )
