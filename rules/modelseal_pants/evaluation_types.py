"""The `model_evaluation` target, and the `evaluation` field `model_artifact` names it with.

An evaluation is a target of its own (rather than more fields on `model_artifact`) because it
has its own files (data, examples, schemas) and may be shared by several versions of a model;
`pants help model_evaluation` documents it, and docs/evaluation.md what the build does with it.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from typing import ClassVar, Optional

from pants.engine.addresses import Address, AddressInput
from pants.engine.target import (
    COMMON_TARGET_FIELDS,
    IntField,
    InvalidFieldException,
    SecondaryOwnerMixin,
    SingleSourceField,
    StringField,
    StringSequenceField,
    Target,
)
from pants.util.strutil import help_text

from modelseal_pants.target_types import _RelativeGlobsField

_GATE = re.compile(r"^\s*[A-Za-z_][A-Za-z0-9_.]*\s*(>=|<=|==|>|<)\s*-?[0-9][0-9.eE+-]*\s*$")
_IDENT = r"[A-Za-z_][A-Za-z0-9_]*"
_FUNCTION = re.compile(rf"^{_IDENT}(\.{_IDENT})*(:{_IDENT})?$")


class EvaluationDataField(_RelativeGlobsField):
    alias = "data"
    required = False
    help = help_text(
        """
        Globs of the evaluation data, relative to this target's directory. `evaluate()` reads
        them from `dataset_dir` (its second argument) at the same relative paths; the evaluate
        link records their sha256 as materials, and the manifest's evaluation summary lists them.
        """
    )


class EvaluationFunctionField(StringField):
    alias = "evaluate"
    default = "evaluate"
    help = help_text(
        """
        The model's evaluation function, `evaluate(model, dataset_dir) -> {metric: number}`: a
        name on the handler (default `evaluate`), or `package.module:function` in the model's
        closure. Set to "" for no evaluate function (then only the examples, the interface and
        the measured gates are checked).
        """
    )

    @classmethod
    def compute_value(cls, raw_value: Optional[str], address: Address) -> Optional[str]:
        value = super().compute_value(raw_value, address)
        if value and not _FUNCTION.match(value):
            raise InvalidFieldException(
                f"The {cls.alias!r} field in target {address} must be a function name or "
                f"`package.module:function`, but was {value!r}."
            )
        return value


class EvaluationGatesField(StringSequenceField):
    alias = "gates"
    help = help_text(
        """
        Conditions the model must meet before it is signed, `METRIC OP NUMBER` with OP one of
        >=, <=, >, <, ==: metrics `evaluate()` returns (e.g. "accuracy >= 0.9", recorded in
        evaluation.json), or the measured `p50_latency_ms`, `p95_latency_ms`, `max_latency_ms`
        (over `latency_samples` predictions of the examples) and `peak_rss_mb`, measured on every
        build and never cached; the signed evaluate link records the bound each measured gate
        proved ("p95_latency_ms": "<= 50"), so the bundle stays byte-reproducible, and the raw
        numbers go to the build's log. A failed gate stops the build; nothing reaches dist/.
        """
    )

    @classmethod
    def compute_value(
        cls, raw_value: Optional[Iterable[str]], address: Address
    ) -> Optional[tuple[str, ...]]:
        value = super().compute_value(raw_value, address)
        for gate in value or ():
            if not _GATE.match(gate):
                raise InvalidFieldException(
                    f"The {cls.alias!r} field in target {address} has {gate!r}: write "
                    "METRIC OP NUMBER, e.g. 'accuracy >= 0.9' or 'p95_latency_ms <= 50'."
                )
        return value


class _JsonFileField(SingleSourceField, SecondaryOwnerMixin):
    """A JSON file of the evaluation. Pants gives a target's files to one `SourcesField` only
    (`data`, the first), so without secondary ownership a changed examples or schema file would
    belong to no target and `--changed-dependents` would miss the model it goes into."""

    required = False
    uses_source_roots = False
    expected_file_extensions: ClassVar[tuple[str, ...]] = (".json",)


class EvaluationExamplesField(_JsonFileField):
    alias = "examples"
    help = help_text(
        """
        A JSON file holding an array of inputs to `predict`: the smoke test predicts each one
        (checked against the input and output schemas), the evaluation records the sha256 of
        the outputs, and the latency gates time them.
        """
    )


class InputSchemaField(_JsonFileField):
    alias = "input_schema"
    help = help_text(
        """
        A JSON Schema of `predict`'s input, recorded in the manifest; `model.pex predict`
        refuses input that breaks it. Only the subset `modelseal.embedded.schema` enforces is
        accepted (docs/evaluation.md); any other keyword fails the build.
        """
    )


class OutputSchemaField(_JsonFileField):
    alias = "output_schema"
    help = "A JSON Schema of `predict`'s output; the examples' outputs are checked against it."


class DatasetLicenseField(StringField):
    alias = "dataset_license"
    required = True
    help = help_text(
        """
        The evaluation data's license (an SPDX id such as CC-BY-4.0), recorded in the manifest:
        `modelseal verify --policy` can restrict it (`allowed_dataset_licenses`).
        """
    )


class DatasetTagsField(StringSequenceField):
    alias = "dataset_tags"
    help = help_text(
        """
        Governance tags of the evaluation data (e.g. `pii`, `synthetic`), recorded in the
        manifest; a policy can forbid some (`forbidden_dataset_tags`).
        """
    )


class LatencySamplesField(IntField):
    alias = "latency_samples"
    default = 50
    help = "How many predictions (of the examples, in turn) the latency gates are measured over."

    @classmethod
    def compute_value(cls, raw_value: Optional[int], address: Address) -> Optional[int]:
        value = super().compute_value(raw_value, address)
        if value is not None and not 0 <= value <= 100_000:
            raise InvalidFieldException(
                f"The {cls.alias!r} field in target {address} must be between 0 and 100000."
            )
        return value


class ModelEvaluationTarget(Target):
    alias = "model_evaluation"
    core_fields = (
        *COMMON_TARGET_FIELDS,
        EvaluationDataField,
        EvaluationFunctionField,
        EvaluationGatesField,
        EvaluationExamplesField,
        InputSchemaField,
        OutputSchemaField,
        DatasetLicenseField,
        DatasetTagsField,
        LatencySamplesField,
    )
    help = help_text(
        """
        How a model is evaluated before it is signed: evaluation data (with its license and
        tags), the model's `evaluate(model, dataset_dir)` function, gates on its metrics and on
        measured latency and memory, examples, and the input and output JSON Schemas of
        `predict`. A `model_artifact` names it in its `evaluation` field; `pants package` then
        runs the evaluation against the built model.pex, records evaluation.json in the bundle
        and a signed in-toto `evaluate` link, and signs nothing if a gate fails
        (docs/evaluation.md).
        """
    )


class ModelEvaluationRefField(StringField):
    alias = "evaluation"
    help = help_text(
        """
        The address of a `model_evaluation` target (e.g. ":eval"). Without one, the build still
        smoke-tests the model (imports the handler and calls load(weights)) before signing.
        """
    )

    def target_input(self, address: Address) -> AddressInput:
        return AddressInput.parse(
            self.value or "", relative_to=address.spec_path,
            description_of_origin=f"the `evaluation` field of {address}",
        )
