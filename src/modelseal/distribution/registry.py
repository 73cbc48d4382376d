"""Push a bundle directory to an OCI registry, and fetch one back by digest, with oras-py.

oras-py (the ORAS project's Python SDK) does the distribution protocol: upload sessions, chunked
PATCH uploads, HEAD checks, bearer-token and basic authentication, docker config.json. We use its
pieces rather than its `push`/`pull`, because those read each file whole into memory (`put_upload`
sends `fd.read()`), tar directories, and never check a downloaded blob against its digest. Here
every blob goes up by `chunked_upload` (16 MiB PATCHes, never the whole file in memory) after a
HEAD says the registry lacks it, and every blob comes down streamed, hashed and size-capped,
then compared with its descriptor before the bundle checks see it.

Credentials come from a docker config.json (`--registry-config FILE`, else $DOCKER_CONFIG/
config.json, else ~/.docker/config.json), never from the command line.
"""

from __future__ import annotations

import hashlib
import os
import re
from dataclasses import dataclass, field
from typing import Any

import oras.auth
import oras.container
import oras.provider

from modelseal.distribution.modelpack import (
    MANIFEST_MEDIA_TYPE,
    MAX_MANIFEST_SIZE,
    Layer,
    check_digest,
)
from modelseal.errors import IntegrityCheckError, ModelsealError, SpecError

__all__ = ["Reference", "Registry", "parse_reference"]

CHUNK = 16 * 1024 * 1024
_DIGEST = re.compile(r"^sha256:[0-9a-f]{64}$")


class RegistryError(ModelsealError):
    """The registry refused or failed a request (exit 1): a network or permission problem, not
    a verdict on the model."""


@dataclass(frozen=True)
class Reference:
    """HOST[:PORT]/REPOSITORY with a tag or a digest (`oci://` optional)."""

    registry: str
    repository: str
    tag: str | None = None
    digest: str | None = None

    def __str__(self) -> str:
        at = f"@{self.digest}" if self.digest else f":{self.tag}" if self.tag else ""
        return f"oci://{self.registry}/{self.repository}{at}"

    def pinned(self, digest: str) -> Reference:
        return Reference(self.registry, self.repository, None, digest)


def parse_reference(text: str) -> Reference:
    """A Reference; SpecError naming the reference when it has no registry host or is malformed."""
    raw = text[len("oci://") :] if text.startswith("oci://") else text
    host, _, rest = raw.partition("/")
    digest = None
    if "@" in rest:
        rest, _, digest = rest.partition("@")
    repository, tag = rest, None
    if ":" in rest.rsplit("/", 1)[-1]:
        repository, _, tag = rest.rpartition(":")
    if (
        not host
        or not repository
        or (digest is not None and not _DIGEST.match(digest))
        or not re.match(r"^[a-z0-9]+(?:[._/-][a-z0-9]+)*$", repository)
    ):
        raise SpecError(
            what="not an OCI reference",
            where=text,
            remedy="write oci://HOST[:PORT]/REPOSITORY@sha256:<64 hex> (or :TAG where allowed)",
        )
    return Reference(host, repository, tag, digest)


