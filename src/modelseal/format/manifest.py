"""The bundle manifest, schema `modelseal.manifest/v1` (docs/formats.md describes every field).

The manifest is the one document a bundle's signature, its verifier and its own `model.pex` trust:
it says what every file's digest and size are, what the model is and where it came from. So it is
read strictly: every field must be present with its type, nothing unknown is accepted, and an error
names the field's path (`manifest.json: files[3].sha256: ...`) so a person can find it. Its bytes
are canonical JSON with files sorted by path, so the same content is always the same bytes.

The field readers (`modelseal.format.fields`) are shared with `modelseal.format.spec`, whose input
carries the same fields.

Standard library only: `model.pex` imports this module on hosts that have nothing but Python.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from modelseal.errors import SpecError
from modelseal.format.canonical import TIMESTAMP_FORMAT, canonical_json, load_json
from modelseal.format.fields import (
    COMMIT_RE,
    DATASET_RE,
    ENTRY_POINT_RE,
    EVALUATION_PATH,
    MANIFEST_PATH,
    NAME_RE,
    PEX_PATH,
    PROVENANCE_DIR,
    SIGNATURE_PATH,
    TRUST_LEVELS,
    WEIGHTS_DIR,
    Build,
    FileEntry,
    HyperValue,
    Invalid,
    Lineage,
    Number,
    Runtime,
    bundle_path_problem,
    check_pex_listed,
    is_reserved,
    read_build,
    read_bundle_path,
    read_count,
    read_datasets,
    read_entry_point,
    read_files,
    read_hyperparameters,
    read_metrics,
    read_name,
    read_number,
    read_object,
    read_runtime,
    read_sha256,
    read_str,
    read_str_map,
    read_str_tuple,
    read_training,
    read_trust,
)
from modelseal.format.interface import (
    EvaluationSummary,
    Interface,
    InvalidSection,
    describe_sections,
    read_evaluation,
    read_interface,
)

# The field readers and records are re-exported: importers name the manifest module.
__all__ = [
    "MANIFEST_FIELDS",
    "MANIFEST_REMEDY",
    "SCHEMA",
    "Manifest",
    "describe",
    "Build",
    "COMMIT_RE",
    "DATASET_RE",
    "ENTRY_POINT_RE",
    "EVALUATION_PATH",
    "FileEntry",
    "HyperValue",
    "Invalid",
    "Lineage",
    "MANIFEST_PATH",
    "NAME_RE",
    "Number",
    "PEX_PATH",
    "PROVENANCE_DIR",
    "Runtime",
    "SIGNATURE_PATH",
    "TRUST_LEVELS",
    "WEIGHTS_DIR",
    "bundle_path_problem",
    "check_pex_listed",
    "is_reserved",
    "read_build",
    "read_bundle_path",
    "read_count",
    "read_datasets",
    "read_entry_point",
    "read_files",
    "read_hyperparameters",
    "read_metrics",
    "read_name",
    "read_number",
    "read_object",
    "read_runtime",
    "read_sha256",
    "read_str",
    "read_str_map",
    "read_str_tuple",
    "read_training",
    "read_trust",
]

SCHEMA = "modelseal.manifest/v1"

MANIFEST_REMEDY = (
    "the manifest was not written by this version of modelseal or was changed afterwards: "
    "re-package the model or re-download the bundle"
)

OPTIONAL_SECTIONS = ("interface", "evaluation")


def read_sections(
    obj: Mapping[str, object],
) -> tuple[Interface | None, EvaluationSummary | None]:
    """The optional `interface` and `evaluation` sections of a manifest or spec."""
    try:
        return (
            read_interface(obj.get("interface"), "interface"),
            read_evaluation(obj.get("evaluation"), "evaluation"),
        )
    except InvalidSection as e:
        raise Invalid(e.path, e.what) from None


MANIFEST_FIELDS = (
    "schema",
    "name",
    "version",
    "entry_point",
    "trust",
    "runtime",
    "files",
    "lineage",
    "metrics",
    "license",
    "description",
    "build",
)


@dataclass(frozen=True)
class Manifest:
    """A bundle's manifest. `files` is kept sorted by path, whatever order it was given in."""

    schema: str
    name: str
    version: str
    entry_point: str
    trust: str
    runtime: Runtime
    files: tuple[FileEntry, ...]
    lineage: Lineage
    metrics: dict[str, Number]
    license: str
    description: str
    build: Build
    # Optional sections (modelseal.format.interface): absent from the JSON when None.
    interface: Interface | None = None
    evaluation: EvaluationSummary | None = None

    def __post_init__(self) -> None:
        files = tuple(sorted(self.files, key=lambda entry: entry.path))
        for before, after in zip(files, files[1:]):
            if before.path == after.path:
                raise ValueError(f"files: {after.path!r} is listed twice")
        object.__setattr__(self, "files", files)

    def file(self, path: str) -> FileEntry | None:
        for entry in self.files:
            if entry.path == path:
                return entry
        return None

    @property
    def weights(self) -> tuple[FileEntry, ...]:
        return tuple(entry for entry in self.files if entry.path.startswith(WEIGHTS_DIR + "/"))

    def to_json(self) -> dict[str, object]:
        return {
            "schema": self.schema,
            "name": self.name,
            "version": self.version,
            "entry_point": self.entry_point,
            "trust": self.trust,
            "runtime": self.runtime.to_json(),
            "files": [entry.to_json() for entry in self.files],
            "lineage": self.lineage.to_json(),
            "metrics": dict(self.metrics),
            "license": self.license,
            "description": self.description,
            "build": self.build.to_json(),
            **({} if self.interface is None else {"interface": self.interface.to_json()}),
            **({} if self.evaluation is None else {"evaluation": self.evaluation.to_json()}),
        }

    def to_bytes(self) -> bytes:
        return canonical_json(self.to_json())

    @classmethod
    def from_json(cls, value: object, source: str = MANIFEST_PATH) -> Manifest:
        """The manifest in a parsed JSON value; SpecError naming `source` and the field if bad."""
        try:
            return cls._read(value)
        except Invalid as e:
            raise e.to_spec_error(source, MANIFEST_REMEDY) from None

    @classmethod
    def from_bytes(cls, data: bytes, source: str = MANIFEST_PATH) -> Manifest:
        """The manifest in `data`; SpecError naming `source` and the field if it is invalid."""
        try:
            value = load_json(data)
        except ValueError as e:
            raise SpecError(
                what=f"not valid JSON: {e}", where=source, remedy=MANIFEST_REMEDY
            ) from None
        return cls.from_json(value, source)

    @classmethod
    def _read(cls, value: object) -> Manifest:
        obj = read_object(value, "", MANIFEST_FIELDS, optional=OPTIONAL_SECTIONS)
        schema = read_str(obj["schema"], "schema")
        if schema != SCHEMA:
            raise Invalid("schema", f"expected {SCHEMA!r}, found {schema!r}")
        lineage = read_object(
            obj["lineage"], "lineage", ("datasets", "hyperparameters", "training")
        )
        runtime = read_runtime(obj["runtime"], "runtime")
        files = read_files(obj["files"], "files")
        check_pex_listed(runtime, files, "runtime")
        interface, evaluation = read_sections(obj)
        return cls(
            schema=schema,
            name=read_name(obj["name"], "name"),
            version=read_name(obj["version"], "version"),
            entry_point=read_entry_point(obj["entry_point"], "entry_point"),
            trust=read_trust(obj["trust"], "trust"),
            runtime=runtime,
            files=files,
            lineage=Lineage(
                datasets=read_datasets(lineage["datasets"], "lineage.datasets"),
                hyperparameters=read_hyperparameters(
                    lineage["hyperparameters"], "lineage.hyperparameters"
                ),
                training=read_training(lineage["training"], "lineage.training"),
            ),
            metrics=read_metrics(obj["metrics"], "metrics"),
            license=read_str(obj["license"], "license"),
            description=read_str(obj["description"], "description"),
            build=read_build(obj["build"], "build"),
            interface=interface,
            evaluation=evaluation,
        )


