"""Install-time verification: every check a deployment host runs before it trusts a bundle.

The checks run in a fixed order and stop at the first failure, because each one is only
meaningful once the ones before it passed (docs/verification.md):

1. archive: a tar is judged header by header before one byte is extracted, then extracted into a
   private temporary directory; a directory is walked for links and special files;
2. signature: `model.sig` against the release key, over every file;
3. provenance: the owner-signed layout, its expiry, every link's signature and threshold, the
   revocation list, the artifact rules chaining train -> package -> sign;
4. integrity: every file's sha256 and size against `manifest.json`, and no unlisted file;
5. runtime: this interpreter against the manifest's and the PEX's constraints and wheel tags;
6. trust and policy: development trust, then the operator's policy file.

Each failure is a `modelseal.errors` class with its own exit code, so a deployment script can
tell a hostile archive from a stale model without reading English. Nothing is written outside
the private directory, which is removed when the caller is done with the verified copy.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import os
import sys
import threading
from collections.abc import Callable, Iterator, Mapping
from concurrent.futures import ThreadPoolExecutor

from modelseal.errors import (
    ArchiveError,
    IntegrityCheckError,
    ModelsealError,
    ProvenanceCheckError,
    SignatureCheckError,
    SpecError,
    TrustError,
    VerificationError,
)
from modelseal.format.canonical import load_json
from modelseal.format.digests import sha256_file
from modelseal.format.manifest import MANIFEST_PATH, PROVENANCE_DIR, Manifest, is_reserved
from modelseal.format.safe_extract import (
    extract_bundle,
    private_directory,
    remove_tree,
)
from modelseal.format.tree import walk
from modelseal.keys.core import PublicKey
from modelseal.verify.evaluation_policy import check_evaluation_file, read_measurements
from modelseal.verify.hostcheck import Host, check_constraints, check_wheels, read_pex_info
from modelseal.verify.policy import PolicyFacts, evaluate
from modelseal.verify.report import (
    CHECKS,
    CheckResult,
    Progress,
    Report,
    TerminalProgress,
    VerifyOptions,
)

__all__ = [
    "CHECKS",
    "CheckResult",
    "Report",
    "VerifyOptions",
    "default_progress",
    "verified_bundle",
]

MAX_MANIFEST_SIZE = 16 * 1024 * 1024
CHANGED = "the bundle was changed after packaging: re-download it, or rebuild and re-sign it"


# -- the checks -------------------------------------------------------------------------------


def _archive(path: str, options: VerifyOptions, scratch: list[str]) -> tuple[str, str]:
    """(bundle directory to verify, detail). A tar is extracted into a new private directory,
    recorded in `scratch` so that the caller removes it whatever happens next."""
    if os.path.isdir(path):
        try:
            entries = [e for e in walk(path) if not e.is_dir]
        except SpecError as e:
            raise ArchiveError.from_error(e) from None
        total = sum(e.size for e in entries)
        if total > options.limits.max_total_size:
            raise ArchiveError(
                what="the bundle is above the total size limit",
                where=path,
                remedy="raise --max-total-size if this model really is that large",
                expected=f"at most {options.limits.max_total_size} bytes",
                found=f"{total} bytes",
            )
        return os.path.abspath(path), f"directory with {len(entries)} files, {total} bytes"
    if not os.path.isfile(path):
        raise SpecError(
            what="no such bundle directory or tar",
            where=path,
            remedy="pass the directory or .tar that `pants package` wrote",
        )
    destination = private_directory()
    scratch.append(destination)
    root = extract_bundle(path, destination, options.limits)
    return root, "tar checked member by member and extracted into a private directory"


Hashed = Mapping[str, "tuple[str, int]"]  # bundle path -> (sha256, bytes read)


def _hash_bundle(root: str, options: VerifyOptions) -> dict[str, tuple[str, int]]:
    """(sha256, size) of every file of the bundle, each read once, in parallel: the signature,
    provenance and integrity checks all compare against these, so the bytes checked are the
    bytes hashed, and no file is read twice."""
    try:
        entries = [e for e in walk(root) if not e.is_dir]
    except SpecError as e:
        raise ArchiveError.from_error(e) from None
    files = {e.path: os.path.join(root, *e.path.split("/")) for e in entries}
    total = sum(e.size for e in entries)
    return _hash_all(files, total, options.progress, options.workers)


def _signature(root: str, options: VerifyOptions, hashed: Hashed) -> str:
    from modelseal.signing.modelsig import verify_bundle_signature

    try:
        verified = verify_bundle_signature(root, options.release_pem, known=hashed)
    except ModelsealError as e:
        raise SignatureCheckError.from_error(e) from None
    except Exception as e:  # A malformed but signed statement: never a traceback.
        raise SignatureCheckError(
            what=f"model.sig is malformed ({type(e).__name__})",
            where=os.path.join(root, "model.sig"),
            remedy="re-sign the bundle with `modelseal sign`",
        ) from None
    key_id = PublicKey.from_pem(options.release_pem).key_id
    return f"model.sig by release key {key_id[:16]} signs {len(verified.digests)} files"


def _provenance(
    root: str, options: VerifyOptions, hashed: Hashed
) -> tuple[tuple[str, ...], tuple[str, ...]]:
    """Verify the layout and links; (the layout's step names, the links' signer key ids)."""
    from modelseal.signing.provenance import LAYOUT_PATH, verify_provenance

    try:
        verify_provenance(root, options.owner_pem, revoked=options.revoked, known=hashed)
        with open(os.path.join(root, *LAYOUT_PATH.split("/")), "rb") as f:
            layout = load_json(f.read())
        steps = tuple(str(step["name"]) for step in layout["signed"]["steps"])  # type: ignore[index]
        signers: set[str] = set()
        directory = os.path.join(root, PROVENANCE_DIR)
        for name in sorted(os.listdir(directory)):
            if name.endswith(".link") and name != "files.link":
                with open(os.path.join(directory, name), "rb") as f:
                    link = load_json(f.read())
                for signature in link["signatures"]:  # type: ignore[index]
                    signers.add(str(signature["keyid"]))
    except ModelsealError as e:
        raise ProvenanceCheckError.from_error(e) from None
    except Exception as e:  # in-toto and malformed metadata: many exception types, one meaning.
        raise ProvenanceCheckError(
            what=f"the provenance is malformed ({type(e).__name__})",
            where=os.path.join(root, PROVENANCE_DIR),
            remedy="re-sign the bundle's provenance, or re-download the bundle",
        ) from None
    return steps, tuple(sorted(signers))


def _read_manifest(root: str) -> Manifest:
    path = os.path.join(root, MANIFEST_PATH)
    try:
        with open(path, "rb") as f:
            data = f.read(MAX_MANIFEST_SIZE + 1)
    except FileNotFoundError:
        raise IntegrityCheckError(
            what="no manifest.json", where=path, remedy="re-download or rebuild the bundle"
        ) from None
    if len(data) > MAX_MANIFEST_SIZE:
        raise IntegrityCheckError(
            what="manifest.json is too large",
            where=path,
            remedy="rebuild the bundle",
            expected=f"at most {MAX_MANIFEST_SIZE} bytes",
            found="more",
        )
    try:
        return Manifest.from_bytes(data, source=MANIFEST_PATH)
    except ModelsealError as e:
        raise IntegrityCheckError.from_error(e) from None
    except RecursionError:
        raise IntegrityCheckError(
            what="manifest.json nests too deeply", where=path, remedy="rebuild the bundle"
        ) from None


def _hash_all(
    files: Mapping[str, str], total: int, progress: Progress | None, workers: int | None
) -> dict[str, tuple[str, int]]:
    """{bundle path: sha256} of `files` (bundle path -> local path), streamed, in parallel:
    hashlib releases the GIL, so threads use every core."""
    done = 0
    lock = threading.Lock()

    def tick(count: int) -> None:
        nonlocal done
        with lock:
            done += count
            current = done
        if progress is not None:
            progress(current, total)

    count = max(1, min(workers or os.cpu_count() or 1, len(files) or 1))
    paths = list(files)
    with ThreadPoolExecutor(max_workers=count) as pool:
        digests = list(pool.map(lambda p: sha256_file(files[p], tick), paths))
    return dict(zip(paths, digests))


def _integrity(root: str, hashed: Hashed) -> tuple[Manifest, str]:
    manifest = _read_manifest(root)
    check_evaluation_file(root, manifest)
    expected = {entry.path: entry for entry in manifest.files}
    for present in walk(root):
        if not present.is_dir and present.path not in expected and not is_reserved(present.path):
            raise IntegrityCheckError(
                what="a file the manifest does not list",
                where=present.path,
                remedy=CHANGED,
                expected="only the manifest's files",
                found=f"{present.path} ({present.size} bytes)",
            )
    # Every file was hashed once, before the signature check (`_hash_bundle`): what is compared
    # here is what model.sig and the provenance were checked against.
    for path, entry in sorted(expected.items()):
        found = hashed.get(path)
        if found is None:
            local = os.path.join(root, *path.split("/"))
            raise IntegrityCheckError(
                what="a file the manifest lists is missing",
                where=path,
                remedy=CHANGED,
                expected=f"{entry.size} bytes",
                found="not a file" if os.path.lexists(local) else "no file",
            )
        if found[1] != entry.size:
            raise IntegrityCheckError(
                what="size differs from the manifest",
                where=path,
                remedy=CHANGED,
                expected=f"{entry.size} bytes",
                found=f"{found[1]} bytes",
            )
    for path, entry in sorted(expected.items()):
        if hashed[path][0] != entry.sha256:
            raise IntegrityCheckError(
                what="sha256 differs from the manifest",
                where=path,
                remedy=CHANGED,
                expected=entry.sha256,
                found=hashed[path][0],
            )
    total = sum(entry.size for entry in manifest.files)
    return manifest, f"{len(expected)} files, {total} bytes match manifest.json"


def _runtime(root: str, manifest: Manifest, options: VerifyOptions) -> str:
    host = options.host or (Host.of(options.python) if options.python else Host.current())
    details = [
        check_constraints(
            manifest.runtime.interpreter_constraints,
            host,
            "manifest.json: runtime.interpreter_constraints",
        )
    ]
    pex = os.path.join(root, *manifest.runtime.pex.split("/"))
    info = read_pex_info(pex, manifest.runtime.pex)
    if info is None:
        details.append("no PEX-INFO: wheel compatibility not decided")
    else:
        where = f"{manifest.runtime.pex}: PEX-INFO"
        details.append(check_constraints(info.interpreter_constraints, host, where))
        details.append(check_wheels(info.wheels, host, f"{manifest.runtime.pex}: .deps"))
    return "; ".join(details)


def _trust(manifest: Manifest, options: VerifyOptions) -> str:
    allowed = options.allow_development or (
        options.policy is not None and options.policy.allow_development
    )
    if manifest.trust == "development" and not allowed:
        raise TrustError(
            what="a development bundle, signed with a per-user development key",
            where="manifest.json: trust",
            remedy="install a bundle built with release keys (docs/operations.md); for testing "
            "only, pass --allow-development or set allow_development in the policy",
            expected="release",
            found="development",
        )
    return f"trust {manifest.trust}"


@contextlib.contextmanager
def verified_bundle(path: str, options: VerifyOptions) -> Iterator[Report]:
    """Run every check on the bundle directory or tar at `path`, stopping at the first failure;
    yields the report, with `bundle_dir` usable until the context exits, when the private copy
    (if any) is removed. SpecError (exit 3) only for a path that is neither file nor directory."""
    scratch: list[str] = []
    report = Report()
    try:
        _run_checks(path, options, report, scratch)
        yield report
    finally:
        for directory in scratch:
            remove_tree(directory)


def _run_checks(path: str, options: VerifyOptions, report: Report, scratch: list[str]) -> None:
    now = options.now or dt.datetime.now(dt.timezone.utc)
    layout_steps: tuple[str, ...] = ()
    link_signers: tuple[str, ...] = ()

    def archive() -> str:
        root, detail = _archive(path, options, scratch)
        report.bundle_dir = root
        return detail

    hashed: dict[str, tuple[str, int]] = {}

    def signature() -> str:
        hashed.update(_hash_bundle(report.bundle_dir, options))
        return _signature(report.bundle_dir, options, hashed)

    def provenance() -> str:
        nonlocal layout_steps, link_signers
        layout_steps, link_signers = _provenance(report.bundle_dir, options, hashed)
        return (
            f"layout and {len(link_signers)} link signer(s) verified; "
            f"steps {', '.join(layout_steps)}"
        )

    def integrity() -> str:
        manifest, detail = _integrity(report.bundle_dir, hashed)
        report.manifest = manifest
        return detail

    def policy() -> str:
        if options.policy is None:
            return "no policy given"
        assert report.manifest is not None
        release = PublicKey.from_pem(options.release_pem).key_id
        facts = PolicyFacts(
            manifest=report.manifest,
            steps=layout_steps,
            signer_key_ids=tuple(sorted({*link_signers, release})),
            now=now,
            # Read only after the provenance check verified the links (steps are known then).
            measurements=read_measurements(report.bundle_dir) if "evaluate" in layout_steps
            else {},
        )
        return "; ".join(evaluate(options.policy, facts, options.policy_source)) or "no rules"

    steps: list[tuple[str, Callable[[], str]]] = [
        ("archive", archive),
        ("signature", signature),
        ("provenance", provenance),
        ("integrity", integrity),
        ("runtime", lambda: _runtime(report.bundle_dir, _manifest(report), options)),
        ("trust", lambda: _trust(_manifest(report), options)),
        ("policy", policy),
    ]
    for name, check in steps:
        try:
            detail = check()
        except VerificationError as e:
            report.checks.append(CheckResult(name, False, str(e)))
            report.failure = e
            return
        report.checks.append(CheckResult(name, True, detail))


def _manifest(report: Report) -> Manifest:
    assert report.manifest is not None  # The integrity check ran and set it.
    return report.manifest


def default_progress() -> TerminalProgress | None:
    """A progress line on stderr when it is a terminal, else None."""
    return TerminalProgress(sys.stderr) if sys.stderr.isatty() else None
