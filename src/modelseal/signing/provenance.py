"""in-toto provenance: signed links for the `train`, `package` and `sign` steps, and the
owner-signed layout that chains them.

The metadata is real in-toto (the `in_toto` library's models, signed through a securesystemslib
`Signer` that wraps modelseal's own), so the reference `in-toto-verify` accepts it unchanged:

    cd BUNDLE && in-toto-verify --layout provenance/root.layout \
        --verification-keys owner.pub --link-dir provenance

Artifacts are `{path: {"sha256": hex}}` with POSIX paths relative to the bundle (or training)
directory, never absolute, so links are the same bytes on every machine. Link files are named
`<step>.<keyid[:8]>.link`, where keyid is modelseal's key id (SHA-256 of the DER
SubjectPublicKeyInfo), and are canonical JSON. One exception, forced by `in-toto-verify`, which
computes the owner's key id itself from `owner.pub` with securesystemslib's rule (SHA-256 of the
canonical JSON of keytype, scheme and PEM): the layout's signature carries that id.

The layout's rules chain the steps: weights the `package` step used must be products of `train`;
what `sign` signed must be exactly the products of `package`; and an inspection, run by the
verifier inside the bundle, records every file on disk and requires each one to be a product of
`package` (or the provenance itself, or `model.sig`), so one changed byte anywhere fails it.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import os
from collections.abc import Iterable, Iterator, Mapping, Sequence
from typing import Any

from in_toto import settings, verifylib  # type: ignore[import-untyped]
from in_toto.exceptions import LayoutExpiredError  # type: ignore[import-untyped]
from in_toto.models.layout import Inspection, Layout, Step  # type: ignore[import-untyped]
from in_toto.models.link import Link  # type: ignore[import-untyped]
from in_toto.models.metadata import Metablock  # type: ignore[import-untyped]

# The package re-exports these without __all__, which mypy --strict does not follow.
from securesystemslib.signer._key import Key, SSlibKey
from securesystemslib.signer._signature import Signature
from securesystemslib.signer._signer import Signer as SSlibSigner
from securesystemslib.signer._utils import compute_default_keyid

from modelseal.errors import SigningError, SpecError
from modelseal.format.atomic import write_atomic
from modelseal.format.canonical import canonical_json, load_json
from modelseal.format.manifest import bundle_path_problem
from modelseal.keys.core import PublicKey, Signer

__all__ = [
    "INSPECTION_NAME",
    "LAYOUT_PATH",
    "STEPS",
    "InTotoSigner",
    "create_layout",
    "in_toto_key",
    "link_bytes",
    "link_file_name",
    "load_revocations",
    "owner_key_id",
    "revocations_bytes",
    "rotate_layout",
    "verify_provenance",
    "write_link",
]

STEPS = ("train", "package", "sign")
LAYOUT_PATH = "provenance/root.layout"
# The inspection's record is written by in-toto-verify to `<name>.link` in the bundle:
# `provenance/files.link`, which model.sig records as ignored (modelseal.signing.modelsig).
INSPECTION_NAME = "provenance/files"
REVOCATIONS_SCHEMA = "modelseal.revocations/v1"
# The most a layout or link may hold when verification reads it.
MAX_METADATA_SIZE = 4 * 1024 * 1024


def in_toto_key(public: PublicKey, key_id: str | None = None) -> dict[str, Any]:
    """The key as in-toto metadata records it (securesystemslib's dict, with its keyid)."""
    key = SSlibKey.from_crypto(public.key, keyid=key_id or public.key_id, scheme=public.scheme)
    result = key.to_dict()
    result["keyid"] = key.keyid
    return result


def owner_key_id(public: PublicKey) -> str:
    """The id in-toto-verify computes for `owner.pub`, which the layout's signature must carry."""
    key = SSlibKey.from_crypto(public.key, scheme=public.scheme)
    return compute_default_keyid(key.keytype, key.scheme, key.keyval)


class InTotoSigner(SSlibSigner):
    """A securesystemslib Signer over a modelseal Signer, so in-toto's own models sign through
    whatever holds the key (file or token), under the key id chosen for the metadata."""

    def __init__(self, signer: Signer, key_id: str | None = None) -> None:
        self._signer = signer
        public = signer.public_key()
        self._key = SSlibKey.from_crypto(
            public.key, keyid=key_id or public.key_id, scheme=public.scheme
        )

    @property
    def public_key(self) -> Key:
        return self._key

    @classmethod
    def from_priv_key_uri(
        cls, priv_key_uri: str, public_key: Key, secrets_handler: Any = None
    ) -> Any:
        raise NotImplementedError("modelseal loads keys by its own references")

    def sign(self, payload: bytes) -> Signature:
        return Signature(self._key.keyid, self._signer.sign(payload).hex())


def _check_artifacts(artifacts: Mapping[str, str], what: str) -> dict[str, dict[str, str]]:
    result: dict[str, dict[str, str]] = {}
    for path, digest in artifacts.items():
        problem = bundle_path_problem(path)
        if problem is not None:
            raise SpecError(
                what=f"{what} path {problem}",
                where=path,
                remedy="record paths relative to the bundle or training directory",
            )
        result[path] = {"sha256": digest}
    return result


def link_file_name(step: str, key_id: str) -> str:
    return f"{step}.{key_id[:8]}.link"


def link_bytes(
    step: str,
    materials: Mapping[str, str],
    products: Mapping[str, str],
    signer: Signer,
    *,
    command: Sequence[str] = (),
    byproducts: Mapping[str, Any] | None = None,
    environment: Mapping[str, Any] | None = None,
) -> bytes:
    """A signed in-toto link for `step`, as canonical JSON bytes. `materials` and `products`
    map relative paths to sha256 hex; `byproducts` and `environment` must hold no absolute paths
    (the caller decides what goes there)."""
    link = Link(
        name=step,
        materials=_check_artifacts(materials, "material"),
        products=_check_artifacts(products, "product"),
        command=list(command),
        byproducts=dict(byproducts or {}),
        environment=dict(environment or {}),
    )
    metablock = Metablock(signed=link)
    metablock.create_signature(InTotoSigner(signer))
    data: bytes = canonical_json(metablock.to_dict())
    return data


def write_link(
    step: str,
    materials: Mapping[str, str],
    products: Mapping[str, str],
    signer: Signer,
    out_dir: str | os.PathLike[str],
    **fields: Any,  # link_bytes keyword fields.
) -> str:
    """Write the signed link `<out_dir>/<step>.<keyid[:8]>.link` atomically; its path."""
    data = link_bytes(step, materials, products, signer, **fields)
    path = os.path.join(os.fspath(out_dir), link_file_name(step, signer.key_id))
    write_atomic(path, data)
    return path


# -- layout -----------------------------------------------------------------------------------


def _rules(with_train: bool = True) -> dict[str, tuple[list[list[str]], list[list[str]]]]:
    """(expected_materials, expected_products) per step. Train products are named by their
    bundle path (`weights/...`) so that they can be matched by the package step. Without a train
    step (weights committed to the repository), the package step is where the weights enter."""
    weights_from_train = [
        ["MATCH", "weights/*", "WITH", "PRODUCTS", "FROM", "train"],
        ["DISALLOW", "weights/*"],
    ]
    return {
        "train": ([["ALLOW", "*"]], [["ALLOW", "*"]]),
        "package": (
            [*(weights_from_train if with_train else []), ["ALLOW", "*"]],
            [
                ["ALLOW", "model.pex"],
                ["ALLOW", "manifest.json"],
                ["ALLOW", "weights/*"],
                ["DISALLOW", "*"],
            ],
        ),
        "sign": (
            [["MATCH", "*", "WITH", "PRODUCTS", "FROM", "package"], ["DISALLOW", "*"]],
            [["DISALLOW", "*"]],
        ),
    }


def _expires_text(expires: dt.datetime) -> str:
    if expires.tzinfo is None:
        raise SpecError(
            what="the expiry has no time zone",
            where="layout",
            remedy="give it in UTC, e.g. 2027-11-26T00:00:00Z",
        )
    return expires.astimezone(dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def _layout_metablock(
    owner: Signer,
    functionaries: Mapping[str, Sequence[PublicKey]],
    thresholds: Mapping[str, int],
    expires: dt.datetime,
    readme: str,
) -> bytes:
    unknown = sorted(set(functionaries) - set(STEPS))
    if unknown or set(thresholds) - set(STEPS):
        raise SpecError(
            what=f"unknown step {(unknown or sorted(set(thresholds) - set(STEPS)))[0]!r}",
            where="layout",
            remedy=f"the steps are {', '.join(STEPS)}",
        )
    keys: dict[str, dict[str, Any]] = {}
    steps = []
    with_train = "train" in functionaries
    rules = _rules(with_train)
    for name in STEPS:
        if name == "train" and not with_train:
            continue  # A model whose weights were not trained by a recorded step.
        publics = list(functionaries.get(name, ()))
        if not publics:
            raise SpecError(
                what=f"no functionary key for step {name!r}",
                where="layout",
                remedy=f"pass --step {name}=PUBLIC_KEY.pem",
            )
        threshold = thresholds.get(name, 1)
        if not 1 <= threshold <= len(publics):
            raise SpecError(
                what=f"threshold {threshold} for step {name!r} with {len(publics)} key(s)",
                where="layout",
                remedy="a threshold is between 1 and the number of the step's keys",
            )
        for public in publics:
            keys[public.key_id] = in_toto_key(public)
        materials, products = rules[name]
        steps.append(
            Step(
                name=name,
                pubkeys=sorted({p.key_id for p in publics}),
                threshold=threshold,
                expected_materials=materials,
                expected_products=products,
                expected_command=[],
            )
        )
    inspection = Inspection(
        name=INSPECTION_NAME,
        run=["true"],
        expected_materials=[
            ["MATCH", "*", "WITH", "PRODUCTS", "FROM", "package"],
            ["ALLOW", "provenance/*"],
            ["ALLOW", "model.sig"],
            ["DISALLOW", "*"],
        ],
        expected_products=[["ALLOW", "*"]],
    )
    layout = Layout(
        steps=steps, inspect=[inspection], keys=keys, expires=_expires_text(expires), readme=readme
    )
    layout.validate()
    metablock = Metablock(signed=layout)
    owner_public = owner.public_key()
    metablock.create_signature(InTotoSigner(owner, owner_key_id(owner_public)))
    data: bytes = canonical_json(metablock.to_dict())
    return data


def create_layout(
    owner_signer: Signer,
    functionaries: Mapping[str, Sequence[bytes]],
    thresholds: Mapping[str, int] | None = None,
    *,
    expires: dt.datetime,
    readme: str = "modelseal: train -> package -> sign",
) -> bytes:
    """The owner-signed layout (canonical JSON bytes). `functionaries` maps each step to the
    PEM public keys allowed to sign its link; `thresholds` how many of them must (default 1)."""
    publics = {
        step: [PublicKey.from_pem(pem, source=f"--step {step}") for pem in pems]
        for step, pems in functionaries.items()
    }
    return _layout_metablock(owner_signer, publics, thresholds or {}, expires, readme)


def _read_layout(data: bytes, source: str) -> Any:  # in_toto is untyped.
    try:
        document = load_json(data)
        return Metablock.from_dict(document)
    except Exception as e:  # in_toto raises many kinds for malformed input.
        raise SpecError(
            what=f"not an in-toto layout ({type(e).__name__})",
            where=source,
            remedy="pass the provenance/root.layout that `modelseal layout create` wrote",
        ) from None


def rotate_layout(
    old_layout: bytes,
    owner_signer: Signer,
    *,
    add: Mapping[str, Sequence[bytes]] | None = None,
    remove: Mapping[str, Sequence[str]] | None = None,
    thresholds: Mapping[str, int] | None = None,
    expires: dt.datetime | None = None,
    source: str = "layout",
) -> bytes:
    """A new layout from `old_layout`: keys added to or removed (by key id or its prefix) from
    steps, thresholds and expiry changed, re-signed by the current owner."""
    layout = _read_layout(old_layout, source).signed
    functionaries: dict[str, list[PublicKey]] = {}
    current_thresholds: dict[str, int] = {}
    for step in layout.steps:
        functionaries[step.name] = [
            PublicKey.from_pem(layout.keys[k]["keyval"]["public"].encode("ascii"), source=source)
            for k in step.pubkeys
        ]
        current_thresholds[step.name] = step.threshold
    for step, pems in (add or {}).items():
        functionaries.setdefault(step, []).extend(
            PublicKey.from_pem(pem, source=f"--add {step}") for pem in pems
        )
    for step, prefixes in (remove or {}).items():
        for prefix in prefixes:
            before = functionaries.get(step, [])
            kept = [p for p in before if not p.key_id.startswith(prefix)]
            if len(kept) == len(before):
                raise SpecError(
                    what=f"no key of step {step!r} has an id starting with {prefix!r}",
                    where=source,
                    remedy="pass a key id (or its first 8 characters) the layout lists",
                )
            functionaries[step] = kept
    current_thresholds.update(thresholds or {})
    for step, keys in functionaries.items():
        current_thresholds[step] = min(current_thresholds.get(step, 1), max(len(keys), 1))
    when = expires
    if when is None:
        when = dt.datetime.strptime(layout.expires, "%Y-%m-%dT%H:%M:%SZ").replace(
            tzinfo=dt.timezone.utc
        )
    return _layout_metablock(owner_signer, functionaries, current_thresholds, when, layout.readme)


# -- revocations ------------------------------------------------------------------------------


def revocations_bytes(key_ids: Iterable[str]) -> bytes:
    """The revocation list: canonical JSON `{"revoked": [key ids, sorted], "schema": ...}`."""
    ids = sorted(set(key_ids))
    for key_id in ids:
        if len(key_id) != 64 or any(c not in "0123456789abcdef" for c in key_id):
            raise SpecError(
                what=f"{key_id!r} is not a key id",
                where="revocations",
                remedy="key ids are 64 lowercase hex characters",
            )
    return canonical_json({"revoked": ids, "schema": REVOCATIONS_SCHEMA})


def load_revocations(data: bytes, source: str = "revocations.json") -> frozenset[str]:
    try:
        document = load_json(data)
    except ValueError as e:
        raise SpecError(what=f"not JSON ({e})", where=source, remedy="fix the file") from None
    if (
        not isinstance(document, dict)
        or document.get("schema") != REVOCATIONS_SCHEMA
        or not isinstance(document.get("revoked"), list)
        or set(document) != {"schema", "revoked"}
    ):
        raise SpecError(
            what=f"expected {{'schema': '{REVOCATIONS_SCHEMA}', 'revoked': [key ids]}}",
            where=source,
            remedy="see docs/signing.md, 'Revocation list'",
        )
    revoked = document["revoked"]
    assert isinstance(revoked, list)
    revocations_bytes(str(k) for k in revoked)  # Validates every id.
    return frozenset(str(k) for k in revoked)


# -- verification -----------------------------------------------------------------------------


def _only_true_inspections(layout: Any) -> bool:
    """Whether every inspection of the layout runs `true`, which changes no file: its record is
    then the bundle's files before and after, which known digests can stand for."""
    return all(list(inspection.run) == ["true"] for inspection in layout.inspect)


def _inspection_artifacts(
    root: str, known: Mapping[str, tuple[str, int]]
) -> dict[str, dict[str, str]]:
    """What in-toto's inspection records for `.` in `root`: every file, by its normalized
    relative path, except in-toto's default exclude patterns (a matching directory excludes
    everything below it); digests from `known` where given (sizes checked), else hashed."""
    # in-toto matches its exclude patterns with pathspec, a dependency of in-toto.
    from pathspec import GitIgnoreSpec  # pants: no-infer-dep

    from modelseal.signing.modelsig import bundle_digests

    spec = GitIgnoreSpec.from_lines("gitwildmatch", settings.ARTIFACT_EXCLUDE_PATTERNS)
    digests = bundle_digests(root, (), known=known)
    result: dict[str, dict[str, str]] = {}
    for path, digest in digests.items():
        parts = path.split("/")
        if any(spec.match_file("/".join(parts[:i])) for i in range(1, len(parts) + 1)):
            continue
        result[path] = {"sha256": digest}
    return result


def _verify_with_digests(
    metablock: Any, keys: dict[str, Any], root: str, known: Mapping[str, tuple[str, int]]
) -> None:
    """in_toto.verifylib.in_toto_verify, step for step, except that the inspections (all `true`,
    see `_only_true_inspections`) are recorded from digests instead of hashing the bundle twice
    each. Raises what in_toto_verify raises."""
    verifylib.verify_metadata_signatures(metablock, keys)
    layout = metablock.get_payload()
    # The expiry was checked against the caller's clock (`verify_provenance`'s `now`).
    link_dir = os.path.join(root, "provenance")
    steps_metadata = verifylib.load_links_for_layout(layout, link_dir)
    steps_metadata = verifylib.verify_link_signature_thresholds(layout, steps_metadata)
    chain_links = verifylib.verify_sublayouts(
        layout, steps_metadata, link_dir, settings.LINK_CMD_EXEC_TIMEOUT
    )
    verifylib.verify_all_steps_command_alignment(layout, chain_links)
    verifylib.verify_threshold_constraints(layout, chain_links)
    reduced = verifylib.reduce_chain_links(chain_links)
    verifylib.verify_all_item_rules(layout.steps, reduced)
    artifacts = _inspection_artifacts(root, known)
    combined = dict(reduced)
    for inspection in layout.inspect:
        combined[inspection.name] = Link(
            name=inspection.name,
            materials=artifacts,
            products=artifacts,
            command=list(inspection.run),
            byproducts={"return-value": 0},
            environment={},
        )
    verifylib.verify_all_item_rules(layout.inspect, combined)


def in_toto_reason(error: BaseException, root: str) -> str:
    """in-toto's message for `error` as one line for `modelseal: error: ...`: its first line
    (the rest is a multi-line trace of every artifact queue), paths relative to the bundle (the
    extracted copy of a tar lives in a temporary directory the user never sees), and no
    trailing period (the error message adds its own)."""
    text = str(error).replace(root.rstrip(os.sep) + os.sep, "").replace(root, ".")
    first = next((line.strip() for line in text.splitlines() if line.strip()), type(error).__name__)
    return first.rstrip(". ")


@contextlib.contextmanager
def _cwd(path: str) -> Iterator[None]:
    # in-toto runs the layout's inspection in the current directory: the bundle.
    previous = os.getcwd()
    os.chdir(path)
    try:
        yield
    finally:
        os.chdir(previous)


def verify_provenance(
    bundle_dir: str | os.PathLike[str],
    owner_public_key: PublicKey | bytes,
    *,
    revoked: frozenset[str] = frozenset(),
    now: dt.datetime | None = None,
    known: Mapping[str, tuple[str, int]] | None = None,
) -> None:
    """Verify the bundle's layout and links as in-toto-verify does (owner signature, expiry,
    link signatures and thresholds, artifact rules, the inspection of the files on disk), after
    refusing any revoked key. SigningError (exit 6) naming the failed check.

    `known`: (sha256, size) of bundle files the caller hashed already (`modelseal.verify.checks`
    hashes every file once for all its checks). in-toto's own inspection would hash the whole bundle
    twice (materials, then products, around `true`); with `known`, the inspection `true` of
    modelseal's layouts is recorded from those digests instead (any file not in `known` is
    hashed), and every other inspection is run by in-toto as usual."""

    root = os.path.abspath(os.fspath(bundle_dir))
    owner = (
        owner_public_key
        if isinstance(owner_public_key, PublicKey)
        else PublicKey.from_pem(owner_public_key, source="owner key")
    )
    layout_path = os.path.join(root, *LAYOUT_PATH.split("/"))
    try:
        with open(layout_path, "rb") as f:
            data = f.read(MAX_METADATA_SIZE + 1)
        if len(data) > MAX_METADATA_SIZE:
            raise SigningError(
                what=f"the layout is larger than {MAX_METADATA_SIZE} bytes",
                where=layout_path,
                remedy="re-download the bundle: no layout modelseal writes is that large",
            )
        metablock = _read_layout(data, layout_path)
    except FileNotFoundError:
        raise SigningError(
            what="no in-toto layout",
            where=layout_path,
            remedy="sign the bundle with provenance (docs/operations.md)",
        ) from None
    if owner.key_id in revoked:
        raise SigningError(
            what=f"the owner key {owner.key_id[:16]} is revoked",
            where=layout_path,
            remedy="re-sign the layout with the new owner key (docs/operations.md)",
        )
    layout = metablock.signed
    for step in layout.steps:
        for key_id in step.pubkeys:
            if key_id in revoked:
                raise SigningError(
                    what=f"step {step.name!r} trusts revoked key {key_id[:16]}",
                    where=layout_path,
                    remedy="rotate the layout without it: `modelseal layout rotate --remove`",
                )
    now = now or dt.datetime.now(dt.timezone.utc)
    if (
        dt.datetime.strptime(layout.expires, "%Y-%m-%dT%H:%M:%SZ").replace(
            tzinfo=dt.timezone.utc
        )
        <= now
    ):
        raise SigningError(
            what=f"the layout expired at {layout.expires}",
            where=layout_path,
            remedy="the owner must issue a new layout: `modelseal layout rotate --expires ...`",
        )
    owner_key = in_toto_key(owner, owner_key_id(owner))
    try:
        if known is not None and _only_true_inspections(layout):
            _verify_with_digests(
                metablock, {owner_key["keyid"]: owner_key}, root, known
            )
        else:
            with _cwd(root):
                verifylib.in_toto_verify(
                    metablock,
                    {owner_key["keyid"]: owner_key},
                    link_dir_path=os.path.join(root, "provenance"),
                    persist_inspection_links=False,
                )
    except LayoutExpiredError:
        raise SigningError(
            what=f"the layout expired at {layout.expires}",
            where=layout_path,
            remedy="the owner must issue a new layout: `modelseal layout rotate --expires ...`",
        ) from None
    except Exception as e:  # in-toto signals every failed check by an exception.
        raise SigningError(
            what=f"in-toto verification failed: {type(e).__name__}: {in_toto_reason(e, root)}",
            where=layout_path,
            remedy="the bundle, its links or its layout do not match: re-download the bundle, "
            "or check which keys the layout trusts",
        ) from None
