"""`modelseal inspect`: what a bundle or its tar holds, and who says they signed it, unverified.

Inspecting proves nothing (that is `modelseal verify`), but an operator must see at a glance
whether a bundle is signed at all, by which keys, until when its layout is valid, and where its
PEX can run, so that a bundle stripped of `model.sig` and `provenance/` does not look like a signed
one. Nothing is extracted from a tar: members are read in place after the same safety checks
`verify` runs.

`--json` prints the same `modelseal.report/v1` document as `verify --json` (docs/verification.md),
with `"verified": false`, every check `not_run`, and the manifest and file list added.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import os
import sys
import tarfile
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import IO, Optional

from modelseal.cli.evidence_summary import standard_evidence
from modelseal.errors import EXIT_OK, ModelsealError
from modelseal.format.canonical import canonical_json, load_json
from modelseal.format.manifest import PROVENANCE_DIR, SIGNATURE_PATH, Manifest, describe
from modelseal.keys.ids import short_key_id
from modelseal.verify.report import CHECKS, REPORT_SCHEMA

LAYOUT_PATH = f"{PROVENANCE_DIR}/root.layout"


@dataclass
class Signing:
    """What the signature files claim, read but not verified."""

    model_sig: bool = False
    layout_expires: str | None = None
    layout_steps: tuple[str, ...] = ()
    links: list[tuple[str, str]] = field(default_factory=list)  # (step, key id)
    evidence: list[tuple[str, str]] = field(default_factory=list)  # (row name, what it claims)
    problems: list[str] = field(default_factory=list)

    @property
    def release_key_id(self) -> str | None:
        """The sign link's signer: the release key, which also signs model.sig."""
        return next((key for step, key in self.links if step == "sign"), None)


def inspect_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("bundle", metavar="BUNDLE_OR_TAR", help="a bundle directory or its .tar")
    parser.add_argument(
        "--json",
        action="store_true",
        help="print the modelseal.report/v1 document (docs/verification.md) with the manifest "
        "and the files present; nothing in it is verified",
    )


def _signing(files: dict[str, bytes], present: set[str]) -> Signing:
    """Read model.sig's presence, the layout's expiry and steps, and each link's signers from
    `files` (bundle path -> bytes); what cannot be read is a problem to show, not an error."""
    result = Signing(model_sig=SIGNATURE_PATH in present)
    layout = files.get(LAYOUT_PATH)
    if layout is not None:
        try:
            signed = load_json(layout)["signed"]  # type: ignore[index]
            result.layout_expires = str(signed["expires"])
            result.layout_steps = tuple(str(step["name"]) for step in signed["steps"])
        except (ValueError, KeyError, TypeError):
            result.problems.append(f"{LAYOUT_PATH} is not an in-toto layout")
    for path, data in sorted(files.items()):
        if not path.endswith(".link"):
            continue
        try:
            link = load_json(data)
            step = str(link["signed"]["name"])  # type: ignore[index]
            for signature in link["signatures"]:  # type: ignore[index]
                result.links.append((step, str(signature["keyid"])))
        except (ValueError, KeyError, TypeError):
            result.problems.append(f"{path} is not an in-toto link")
    result.links.sort()
    result.evidence = standard_evidence(files)
    return result


Opened = tuple[Manifest, dict[str, int], dict[str, bytes], Optional[IO[bytes]]]


@contextlib.contextmanager
def _opened(path: str) -> Iterator[Opened]:
    """(manifest, present files and sizes, provenance files' bytes, model.pex opened or None)
    of a bundle directory or tar; the tar is checked as `verify` checks it before anything is
    read."""
    from modelseal.format.archive import read_tar_members
    from modelseal.format.bundle import read_bundle

    manifest, present_files = read_bundle(path)
    present = {p.path: p.size for p in present_files}
    wanted = [p for p in present if p.startswith(PROVENANCE_DIR + "/")]
    pex_path = manifest.runtime.pex
    if os.path.isdir(path):
        files = {}
        for name in wanted:
            with open(os.path.join(path, *name.split("/")), "rb") as f:
                files[name] = f.read()
        pex: IO[bytes] | None = None
        local = os.path.join(path, *pex_path.split("/"))
        if pex_path in present:
            pex = open(local, "rb")  # closed below
        try:
            yield manifest, present, files, pex
        finally:
            if pex is not None:
                pex.close()
        return
    listing = read_tar_members(path, read=wanted)
    with tarfile.open(path, "r:") as tar:
        member = tar.extractfile(f"{listing.top}/{pex_path}") if pex_path in present else None
        yield manifest, present, dict(listing.contents), member


