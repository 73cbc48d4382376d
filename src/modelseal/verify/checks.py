"""Install-time verification: every check a deployment host runs before it trusts a bundle.

The checks run in a fixed order and stop at the first failure, because each one is only
meaningful once the ones before it passed (docs/verification.md):

1. archive: a tar is read by the strict reader (modelseal.format.tarstream) and written into a
   private temporary directory, each file hashed as it is written; a directory is walked for
   links and special files and hashed;
2. signature: `model.sig` against a key the layout authorizes for `sign`, over every file;
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
from dataclasses import dataclass, field

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
from modelseal.format.digests import check_tree, sha256_file
from modelseal.format.manifest import (
    MANIFEST_PATH,
    PROVENANCE_DIR,
    SIGNATURE_PATH,
    Manifest,
    is_reserved,
)
from modelseal.format.safe_extract import (
    METADATA_LIMIT,
    extract_and_hash,
    private_directory,
    remove_tree,
)
from modelseal.format.tree import walk
from modelseal.keys.core import PublicKey
from modelseal.keys.ids import short_key_id
from modelseal.verify.build_provenance import check_build_provenance
from modelseal.verify.evaluation_policy import check_evaluation_file, read_measurements
from modelseal.verify.policy import PolicyFacts, evaluate
from modelseal.verify.report import (
    CHECKS,
    CheckResult,
    Progress,
    Report,
    TerminalProgress,
    VerifyOptions,
)
from modelseal.verify.runtime_check import runtime_line, verify_5_runtime
from modelseal.verify.vulnerability_policy import check_vulnerabilities

__all__ = [
    "CHECKS",
    "CheckResult",
    "Report",
    "VerifyOptions",
    "default_progress",
    "verified_bundle",
]

CHANGED = "the bundle was changed after packaging: re-download it, or rebuild and re-sign it"


# -- the checks, numbered as in docs/verification.md ------------------------------------------


@dataclass
class _State:
    """What each check hands to the ones after it."""

    root: str = ""
    hashed: dict[str, tuple[str, int]] = field(default_factory=dict)  # path -> (sha256, size)
    sign_key: PublicKey | None = None
    steps: tuple[str, ...] = ()
    signers: tuple[str, ...] = ()
    link_signers: tuple[tuple[str, str], ...] = ()  # (step, key id) of every link signature
    expires: str | None = None


def verify_1_archive(path: str, options: VerifyOptions, state: _State, scratch: list[str]) -> str:
    """A tar is read header by header by the strict reader and written into a new private
    directory (recorded in `scratch` so the caller removes it whatever happens), each file hashed
    as it is written: the later checks compare those digests, and the tar is never read again.
    A directory is walked for links and special files and hashed in place."""
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
        for entry in entries:  # Before anything is read: these are read whole later.
            if is_reserved(entry.path) and entry.size > METADATA_LIMIT:
                raise ArchiveError(
                    what="a manifest, signature or provenance file larger than modelseal reads",
                    where=os.path.join(path, entry.path),
                    remedy="re-download the bundle",
                    expected=f"at most {METADATA_LIMIT} bytes",
                    found=f"{entry.size} bytes",
                )
        state.root = os.path.abspath(path)
        files = {e.path: os.path.join(state.root, *e.path.split("/")) for e in entries}
        state.hashed = _hash_all(files, total, options.progress, options.workers)
        return f"directory with {len(entries)} files, {total} bytes"
    if not os.path.isfile(path):
        raise SpecError(
            what="no such bundle directory or tar",
            where=path,
            remedy="pass the directory or .tar that `pants package` wrote",
        )
    destination = private_directory()
    scratch.append(destination)
    state.root, state.hashed = extract_and_hash(path, destination, options.limits)
    return "tar read member by member, written into a private directory and hashed"


def _authorized_sign_keys(root: str, options: VerifyOptions) -> list[PublicKey]:
    """The keys the layout lets sign the `sign` step (the layout's own signature is checked by
    check 3; a forged layout fails there), narrowed to the `--release-key` pin if given."""
    from modelseal.signing.provenance import LAYOUT_PATH

    where = os.path.join(root, *LAYOUT_PATH.split("/"))
    try:
        with open(where, "rb") as f:
            layout = load_json(f.read(METADATA_LIMIT + 1))
        signed = layout["signed"]  # type: ignore[index]
        (step,) = (s for s in signed["steps"] if s["name"] == "sign")
        keys = [
            PublicKey.from_pem(signed["keys"][k]["keyval"]["public"].encode("ascii"))
            for k in step["pubkeys"]
        ]
    except FileNotFoundError:
        raise SignatureCheckError(
            what="no in-toto layout, so no key is allowed to sign model.sig",
            where=where,
            remedy="re-download the bundle with its provenance/",
        ) from None
    except Exception as e:  # Malformed layout JSON: many exception types, one meaning.
        raise SignatureCheckError(
            what=f"the layout names no usable key for the sign step ({type(e).__name__})",
            where=where,
            remedy="re-download the bundle, or re-sign its layout (`modelseal layout rotate`)",
        ) from None
    if options.release is None:
        return keys
    pinned = [k for k in keys if k.key_id == options.release.key_id]
    if not pinned:
        raise SignatureCheckError(
            what="the --release-key is another key than the layout allows for the sign step",
            where=where,
            remedy="pass the release key the layout names, or ask the owner to rotate the layout",
            expected=f"one of {', '.join(k.key_id[:16] for k in keys)}",
            found=options.release.key_id[:16],
        )
    return pinned


def verify_2_signature(options: VerifyOptions, state: _State) -> str:
    """`model.sig` verifies with a key the layout authorizes for `sign` (and the pin, if any),
    and covers every file of the bundle but itself: no ignore path can hide a file."""
    from modelseal.signing.modelsig import verify_bundle_signature

    for path, (_, size) in sorted(state.hashed.items()):
        if is_reserved(path) and size > METADATA_LIMIT:
            raise SignatureCheckError(
                what="a manifest, signature or provenance file larger than modelseal reads",
                where=path,
                remedy="re-download the bundle",
                expected=f"at most {METADATA_LIMIT} bytes",
                found=f"{size} bytes",
            )
    keys = _authorized_sign_keys(state.root, options)
    try:
        verified = verify_bundle_signature(state.root, keys, known=state.hashed)
    except ModelsealError as e:
        raise SignatureCheckError.from_error(e) from None
    except Exception as e:  # A malformed but signed statement: never a traceback.
        raise SignatureCheckError(
            what=f"model.sig is malformed ({type(e).__name__})",
            where=os.path.join(state.root, SIGNATURE_PATH),
            remedy="re-sign the bundle with `modelseal sign`",
        ) from None
    for path in sorted(state.hashed):
        if path != SIGNATURE_PATH and path not in verified.digests:
            raise SignatureCheckError(
                what="present in the bundle but not signed by model.sig",
                where=path,
                remedy=CHANGED,
            )
    state.sign_key = verified.key
    count = len(verified.digests)
    return f"model.sig by release key {short_key_id(verified.key.key_id)} signs {count} files"


def verify_3_provenance(options: VerifyOptions, state: _State, now: dt.datetime) -> str:
    """The layout is the owner's and unexpired at `now`, no trusted key is revoked, every link
    verifies up to its threshold, and the artifact rules chain train -> package -> sign."""
    from modelseal.signing.provenance import LAYOUT_PATH, verify_provenance

    root = state.root
    try:
        verify_provenance(root, options.owner, revoked=options.revoked, now=now, known=state.hashed)
        with open(os.path.join(root, *LAYOUT_PATH.split("/")), "rb") as f:
            layout = load_json(f.read(METADATA_LIMIT + 1))
        steps = tuple(str(step["name"]) for step in layout["signed"]["steps"])  # type: ignore[index]
        state.expires = str(layout["signed"]["expires"])  # type: ignore[index]
        signers: set[tuple[str, str]] = set()
        directory = os.path.join(root, PROVENANCE_DIR)
        for name in sorted(os.listdir(directory)):
            if name.endswith(".link"):
                with open(os.path.join(directory, name), "rb") as f:
                    link = load_json(f.read(METADATA_LIMIT + 1))
                for signature in link["signatures"]:  # type: ignore[index]
                    step = str(link["signed"]["name"])  # type: ignore[index]
                    signers.add((step, str(signature["keyid"])))
    except ModelsealError as e:
        raise ProvenanceCheckError.from_error(e) from None
    except Exception as e:  # in-toto and malformed metadata: many exception types, one meaning.
        raise ProvenanceCheckError(
            what=f"the provenance is malformed ({type(e).__name__})",
            where=os.path.join(root, PROVENANCE_DIR),
            remedy="re-sign the bundle's provenance, or re-download the bundle",
        ) from None
    build = check_build_provenance(root, layout, state.hashed)
    state.steps, state.link_signers = steps, tuple(sorted(signers))
    state.signers = tuple(sorted({key for _, key in signers}))
    return (
        f"layout (expires {state.expires}) and {len(signers)} link signature(s) verified; "
        f"steps {', '.join(steps)}; {build}"
    )


def _read_manifest(root: str) -> Manifest:
    path = os.path.join(root, MANIFEST_PATH)
    try:
        with open(path, "rb") as f:
            data = f.read(METADATA_LIMIT + 1)
    except FileNotFoundError:
        raise IntegrityCheckError(
            what="no manifest.json", where=path, remedy="re-download or rebuild the bundle"
        ) from None
    if len(data) > METADATA_LIMIT:
        raise IntegrityCheckError(
            what="manifest.json is too large",
            where=path,
            remedy="rebuild the bundle",
            expected=f"at most {METADATA_LIMIT} bytes",
            found="more",
        )
    try:
        return Manifest.from_bytes(data, source=MANIFEST_PATH)
    except ModelsealError as e:
        raise IntegrityCheckError.from_error(e) from None


def verify_4_integrity(report: Report, state: _State) -> str:
    """Every file the manifest lists has its size and sha256, and nothing else is there but the
    manifest, model.sig and provenance/ (the same check `model.pex` and `bundle` use)."""
    manifest = _read_manifest(state.root)
    check_evaluation_file(state.root, manifest)
    expected = {entry.path: (entry.sha256, entry.size) for entry in manifest.files}
    try:
        check_tree(state.root, expected, unlisted_ok=is_reserved, known=state.hashed)
    except ModelsealError as e:
        raise IntegrityCheckError.from_error(e) from None
    report.manifest = manifest
    total = sum(entry.size for entry in manifest.files)
    return f"{len(expected)} files, {total} bytes match manifest.json"


def _hash_all(
    files: Mapping[str, str], total: int, progress: Progress | None, workers: int | None
) -> dict[str, tuple[str, int]]:
    """{bundle path: (sha256, size)} of `files` (bundle path -> local path), streamed, in
    parallel: hashlib releases the GIL, so threads use every core."""
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
        futures = [pool.submit(sha256_file, files[p], tick) for p in paths]
        _import_later_checks()
        digests = [future.result() for future in futures]
    return dict(zip(paths, digests))


def _import_later_checks() -> None:
    """Import what checks 2 and 3 need (cryptography, in-toto, securesystemslib: about 0.15 s
    of CPU) while the hashing threads read the weights: hashlib releases the GIL, so on a host
    with a core the hashing leaves free (one large file is hashed on one core) the imports
    cost no wall time instead of adding to it. Importing is all this does; the checks
    themselves still run after the hashing, in order."""
    import modelseal.signing.modelsig
    import modelseal.signing.provenance  # noqa: F401


def verify_6_trust(manifest: Manifest, options: VerifyOptions) -> str:
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


def verify_7_policy(report: Report, options: VerifyOptions, state: _State, now: dt.datetime) -> str:
    """The operator's policy file, when given, over the facts the checks before established."""
    if options.policy is None:
        return "no policy given"
    assert report.manifest is not None and state.sign_key is not None
    facts = PolicyFacts(
        manifest=report.manifest,
        steps=state.steps,
        signer_key_ids=tuple(sorted({*state.signers, state.sign_key.key_id})),
        now=now,
        # Read only after the provenance check verified the links.
        measurements=read_measurements(state.root) if "evaluate" in state.steps else {},
    )
    held = evaluate(options.policy, facts, options.policy_source)
    check_vulnerabilities(options.policy, state.root, options.policy_source, held)
    return "; ".join(held) or "no rules"


