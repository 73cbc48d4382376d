"""Comparing two bundles file by file, as a reproducibility audit does.

Signatures are not compared: an auditor rebuilds with their own keys, so `model.sig` and the
owner-signed layout and signed links under `provenance/` legitimately differ. Every other file
must be byte-identical, and so must its mode, since the tar records it. The one
signed-key-dependent field outside those files is the manifest's `trust` label ("release" or
"development"), which says which keys signed; a manifest that differs only there counts as equal
and the report says so.

Two files under `provenance/` say what was built, not who signed, so a rebuild must reproduce
them: the SBOM (compared byte for byte) and the SLSA statement (its DSSE payload is compared, its
signatures are not). Both name the manifest's digest, so they are compared when the two manifests
are byte-identical; when the manifests differ only in the trust label, they cannot be equal, and
the report lists them as not compared and says why.
"""

from __future__ import annotations

import base64
import binascii
import json
import os
import stat
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass

from modelseal.format.digests import sha256_files
from modelseal.format.fields import (
    MANIFEST_PATH,
    PROVENANCE_DIR,
    SBOM_PATH,
    SIGNATURE_PATH,
    SLSA_PATH,
)
from modelseal.format.safe_extract import extract_bundle, private_directory, remove_tree, scan_tar
from modelseal.format.tree import walk

MANIFEST = MANIFEST_PATH
# Key-independent evidence under provenance/ -> what of it is compared (see the module docstring).
DERIVED_EVIDENCE = {SBOM_PATH: "bytes", SLSA_PATH: "signed payload"}


def is_signature_bearing(path: str) -> bool:
    """Whether `path` (relative to the bundle) holds signatures or is signed by a key, which
    comparisons leave out: `model.sig` and `provenance/` except DERIVED_EVIDENCE."""
    if path in DERIVED_EVIDENCE:
        return False
    return path == SIGNATURE_PATH or path.startswith(PROVENANCE_DIR + "/")


@dataclass(frozen=True)
class FileState:
    sha256: str
    size: int
    executable: bool

    def to_json(self) -> dict[str, object]:
        return {"sha256": self.sha256, "size": self.size, "executable": self.executable}


@dataclass(frozen=True)
class Difference:
    """One file that is not the same on both sides; None where a side lacks the file."""

    path: str
    expected: FileState | None  # the published (or first) bundle
    found: FileState | None  # the rebuilt (or second) bundle

    def describe(self, expected: str = "published", found: str = "rebuilt") -> str:
        if self.found is None:
            return f"{self.path}: only in the {expected} bundle (sha256 {self.expected_digest})"
        if self.expected is None:
            return f"{self.path}: only in the {found} bundle (sha256 {self.found_digest})"
        if self.expected.sha256 == self.found.sha256:
            return (
                f"{self.path}: same bytes, but executable={self.expected.executable} {expected}, "
                f"executable={self.found.executable} {found}"
            )
        return (
            f"{self.path}: {expected} sha256 {self.expected_digest} ({self.expected.size} bytes), "
            f"{found} sha256 {self.found_digest} ({self.found.size} bytes)"
        )

    @property
    def expected_digest(self) -> str:
        return self.expected.sha256 if self.expected else "-"

    @property
    def found_digest(self) -> str:
        return self.found.sha256 if self.found else "-"

    def to_json(self) -> dict[str, object]:
        return {
            "path": self.path,
            "published": None if self.expected is None else self.expected.to_json(),
            "rebuilt": None if self.found is None else self.found.to_json(),
        }


@dataclass(frozen=True)
class Comparison:
    compared: tuple[str, ...]  # paths present and identical on both sides
    differences: tuple[Difference, ...]
    not_compared: tuple[str, ...]  # signature-bearing paths, from either side
    notes: tuple[str, ...]  # equalities that needed an explanation (the trust label)

    @property
    def reproduced(self) -> bool:
        return not self.differences

    def to_json(self) -> dict[str, object]:
        return {
            "reproduced": self.reproduced,
            "compared": list(self.compared),
            "differences": [d.to_json() for d in self.differences],
            "not_compared": list(self.not_compared),
            "notes": list(self.notes),
        }


def tree_states(root: str, modes: Mapping[str, int] | None = None) -> dict[str, FileState]:
    """Every regular file under `root` (relative POSIX path -> state), hashed in parallel. `modes`
    overrides the file system's modes: those a tar recorded, when `root` was extracted from one."""
    entries = [e for e in walk(root) if not e.is_dir]
    paths = {e.path: os.path.join(root, *e.path.split("/")) for e in entries}
    digests = sha256_files(paths.values())
    states = {}
    for relative, absolute in paths.items():
        sha, size = digests[absolute]
        mode = modes[relative] if modes and relative in modes else os.stat(absolute).st_mode
        states[relative] = FileState(sha, size, bool(mode & stat.S_IXUSR))
    return states


