"""The deployment policy: what an authentic bundle must also be before this host installs it.

Signatures prove where a model came from, not that it is fit to run here: a validly signed model
can still be the under-trained one, carry a license legal has not cleared, be two years old or
come from a development keyring. The policy is a small versioned JSON file an operator reviews
like any other configuration (docs/verification.md, "Policy v1"):

    {"schema": "modelseal.policy/v1", "required_steps": ["train", "package", "sign"],
     "min_metrics": {"accuracy": 0.9}, "allowed_licenses": ["Apache-2.0"],
     "allowed_signer_key_ids": ["<64 hex>", ...], "max_age_days": 365,
     "allow_development": false, "max_measurements": {"p95_latency_ms": 50},
     "allowed_dataset_licenses": ["CC-BY-4.0"], "forbidden_dataset_tags": ["pii"]}

`min_metrics` is met by the manifest's metrics or its evaluation's; `max_measurements` and the
dataset rules are checked by `modelseal.verify.evaluation_policy` (docs/evaluation.md).

It is parsed as strictly as the manifest (unknown fields, wrong types and a wrong schema are
errors naming the field, exit code 3), because a typo that silently drops a rule would let
through exactly what the operator meant to stop. Every field but `schema` is optional; a field
that is absent sets no rule.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from modelseal.errors import PolicyError, SpecError
from modelseal.format.canonical import join_path, load_json
from modelseal.format.manifest import (
    Invalid,
    Manifest,
    read_count,
    read_metrics,
    read_object,
    read_str,
)
from modelseal.verify.evaluation_policy import check_data, check_measurements, metric_value

__all__ = ["POLICY_SCHEMA", "Policy", "PolicyFacts", "evaluate"]

POLICY_SCHEMA = "modelseal.policy/v1"
POLICY_FIELDS = (
    "required_steps",
    "min_metrics",
    "allowed_licenses",
    "allowed_signer_key_ids",
    "max_age_days",
    "allow_development",
    "max_measurements",
    "allowed_dataset_licenses",
    "forbidden_dataset_tags",
    "advisories",
    "fail_on_severity",
)
POLICY_REMEDY = "fix the policy file (docs/verification.md, 'Policy v1')"
_HEX = frozenset("0123456789abcdef")


@dataclass(frozen=True)
class Policy:
    """A parsed policy; None for a rule that the file does not set."""

    required_steps: tuple[str, ...] = ()
    min_metrics: dict[str, float | int] | None = None
    allowed_licenses: tuple[str, ...] | None = None
    allowed_signer_key_ids: tuple[str, ...] | None = None
    max_age_days: int | None = None
    allow_development: bool = False
    max_measurements: dict[str, float | int] | None = None
    allowed_dataset_licenses: tuple[str, ...] | None = None
    forbidden_dataset_tags: tuple[str, ...] | None = None
    # OSV records (a directory; relative to the policy file) and the severity that refuses
    # (modelseal.verify.vulnerability_policy, docs/sbom.md).
    advisories: str | None = None
    fail_on_severity: str = "high"

    @classmethod
    def from_bytes(cls, data: bytes, source: str = "policy.json") -> Policy:
        """The policy in `data`; SpecError naming `source` and the field when it is invalid."""
        try:
            value = load_json(data)
        except (ValueError, RecursionError) as e:
            raise SpecError(
                what=f"not valid JSON: {e}", where=source, remedy=POLICY_REMEDY
            ) from None
        try:
            return cls._read(value)
        except Invalid as e:
            raise e.to_spec_error(source, POLICY_REMEDY) from None

    @classmethod
    def _read(cls, value: object) -> Policy:
        obj = read_object(value, "", ("schema",), POLICY_FIELDS)
        schema = read_str(obj["schema"], "schema")
        if schema != POLICY_SCHEMA:
            raise Invalid("schema", f"expected {POLICY_SCHEMA!r}, found {schema!r}")
        allow = obj.get("allow_development", False)
        if not isinstance(allow, bool):
            raise Invalid("allow_development", "expected true or false")
        return cls(
            required_steps=_strings(obj.get("required_steps", []), "required_steps"),
            min_metrics=(
                read_metrics(obj["min_metrics"], "min_metrics") if "min_metrics" in obj else None
            ),
            allowed_licenses=(
                _strings(obj["allowed_licenses"], "allowed_licenses")
                if "allowed_licenses" in obj
                else None
            ),
            allowed_signer_key_ids=(
                _key_ids(obj["allowed_signer_key_ids"], "allowed_signer_key_ids")
                if "allowed_signer_key_ids" in obj
                else None
            ),
            max_age_days=(
                read_count(obj["max_age_days"], "max_age_days") if "max_age_days" in obj else None
            ),
            allow_development=allow,
            max_measurements=(
                read_metrics(obj["max_measurements"], "max_measurements")
                if "max_measurements" in obj
                else None
            ),
            allowed_dataset_licenses=_optional_strings(obj, "allowed_dataset_licenses"),
            forbidden_dataset_tags=_optional_strings(obj, "forbidden_dataset_tags"),
            advisories=(
                read_str(obj["advisories"], "advisories", allow_empty=False)
                if "advisories" in obj
                else None
            ),
            fail_on_severity=_severity(obj.get("fail_on_severity", "high")),
        )


def _severity(value: object) -> str:
    from modelseal.verify.advisories import SEVERITIES

    text = read_str(value, "fail_on_severity").lower()
    text = "medium" if text == "moderate" else text
    if text not in SEVERITIES[:4]:
        raise Invalid("fail_on_severity", "expected low, medium, high or critical")
    return text


def _strings(value: object, path: str) -> tuple[str, ...]:
    if not isinstance(value, list):
        raise Invalid(path, "expected an array of strings")
    return tuple(
        read_str(item, join_path(path, i), allow_empty=False) for i, item in enumerate(value)
    )


def _optional_strings(obj: dict[str, object], name: str) -> tuple[str, ...] | None:
    return _strings(obj[name], name) if name in obj else None


def _key_ids(value: object, path: str) -> tuple[str, ...]:
    ids = _strings(value, path)
    for index, key_id in enumerate(ids):
        if len(key_id) != 64 or not set(key_id) <= _HEX:
            raise Invalid(join_path(path, index), "expected a key id: 64 lowercase hex characters")
    return ids


@dataclass(frozen=True)
class PolicyFacts:
    """What verification established, for the policy to judge: the verified manifest, the steps
    the verified layout defines, and the key ids of everyone who signed (links and model.sig)."""

    manifest: Manifest
    steps: tuple[str, ...]
    signer_key_ids: tuple[str, ...]
    now: dt.datetime
    # What the verified evaluate link measured (its byproducts), e.g. p95_latency_ms.
    measurements: Mapping[str, float] = field(default_factory=dict)


def evaluate(policy: Policy, facts: PolicyFacts, where: str) -> list[str]:
    """PolicyError for the first rule the bundle breaks; the rules that held, described."""
    held: list[str] = []
    manifest = facts.manifest
    missing = [step for step in policy.required_steps if step not in facts.steps]
    if missing:
        raise PolicyError(
            what="a required step is not in the verified provenance",
            where=f"{where}: required_steps",
            remedy="record the step with `modelseal record` and rotate the layout, or re-train "
            "and rebuild the model with provenance",
            expected=", ".join(policy.required_steps),
            found=", ".join(facts.steps) or "no steps",
        )
    if policy.required_steps:
        held.append(f"steps {', '.join(policy.required_steps)} present")
    for name, minimum in sorted((policy.min_metrics or {}).items()):
        value = metric_value(manifest, name)
        if value is None or value < minimum:
            raise PolicyError(
                what=f"metric {name!r} is below the policy's minimum",
                where=f"manifest.json: metrics.{name}",
                remedy="re-train the model to meet the minimum, or change the policy",
                expected=f">= {minimum}",
                found="not recorded" if value is None else str(value),
            )
        held.append(f"{name} {value} >= {minimum}")
    check_measurements(policy.max_measurements, facts.measurements, where, held)
    check_data(policy.allowed_dataset_licenses, policy.forbidden_dataset_tags, manifest, held)
    _licenses(policy.allowed_licenses, manifest, held)
    _signers(policy.allowed_signer_key_ids, facts.signer_key_ids, where, held)
    if policy.max_age_days is not None:
        epoch = manifest.build.source_date_epoch
        try:
            built = dt.datetime.fromtimestamp(epoch, dt.timezone.utc)
        except (OverflowError, OSError, ValueError):
            raise PolicyError(
                what="the build time is not a date this host can represent",
                where="manifest.json: build.source_date_epoch",
                remedy="rebuild the model: its manifest records an impossible build time",
                expected="a Unix time in seconds",
                found=str(epoch),
            ) from None
        age = (facts.now - built).days
        if age > policy.max_age_days:
            raise PolicyError(
                what="the model is older than the policy allows",
                where="manifest.json: build.source_date_epoch",
                remedy="rebuild and re-sign the model from a recent commit, or change the policy",
                expected=f"at most {policy.max_age_days} days",
                found=f"{age} days (built {built.strftime('%Y-%m-%d')})",
            )
        held.append(f"age {age} <= {policy.max_age_days} days")
    return held


def _licenses(allowed: Sequence[str] | None, manifest: Manifest, held: list[str]) -> None:
    if allowed is None:
        return
    if manifest.license not in allowed:
        raise PolicyError(
            what="the model's license is not allowed",
            where="manifest.json: license",
            remedy="clear the license and add it to allowed_licenses, or use another model",
            expected=" or ".join(allowed) or "(no license is allowed)",
            found=manifest.license or "(none declared)",
        )
    held.append(f"license {manifest.license}")


def _signers(
    allowed: Sequence[str] | None, signers: Sequence[str], where: str, held: list[str]
) -> None:
    if allowed is None:
        return
    for key_id in signers:
        if key_id not in allowed:
            raise PolicyError(
                what="signed by a key the policy does not allow",
                where=f"{where}: allowed_signer_key_ids",
                remedy="re-sign with an allowed key, or add this key id after review",
                expected="one of " + ", ".join(sorted(allowed)),  # in full: the report keeps it
                found=key_id,
            )
    held.append(f"{len(signers)} signer keys allowed")
