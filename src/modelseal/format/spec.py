"""The bundle spec: what the Pants rules know about a model, handed to `modelseal manifest`.

Pants holds the graph (the target's fields, the lock, the platforms) and already has a sha256 of
every file it snapshotted, so the rule writes those facts into one JSON document and the tool turns
it into the manifest without touching, let alone re-hashing, the files. Keeping the conversion here
rather than in the rule means every byte-level decision stays in the core library, and the spec is
versioned (`modelseal.bundle-spec/v1`, the default when `schema` is absent) so that a rule and a
tool from different versions fail loudly rather than misread each other.
The format is described in docs/formats.md.
"""

from __future__ import annotations

from dataclasses import dataclass

from modelseal import __version__
from modelseal.errors import SpecError
from modelseal.format.canonical import load_json
from modelseal.format.manifest import (
    SCHEMA,
    Build,
    FileEntry,
    HyperValue,
    Invalid,
    Lineage,
    Manifest,
    Number,
    Runtime,
    check_pex_listed,
    read_build,
    read_datasets,
    read_entry_point,
    read_files,
    read_hyperparameters,
    read_metrics,
    read_name,
    read_object,
    read_runtime,
    read_str,
    read_training,
    read_trust,
)

__all__ = ["SPEC_SCHEMA", "BundleSpec"]

SPEC_SCHEMA = "modelseal.bundle-spec/v1"

SPEC_REMEDY = (
    "the modelseal Pants rules write this file from the model_artifact target: "
    "fix the target field it names"
)

SPEC_FIELDS = (
    "name",
    "version",
    "entry_point",
    "trust",
    "runtime",
    "files",
    "metrics",
    "license",
    "description",
    "datasets",
    "hyperparameters",
    "training",
    "build",
)


@dataclass(frozen=True)
class BundleSpec:
    """A model's facts as Pants knows them. `build.modelseal_version` is not part of the input:
    the tool that writes the manifest records its own version."""

    name: str
    version: str
    entry_point: str
    trust: str
    runtime: Runtime
    files: tuple[FileEntry, ...]
    metrics: dict[str, Number]
    license: str
    description: str
    datasets: dict[str, str]
    hyperparameters: dict[str, HyperValue]
    training: dict[str, str] | None
    build: Build

    @classmethod
    def from_bytes(cls, data: bytes, source: str) -> BundleSpec:
        """The spec in `data`; SpecError naming `source` and the field if it is invalid."""
        try:
            value = load_json(data)
        except ValueError as e:
            raise SpecError(what=f"not valid JSON: {e}", where=source, remedy=SPEC_REMEDY) from None
        try:
            return cls._read(value)
        except Invalid as e:
            raise e.to_spec_error(source, SPEC_REMEDY) from None

    @classmethod
    def _read(cls, value: object) -> BundleSpec:
        obj = read_object(value, "", SPEC_FIELDS, optional=("schema",))
        # Optional so that the first rules need not write it; a later version must be refused.
        schema = read_str(obj.get("schema", SPEC_SCHEMA), "schema")
        if schema != SPEC_SCHEMA:
            raise Invalid("schema", f"expected {SPEC_SCHEMA!r}, found {schema!r}")
        runtime = read_runtime(obj["runtime"], "runtime")
        files = read_files(obj["files"], "files")
        check_pex_listed(runtime, files, "runtime")
        return cls(
            name=read_name(obj["name"], "name"),
            version=read_name(obj["version"], "version"),
            entry_point=read_entry_point(obj["entry_point"], "entry_point"),
            trust=read_trust(obj["trust"], "trust"),
            runtime=runtime,
            files=files,
            metrics=read_metrics(obj["metrics"], "metrics"),
            license=read_str(obj["license"], "license"),
            description=read_str(obj["description"], "description"),
            datasets=read_datasets(obj["datasets"], "datasets"),
            hyperparameters=read_hyperparameters(obj["hyperparameters"], "hyperparameters"),
            training=read_training(obj["training"], "training"),
            build=read_build(obj["build"], "build", with_version=False),
        )

    def to_manifest(self) -> Manifest:
        build = self.build
        return Manifest(
            schema=SCHEMA,
            name=self.name,
            version=self.version,
            entry_point=self.entry_point,
            trust=self.trust,
            runtime=self.runtime,
            files=self.files,
            lineage=Lineage(
                datasets=dict(self.datasets),
                hyperparameters=dict(self.hyperparameters),
                training=None if self.training is None else dict(self.training),
            ),
            metrics=dict(self.metrics),
            license=self.license,
            description=self.description,
            build=Build(
                commit=build.commit,
                source_date_epoch=build.source_date_epoch,
                lock_sha256=build.lock_sha256,
                pants_version=build.pants_version,
                modelseal_version=__version__,
                dirty=build.dirty,
                dirty_sha256=build.dirty_sha256,
            ),
        )