def _environments(pex: IO[bytes] | None, where: str) -> list[str] | None:
    """Where the PEX's wheels let it run (`environments_from_wheels`); None without PEX-INFO."""
    from modelseal.verify.hostcheck import environments_from_wheels, read_pex_info

    if pex is None:
        return None
    try:
        info = read_pex_info(pex, where)
    except ModelsealError:
        return None
    return None if info is None else environments_from_wheels(info.wheels)


def _iso(epoch: int) -> str:
    return dt.datetime.fromtimestamp(epoch, dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def _text(manifest: Manifest, present: dict[str, int], signing: Signing,
          environments: list[str] | None) -> str:
    lines = [describe(manifest, present, environments=environments).rstrip("\n")]
    lines.append("signatures (as the files claim; not verified: run `modelseal verify`)")
    rows: list[tuple[str, str]] = []
    if not signing.model_sig and not signing.links and signing.layout_expires is None:
        rows.append(("signed", "NO: no model.sig and no provenance/"))
    else:
        rows.append(("model.sig", "present" if signing.model_sig else "MISSING"))
        release = signing.release_key_id
        rows.append(("release key", short_key_id(release) if release else "(no sign link)"))
        if signing.layout_expires is None:
            rows.append(("layout", f"MISSING ({LAYOUT_PATH})"))
        else:
            rows.append(("layout", f"expires {signing.layout_expires}, steps "
                         f"{', '.join(signing.layout_steps)}"))
        for step, key in signing.links:
            rows.append((f"link {step}", f"key {short_key_id(key)}"))
    rows += signing.evidence
    rows += [("problem", problem) for problem in signing.problems]
    width = max(len(r[0]) for r in rows)
    lines += [f"  {name.ljust(width)}  {value}" for name, value in rows]
    # Evaluation results and the handler interface (issue: evaluation) get their section here.
    return "\n".join(lines) + "\n"


def inspect_document(
    path: str, manifest: Manifest, present: dict[str, int], signing: Signing,
    environments: list[str] | None,
) -> dict[str, object]:
    """The `modelseal.report/v1` document of an inspection: nothing verified, no check run."""
    from modelseal.format.digests import sha256_file

    kind = "directory" if os.path.isdir(path) else "tar"
    return {
        "schema": REPORT_SCHEMA,
        "command": "inspect",
        "ok": True,
        "verified": False,
        "artifact": {
            "path": path,
            "kind": kind,
            "sha256": sha256_file(path)[0] if kind == "tar" else None,
        },
        "model": {"name": manifest.name, "version": manifest.version, "manifest_sha256": None},
        "trust": manifest.trust,
        "signers": {
            "owner": None,
            "release": signing.release_key_id,
            "links": [{"step": step, "key_id": key} for step, key in signing.links],
        },
        "layout": None
        if signing.layout_expires is None
        else {"expires": signing.layout_expires, "steps": list(signing.layout_steps)},
        "runtime": None,
        "checks": [{"name": name, "status": "not_run", "detail": ""} for name in CHECKS],
        "failure": None,
        "signed": signing.model_sig,
        "environments": environments,
        "manifest": manifest.to_json(),
        "files": [{"path": p, "size": s} for p, s in sorted(present.items())],
    }


def inspect(args: argparse.Namespace) -> int:
    with _opened(args.bundle) as (manifest, present, files, pex):
        environments = _environments(pex, manifest.runtime.pex)
    signing = _signing(files, set(present))
    if args.json:
        document = inspect_document(args.bundle, manifest, present, signing, environments)
        sys.stdout.buffer.write(canonical_json(document))
    else:
        sys.stdout.write(_text(manifest, present, signing, environments))
    sys.stdout.flush()
    return EXIT_OK
