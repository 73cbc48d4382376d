"""Signed bundles with a real manifest and a runnable (zip) model.pex, for the verify tests."""

from __future__ import annotations

import datetime as dt
import io
import json
import os
import tarfile
import zipfile
from collections.abc import Callable
from typing import Any

from core.bundles import file_rows, manifest
from core.signing_fixtures import EXPIRES, Keys, layout_and_sign
from modelseal.format.canonical import canonical_json
from modelseal.format.manifest import SIGNATURE_PATH
from modelseal.signing.modelsig import bundle_digests
from modelseal.signing.provenance import link_file_name, write_link
from modelseal.signing.release import sign_release

# The PEX's entry: echoes its arguments, stdin and the loader variables it sees, and leaves a
# marker when $MARKER names one, so a test can prove that it did, or did not, run.
MAIN = b"""
import json, os, sys
marker = os.environ.get("MARKER")
if marker:
    open(marker, "w").close()
loaders = sorted(k for k in os.environ if k.startswith(("PEX_", "PYTHON", "LD_")))
sys.stdout.write(json.dumps({
    "argv": sys.argv[1:], "stdin": sys.stdin.read(), "env": loaders,
    "pex_root": os.environ.get("PEX_ROOT", ""),
}))
sys.exit(int(os.environ.get("MODEL_EXIT", "0")))
"""

Hook = Callable[[dict[str, Any]], None]


def pex_bytes(constraints: list[str] | None = None, wheels: tuple[str, ...] = ()) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as pex:
        pex.writestr("__main__.py", MAIN)
        if constraints is not None:
            pex.writestr("PEX-INFO", json.dumps({"interpreter_constraints": constraints}))
        for wheel in wheels:
            pex.writestr(f".deps/{wheel}/pkg/__init__.py", b"")
    return buffer.getvalue()


def make_signed_bundle(
    root: str,
    keys: Keys,
    *,
    trust: str = "release",
    expires: dt.datetime = EXPIRES,
    pex: bytes | None = None,
    hook: Hook | None = None,
    manifest_bytes: bytes | None = None,
    model_bin: bytes | None = None,
    before_signing: Callable[[str], None] | None = None,
    signed: bool = True,
) -> str:
    """`root/iris-1.0.0`: weights (`weights/model.bin` is `model_bin` when given), model.pex, a
    valid manifest (after `hook` edited it, or `manifest_bytes` verbatim), train and package
    links, then `before_signing(bundle)` (evidence a test adds), then, if `signed`, layout, sign
    link and model.sig."""
    bundle = os.path.join(root, "iris-1.0.0")
    os.makedirs(os.path.join(bundle, "weights"))
    files = {
        "weights/model.bin": model_bin if model_bin is not None else bytes(range(256)) * 16,
        "weights/config.json": b'{"classes": 3}\n',
        "model.pex": pex if pex is not None else pex_bytes(["CPython>=3.9,<3.14"]),
    }
    for path, data in files.items():
        with open(os.path.join(bundle, *path.split("/")), "wb") as f:
            f.write(data)
    document = manifest(files=file_rows(files), trust=trust)
    document["runtime"]["complete_platforms"] = []
    if hook is not None:
        hook(document)
    data = manifest_bytes if manifest_bytes is not None else canonical_json(document)
    with open(os.path.join(bundle, "manifest.json"), "wb") as f:
        f.write(data)
    digests = bundle_digests(bundle)
    provenance = os.path.join(bundle, "provenance")
    os.makedirs(provenance)
    weights = {p: d for p, d in digests.items() if p.startswith("weights/")}
    write_link("train", {"train.py": "1" * 64}, weights, keys.signers["trainer"], provenance)
    write_link("package", weights, digests, keys.signers["builder"], provenance)
    if before_signing is not None:
        before_signing(bundle)
    if signed:
        layout_and_sign(bundle, keys, expires)
    return bundle


def resign(bundle: str, keys: Keys) -> None:
    """Re-run the release step after the provenance was changed: what an insider holding the
    release key (but not the owner's) could do."""
    sign_link = os.path.join(
        bundle, "provenance", link_file_name("sign", keys.signers["release"].key_id)
    )
    os.remove(sign_link)
    os.remove(os.path.join(bundle, SIGNATURE_PATH))
    sign_release(bundle, keys.signers["release"])


def tar_of(bundle: str, out: str) -> str:
    from modelseal.format.archive import write_tar

    write_tar(bundle, out, top=os.path.basename(bundle), mtime=1700000000)
    return out


def raw_tar(out: str, members: list[tuple[tarfile.TarInfo, bytes | None]]) -> str:
    """A tar of exactly these headers (and contents), whatever they declare."""
    with open(out, "wb") as f:
        for info, data in members:
            f.write(info.tobuf(tarfile.GNU_FORMAT, "utf-8", "surrogateescape"))
            if data:
                f.write(data)
                f.write(b"\0" * (-len(data) % 512))
        f.write(b"\0" * 1024)
    return out


def member(name: str, kind: bytes = tarfile.REGTYPE, size: int = 0, link: str = "") -> Any:
    info = tarfile.TarInfo(name)
    info.type = kind
    info.size = size
    info.linkname = link
    info.mode = 0o755 if kind == tarfile.DIRTYPE else 0o644
    return info
