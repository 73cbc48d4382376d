"""The `model_artifact` and `model_training` targets and their fields.

Fields validate what can be judged from the BUILD file alone (types, shapes, paths), so a mistake
is reported with the target's address and the field's name before any work starts. Everything
that depends on file contents is decided by the modelseal tool in the sandbox.
"""

from __future__ import annotations

import math
import os
import re
from collections.abc import Iterable, Mapping
from typing import Any, ClassVar, Optional, Union

from pants.backend.python.target_types import (
    InterpreterConstraintsField,
    PexCompletePlatformsField,
    PexPlatformsField,
)
from pants.base.glob_match_error_behavior import GlobMatchErrorBehavior
from pants.core.goals.package import OutputPathField
from pants.engine.addresses import Address, AddressInput
from pants.engine.fs import GlobExpansionConjunction, PathGlobs
from pants.engine.target import (
    COMMON_TARGET_FIELDS,
    Dependencies,
    DictStringToStringField,
    Field,
    IntField,
    InvalidFieldException,
    InvalidFieldTypeException,
    MultipleSourcesField,
    StringField,
    StringSequenceField,
    Target,
    TriBoolField,
)
from pants.util.frozendict import FrozenDict
from pants.util.strutil import help_text

_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*$")
_IDENTIFIER = r"[A-Za-z_][A-Za-z0-9_]*"
_FUNCTION = re.compile(rf"^{_IDENTIFIER}(\.{_IDENTIFIER})*:{_IDENTIFIER}$")
_ENTRY_POINT = re.compile(rf"^{_IDENTIFIER}(\.{_IDENTIFIER})*(:{_IDENTIFIER}(\.{_IDENTIFIER})*)?$")


class _RelativeGlobsField(MultipleSourcesField):
    """Globs relative to the target's directory (Pants refuses `../`)."""

    uses_source_roots = False

    def strict_path_globs(self) -> PathGlobs:
        """Each glob must match a file, whatever `[GLOBAL].unmatched_build_file_globs` says: a
        model that misses one of its files is broken, not worth a warning."""
        prefix = self.address.spec_path
        return PathGlobs(
            (
                f"!{os.path.join(prefix, glob[1:])}" if glob.startswith("!")
                else os.path.join(prefix, glob)
                for glob in self.globs
            ),
            conjunction=GlobExpansionConjunction.all_match,
            glob_match_error_behavior=GlobMatchErrorBehavior.error,
            description_of_origin=f"{self.address}'s `{self.alias}` field",
        )


class ModelWeightsField(_RelativeGlobsField):
    alias = "weights"
    help = help_text(
        """
        Globs of the model's files, relative to the target's directory: weights in any format,
        tokenizers, configs. Nested directories are kept: `weights/<path>` in the bundle is the
        file's path relative to this directory. A glob that matches nothing is an error.
        Leave empty when `training` names a `model_training` target, whose outputs are the weights.
        """
    )


class ModelArtifactDependenciesField(Dependencies):
    help = help_text(
        """
        The handler code (python_sources) and its third-party requirements. Pants resolves them
        from the pinned resolve into the bundle's `model.pex`.
        """
    )


class _PatternField(StringField):
    """A required string that must match `pattern`; the error says what was `expected`."""

    required = True
    pattern: ClassVar[re.Pattern[str]]
    expected: ClassVar[str]

    @classmethod
    def compute_value(cls, raw_value: Optional[str], address: Address) -> str:
        value = super().compute_value(raw_value, address)
        assert value is not None
        if not cls.pattern.match(value):
            raise InvalidFieldException(
                f"The {cls.alias!r} field in target {address} must {cls.expected}, "
                f"but was {value!r}."
            )
        return value


class ModelEntryPointField(_PatternField):
    alias = "entry_point"
    pattern = _ENTRY_POINT
    expected = "look like `package.module` or `package.module:name`"
    help = help_text(
        """
        The handler: a module (`package.module`) or an object in one (`package.module:name`)
        with `load(weights_dir) -> model` and `predict(model, inputs) -> outputs`; inputs and
        outputs are JSON values. See docs/formats.md, "Handler interface".
        """
    )


class _NameField(_PatternField):
    pattern = _NAME
    expected = "start with a letter or digit and contain only letters, digits, '.', '_' and '-'"


class ModelNameField(_NameField):
    alias = "model_name"
    help = "The model's name: the bundle is `<model_name>-<version>`."


class ModelVersionField(_NameField):
    alias = "version"
    help = "The model's version, e.g. `1.0.0`."


class ModelLicenseField(StringField):
    alias = "license"
    help = "The license the model is released under, as an SPDX expression, e.g. `Apache-2.0`."


