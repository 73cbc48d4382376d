"""The vulnerability gate: OSV advisories from a local directory against the SBOM's components.

Users download OSV's bulk export (e.g. the `PyPI/all.zip` of https://osv.dev, unpacked) and point
`modelseal audit-deps`, the build (`[modelseal].advisories`) or verify's policy at the directory:
nothing is fetched at run time, so a gate gives the same answer offline and in a sandbox.

Matching follows the OSV schema: `affected[].package` with ecosystem `PyPI` and the PEP 503 name,
then `versions` (exact) or `ranges` of type `ECOSYSTEM` (events `introduced`, `fixed`,
`last_affected`, compared with `packaging.version`). Severity: the highest of the CVSS v3/v4
vectors in `severity` (base score by the `cvss` library, rated as CVSS does) and the advisory's
`database_specific.severity` (GitHub's LOW/MODERATE/HIGH/CRITICAL). An advisory with no severity
is rated `unknown`, which counts as the highest: an unrated hole is not a harmless one.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from packaging.utils import canonicalize_name
from packaging.version import InvalidVersion, Version

from modelseal.errors import SpecError, VulnerabilityError

__all__ = ["SEVERITIES", "Finding", "Package", "gate", "load_advisories", "match", "sbom_packages"]

# Lowest to highest; `unknown` ranks above `critical` (see the module docstring).
SEVERITIES = ("low", "medium", "high", "critical", "unknown")
_ALIASES = {"moderate": "medium", "none": "low"}


@dataclass(frozen=True)
class Package:
    name: str  # PEP 503 normalized
    version: str


@dataclass(frozen=True)
class Finding:
    package: Package
    advisory: str  # the OSV id
    severity: str  # one of SEVERITIES
    fixed: tuple[str, ...]  # versions that fix it, from the matching ranges

    def line(self) -> str:
        fixed = ", ".join(self.fixed) or "no fixed version published"
        return (
            f"{self.package.name} {self.package.version}: {self.advisory} ({self.severity}); "
            f"fixed in {fixed}"
        )


def severity_name(text: str, where: str) -> str:
    """A user's severity threshold, checked."""
    value = _ALIASES.get(text.lower(), text.lower())
    if value not in SEVERITIES[:4]:
        raise SpecError(
            what=f"unknown severity {text!r}",
            where=where,
            remedy="use one of low, medium, high, critical",
        )
    return value


def sbom_packages(sbom: bytes, source: str) -> list[Package]:
    """The PyPI components (by purl) of a CycloneDX JSON SBOM."""
    try:
        document = json.loads(sbom)
        components = document.get("components", [])
    except (ValueError, AttributeError):
        raise SpecError(
            what="not a CycloneDX JSON document", where=source, remedy="pass the bundle's SBOM"
        ) from None
    packages = []
    for component in components:
        purl = str(component.get("purl", ""))
        if purl.startswith("pkg:pypi/") and "@" in purl:
            name, _, version = purl[len("pkg:pypi/"):].partition("@")
            packages.append(Package(canonicalize_name(name), version.split("?")[0]))
    # One finding per package: a PEX for several platforms lists one component per wheel.
    return list(dict.fromkeys(packages))


def load_advisories(directory: str) -> list[dict[str, object]]:
    """Every `*.json` OSV record below `directory` (sorted by path, so findings are stable)."""
    if not os.path.isdir(directory):
        raise SpecError(
            what="not a directory",
            where=directory,
            remedy="pass the directory holding OSV JSON records (e.g. OSV's PyPI export, unpacked)",
        )
    records = []
    for base, dirs, files in os.walk(directory):
        dirs.sort()
        for name in sorted(files):
            if not name.endswith(".json"):
                continue
            path = os.path.join(base, name)
            try:
                with open(path, "rb") as f:
                    record = json.load(f)
            except (OSError, ValueError) as e:
                raise SpecError(
                    what=f"not an OSV JSON record ({type(e).__name__})",
                    where=path,
                    remedy="remove the file or re-download the advisories",
                ) from None
            if not isinstance(record, dict) or not isinstance(record.get("id"), str):
                raise SpecError(
                    what="an OSV record needs a string `id`",
                    where=f"{path}: id",
                    remedy="remove the file or re-download the advisories",
                )
            records.append(record)
    return records


