"""A bundle as a CNCF ModelPack artifact (github.com/modelpack/model-spec, docs/spec.md), and back.

Every file of the bundle directory becomes one raw (untarred, uncompressed) layer: a blob is
content-addressed, so a weight shard that did not change between two pushes has the same digest
and the registry already holds it; a tar of all weights would change whenever any one does. Each
layer carries the file's bundle path twice: ModelPack's `org.cncf.model.filepath` (what ModelPack
tools such as modctl unpack by) and OCI's `org.opencontainers.image.title` (what `oras pull`
names the file by), so either tool writes out the bundle directory that `modelseal verify`
checks. The manifest and config are canonical JSON, so one bundle always has one manifest
digest: pushing it twice, from two clones, gives the same `@sha256:` reference.

Standard library only: the registry client is in `modelseal.distribution.registry`.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass

from modelseal.errors import IntegrityCheckError, SpecError
from modelseal.format.canonical import canonical_json, load_json
from modelseal.format.fields import PEX_PATH, WEIGHTS_DIR, bundle_path_problem

__all__ = [
    "ARTIFACT_TYPE",
    "CONFIG_MEDIA_TYPE",
    "MANIFEST_MEDIA_TYPE",
    "Layer",
    "build_manifest",
    "media_type_for",
    "read_manifest",
]

MANIFEST_MEDIA_TYPE = "application/vnd.oci.image.manifest.v1+json"
ARTIFACT_TYPE = "application/vnd.cncf.model.manifest.v1+json"
CONFIG_MEDIA_TYPE = "application/vnd.cncf.model.config.v1+json"
WEIGHT_MEDIA_TYPE = "application/vnd.cncf.model.weight.v1.raw"
CODE_MEDIA_TYPE = "application/vnd.cncf.model.code.v1.raw"
DOC_MEDIA_TYPE = "application/vnd.cncf.model.doc.v1.raw"
LAYER_MEDIA_TYPES = frozenset({WEIGHT_MEDIA_TYPE, CODE_MEDIA_TYPE, DOC_MEDIA_TYPE})

FILEPATH = "org.cncf.model.filepath"
FILE_METADATA = "org.cncf.model.file.metadata+json"
TITLE = "org.opencontainers.image.title"
# The bundle's top directory (<name>-<version>): where `modelseal pull` writes it.
BUNDLE_DIRECTORY = "io.modelseal.bundle.directory"
VERSION = "org.opencontainers.image.version"

# Bundle files all have this date (SOURCE_DATE_EPOCH of the deterministic tar).
MTIME = "1980-01-01T00:00:00Z"
# A manifest larger than this is not one we wrote: read no more of it.
MAX_MANIFEST_SIZE = 4 * 1024 * 1024


@dataclass(frozen=True)
class Layer:
    """One bundle file as a layer: its bundle path, digest ("sha256:<hex>"), size and mode."""

    path: str
    digest: str
    size: int
    executable: bool = False

    @property
    def media_type(self) -> str:
        return media_type_for(self.path)


def media_type_for(path: str) -> str:
    """ModelPack's type for a bundle file: weights are weights, model.pex is code, and every
    other file (manifest.json, model.sig, the in-toto links, any SBOM or provenance) is
    documentation of the model, the one ModelPack type for files a runtime does not load."""
    if path.startswith(WEIGHTS_DIR + "/"):
        return WEIGHT_MEDIA_TYPE
    if path == PEX_PATH:
        return CODE_MEDIA_TYPE
    return DOC_MEDIA_TYPE


def _descriptor(media_type: str, data: bytes) -> dict[str, object]:
    return {
        "mediaType": media_type,
        "digest": "sha256:" + hashlib.sha256(data).hexdigest(),
        "size": len(data),
    }


def _layer_json(layer: Layer) -> dict[str, object]:
    metadata = {
        "name": layer.path,
        "mode": 0o755 if layer.executable else 0o644,
        "uid": 0,
        "gid": 0,
        "size": layer.size,
        "mtime": MTIME,
        "typeflag": ord("0"),
    }
    return {
        "mediaType": layer.media_type,
        "digest": layer.digest,
        "size": layer.size,
        "annotations": {
            FILEPATH: layer.path,
            FILE_METADATA: json.dumps(metadata, sort_keys=True, separators=(",", ":")),
            TITLE: layer.path,
        },
    }


def build_manifest(
    directory: str, name: str, version: str, layers: list[Layer]
) -> tuple[bytes, bytes]:
    """(config bytes, manifest bytes) for the bundle `directory` (its top directory's name) with
    `layers` in bundle-path order. The config is ModelPack's model config (descriptor and the
    layers' diff ids, which for raw layers are their digests)."""
    layers = sorted(layers, key=lambda layer: layer.path)
    config = canonical_json(
        {
            "descriptor": {"name": name, "version": version},
            "config": {},
            "modelfs": {"type": "layers", "diffIds": [layer.digest for layer in layers]},
        }
    )
    manifest = canonical_json(
        {
            "schemaVersion": 2,
            "mediaType": MANIFEST_MEDIA_TYPE,
            "artifactType": ARTIFACT_TYPE,
            "config": _descriptor(CONFIG_MEDIA_TYPE, config),
            "layers": [_layer_json(layer) for layer in layers],
            "annotations": {BUNDLE_DIRECTORY: directory, VERSION: version},
        }
    )
    return config, manifest


def _field(obj: object, key: str, kind: type, where: str) -> object:
    value = obj.get(key) if isinstance(obj, dict) else None
    if not isinstance(value, kind) or isinstance(value, bool):
        raise SpecError(
            what=f"the OCI manifest's '{key}' is missing or not a {kind.__name__}",
            where=where,
            remedy="push the bundle with `modelseal push` (or `pants publish`)",
        )
    return value


def read_manifest(data: bytes, where: str) -> tuple[str, list[Layer]]:
    """(top directory, layers) of a ModelPack manifest that `build_manifest` could have written;
    SpecError naming the field for anything else (another artifact type, a layer without a safe
    bundle path, two layers for one path)."""
    try:
        manifest = load_json(data)
    except ValueError as e:
        raise SpecError(
            what=f"the OCI manifest is not JSON ({e})",
            where=where,
            remedy="name the digest `modelseal push` printed",
        ) from None
    if _field(manifest, "artifactType", str, where) != ARTIFACT_TYPE:
        raise SpecError(
            what=f"not a ModelPack model artifact: artifactType is not {ARTIFACT_TYPE}",
            where=where,
            remedy="name the digest `modelseal push` printed",
        )
    annotations = _field(manifest, "annotations", dict, where)
    directory = _field(annotations, BUNDLE_DIRECTORY, str, where)
    assert isinstance(directory, str)
    if bundle_path_problem(directory) or "/" in directory:
        raise SpecError(
            what=f"annotation {BUNDLE_DIRECTORY} is not one directory name",
            where=where,
            remedy="name the digest `modelseal push` printed",
        )
    layers: list[Layer] = []
    seen: set[str] = set()
    entries = _field(manifest, "layers", list, where)
    assert isinstance(entries, list)
    for index, entry in enumerate(entries):
        at = f"{where}: layers[{index}]"
        path = _field(_field(entry, "annotations", dict, at), FILEPATH, str, at)
        digest = _field(entry, "digest", str, at)
        size = _field(entry, "size", int, at)
        assert isinstance(path, str) and isinstance(digest, str) and isinstance(size, int)
        problem = bundle_path_problem(path)
        if problem or path in seen or not digest.startswith("sha256:") or size < 0:
            raise SpecError(
                what=f"layer path {path!r} {problem or 'is unusable (duplicate, digest or size)'}",
                where=at,
                remedy="name the digest `modelseal push` printed",
            )
        seen.add(path)
        metadata = _field(entry, "annotations", dict, at)
        assert isinstance(metadata, dict)
        mode = 0o644
        try:
            mode = int(json.loads(str(metadata.get(FILE_METADATA, "{}"))).get("mode", 0o644))
        except (ValueError, AttributeError, TypeError):
            pass
        layers.append(Layer(path=path, digest=digest, size=size, executable=bool(mode & 0o100)))
    return directory, layers


def check_digest(data: bytes, digest: str, where: str) -> None:
    """IntegrityCheckError (exit 13) unless `data` hashes to `digest` ("sha256:<hex>")."""
    found = "sha256:" + hashlib.sha256(data).hexdigest()
    if found != digest:
        raise IntegrityCheckError(
            what=f"the registry served other bytes: expected {digest}, found {found}",
            where=where,
            remedy="the registry's copy was changed; push the bundle again from a verified copy",
        )
