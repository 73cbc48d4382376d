"""The fields of a manifest (and of the spec it is written from), read strictly: one reader per
kind of field, each naming the field's path in its error (`files[3].sha256: ...`), and the
records they return. `modelseal.format.manifest` assembles them into the Manifest.

Standard library only: `model.pex` imports this module on hosts that have nothing but Python.
"""

from __future__ import annotations

import math
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Union

from modelseal.errors import SpecError
from modelseal.format.canonical import join_path

MANIFEST_PATH = "manifest.json"
PEX_PATH = "model.pex"
WEIGHTS_DIR = "weights"
# Written after the manifest, by signing: never listed in it, never an unexpected file.
SIGNATURE_PATH = "model.sig"
PROVENANCE_DIR = "provenance"
# Evidence beside the links, written by signing (modelseal.signing.sbom and .slsa): the CycloneDX
# SBOM (unsigned content, covered by model.sig) and the SLSA statement (a signed DSSE envelope).
SBOM_PATH = "provenance/sbom.cdx.json"
SLSA_PATH = "provenance/build.intoto.jsonl"
TRUST_LEVELS = ("development", "release")

HyperValue = Union[str, int, float, bool]
Number = Union[int, float]

_IDENT = r"[A-Za-z_][A-Za-z0-9_]*"
_DOTTED = rf"{_IDENT}(?:\.{_IDENT})*"
NAME_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]*")
ENTRY_POINT_RE = re.compile(rf"{_DOTTED}(?::{_DOTTED})?")
SHA256_RE = re.compile(r"[0-9a-f]{64}")
COMMIT_RE = re.compile(r"(?:[0-9a-f]{40}|[0-9a-f]{64})?")
# A dataset is pinned by content: a bare digest, or a URI that ends in one.
DATASET_RE = re.compile(
    r"sha256:[0-9a-f]{64}|[a-z][a-z0-9+.-]*://[^\s#@]+(?:#sha256=|@sha256:)[0-9a-f]{64}"
)


class Invalid(Exception):
    """A field is wrong; `path` says which. Readers raise it, the document's parser turns it into a
    SpecError that also names the document."""

    def __init__(self, path: str, what: str) -> None:
        super().__init__(path, what)
        self.path = path
        self.what = what

    def to_spec_error(self, source: str, remedy: str) -> SpecError:
        where = f"{source}: {self.path}" if self.path else source
        return SpecError(what=self.what, where=where, remedy=remedy)


EVALUATION_PATH = "evaluation.json"


def is_reserved(path: str) -> bool:
    """Paths a manifest never lists: itself, what signing adds to the bundle after it, and the
    evaluation's record (the manifest holds its summary; model.sig and the evaluate link sign
    the file itself)."""
    return (
        path in (MANIFEST_PATH, SIGNATURE_PATH, EVALUATION_PATH)
        or path.startswith(PROVENANCE_DIR + "/")
    )


def bundle_path_problem(path: str) -> str | None:
    """Why `path` cannot name a file in a bundle, or None. Paths are POSIX and relative to the
    bundle root, so they mean the same file on every host and cannot escape the bundle."""
    segments = path.split("/")
    checks = (
        (not path, "must not be empty"),
        (path.startswith("/"), "must be relative to the bundle root"),
        ("\\" in path, "must use '/' as separator, not a backslash"),
        (
            any(ord(char) < 0x20 or ord(char) == 0x7F for char in path),
            "must not contain control characters",
        ),
        ("" in segments, "must not contain empty segments"),
        (".." in segments, "must not contain '..'"),
        ("." in segments, "must not contain '.' segments"),
    )
    for failed, problem in checks:
        if failed:
            return problem
    return None


# -- field readers ------------------------------------------------------------------------------


_KINDS = (
    (bool, "a boolean"),  # Before int: a bool is an int.
    ((int, float), "a number"),
    (str, "a string"),
    (list, "an array"),
    (dict, "an object"),
)


def _kind(value: object) -> str:
    """What a JSON value is, in the words of the JSON spec, for error messages."""
    if value is None:
        return "null"
    for types, name in _KINDS:
        if isinstance(value, types):
            return name
    return f"a {type(value).__name__}"


def read_object(
    value: object, path: str, required: Sequence[str], optional: Sequence[str] = ()
) -> dict[str, object]:
    if not isinstance(value, dict):
        raise Invalid(path, f"expected an object, found {_kind(value)}")
    for name in required:
        if name not in value:
            raise Invalid(join_path(path, name), "required field is missing")
    for name in sorted(value):
        if name not in required and name not in optional:
            raise Invalid(join_path(path, name), "unknown field")
    return value


def read_str(value: object, path: str, *, allow_empty: bool = True) -> str:
    if not isinstance(value, str):
        raise Invalid(path, f"expected a string, found {_kind(value)}")
    if not allow_empty and not value:
        raise Invalid(path, "must not be empty")
    return value


def read_name(value: object, path: str) -> str:
    text = read_str(value, path)
    if not NAME_RE.fullmatch(text):
        raise Invalid(
            path,
            f"{text!r} is not a valid name: use letters, digits, '.', '_' and '-', "
            "starting with a letter or digit",
        )
    return text