def _run_checks(path: str, options: VerifyOptions, report: Report, scratch: list[str]) -> None:
    """Checks 1-7 in order, stopping at the first failure (in the style of in-toto's
    verifylib: one numbered function per check, composed here and nowhere else)."""
    now = options.now or dt.datetime.now(dt.timezone.utc)
    state = _State()

    def archive() -> str:
        detail = verify_1_archive(path, options, state, scratch)
        report.bundle_dir, report.digests = state.root, state.hashed
        return detail

    steps: list[tuple[str, Callable[[], str]]] = [
        ("archive", archive),
        ("signature", lambda: verify_2_signature(options, state)),
        ("provenance", lambda: verify_3_provenance(options, state, now)),
        ("integrity", lambda: verify_4_integrity(report, state)),
        ("runtime", lambda: _runtime(report, options)),
        ("trust", lambda: verify_6_trust(_manifest(report), options)),
        ("policy", lambda: verify_7_policy(report, options, state, now)),
    ]
    report.owner_key_id = options.owner.key_id
    for name, check in steps:
        try:
            detail = check()
        except VerificationError as e:
            # Paths inside the private copy of a tar mean nothing to the user: bundle-relative.
            if report.bundle_dir and e.where.startswith(report.bundle_dir + os.sep):
                e.where = e.where[len(report.bundle_dir) + 1 :].replace(os.sep, "/")
            _facts(report, state)
            report.checks.append(CheckResult(name, False, str(e)))
            report.failure = e
            return
        report.checks.append(CheckResult(name, True, detail))
    _facts(report, state)


def _facts(report: Report, state: _State) -> None:
    """What the checks that passed established, for the report."""
    report.release_key_id = state.sign_key.key_id if state.sign_key is not None else None
    report.layout_expires, report.layout_steps = state.expires, state.steps
    report.link_signers = state.link_signers
    if report.manifest is not None and MANIFEST_PATH in state.hashed:
        report.manifest_sha256 = state.hashed[MANIFEST_PATH][0]


def _runtime(report: Report, options: VerifyOptions) -> str:
    report.runtime = verify_5_runtime(report.bundle_dir, _manifest(report), options)
    return runtime_line(report.runtime)


def _manifest(report: Report) -> Manifest:
    assert report.manifest is not None  # The integrity check ran and set it.
    return report.manifest


def default_progress() -> TerminalProgress | None:
    """A progress line on stderr when it is a terminal, else None."""
    return TerminalProgress(sys.stderr) if sys.stderr.isatty() else None
