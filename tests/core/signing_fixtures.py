"""Keys and hand-built bundles for the signing tests: real keys, real in-toto metadata."""

from __future__ import annotations

import datetime as dt
import os
from dataclasses import dataclass

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from modelseal.format.atomic import write_atomic
from modelseal.keys.core import FileSigner, Signer
from modelseal.keys.reference import load_signer
from modelseal.signing.modelsig import bundle_digests
from modelseal.signing.provenance import LAYOUT_PATH, create_layout, write_link
from modelseal.signing.release import sign_release

EXPIRES = dt.datetime(2099, 1, 1, tzinfo=dt.timezone.utc)
ROLES = ("owner", "trainer", "builder", "release")


def write_ec_key(path: str, passphrase: bytes | None = None) -> str:
    key = ec.generate_private_key(ec.SECP256R1())
    encryption: serialization.KeySerializationEncryption = (
        serialization.BestAvailableEncryption(passphrase)
        if passphrase
        else serialization.NoEncryption()
    )
    with open(path, "wb") as f:
        f.write(
            key.private_bytes(
                serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, encryption
            )
        )
    return path


@dataclass
class Keys:
    directory: str
    signers: dict[str, Signer]

    def pub(self, role: str) -> str:
        path = os.path.join(self.directory, f"{role}.pub")
        if not os.path.exists(path):
            write_atomic(path, self.signers[role].public_key_pem)
        return path


def make_keys(directory: str) -> Keys:
    os.makedirs(directory, exist_ok=True)
    signers = {
        role: load_signer("file:" + write_ec_key(os.path.join(directory, f"{role}.pem")))
        for role in ROLES
    }
    return Keys(directory, signers)


def make_bundle(
    root: str, keys: Keys, *, trainer: Signer | None = None, expires: dt.datetime = EXPIRES
) -> str:
    """A bundle with weights, PEX, manifest, train/package links, layout, sign link, model.sig."""
    bundle = os.path.join(root, "iris-1.0.0")
    os.makedirs(os.path.join(bundle, "weights"))
    os.makedirs(os.path.join(bundle, "provenance"))
    with open(os.path.join(bundle, "weights", "model.bin"), "wb") as f:
        f.write(bytes(range(256)) * 4)
    with open(os.path.join(bundle, "model.pex"), "wb") as f:
        f.write(b"PK\x03\x04 not really a pex")
    with open(os.path.join(bundle, "manifest.json"), "wb") as f:
        f.write(b'{"schema":"modelseal.manifest/v1"}\n')
    digests = bundle_digests(bundle)
    provenance = os.path.join(bundle, "provenance")
    write_link(
        "train",
        {"data/iris.csv": "0" * 64, "train.py": "1" * 64},
        {"weights/model.bin": digests["weights/model.bin"]},
        trainer or keys.signers["trainer"],
        provenance,
        command=["python", "train.py"],
    )
    write_link(
        "package",
        {"weights/model.bin": digests["weights/model.bin"], "iris/handler.py": "2" * 64},
        digests,
        keys.signers["builder"],
        provenance,
    )
    layout_and_sign(bundle, keys, expires)
    return bundle


def layout_and_sign(bundle: str, keys: Keys, expires: dt.datetime = EXPIRES) -> None:
    """The owner's layout over the fixture roles, then the release step: the last two steps of
    every signed test bundle."""
    layout = create_layout(
        keys.signers["owner"],
        {
            "train": [keys.signers["trainer"].public_key_pem],
            "package": [keys.signers["builder"].public_key_pem],
            "sign": [keys.signers["release"].public_key_pem],
        },
        expires=expires,
    )
    write_atomic(os.path.join(bundle, *LAYOUT_PATH.split("/")), layout)
    sign_release(bundle, keys.signers["release"])


def flip_byte(path: str, offset: int = 0) -> None:
    with open(path, "r+b") as f:
        f.seek(offset)
        byte = f.read(1)
        f.seek(offset)
        f.write(bytes([byte[0] ^ 0x01]))


__all__ = ["EXPIRES", "FileSigner", "Keys", "flip_byte", "make_bundle", "make_keys", "write_ec_key"]
