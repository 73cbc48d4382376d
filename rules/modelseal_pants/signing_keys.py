"""The signing keys as the rules know them: references per role (never bytes), the public halves
the tool exports, and the one way a process that holds key references is made.

Keys travel only as references (`file:`, `pkcs11:`, `env:`); the modelseal tool opens them
outside the sandbox, where Pants cannot see them change. So the processes that read keys to learn
what they are (the development keyring, the export of the public keys) run in every session
(PER_SESSION), and every process that signs has those public keys among its inputs: a rotated
key (same reference, new key) changes the inputs and signs again. Signing processes are kept in
pantsd's memory only (PER_RESTART_SUCCESSFUL), never in the local or remote cache.
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from dataclasses import dataclass

from pants.engine.env_vars import EnvironmentVars, EnvironmentVarsRequest
from pants.engine.fs import (
    EMPTY_DIGEST,
    Digest,
)
from pants.engine.process import ProcessCacheScope, ProcessResult
from pants.engine.rules import Get, Rule, collect_rules, rule
from pants.util.frozendict import FrozenDict
from pants.util.logging import LogLevel

from modelseal_pants.errors import SigningKeysError
from modelseal_pants.invocation import (
    ExportPublicKeys,
    ToolCommand,
    ToolInvocation,
)
from modelseal_pants.subsystem import ModelsealSubsystem

ROLES = ("owner", "train", "package", "release")
# The role whose public key each in-toto step trusts: the release key signs the `sign` step.
STEP_ROLES = {"train": "train", "package": "package", "sign": "release"}


@dataclass(frozen=True)
class SigningKeysRequest:
    pass


@dataclass(frozen=True)
class SigningKeys:
    """A key reference per role, and the environment the references need (for `env:NAME`)."""

    references: FrozenDict[str, str]
    env: FrozenDict[str, str]
    development: bool
    keyring: str = ""  # the development keyring's directory, created on first use by the export

    def __getitem__(self, role: str) -> str:
        return self.references[role]


def _env_names(references: Iterable[str]) -> list[str]:
    return sorted({ref[len("env:"):] for ref in references if ref.startswith("env:")})


@rule(desc="Finding the signing keys", level=LogLevel.DEBUG)
async def signing_keys(_: SigningKeysRequest, subsystem: ModelsealSubsystem) -> SigningKeys:
    configured = {role: subsystem.key(role) or "" for role in ROLES}
    missing = [role for role, ref in configured.items() if not ref]
    if missing and len(missing) < len(ROLES):
        raise SigningKeysError(
            "Configure every signing key or none (none means the development keyring): "
            + ", ".join(f"`[modelseal].{role}_key`" for role in missing)
            + " is not set."
        )
    if not missing:
        names = _env_names(configured.values())
        env = await Get(
            EnvironmentVars, EnvironmentVarsRequest([*names, *subsystem.signing_env_vars])
        )
        unset = [name for name in names if not env.get(name)]
        if unset:
            raise SigningKeysError(
                f"The signing key reference `env:{unset[0]}` names an environment variable that "
                f"is not set. Set {unset[0]} to a key reference such as `file:/path/key.pem`."
            )
        present = {name: value for name, value in env.items() if value}
        return SigningKeys(FrozenDict(configured), FrozenDict(present), development=False)

    env = await Get(EnvironmentVars, EnvironmentVarsRequest(["XDG_DATA_HOME", "HOME"]))
    data_home = env.get("XDG_DATA_HOME") or os.path.join(env.get("HOME") or "/", ".local/share")
    keyring = os.path.join(data_home, "modelseal", "dev-keyring")
    # The keys are made (first use only) by the export of the public keys, which every signing
    # process waits for: one process per session instead of two.
    references = {role: f"file:{keyring}/{role}.pem" for role in ROLES}
    return SigningKeys(FrozenDict(references), FrozenDict(), development=True, keyring=keyring)


def key_invocation(
    keys: SigningKeys,
    command: ToolCommand,
    input_digest: Digest,
    description: str,
    *,
    output_files: tuple[str, ...] = (),
    output_directories: tuple[str, ...] = (),
    reads_keys: bool = False,
) -> ToolInvocation:
    """A tool process holding key references. `reads_keys`: it learns what the keys are (runs in
    every session); else it must have the exported public keys among its inputs (kept in
    memory for pantsd's life: see the module's docstring)."""
    return ToolInvocation(
        command,
        input_digest,
        description,
        output_files=output_files,
        output_directories=output_directories,
        extra_env=keys.env,
        cache_scope=ProcessCacheScope.PER_SESSION
        if reads_keys
        else ProcessCacheScope.PER_RESTART_SUCCESSFUL,
    )


@dataclass(frozen=True)
class PublicKeysRequest:
    pass


@dataclass(frozen=True)
class PublicKeys:
    """`keys/<role>.pub` (PEM) for each role: what the layout names and what verifiers trust."""

    digest: Digest
    development: bool


@rule(desc="Exporting the public keys", level=LogLevel.DEBUG)
async def export_public_keys(_: PublicKeysRequest) -> PublicKeys:
    keys = await Get(SigningKeys, SigningKeysRequest())
    exported = await Get(
        ProcessResult,
        key_invocation(
            keys,
            ExportPublicKeys(
                keys=tuple((role, keys[role]) for role in ROLES),
                out="keys",
                dev_keyring=keys.keyring,
            ),
            EMPTY_DIGEST, "Exporting the public keys", output_directories=("keys",),
            reads_keys=True,
        ),
    )
    return PublicKeys(exported.output_digest, keys.development)


def rules() -> Iterable[Rule]:
    return collect_rules()
