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
from modelseal.format import fields
from modelseal.format.canonical import load_json
from modelseal.format.interface import EvaluationSummary, Interface
from modelseal.format.manifest import (
    MANIFEST_FIELDS,
    OPTIONAL_SECTIONS,
    SCHEMA,
    Manifest,
    read_sections,
)

__all__ = ["SPEC_SCHEMA", "BundleSpec"]

SPEC_SCHEMA = "modelseal.bundle-spec/v1"

SPEC_REMEDY = (
    "the modelseal Pants rules write this file from the model_artifact target: "
    "fix the target field it names"
)

# The manifest's fields but the ones the tool adds (schema) or makes (lineage, from datasets,
# hyperparameters and training), in the manifest's order.
SPEC_FIELDS = (
    *(name for name in MANIFEST_FIELDS if name not in ("schema", "lineage", "build")),
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
    runtime: fields.Runtime
    files: tuple[fields.FileEntry, ...]
    metrics: dict[str, fields.Number]
    license: str
    description: str
    datasets: dict[str, str]
    hyperparameters: dict[str, fields.HyperValue]
    training: dict[str, str] | None
    build: fields.Build
    interface: Interface | None = None
    evaluation: EvaluationSummary | None = None

    @classmethod
    def from_bytes(cls, data: bytes, source: str) -> BundleSpec:
        """The spec in `data`; SpecError naming `source` and the field if it is invalid."""
        try:
            value = load_json(data)
        except ValueError as e:
            raise SpecError(what=f"not valid JSON: {e}", where=source, remedy=SPEC_REMEDY) from None
        try:
            return cls._read(value)
        except fields.Invalid as e:
            raise e.to_spec_error(source, SPEC_REMEDY) from None

    @classmethod
    def _read(cls, value: object) -> BundleSpec:
        obj = fields.read_object(value, "", SPEC_FIELDS, optional=("schema", *OPTIONAL_SECTIONS))
        # Optional so that the first rules need not write it; a later version must be refused.
        schema = fields.read_str(obj.get("schema", SPEC_SCHEMA), "schema")
        if schema != SPEC_SCHEMA:
            raise fields.Invalid("schema", f"expected {SPEC_SCHEMA!r}, found {schema!r}")
        runtime = fields.read_runtime(obj["runtime"], "runtime")
        files = fields.read_files(obj["files"], "files")
        fields.check_pex_listed(runtime, files, "runtime")
        interface, evaluation = read_sections(obj)
        return cls(
            name=fields.read_name(obj["name"], "name"),
            version=fields.read_name(obj["version"], "version"),
            entry_point=fields.read_entry_point(obj["entry_point"], "entry_point"),
            trust=fields.read_trust(obj["trust"], "trust"),
            runtime=runtime,
            files=files,
            metrics=fields.read_metrics(obj["metrics"], "metrics"),
            license=fields.read_str(obj["license"], "license"),
            description=fields.read_str(obj["description"], "description"),
            datasets=fields.read_datasets(obj["datasets"], "datasets"),
            hyperparameters=fields.read_hyperparameters(obj["hyperparameters"], "hyperparameters"),
            training=fields.read_training(obj["training"], "training"),
            build=fields.read_build(obj["build"], "build", with_version=False),
            interface=interface,
            evaluation=evaluation,
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
            lineage=fields.Lineage(
                datasets=dict(self.datasets),
                hyperparameters=dict(self.hyperparameters),
                training=None if self.training is None else dict(self.training),
            ),
            metrics=dict(self.metrics),
            license=self.license,
            description=self.description,
            build=fields.Build(
                commit=build.commit,
                source_date_epoch=build.source_date_epoch,
                lock_sha256=build.lock_sha256,
                pants_version=build.pants_version,
                modelseal_version=__version__,
                dirty=build.dirty,
                dirty_sha256=build.dirty_sha256,
            ),
            interface=self.interface,
            evaluation=self.evaluation,
        )
