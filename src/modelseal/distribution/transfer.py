"""`modelseal push` and the fetch half of `pull` / `verify oci://`: a bundle to and from a registry.

Push sends every file of the bundle (whatever files the build put there: weights, model.pex, the
manifest, model.sig, the in-toto links, provenance and SBOM documents) as a layer, then the config
and the manifest, and tags it. Fetch writes a manifest's layers into a new private directory and
nothing else; the caller runs the same checks as for a bundle directory on it before anything
is moved to where the user asked.
"""

from __future__ import annotations

import hashlib
import os
import tempfile
from dataclasses import dataclass

from modelseal.distribution.modelpack import Layer, build_manifest, read_manifest
from modelseal.distribution.registry import Reference, Registry
from modelseal.errors import ArchiveError, SpecError
from modelseal.format.bundle import read_bundle
from modelseal.format.digests import sha256_files
from modelseal.format.safe_extract import Limits, extract_bundle, private_directory, remove_tree
from modelseal.format.tree import walk

__all__ = ["PushResult", "fetch_bundle", "push_bundle"]


@dataclass(frozen=True)
class PushResult:
    reference: Reference  # pinned to the manifest's digest
    uploaded: int  # blobs sent (layers and config)
    skipped: int  # blobs the registry already held
    uploaded_bytes: int


def _layers(root: str) -> list[Layer]:
    """Every regular file of the bundle directory `root` as a layer (hashed in parallel)."""
    full = {
        os.path.join(root, *e.path.split("/")): e.path for e in walk(root) if not e.is_dir
    }
    digests = sha256_files(full)
    return [
        Layer(
            path=path,
            digest=f"sha256:{digests[name][0]}",
            size=digests[name][1],
            executable=bool(os.stat(name).st_mode & 0o100),
        )
        for name, path in full.items()
    ]


def push_bundle(
    bundle: str, reference: Reference, *, plain_http: bool = False, auth: str | None = None
) -> PushResult:
    """Push the bundle directory (or tar, extracted first by the strict reader) to `reference`
    (its tag, or the bundle's version when it names none)."""
    scratch = None
    try:
        if os.path.isfile(bundle):
            scratch = private_directory("modelseal-push-")
            bundle = extract_bundle(bundle, scratch)
        if not os.path.isdir(bundle):
            raise SpecError(
                what="not a bundle directory or tar",
                where=bundle,
                remedy="pass what `pants package` wrote under dist/",
            )
        manifest, _ = read_bundle(bundle)
        layers = _layers(bundle)
        directory = os.path.basename(os.path.normpath(bundle))
        config, oci_manifest = build_manifest(
            directory, manifest.name, manifest.version, layers
        )
        registry = Registry(reference, plain_http=plain_http, config=auth)
        sizes: dict[str, int] = {}
        for layer in layers:
            sizes[layer.digest] = layer.size
            registry.put_blob(
                os.path.join(bundle, *layer.path.split("/")), None, layer.digest, layer.size
            )
        config_digest = _digest(config)
        sizes[config_digest] = len(config)
        registry.put_blob(None, config, config_digest, len(config))
        digest = registry.put_manifest(oci_manifest, reference.tag or manifest.version)
        return PushResult(
            reference=reference.pinned(digest),
            uploaded=len(registry.uploaded),
            skipped=len(registry.skipped),
            uploaded_bytes=sum(sizes[d] for d in registry.uploaded),
        )
    finally:
        if scratch is not None:
            remove_tree(scratch)


def _digest(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def fetch_bundle(
    reference: Reference,
    destination: str,
    limits: Limits,
    *,
    plain_http: bool = False,
    auth: str | None = None,
) -> tuple[str, str]:
    """(manifest digest, bundle directory): the artifact's layers written under the new private
    directory made inside `destination`, every blob checked against its descriptor. The caller
    verifies the directory and removes `os.path.dirname(bundle directory)` afterwards; on a
    failure here, nothing is left in `destination`."""
    registry = Registry(reference, plain_http=plain_http, config=auth)
    digest, data = registry.get_manifest()
    pinned = reference.pinned(digest)
    registry.reference = pinned
    directory, layers = read_manifest(data, str(pinned))
    total = sum(layer.size for layer in layers)
    too_big = [layer for layer in layers if layer.size > limits.max_member_size]
    if total > limits.max_total_size or too_big or len(layers) > limits.max_members:
        raise ArchiveError(
            what="the artifact is above the size limits",
            where=str(pinned),
            remedy="raise --max-total-size / --max-member-size if this model really is that "
            "large",
            expected=f"at most {limits.max_total_size} bytes",
            found=f"{total} bytes",
        )
    staging = tempfile.mkdtemp(prefix=".modelseal-pull-", dir=destination)
    root = os.path.join(staging, directory)
    try:
        os.mkdir(root, 0o700)
        for layer in layers:
            target = os.path.join(root, *layer.path.split("/"))
            os.makedirs(os.path.dirname(target), mode=0o700, exist_ok=True)
            registry.get_layer(layer, target)
    except BaseException:
        remove_tree(staging)
        raise
    return digest, root
