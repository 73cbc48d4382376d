"""in-toto links: the signed record of what a step (`train`, `package`, `sign`) used and made, and
the in-toto view of modelseal's keys. Artifacts are `{path: {"sha256": hex}}` with POSIX paths
relative to the bundle (or training) directory, so links are the same bytes on every machine
(see `modelseal.signing.provenance` for the whole design).
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator, Mapping, Sequence
from typing import Any

from in_toto.models.link import Link  # type: ignore[import-untyped]
from in_toto.models.metadata import Metablock  # type: ignore[import-untyped]

# The package re-exports these without __all__, which mypy --strict does not follow.
from securesystemslib.signer._key import Key, SSlibKey
from securesystemslib.signer._signature import Signature
from securesystemslib.signer._signer import Signer as SSlibSigner
from securesystemslib.signer._utils import compute_default_keyid

from modelseal.errors import SpecError
from modelseal.format.atomic import write_atomic
from modelseal.format.canonical import canonical_json
from modelseal.format.manifest import bundle_path_problem
from modelseal.keys.core import PublicKey, Signer

STEPS = ("train", "package", "evaluate", "sign")
LAYOUT_PATH = "provenance/root.layout"
# The inspection's record is written by in-toto-verify to `<name>.link` in the bundle:
# `provenance/files.link`, which model.sig records as ignored (modelseal.signing.modelsig).
INSPECTION_NAME = "provenance/files"


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


@contextlib.contextmanager
def working_directory(path: str) -> Iterator[None]:
    """Run the block in `path`: in-toto runs the layout's inspection, and records a link's
    paths, relative to the current directory (the bundle)."""
    previous = os.getcwd()
    os.chdir(path)
    try:
        yield
    finally:
        os.chdir(previous)