class ModelDescriptionField(StringField):
    alias = "description"
    help = "One or two sentences on what the model does; recorded in the manifest."


class ModelDatasetsField(DictStringToStringField):
    alias = "datasets"
    help = help_text(
        """
        The datasets the model was trained on: name -> `sha256:<64 hex>`, or a URI pinned by
        digest, `<uri>#sha256=<64 hex>` or `<uri>@sha256:<64 hex>` (e.g.
        `s3://datasets/iris.csv@sha256:...`). Recorded in the manifest's lineage.
        """
    )


class _NumberDictField(Field):
    """A dict of str -> number, e.g. metrics. Pants has no such field type built in."""

    value: Optional[FrozenDict[str, Union[int, float]]]
    default: ClassVar[None] = None
    allow_bool: ClassVar[bool] = False
    allow_str: ClassVar[bool] = False
    expected_type_description: ClassVar[str] = "a dictionary of names to numbers"

    @classmethod
    def compute_value(
        cls, raw_value: Optional[Mapping[str, Any]], address: Address
    ) -> Optional[FrozenDict[str, Any]]:
        value = super().compute_value(raw_value, address)
        if value is None:
            return None
        if not isinstance(value, Mapping):
            raise InvalidFieldTypeException(
                address, cls.alias, raw_value, expected_type=cls.expected_type_description
            )
        for key, item in value.items():
            if not isinstance(key, str):
                raise InvalidFieldTypeException(
                    address, cls.alias, raw_value, expected_type=cls.expected_type_description
                )
            if not cls._allowed(item):
                raise InvalidFieldException(
                    f"The {cls.alias!r} field in target {address} must map names to "
                    f"{cls.expected_type_description.split(' to ', 1)[1]}, but {key!r} is "
                    f"{item!r} ({type(item).__name__})."
                )
        return FrozenDict(sorted(value.items()))

    @classmethod
    def _allowed(cls, item: Any) -> bool:
        if isinstance(item, bool):
            return cls.allow_bool
        if isinstance(item, str):
            return cls.allow_str
        return isinstance(item, (int, float)) and math.isfinite(item)


class ModelMetricsField(_NumberDictField):
    alias = "metrics"
    help = help_text(
        """
        Evaluation metrics: name -> number, e.g. `{"accuracy": 0.97}`. Metrics that a
        `model_training` target measures are added to these; the two may not disagree.
        """
    )


class HyperparametersField(_NumberDictField):
    alias = "hyperparameters"
    allow_bool = True
    allow_str = True
    expected_type_description = "a dictionary of names to numbers, strings or booleans"
    help = "Hyper-parameters: name -> number, string or boolean. Recorded in the lineage."


class ModelTrainingRefField(StringField):
    alias = "training"
    help = help_text(
        """
        Where the weights' training provenance comes from: the address of a `model_training`
        target (e.g. `:train`), whose outputs become the weights and whose metrics are recorded,
        or the path of an imported in-toto training link (a file ending in `.link`, relative to
        this directory).
        """
    )

    def is_link_file(self) -> bool:
        return bool(self.value and self.value.endswith(".link"))

    def target_input(self, owner: Address) -> AddressInput:
        """The `model_training` target this field names (when it names one, not a link)."""
        assert self.value and not self.is_link_file()
        return AddressInput.parse(
            self.value,
            relative_to=owner.spec_path,
            description_of_origin=f"the `training` field of {owner}",
        )


class ModelInterpreterConstraintsField(InterpreterConstraintsField):
    help = help_text(
        """
        The CPython versions `model.pex` runs on, e.g. `["CPython>=3.11,<3.14"]`. Defaults to
        `[python].interpreter_constraints`. With `complete_platforms`, one artifact carries the
        wheels of every listed interpreter.
        """
    )


class ModelPlatformsField(PexPlatformsField):
    help = help_text(
        """
        Abbreviated platforms (`<platform>-<impl>-<version>-<abi>`, e.g.
        `macosx-11.0-arm64-cp-311-cp311`) for which `model.pex` carries wheels. Prefer
        `complete_platforms`.
        """
    )


class ModelCompletePlatformsField(PexCompletePlatformsField):
    help = help_text(
        """
        `file` targets holding complete platform JSON (`pex3 interpreter inspect --markers
        --tags`) for which `model.pex` carries wheels: several CPython versions, manylinux and
        macOS, where wheels exist.
        """
    )


class ModelArchiveField(TriBoolField):
    alias = "archive"
    help = help_text(
        """
        Whether `pants package` also writes `<model_name>-<version>.tar` (the deterministic
        archive of the bundle directory) next to the directory. Unset: `[modelseal].archive`
        (default false), because the tar costs a second read, hash and write of every weight.
        """
    )