@dataclass
class Registry:
    """One registry's client: oras' Registry with its authentication picked from the registry's
    own challenge (Basic for an htpasswd-protected distribution registry, Bearer tokens
    otherwise) and credentials loaded from a docker config.json."""

    reference: Reference
    plain_http: bool = False
    config: str | None = None
    uploaded: list[str] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.client = oras.provider.Registry(
            hostname=self.reference.registry, insecure=self.plain_http
        )
        self.container = oras.container.Container(
            f"{self.reference.repository}:{self.reference.tag or 'latest'}",
            registry=self.reference.registry,
        )
        self.base = f"{'http' if self.plain_http else 'https'}://{self.reference.registry}"
        ping = self._request(f"{self.base}/v2/", "GET", authenticate=False)
        challenge = ping.headers.get("Www-Authenticate", "")
        if challenge.lower().startswith("basic"):
            self.client.auth = oras.auth.get_auth_backend(
                "basic", self.client.session, self.plain_http
            )
        configs = [self.config] if self.config else []
        if not configs and os.environ.get("DOCKER_CONFIG"):
            configs = [os.path.join(os.environ["DOCKER_CONFIG"], "config.json")]
        self.client.auth.load_configs(self.container, configs=configs)
        if self.client.auth is not None and challenge.lower().startswith("basic") and not getattr(
            self.client.auth, "_basic_auth", None
        ):
            # oras would send "Basic None" (or fail on a missing attribute): say it here.
            raise RegistryError(
                what="the registry answered 401 Unauthorized and asks for credentials, but no "
                f"docker config.json read here has any for {self.reference.registry}",
                where=str(self.reference),
                remedy="put them in a docker config.json (`docker login`, or an \"auths\" entry) "
                "and pass it with --registry-config (docs/distribution.md)",
            )

    def _request(self, url: str, method: str, authenticate: bool = True, **kw: Any) -> Any:
        try:
            if not authenticate:
                return self.client.session.request(method, url, timeout=60, **kw)
            return self.client.do_request(url, method, **kw)
        except (OSError, ValueError) as e:
            raise RegistryError(
                what=f"{method} failed: {e}",
                where=str(self.reference),
                remedy="check the registry address, --plain-http and the credentials in "
                "--registry-config",
            ) from None

    def _check(self, response: Any, what: str, ok: tuple[int, ...] = (200, 201, 202)) -> None:
        if response.status_code in ok:
            return
        remedy = "check the reference"
        if response.status_code in (401, 403):
            remedy = "put credentials for this registry in a docker config.json and pass it " \
                "with --registry-config (docs/distribution.md)"
        raise RegistryError(
            what=f"{what}: the registry answered {response.status_code} {response.reason}",
            where=str(self.reference),
            remedy=remedy,
        )

    # -- push ----------------------------------------------------------------------------------

    def put_blob(self, path: str | None, data: bytes | None, digest: str, size: int) -> None:
        """Upload one blob unless the registry has it (HEAD first): from a file in 16 MiB chunks,
        or `data` in one request."""
        layer = {"digest": digest, "size": size}
        if self.client.blob_exists(layer, self.container):
            self.skipped.append(digest)
            return
        if path is not None:
            response = self.client.chunked_upload(path, self.container, layer, chunk_size=CHUNK)
        else:
            start = self._request(
                f"{self.base}/v2/{self.reference.repository}/blobs/uploads/", "POST",
                headers={"Content-Length": "0"},
            )
            self._check(start, f"starting the upload of {digest}")
            location = self.client._get_location(start, self.container)
            sep = "&" if "?" in location else "?"
            response = self._request(
                f"{location}{sep}digest={digest}", "PUT", data=data,
                headers={"Content-Type": "application/octet-stream"},
            )
        self._check(response, f"uploading {digest}")
        self.uploaded.append(digest)

    def put_manifest(self, manifest: bytes, tag: str) -> str:
        """PUT the manifest bytes under `tag`; their digest, which the registry must agree with."""
        digest = "sha256:" + hashlib.sha256(manifest).hexdigest()
        url = f"{self.base}/v2/{self.reference.repository}/manifests/{tag}"
        response = self._request(
            url, "PUT", data=manifest, headers={"Content-Type": MANIFEST_MEDIA_TYPE}
        )
        self._check(response, "uploading the manifest")
        answered = response.headers.get("Docker-Content-Digest", digest)
        if answered != digest:
            raise IntegrityCheckError(
                what=f"the registry stored the manifest as {answered}, not {digest}",
                where=str(self.reference),
                remedy="use a registry that stores manifests byte for byte",
            )
        return digest

    # -- fetch ---------------------------------------------------------------------------------

    def get_manifest(self) -> tuple[str, bytes]:
        """(digest, bytes) of the reference's manifest; a digest reference's bytes must hash to
        it, a tag is resolved to the digest of what was served."""
        at = self.reference.digest or self.reference.tag or "latest"
        url = f"{self.base}/v2/{self.reference.repository}/manifests/{at}"
        response = self._request(
            url, "GET", headers={"Accept": MANIFEST_MEDIA_TYPE}, stream=True
        )
        self._check(response, "fetching the manifest", ok=(200,))
        data = response.raw.read(MAX_MANIFEST_SIZE + 1, decode_content=True)
        if len(data) > MAX_MANIFEST_SIZE:
            raise SpecError(
                what=f"the manifest is larger than {MAX_MANIFEST_SIZE} bytes",
                where=str(self.reference),
                remedy="name a manifest `modelseal push` wrote",
            )
        digest = self.reference.digest or "sha256:" + hashlib.sha256(data).hexdigest()
        check_digest(data, digest, f"{self.reference}: manifest")
        return digest, data

    def get_layer(self, layer: Layer, target: str) -> None:
        """Stream the layer's blob into the new file `target`, hashing it; IntegrityCheckError
        (exit 13) when its size or digest differs from the descriptor (the caller removes what
        was written)."""
        where = f"{self.reference}: {layer.path} ({layer.digest})"
        url = f"{self.base}/v2/{self.reference.repository}/blobs/{layer.digest}"
        response = self._request(url, "GET", stream=True)
        self._check(response, f"fetching {layer.path}", ok=(200,))
        digest = hashlib.sha256()
        size = 0
        with response, open(target, "xb") as out:
            for chunk in response.iter_content(chunk_size=1024 * 1024):
                size += len(chunk)
                if size > layer.size:
                    break
                digest.update(chunk)
                out.write(chunk)
        found = "sha256:" + digest.hexdigest()
        if size != layer.size or found != layer.digest:
            raise IntegrityCheckError(
                what=f"the registry served other bytes: expected {layer.digest} ({layer.size} "
                f"bytes), found {found if size <= layer.size else 'more'} ({size} bytes)",
                where=where,
                remedy="the registry's copy was changed; push the bundle again from a verified "
                "copy",
            )
        os.chmod(target, 0o755 if layer.executable else 0o644)
