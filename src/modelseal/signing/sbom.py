"""The bundle's CycloneDX 1.6 SBOM (`provenance/sbom.cdx.json`): every distribution inside
`model.pex`, and the model itself as a `machine-learning-model` component (an ML-BOM).

Why CycloneDX: it is what dependency scanners (Dependency-Track, grype, osv-scanner) read, and
since 1.5 it describes models and datasets too. The document is built with
`cyclonedx-python-lib` and checked against CycloneDX's own JSON schema by the library's
validator before it is returned. The library has no model of `modelCard` (it is commented out
in 11.x), so that one object is added to the serialized ML component; the schema check covers it
like the rest.

Deterministic: the serial number is a UUID made from the digests of the manifest, `model.pex` and
the lock, the timestamp is the manifest's SOURCE_DATE_EPOCH, and the bytes are canonical JSON.
A distribution's sha256 values are the lock's pins for its `name==version` (pip installs only a
file with one of them, so the wheel inside `model.pex` is one of them); its license comes from
the wheel's own METADATA in the PEX.
"""

from __future__ import annotations

import datetime as dt
import email.parser
import hashlib
import json
import re
import uuid
import zipfile
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from packaging.utils import canonicalize_name, parse_wheel_filename

from modelseal.errors import SpecError
from modelseal.format.canonical import canonical_json
from modelseal.format.fields import SBOM_PATH
from modelseal.format.manifest import Manifest

__all__ = ["SBOM_PATH", "Distribution", "lock_pins", "pex_distributions", "sbom_bytes"]

_PIN = re.compile(r"^([A-Za-z0-9][A-Za-z0-9._-]*)(?:\[[^\]]*\])?==([^\s;\\]+)")
_HASH = re.compile(r"--hash=sha256:([0-9a-f]{64})")


@dataclass(frozen=True)
class Distribution:
    """One wheel installed in `model.pex`."""

    name: str
    version: str
    wheel: str  # the wheel's file name, as `.deps/` names it
    licenses: tuple[str, ...]  # an SPDX expression, or license names
    sha256: tuple[str, ...]  # the lock's pins for name==version


def lock_pins(lock: bytes, source: str) -> dict[tuple[str, str], tuple[str, ...]]:
    """{(normalized name, version): sha256 pins} of a pip-tools lock (`name==version \\` and
    `--hash=sha256:...` lines)."""
    pins: dict[tuple[str, str], list[str]] = {}
    current: list[str] | None = None
    for line in lock.decode("utf-8", "replace").splitlines():
        match = _PIN.match(line)
        if match:
            current = pins.setdefault((canonicalize_name(match[1]), match[2]), [])
        elif not line.startswith((" ", "\t")):
            current = None
        if current is not None:
            current.extend(_HASH.findall(line))
    if not pins:
        raise SpecError(
            what="no name==version pins",
            where=source,
            remedy="pass the resolve's pip-tools lock (name==version with --hash lines)",
        )
    return {key: tuple(sorted(set(hashes))) for key, hashes in pins.items()}


def _licenses(metadata: bytes) -> tuple[str, ...]:
    """License-Expression (PEP 639); else a one-line License field; else the classifiers."""
    message = email.parser.BytesParser().parsebytes(metadata, headersonly=True)
    expression = (message.get("License-Expression") or "").strip()
    if expression:
        return (expression,)
    text = (message.get("License") or "").strip()
    if text and "\n" not in text and len(text) <= 100 and text.upper() != "UNKNOWN":
        return (text,)
    return tuple(
        sorted(
            c.split("::")[-1].strip()
            for c in message.get_all("Classifier") or []
            if c.startswith("License ::") and c.count("::") >= 2
        )
    )


def pex_distributions(
    pex_path: str, pins: Mapping[tuple[str, str], Sequence[str]]
) -> list[Distribution]:
    """Every wheel under `.deps/` in the PEX, with its license and the lock's digests."""
    try:
        archive = zipfile.ZipFile(pex_path)
    except (OSError, zipfile.BadZipFile) as e:
        raise SpecError(
            what=f"not a PEX file ({e})", where=pex_path, remedy="re-package the model"
        ) from None
    found: dict[str, Distribution] = {}
    with archive:
        for name in sorted(archive.namelist()):
            parts = name.split("/")
            if len(parts) != 4 or parts[0] != ".deps" or parts[3] != "METADATA":
                continue
            if not parts[2].endswith(".dist-info") or parts[1] in found:
                continue
            dist_name, version, _, _ = parse_wheel_filename(parts[1])
            key = (canonicalize_name(dist_name), str(version))
            found[parts[1]] = Distribution(
                name=str(dist_name),
                version=str(version),
                wheel=parts[1],
                licenses=_licenses(archive.read(name)),
                sha256=tuple(pins.get(key, ())),
            )
    return [found[wheel] for wheel in sorted(found)]


def _serial(seed: Sequence[str]) -> uuid.UUID:
    """A version-4-shaped UUID from the inputs' digests: equal inputs, equal serial number."""
    digest = hashlib.sha256("\n".join(seed).encode()).digest()
    return uuid.UUID(bytes=digest[:16], version=4)