class ModelArtifactTarget(Target):
    alias = "model_artifact"
    core_fields = (
        *COMMON_TARGET_FIELDS,
        ModelWeightsField,
        ModelArtifactDependenciesField,
        ModelEntryPointField,
        ModelNameField,
        ModelVersionField,
        ModelLicenseField,
        ModelDescriptionField,
        ModelDatasetsField,
        ModelMetricsField,
        HyperparametersField,
        ModelTrainingRefField,
        ModelInterpreterConstraintsField,
        ModelPlatformsField,
        ModelCompletePlatformsField,
        ModelArchiveField,
        OutputPathField,
    )
    help = help_text(
        """
        A machine-learning model packaged as a portable, byte-reproducible bundle.

        `pants package` writes `<output_path>/<model_name>-<version>/` (model.pex, weights/,
        manifest.json, model.sig and provenance/: the owner-signed in-toto layout and the signed
        links), and with `archive=True` the same as one deterministic
        `<model_name>-<version>.tar`. `python model.pex info` summarizes the bundle; `python
        model.pex predict < inputs.json` checks the weights' digests, loads them with the
        handler and prints predictions. `modelseal verify` checks it all on a deployment host.

        Where a model may live: in any directory. Its weights are paths relative to the BUILD
        file and need no source root; its handler code is ordinary `python_sources`, so the
        directory that holds the `entry_point` package must be under one of your source roots
        (`[source].root_patterns` or `marker_filenames`). With a model in `ml/vision/edges/` and
        `root_patterns = ["/ml/vision"]`, the handler `ml/vision/edges/handler.py` is
        `entry_point="edges.handler"`; a `NoSourceRootError` means the directory is under no root.

        How a model picks its resolve: from its handler code. `model.pex` is built from the
        `python_sources` (and requirements) in `dependencies`, which all must share one resolve:
        each target's `resolve` field, else `[python].default_resolve`; set it for a directory
        at once with `__defaults__({python_sources: dict(resolve="models")})`. The resolve's
        lockfile pins every third-party distribution in `model.pex`, and its digest is recorded
        in the manifest. `interpreter_constraints` default to those of that code.
        """
    )


# -- model_training ----------------------------------------------------------------------------


class TrainingDataField(_RelativeGlobsField):
    alias = "data"
    help = help_text(
        """
        The dataset files the training reads, relative to the target's directory. Only these
        files are in the training sandbox, under `data/` (nested directories kept).
        """
    )


class TrainingDependenciesField(Dependencies):
    help = "The training code (python_sources) and its third-party requirements."


class TrainingEntryPointField(_PatternField):
    alias = "entry_point"
    pattern = _FUNCTION
    expected = "name a function, as `package.module:function`"
    help = help_text(
        """
        The training function, as `package.module:function`. It is called as
        `function(data_dir, output_dir, seed, hyperparameters)` and returns a dict of metrics
        (name -> number); it writes the model's files under `output_dir`.
        """
    )


class TrainingSeedField(IntField):
    alias = "seed"
    default = 0
    help = "The seed passed to the training function (and PYTHONHASHSEED), for reproducibility."


class TrainingOutputsField(StringSequenceField):
    alias = "outputs"
    required = True
    help = help_text(
        """
        The files the training writes under its `output_dir`, relative to it; they become the
        `weights/` of a `model_artifact` that names this target in `training`.
        """
    )

    @classmethod
    def compute_value(
        cls, raw_value: Optional[Iterable[str]], address: Address
    ) -> Optional[tuple[str, ...]]:
        value = super().compute_value(raw_value, address)
        for path in value or ():
            if path.startswith("/") or ".." in path.split("/") or not path:
                raise InvalidFieldException(
                    f"The {cls.alias!r} field in target {address} has {path!r}: outputs are "
                    "paths relative to the training's output directory."
                )
        return value


class ModelTrainingTarget(Target):
    alias = "model_training"
    core_fields = (
        *COMMON_TARGET_FIELDS,
        TrainingDataField,
        TrainingDependenciesField,
        TrainingEntryPointField,
        TrainingSeedField,
        HyperparametersField,
        TrainingOutputsField,
    )
    help = help_text(
        """
        Trains a model in the build: runs `entry_point` in a sandbox with only the pinned
        resolve, the declared `data` files and a fixed `seed`. Its `outputs` (and the metrics it
        returns) feed the `model_artifact` that names it in `training`. Cached like any other
        process: the same inputs give the same outputs without training again.
        """
    )