def read_entry_point(value: object, path: str) -> str:
    text = read_str(value, path)
    if not ENTRY_POINT_RE.fullmatch(text):
        raise Invalid(path, f"{text!r} is not an entry point: expected 'package.module[:attr]'")
    return text


def read_trust(value: object, path: str) -> str:
    text = read_str(value, path)
    if text not in TRUST_LEVELS:
        raise Invalid(path, f"{text!r} is not one of {', '.join(TRUST_LEVELS)}")
    return text


def read_sha256(value: object, path: str) -> str:
    text = read_str(value, path)
    if not SHA256_RE.fullmatch(text):
        raise Invalid(path, "expected 64 lowercase hex characters")
    return text


def read_count(value: object, path: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise Invalid(path, f"expected a non-negative integer, found {_kind(value)}")
    return value


def read_number(value: object, path: str) -> Number:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise Invalid(path, f"expected a number, found {_kind(value)}")
    if isinstance(value, float) and not math.isfinite(value):
        raise Invalid(path, "expected a finite number")
    return value


def read_bundle_path(value: object, path: str) -> str:
    text = read_str(value, path)
    problem = bundle_path_problem(text)
    if problem:
        raise Invalid(path, f"{text!r} {problem}")
    return text


def read_str_tuple(value: object, path: str) -> tuple[str, ...]:
    if not isinstance(value, list):
        raise Invalid(path, f"expected an array of strings, found {_kind(value)}")
    return tuple(
        read_str(item, join_path(path, index), allow_empty=False)
        for index, item in enumerate(value)
    )


def _read_keys(value: object, path: str) -> dict[str, object]:
    if not isinstance(value, dict):
        raise Invalid(path, f"expected an object, found {_kind(value)}")
    for key in value:
        if not key:
            raise Invalid(path, "keys must not be empty")
    return value


def read_str_map(value: object, path: str) -> dict[str, str]:
    return {
        key: read_str(item, join_path(path, key)) for key, item in _read_keys(value, path).items()
    }


def read_metrics(value: object, path: str) -> dict[str, Number]:
    return {
        key: read_number(item, join_path(path, key))
        for key, item in _read_keys(value, path).items()
    }


def read_datasets(value: object, path: str) -> dict[str, str]:
    datasets = read_str_map(value, path)
    for key, ref in datasets.items():
        if not DATASET_RE.fullmatch(ref):
            raise Invalid(
                join_path(path, key),
                f"{ref!r} is not pinned: expected 'sha256:<64 hex>' or a URI ending in "
                "'#sha256=<64 hex>' or '@sha256:<64 hex>'",
            )
    return datasets


def read_hyperparameters(value: object, path: str) -> dict[str, HyperValue]:
    result: dict[str, HyperValue] = {}
    for key, item in _read_keys(value, path).items():
        if isinstance(item, (bool, str)):
            result[key] = item
        elif isinstance(item, (int, float)):
            result[key] = read_number(item, join_path(path, key))
        else:
            raise Invalid(
                join_path(path, key),
                f"expected a string, number or boolean, found {_kind(item)}",
            )
    return result


def read_training(value: object, path: str) -> dict[str, str] | None:
    return None if value is None else read_str_map(value, path)


def read_runtime(value: object, path: str) -> Runtime:
    obj = read_object(
        value,
        path,
        ("interpreter_constraints", "platforms", "complete_platforms", "pex"),
        optional=("environments",),
    )
    environments = obj.get("environments")
    return Runtime(
        interpreter_constraints=read_str_tuple(
            obj["interpreter_constraints"], join_path(path, "interpreter_constraints")
        ),
        platforms=read_str_tuple(obj["platforms"], join_path(path, "platforms")),
        complete_platforms=read_str_tuple(
            obj["complete_platforms"], join_path(path, "complete_platforms")
        ),
        pex=read_bundle_path(obj["pex"], join_path(path, "pex")),
        environments=None
        if environments is None
        else read_str_tuple(environments, join_path(path, "environments")),
    )


def read_files(value: object, path: str) -> tuple[FileEntry, ...]:
    """The file list; rejects duplicates, reserved paths and a file that is another's directory."""
    if not isinstance(value, list):
        raise Invalid(path, f"expected an array of files, found {_kind(value)}")
    entries: list[FileEntry] = []
    seen: dict[str, int] = {}
    for index, item in enumerate(value):
        item_path = join_path(path, index)
        obj = read_object(item, item_path, ("path", "sha256", "size"))
        entry = FileEntry(
            path=read_bundle_path(obj["path"], join_path(item_path, "path")),
            sha256=read_sha256(obj["sha256"], join_path(item_path, "sha256")),
            size=read_count(obj["size"], join_path(item_path, "size")),
        )
        if entry.path in seen:
            raise Invalid(
                join_path(item_path, "path"),
                f"{entry.path!r} is listed twice (also at {join_path(path, seen[entry.path])})",
            )
        if is_reserved(entry.path):
            raise Invalid(
                join_path(item_path, "path"),
                f"{entry.path!r} is reserved for the manifest and signatures",
            )
        seen[entry.path] = index
        entries.append(entry)
    for index, entry in enumerate(entries):
        parts = entry.path.split("/")
        for depth in range(1, len(parts)):
            parent = "/".join(parts[:depth])
            if parent in seen:
                raise Invalid(
                    join_path(join_path(path, index), "path"),
                    f"{entry.path!r} is inside {parent!r}, which is listed as a file",
                )
    return tuple(entries)


def check_pex_listed(runtime: Runtime, files: Sequence[FileEntry], path: str) -> None:
    if runtime.pex not in {entry.path for entry in files}:
        raise Invalid(join_path(path, "pex"), f"{runtime.pex!r} is not listed in files")


def read_build(value: object, path: str, *, with_version: bool = True) -> Build:
    names = ["commit", "source_date_epoch", "lock_sha256", "pants_version"]
    if with_version:
        names.append("modelseal_version")
    # Optional for bundles written before the build recorded the work tree's state.
    obj = read_object(value, path, names, optional=("dirty", "dirty_sha256"))
    dirty = obj.get("dirty", False)
    if not isinstance(dirty, bool):
        raise Invalid(join_path(path, "dirty"), f"expected true or false, found {_kind(dirty)}")
    dirty_sha256 = obj.get("dirty_sha256", "")
    if dirty:
        dirty_sha256 = read_sha256(dirty_sha256, join_path(path, "dirty_sha256"))
    elif dirty_sha256 != "":
        raise Invalid(join_path(path, "dirty_sha256"), "must be empty when dirty is false")
    commit = read_str(obj["commit"], join_path(path, "commit"))
    if not COMMIT_RE.fullmatch(commit):
        raise Invalid(
            join_path(path, "commit"),
            "expected a full git commit id (40 or 64 lowercase hex characters), or empty",
        )
    return Build(
        commit=commit,
        source_date_epoch=read_count(
            obj["source_date_epoch"], join_path(path, "source_date_epoch")
        ),
        lock_sha256=read_sha256(obj["lock_sha256"], join_path(path, "lock_sha256")),
        pants_version=read_str(
            obj["pants_version"], join_path(path, "pants_version"), allow_empty=False
        ),
        modelseal_version=(
            read_str(
                obj["modelseal_version"], join_path(path, "modelseal_version"), allow_empty=False
            )
            if with_version
            else ""
        ),
        dirty=dirty,
        dirty_sha256=str(dirty_sha256),
    )


# -- the records ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class FileEntry:
    """One file of the bundle: its POSIX path relative to the bundle root, sha256 and size."""

    path: str
    sha256: str
    size: int

    def to_json(self) -> dict[str, object]:
        return {"path": self.path, "sha256": self.sha256, "size": self.size}


@dataclass(frozen=True)
class Runtime:
    """What the model's PEX runs on; `pex` is its path in the bundle (its digest is in `files`)."""

    interpreter_constraints: tuple[str, ...]
    platforms: tuple[str, ...]
    complete_platforms: tuple[str, ...]
    pex: str = PEX_PATH
    # Where the wheels actually in the PEX let it run (`modelseal.verify.environments`), written
    # by `modelseal manifest`; None in a bundle spec and in manifests written before it.
    environments: tuple[str, ...] | None = None

    def to_json(self) -> dict[str, object]:
        document: dict[str, object] = {
            "interpreter_constraints": list(self.interpreter_constraints),
            "platforms": list(self.platforms),
            "complete_platforms": list(self.complete_platforms),
            "pex": self.pex,
        }
        if self.environments is not None:
            document["environments"] = list(self.environments)
        return document


@dataclass(frozen=True)
class Lineage:
    """Where the model came from: pinned datasets, hyper-parameters and the training step."""

    datasets: dict[str, str] = field(default_factory=dict)
    hyperparameters: dict[str, HyperValue] = field(default_factory=dict)
    training: dict[str, str] | None = None

    def to_json(self) -> dict[str, object]:
        return {
            "datasets": dict(self.datasets),
            "hyperparameters": dict(self.hyperparameters),
            "training": None if self.training is None else dict(self.training),
        }


@dataclass(frozen=True)
class Build:
    """What an auditor needs to rebuild the bundle: the commit, its time, the lock and the tools."""

    commit: str
    source_date_epoch: int
    lock_sha256: str
    pants_version: str
    modelseal_version: str
    # Whether the work tree differed from `commit` when it was built (uncommitted changes or
    # untracked files), and the sha256 of that difference (`git diff HEAD --binary`, then the
    # untracked files' names): an auditor who rebuilds `commit` cannot expect the same bytes.
    dirty: bool = False
    dirty_sha256: str = ""

    def to_json(self) -> dict[str, object]:
        return {
            "commit": self.commit,
            "source_date_epoch": self.source_date_epoch,
            "lock_sha256": self.lock_sha256,
            "pants_version": self.pants_version,
            "modelseal_version": self.modelseal_version,
            "dirty": self.dirty,
            "dirty_sha256": self.dirty_sha256,
        }
