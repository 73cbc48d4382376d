"""The `sign` step: the in-toto `sign` link and `model.sig`, written together or not at all.

Order matters for interop. The link is made first and `model.sig` then signs every file,
the new link included, so `model_signing verify` needs no ignore option: the only paths it skips
are `model.sig` itself and the inspection record `in-toto-verify` may leave behind, both recorded
in the signature. The link's materials are the products of the `package` step (every bundle file
outside `provenance/` except `model.sig`), and it has no products: `model.sig` cannot be one,
since it signs the link.

Both files are computed in memory before either is written, so a signer that fails (wrong PIN,
a non-EC key for `model.sig`) leaves the bundle exactly as it was.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Iterable, Mapping

from modelseal.format.atomic import write_atomic
from modelseal.format.manifest import PROVENANCE_DIR, SIGNATURE_PATH
from modelseal.keys.core import Signer
from modelseal.signing.modelsig import DEFAULT_IGNORE, bundle_digests, signature_bytes
from modelseal.signing.provenance import link_bytes, link_file_name

__all__ = ["sign_release"]


def sign_release(
    bundle_dir: str | os.PathLike[str],
    signer: Signer,
    ignore: Iterable[str] = DEFAULT_IGNORE,
    known: Mapping[str, tuple[str, int]] | None = None,
    out_dir: str | os.PathLike[str] | None = None,
) -> tuple[str, str]:
    """Write `provenance/sign.<keyid8>.link` and `model.sig` into `bundle_dir` (or, with
    `out_dir`, at the same relative paths under it, the bundle only read); their paths.
    Every file is hashed once (the link's materials are a subset of what model.sig signs);
    files in `known` (bundle path -> (sha256, size) of exactly these bytes, e.g. Pants' digests
    of what it materialized) are not read at all, only their sizes checked. `out_dir` lets
    Pants hard-link the weights into the signing sandbox instead of copying them: it copies
    every file below a directory that an output of the process is written into."""
    root = os.path.abspath(os.fspath(bundle_dir))
    out = os.path.abspath(os.fspath(out_dir)) if out_dir is not None else root
    ignored = tuple(sorted({*ignore, SIGNATURE_PATH}))
    everything = bundle_digests(root, ignored, known=known)
    materials = {
        path: digest
        for path, digest in everything.items()
        if path != PROVENANCE_DIR and not path.startswith(PROVENANCE_DIR + "/")
    }
    link = link_bytes("sign", materials, {}, signer)
    link_path = f"{PROVENANCE_DIR}/{link_file_name('sign', signer.key_id)}"
    digests = dict(everything)
    digests[link_path] = hashlib.sha256(link).hexdigest()
    signature = signature_bytes(os.path.basename(root), digests, signer, ignored)
    os.makedirs(os.path.join(out, PROVENANCE_DIR), exist_ok=True)
    link_out = os.path.join(out, *link_path.split("/"))
    write_atomic(link_out, link)
    sig_out = os.path.join(out, SIGNATURE_PATH)
    write_atomic(sig_out, signature)
    return sig_out, link_out