@contextmanager
def opened_bundle(path: str) -> Iterator[tuple[str, dict[str, FileState]]]:
    """A bundle directory, or a bundle tar checked and extracted into a private temporary
    directory (removed afterwards): (its directory, the state of every file)."""
    if os.path.isdir(path):
        yield path, tree_states(path)
        return
    scan = scan_tar(path)
    modes = {m.path: scan.modes[m.path] for m in scan.members if not m.is_dir}
    scratch = private_directory("modelseal-compare-")
    try:
        root = extract_bundle(path, scratch)
        yield root, tree_states(root, modes)
    finally:
        remove_tree(scratch)


def _manifest_equal_but_trust(expected: str, found: str) -> str | None:
    """A note when two manifests differ only in their trust label; None otherwise."""
    try:
        with open(expected, "rb") as f:
            a = json.load(f)
        with open(found, "rb") as f:
            b = json.load(f)
    except (OSError, ValueError):
        return None
    if not (isinstance(a, dict) and isinstance(b, dict)) or a.get("trust") == b.get("trust"):
        return None
    if {**a, "trust": None} != {**b, "trust": None}:
        return None
    return (
        f"{MANIFEST}: equal except its trust label (published {a.get('trust')!r}, rebuilt "
        f"{b.get('trust')!r}), which names the kind of keys that signed, not what was built"
    )


def compare_opened(
    expected: tuple[str, Mapping[str, FileState]], found: tuple[str, Mapping[str, FileState]]
) -> Comparison:
    """Compare two `opened_bundle`s: `expected` is the published one."""
    (expected_dir, expected_states), (found_dir, found_states) = expected, found
    return compare_states(expected_states, found_states, roots=(expected_dir, found_dir))


def _signed_payload(path: str) -> bytes | None:
    """The payload of the DSSE envelope at `path`, or None when it is not one."""
    try:
        with open(path, "rb") as f:
            document = json.load(f)
        return base64.b64decode(document["payload"], validate=True)
    except (OSError, ValueError, KeyError, TypeError, binascii.Error):
        return None


def _compare_evidence(
    path: str, a: FileState | None, b: FileState | None, roots: tuple[str, str] | None
) -> bool:
    """Whether the DERIVED_EVIDENCE file `path` is the same on both sides: its bytes, or the
    payload its signatures sign."""
    if a is None or b is None:
        return False
    if DERIVED_EVIDENCE[path] == "bytes" or a == b:
        return a == b
    if roots is None or a.executable != b.executable:
        return False
    payloads = [_signed_payload(os.path.join(root, *path.split("/"))) for root in roots]
    return payloads[0] is not None and payloads[0] == payloads[1]


def compare_states(
    expected: Mapping[str, FileState],
    found: Mapping[str, FileState],
    roots: tuple[str, str] | None = None,
) -> Comparison:
    """Compare two bundles' file states; `roots` (their directories) lets the manifests' trust
    labels and the SLSA statement's payload be read."""
    compared, differences, not_compared, notes = [], [], [], []
    manifests_identical = MANIFEST in expected and expected.get(MANIFEST) == found.get(MANIFEST)
    for path in sorted(set(expected) | set(found)):
        if is_signature_bearing(path):
            not_compared.append(path)
            continue
        a, b = expected.get(path), found.get(path)
        if path in DERIVED_EVIDENCE and a and b and not manifests_identical:
            not_compared.append(path)
            notes.append(
                f"{path}: not compared, since it names the manifest's digest and the manifests "
                "differ"
            )
            continue
        if path in DERIVED_EVIDENCE:
            if _compare_evidence(path, a, b, roots):
                compared.append(path)
                if a != b:
                    notes.append(
                        f"{path}: its {DERIVED_EVIDENCE[path]} is identical; its signatures "
                        "differ and were not compared"
                    )
            else:
                differences.append(Difference(path, a, b))
            continue
        if a == b:
            compared.append(path)
            continue
        if path == MANIFEST and a and b and roots and a.executable == b.executable:
            note = _manifest_equal_but_trust(*(os.path.join(r, MANIFEST) for r in roots))
            if note:
                compared.append(path)
                notes.append(note)
                continue
        differences.append(Difference(path, a, b))
    return Comparison(tuple(compared), tuple(differences), tuple(not_compared), tuple(notes))


def render(comparison: Comparison, expected: str = "published", found: str = "rebuilt") -> str:
    """The comparison as text for a terminal: differences first, each with both digests."""
    lines = []
    if comparison.differences:
        lines.append(f"{len(comparison.differences)} file(s) differ:")
        lines.extend(f"  {d.describe(expected, found)}" for d in comparison.differences)
    lines.append(
        f"{len(comparison.compared)} file(s) identical; not compared (signatures): "
        + (", ".join(comparison.not_compared) or "none")
    )
    lines.extend(f"note: {note}" for note in comparison.notes)
    return "\n".join(lines) + "\n"