# -- a readable summary -------------------------------------------------------------------------


def _table(rows: Sequence[Sequence[str]], indent: str = "  ") -> list[str]:
    widths = [max(len(row[col]) for row in rows) for col in range(len(rows[0]) - 1)]
    lines = []
    for row in rows:
        cells = [cell.ljust(width) for cell, width in zip(row, widths)] + [row[-1]]
        lines.append((indent + "  ".join(cells)).rstrip())
    return lines


def _platforms(runtime: Runtime, environments: Sequence[str] | None) -> str:
    if environments is None and runtime.environments is not None:
        environments = runtime.environments
    if environments is None:
        declared = ", ".join(runtime.platforms + runtime.complete_platforms)
        return declared or "(not declared: the build host's)"
    if list(environments) == ["any"]:
        return "any (every wheel is pure Python) (from the PEX's wheels)"
    shown = ", ".join(environments) or "NONE: the compiled wheels share no platform"
    return f"{shown} (from the PEX's wheels)"


def _iso_date(epoch: int) -> str:
    """ISO 8601 in UTC, with the epoch the manifest records, so both can be searched for."""
    when = dt.datetime.fromtimestamp(epoch, dt.timezone.utc).strftime(TIMESTAMP_FORMAT)
    return f"{when} ({epoch})"