def _model_card(manifest: Manifest, dataset_refs: Sequence[str]) -> dict[str, object]:
    card: dict[str, object] = {}
    parameters: dict[str, object] = {}
    if dataset_refs:
        parameters["datasets"] = [{"ref": ref} for ref in dataset_refs]
    if manifest.lineage.hyperparameters:
        parameters["approach"] = {"type": "supervised"} if manifest.metrics else {}
    if parameters:
        card["modelParameters"] = {k: v for k, v in parameters.items() if v}
    if manifest.metrics:
        card["quantitativeAnalysis"] = {
            "performanceMetrics": [
                {"type": name, "value": json.dumps(value)}
                for name, value in sorted(manifest.metrics.items())
            ]
        }
    return card


def sbom_bytes(
    manifest: Manifest, manifest_sha256: str, pex_sha256: str, pex_path: str, lock: bytes,
    lock_source: str,
) -> bytes:
    """The SBOM's canonical JSON bytes, validated against the CycloneDX 1.6 JSON schema."""
    from cyclonedx.contrib.license.factories import LicenseFactory
    from cyclonedx.model import (
        ExternalReference,
        ExternalReferenceType,
        HashAlgorithm,
        HashType,
        Property,
        XsUri,
    )
    from cyclonedx.model.bom import Bom, BomMetaData
    from cyclonedx.model.component import Component, ComponentType
    from cyclonedx.output.json import JsonV1Dot6
    from cyclonedx.schema import SchemaVersion
    from cyclonedx.validation.json import JsonStrictValidator
    from packageurl import PackageURL  # pants: no-infer-dep (cyclonedx-python-lib's dependency)

    licenses = LicenseFactory()
    pins = lock_pins(lock, lock_source)
    components = []
    for dist in pex_distributions(pex_path, pins):
        # One component per wheel, named by purl's `file_name` qualifier: a PEX built for
        # several platforms holds several wheels of one name and version, and equal bom-refs
        # would make cyclonedx-python-lib replace them with random ones (not reproducible).
        purl = PackageURL(type="pypi", name=canonicalize_name(dist.name), version=dist.version,
                          qualifiers={"file_name": dist.wheel})
        components.append(
            Component(
                name=dist.name,
                version=dist.version,
                type=ComponentType.LIBRARY,
                bom_ref=purl.to_string(),
                purl=purl,
                hashes=[HashType(alg=HashAlgorithm.SHA_256, content=h) for h in dist.sha256],
                licenses=[licenses.make_from_string(text) for text in dist.licenses],
                properties=[Property(name="modelseal:wheel", value=dist.wheel)],
            )
        )
    dataset_refs = []
    for name, reference in sorted(manifest.lineage.datasets.items()):
        digest = reference.rsplit("sha256", 1)[-1].lstrip(":=")
        location = reference.split("#sha256=")[0].split("@sha256:")[0]
        ref = f"dataset:{name}"
        dataset_refs.append(ref)
        components.append(
            Component(
                name=name, type=ComponentType.DATA, bom_ref=ref,
                hashes=[HashType(alg=HashAlgorithm.SHA_256, content=digest)],
                external_references=(
                    [ExternalReference(type=ExternalReferenceType.DISTRIBUTION,
                                       url=XsUri(location))]
                    if "://" in location else []
                ),
            )
        )
    model_ref = f"model:{manifest.name}@{manifest.version}"
    model = Component(
        name=manifest.name,
        version=manifest.version,
        type=ComponentType.MACHINE_LEARNING_MODEL,
        bom_ref=model_ref,
        description=manifest.description or None,
        licenses=[licenses.make_from_string(manifest.license)] if manifest.license else [],
        hashes=[HashType(alg=HashAlgorithm.SHA_256, content=pex_sha256)],
        properties=[
            Property(name="modelseal:manifest-sha256", value=manifest_sha256),
            Property(name="modelseal:entry-point", value=manifest.entry_point),
        ],
    )
    timestamp = dt.datetime.fromtimestamp(manifest.build.source_date_epoch, dt.timezone.utc)
    bom = Bom(
        components=components,
        serial_number=_serial((manifest_sha256, pex_sha256, manifest.build.lock_sha256)),
        metadata=BomMetaData(component=model, timestamp=timestamp),
    )
    for component in components:
        bom.register_dependency(model, [component])
    document = json.loads(JsonV1Dot6(bom).output_as_string())
    card = _model_card(manifest, dataset_refs)
    if card:
        document["metadata"]["component"]["modelCard"] = card
    data = canonical_json(document)
    if b'"BomRef.' in data:  # a ref the library made up at random: two components collided
        raise AssertionError("the SBOM has a generated bom-ref: two components share one")
    error = JsonStrictValidator(SchemaVersion.V1_6).validate_str(data.decode())
    if error is not None:  # a bug in this module, not in the user's input
        raise AssertionError(f"the SBOM does not match CycloneDX 1.6: {error}")
    return data