def _version(text: object) -> Version | None:
    try:
        return Version(str(text))
    except InvalidVersion:
        return None


def _in_range(version: Version, events: Sequence[dict[str, str]]) -> bool:
    """OSV's algorithm: sort the events by version, the last applicable one decides."""
    affected = False
    points = []
    for event in events:
        for kind in ("introduced", "fixed", "last_affected"):
            if kind in event:
                at = Version("0") if event[kind] == "0" else _version(event[kind])
                if at is not None:
                    points.append((at, kind))
    for at, kind in sorted(points, key=lambda p: p[0]):
        if kind == "introduced" and version >= at:
            affected = True
        elif kind == "fixed" and version >= at:
            affected = False
        elif kind == "last_affected" and version > at:
            affected = False
    return affected


def _severity(record: dict[str, object]) -> str:
    from cvss import CVSS3, CVSS4  # type: ignore[import-untyped]

    ranks: list[str] = []
    for entry in record.get("severity") or []:  # type: ignore[attr-defined]
        score = str(entry.get("score", ""))
        try:
            if score.startswith("CVSS:3"):
                ranks.append(str(CVSS3(score).severities()[0]).lower())
            elif score.startswith("CVSS:4"):
                ranks.append(str(CVSS4(score).severity).lower())
        except Exception:  # a malformed vector rates the advisory unknown
            ranks.append("unknown")
    specific = record.get("database_specific")
    if isinstance(specific, dict) and isinstance(specific.get("severity"), str):
        ranks.append(_ALIASES.get(specific["severity"].lower(), specific["severity"].lower()))
    known = [rank for rank in ranks if rank in SEVERITIES]
    return max(known, key=SEVERITIES.index) if known else "unknown"


def match(packages: Iterable[Package], records: Iterable[dict[str, object]]) -> list[Finding]:
    """Every (package, advisory) pair where the advisory affects the package's version."""
    by_name: dict[str, list[Package]] = {}
    for package in packages:
        by_name.setdefault(package.name, []).append(package)
    findings = []
    for record in records:
        for affected in record.get("affected") or []:  # type: ignore[attr-defined]
            pkg = affected.get("package") or {}
            if pkg.get("ecosystem") != "PyPI":
                continue
            for package in by_name.get(canonicalize_name(str(pkg.get("name", ""))), []):
                version = _version(package.version)
                hit = package.version in (affected.get("versions") or [])
                fixed: list[str] = []
                for span in affected.get("ranges") or []:
                    if span.get("type") != "ECOSYSTEM":
                        continue
                    events = span.get("events") or []
                    fixed += [e["fixed"] for e in events if "fixed" in e]
                    if version is not None and _in_range(version, events):
                        hit = True
                if hit:
                    findings.append(
                        Finding(package, str(record["id"]), _severity(record), tuple(fixed))
                    )
    return sorted(findings, key=lambda f: (f.package.name, f.advisory))


def gate(findings: Sequence[Finding], threshold: str, where: str) -> list[Finding]:
    """VulnerabilityError naming the first finding at or above `threshold`; the findings below."""
    limit = SEVERITIES.index(threshold)
    over = [f for f in findings if SEVERITIES.index(f.severity) >= limit]
    if over:
        first = over[0]
        more = f" (and {len(over) - 1} more)" if len(over) > 1 else ""
        raise VulnerabilityError(
            what=f"{first.line()}{more}",
            where=where,
            remedy="upgrade the package in the lock to a fixed version and rebuild, or raise the "
            "severity threshold after review",
            expected=f"no advisory rated {threshold} or higher",
            found=first.severity,
        )
    return list(findings)