def _scalar(value: object) -> str:
    return (
        canonical_json(value).decode("utf-8").rstrip("\n") if not isinstance(value, str) else value
    )


def describe(
    manifest: Manifest,
    present: Mapping[str, int] | None = None,
    *,
    environments: Sequence[str] | None = None,
) -> str:
    """A summary for people (`modelseal inspect`, `model.pex info`). With `present` (path -> size
    of the files actually found), files that are missing, differ in size or are extra are marked.
    `environments`: where the PEX's wheels let it run (`modelseal.verify.hostcheck.
    environments_from_wheels`), shown instead of the declared platforms, which are empty for a
    model built for the build host alone."""
    runtime = manifest.runtime
    platforms = _platforms(runtime, environments)
    lines = [f"{manifest.name} {manifest.version}"]
    lines += _table(
        [
            ("entry point", manifest.entry_point),
            ("trust", manifest.trust),
            ("license", manifest.license or "(not declared)"),
            ("description", manifest.description or "(none)"),
            ("python", ", ".join(runtime.interpreter_constraints) or "(any)"),
            ("platforms", platforms),
            ("pex", runtime.pex),
        ]
    )
    lines.append(f"files ({len(manifest.files)}, {sum(e.size for e in manifest.files)} bytes)")
    rows = []
    for entry in manifest.files:
        note = ""
        if present is not None:
            found = present.get(entry.path)
            if found is None:
                note = "  MISSING"
            elif found != entry.size:
                note = f"  SIZE DIFFERS: {found} bytes present"
        rows.append((str(entry.size), entry.sha256[:12], entry.path + note))
    if present is not None:
        listed = {entry.path for entry in manifest.files}
        for path in sorted(present):
            if path not in listed and not is_reserved(path):
                rows.append((str(present[path]), "-" * 12, f"{path}  NOT IN MANIFEST"))
    if rows:
        width = max(len(row[0]) for row in rows)
        lines += _table([(row[0].rjust(width), row[1], row[2]) for row in rows])
    lines.append("metrics")
    lines += _table([(k, _scalar(v)) for k, v in sorted(manifest.metrics.items())] or [("(none)",)])
    lineage = manifest.lineage
    lines.append("lineage")
    rows2: list[tuple[str, ...]] = []
    rows2 += [(f"dataset {k}", v) for k, v in sorted(lineage.datasets.items())]
    rows2 += [(f"param {k}", _scalar(v)) for k, v in sorted(lineage.hyperparameters.items())]
    if lineage.training is None:
        rows2.append(("training", "(not recorded)"))
    else:
        rows2 += [(f"training {k}", v) for k, v in sorted(lineage.training.items())]
    lines += _table(rows2)
    build = manifest.build
    lines += describe_sections(manifest.interface, manifest.evaluation)
    lines.append("build")
    lines += _table(
        [
            ("commit", build.commit or "(unknown)"),
            ("work tree", f"dirty (sha256 {build.dirty_sha256})" if build.dirty else "clean"),
            ("source date", _iso_date(build.source_date_epoch)),
            ("lock sha256", build.lock_sha256),
            ("pants", build.pants_version),
            ("modelseal", build.modelseal_version),
        ]
    )
    return "\n".join(lines) + "\n"
