"""`pants publish` for `model_artifact`: the packaged bundle to an OCI registry as a ModelPack
artifact, by `modelseal push` (docs/distribution.md).

Like Pants' docker backend (and oras-pants-plugin), publishing is one `PublishFieldSet` whose
rule returns an `InteractiveProcess` per destination. Unlike oras-pants-plugin, which copies a
prebuilt OCI layout whole with `oras cp`, the process is the modelseal tool itself: it sends
every bundle file as its own raw layer after a HEAD (so weights that did not change are not sent
again), with ModelPack's media types and file-path annotations, and prints the manifest digest
that `modelseal verify oci://...@sha256:` and `modelseal pull` take. The plugin imports nothing
but Pants: the registry client (oras-py) runs inside the tool.

Where: the target's `oci_repository` field, `[HOST[:PORT]/]REPOSITORY`; without a host,
`[modelseal].oci_registry`'s. Credentials: `[modelseal].oci_registry_config`, a docker
config.json (never a secret in BUILD files, options or argv).
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from dataclasses import dataclass
from typing import ClassVar

from pants.base.build_root import BuildRoot
from pants.core.goals.publish import (
    PublishFieldSet,
    PublishOutputData,
    PublishPackages,
    PublishProcesses,
    PublishRequest,
)
from pants.engine.fs import Digest, MergeDigests
from pants.engine.process import InteractiveProcess, Process, ProcessCacheScope
from pants.engine.rules import Get, Rule, collect_rules, rule
from pants.engine.target import StringField
from pants.engine.unions import UnionRule
from pants.util.logging import LogLevel
from pants.util.strutil import softwrap

from modelseal_pants.invocation import PushBundle, ToolInvocation
from modelseal_pants.subsystem import ModelsealSubsystem
from modelseal_pants.target_types import ModelArtifactTarget, ModelVersionField


class ModelOciRepositoryField(StringField):
    alias = "oci_repository"
    help = softwrap(
        """
        Where `pants publish` pushes this model: `[HOST[:PORT]/]REPOSITORY` of an OCI registry
        (e.g. `ghcr.io/acme/iris`, or `models/iris` with `[modelseal].oci_registry` naming the
        host). The tag is the model's version; the published reference to verify is the printed
        digest. Unset: the target is not published.
        """
    )


class PublishModelRequest(PublishRequest["PublishModelFieldSet"]):
    pass


@dataclass(frozen=True)
class PublishModelFieldSet(PublishFieldSet[PublishModelRequest]):
    publish_request_type: ClassVar[type[PublishModelRequest]] = PublishModelRequest
    required_fields = (ModelOciRepositoryField,)

    oci_repository: ModelOciRepositoryField
    version: ModelVersionField

    def get_output_data(self) -> PublishOutputData:
        return PublishOutputData({"publisher": "modelseal", **super().get_output_data()})


def oci_reference(repository: str, default_registry: str | None, version: str) -> str | None:
    """`oci://HOST/REPOSITORY:VERSION`, or None when no registry is known. A first segment with
    a dot or a colon, or `localhost`, is a host (the rule docker and oras use)."""
    first = repository.split("/", 1)[0]
    if "/" in repository and ("." in first or ":" in first or first == "localhost"):
        return f"oci://{repository}:{version}"
    if not default_registry:
        return None
    return f"oci://{default_registry}/{repository}:{version}"


@rule(desc="Publishing a model to an OCI registry", level=LogLevel.DEBUG)
async def publish_model(
    request: PublishModelRequest, subsystem: ModelsealSubsystem, build_root: BuildRoot
) -> PublishProcesses:
    fs = request.field_set
    repository = fs.oci_repository.value or ""
    reference = oci_reference(repository, subsystem.oci_registry, fs.version.value or "")
    # The bundle directory, which `package` always writes (the tar only on request): each of
    # its files becomes one layer, so pushing needs no tar.
    bundles = [
        artifact.relpath
        for package in request.packages
        for artifact in package.artifacts
        if artifact.relpath and not artifact.relpath.endswith(".tar")
    ]
    if reference is None or not bundles:
        why = (
            f"(no registry host in `oci_repository` and no `[modelseal].oci_registry` for "
            f"{fs.address})"
        )
        return PublishProcesses([PublishPackages(names=tuple(bundles), description=why)])
    config = subsystem.oci_registry_config
    input_digest = await Get(Digest, MergeDigests(p.digest for p in request.packages))
    process = await Get(
        Process,
        ToolInvocation(
            PushBundle(
                bundle=bundles[0],
                reference=reference,
                registry_config=os.path.join(build_root.path, config) if config else "",
                plain_http=subsystem.oci_plain_http,
            ),
            input_digest=input_digest,
            description=f"Pushing {bundles[0]} to {reference}",
            # Publishing runs every time it is asked for, never from a cache.
            cache_scope=ProcessCacheScope.PER_SESSION,
        ),
    )
    return PublishProcesses(
        [
            PublishPackages(
                names=(bundles[0],),
                process=InteractiveProcess.from_process(process),
                description=reference,
                data=PublishOutputData({"reference": reference}),
            )
        ]
    )


def rules() -> Iterable[Rule | UnionRule]:
    return (
        *collect_rules(),
        *PublishModelFieldSet.rules(),
        ModelArtifactTarget.register_plugin_field(ModelOciRepositoryField),
    )
