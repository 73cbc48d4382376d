"""Keys: one small signing interface over every place a private key can live.

Everything that signs in modelseal (the OpenSSF `model.sig`, in-toto links and layouts) asks a
`Signer` for `sign(data) -> signature bytes` and nothing else, so a PEM file, a PKCS#11 token or a
future KMS are interchangeable and no signing code ever holds key material itself. The other side
is `PublicKey`, built from a PEM SubjectPublicKeyInfo alone, which is all a verifier has.

A key is named by a *reference*, never by its bytes, because references travel through Pants
process argv, env and caches, and those are stored:

- `file:PATH[?passphrase-file=PATH]`: a PEM private key (PKCS#8 or traditional), optionally
  encrypted, whose passphrase is the first line of another file;
- `pkcs11:<RFC 7512 path attributes>?module-path=LIB&pin-source=file:PATH`: an EC key in a
  token (see `modelseal.keys.pkcs11`; the module may come from `MODELSEAL_PKCS11_MODULE` instead);
- `env:NAME`: the environment variable NAME holds one of the two above (never key bytes).

Passphrases and PINs are read from files only and never appear in an error, a log or an output.

Key id: the lowercase hex SHA-256 of the key's DER SubjectPublicKeyInfo. It depends only on the
public key (not on a scheme or an encoding choice), anyone can compute it with `openssl pkey
-pubin -outform DER | sha256sum`, and it names link files (`<step>.<keyid[:8]>.link`), layout
functionary keys and revocation entries.
"""

from __future__ import annotations

import abc
import hashlib
import os
from typing import TypeVar, Union
from urllib.parse import parse_qsl

from cryptography.exceptions import InvalidSignature, UnsupportedAlgorithm
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, padding, rsa

from modelseal.errors import KeyError_, SpecError
from modelseal.format.atomic import write_atomic

__all__ = [
    "KEY_TYPES",
    "MIN_RSA_BITS",
    "FileSigner",
    "PrivateKey",
    "PublicKey",
    "Signer",
    "generate_private_key",
    "key_id_of",
    "public_path_for",
    "read_secret_file",
    "redact_reference",
    "write_key_pair",
]

KEY_TYPES = ("ecdsa-p256", "ecdsa-p384", "ed25519", "rsa-pss-3072")
MIN_RSA_BITS = 3072
# A passphrase or PIN file is one short line; anything longer is not what the user meant.
MAX_SECRET_SIZE = 4096

PrivateKey = Union[ec.EllipticCurvePrivateKey, ed25519.Ed25519PrivateKey, rsa.RSAPrivateKey]
PublicKeyType = Union[ec.EllipticCurvePublicKey, ed25519.Ed25519PublicKey, rsa.RSAPublicKey]

REFERENCE_HELP = (
    "use file:PATH[?passphrase-file=PATH], pkcs11:...?module-path=LIB&pin-source=file:PATH "
    "or env:NAME (docs/signing.md, 'Key references')"
)


def key_id_of(public_key: PublicKeyType) -> str:
    """The modelseal key id: hex SHA-256 of the DER SubjectPublicKeyInfo."""
    der = public_key.public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    return hashlib.sha256(der).hexdigest()


def _pem_of(public_key: PublicKeyType) -> bytes:
    return public_key.public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )


def _ec_hash(curve: ec.EllipticCurve) -> hashes.HashAlgorithm:
    # The hash that goes with each curve, as Sigstore and securesystemslib pair them.
    if isinstance(curve, ec.SECP256R1):
        return hashes.SHA256()
    if isinstance(curve, ec.SECP384R1):
        return hashes.SHA384()
    raise ValueError(f"unsupported curve {curve.name}")


def _scheme_of(public_key: object) -> str:
    """The securesystemslib scheme name, which is also what in-toto metadata records."""
    if isinstance(public_key, ed25519.Ed25519PublicKey):
        return "ed25519"
    if isinstance(public_key, ec.EllipticCurvePublicKey):
        if isinstance(public_key.curve, ec.SECP256R1):
            return "ecdsa-sha2-nistp256"
        if isinstance(public_key.curve, ec.SECP384R1):
            return "ecdsa-sha2-nistp384"
        raise ValueError(f"the curve {public_key.curve.name} is not supported: use P-256 or P-384")
    if isinstance(public_key, rsa.RSAPublicKey):
        if public_key.key_size < MIN_RSA_BITS:
            raise ValueError(
                f"an RSA key of {public_key.key_size} bits is too small: use {MIN_RSA_BITS} or more"
            )
        return "rsassa-pss-sha256"
    raise ValueError(f"a {type(public_key).__name__} is not a supported key type")


def _pss() -> padding.PSS:
    # Salt as long as the digest (RFC 8017's recommendation); verifiers accept any length.
    return padding.PSS(mgf=padding.MGF1(hashes.SHA256()), salt_length=padding.PSS.DIGEST_LENGTH)


class PublicKey:
    """A public key that can check signatures; built from PEM, which is all a verifier holds."""

    def __init__(self, key: PublicKeyType) -> None:
        self.scheme = _scheme_of(key)
        self.key = key
        self.key_id = key_id_of(key)
        self.pem = _pem_of(key)

    @classmethod
    def from_pem(cls, pem: bytes, source: str = "public key") -> PublicKey:
        try:
            loaded = serialization.load_pem_public_key(pem)
        except (ValueError, UnsupportedAlgorithm):
            raise KeyError_(
                what="not a PEM public key (SubjectPublicKeyInfo)",
                where=source,
                remedy="export it with `modelseal keys export-public`",
            ) from None
        if not isinstance(
            loaded, (ec.EllipticCurvePublicKey, ed25519.Ed25519PublicKey, rsa.RSAPublicKey)
        ):
            raise KeyError_(
                what=f"a {type(loaded).__name__} is not a supported key type",
                where=source,
                remedy="use ECDSA P-256/P-384, Ed25519 or RSA-PSS of 3072 bits or more",
            )
        try:
            return cls(loaded)
        except ValueError as e:
            raise KeyError_(what=str(e), where=source, remedy="generate a supported key") from None

    @classmethod
    def from_file(cls, path: str) -> PublicKey:
        with open(path, "rb") as f:
            return cls.from_pem(f.read(), source=path)

    def verify(self, signature: bytes, data: bytes) -> bool:
        """Whether `signature` is this key's signature over `data` (DER for ECDSA)."""
        try:
            if isinstance(self.key, ed25519.Ed25519PublicKey):
                self.key.verify(signature, data)
            elif isinstance(self.key, ec.EllipticCurvePublicKey):
                self.key.verify(signature, data, ec.ECDSA(_ec_hash(self.key.curve)))
            else:
                self.key.verify(signature, data, _pss(), hashes.SHA256())
        except (InvalidSignature, ValueError):
            return False
        return True


_SignerT = TypeVar("_SignerT", bound="Signer")


class Signer(abc.ABC):
    """Signs bytes with a private key it never shows.

    `reference` is the key reference with secrets left out, for messages; `key_id` and
    `public_key_pem` identify the key to verifiers. ECDSA signatures are DER-encoded; file keys
    sign ECDSA deterministically (RFC 6979), so equal input gives equal bytes.
    """

    reference: str
    key_id: str
    public_key_pem: bytes

    @abc.abstractmethod
    def sign(self, data: bytes) -> bytes:
        """The signature over `data` under `self.public_key().scheme`."""

    def public_key(self) -> PublicKey:
        return PublicKey.from_pem(self.public_key_pem, source=self.reference)

    def close(self) -> None:  # noqa: B027 (a no-op unless the signer holds something open)
        """Release what the signer holds open (a token session); a file key holds nothing.
        Signing after close() fails; closing twice is harmless."""

    def __enter__(self: _SignerT) -> _SignerT:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()


class FileSigner(Signer):
    """A private key loaded from a PEM file (decrypted in memory, never written anywhere)."""

    def __init__(self, key: PrivateKey, reference: str) -> None:
        public = key.public_key()
        try:
            _scheme_of(public)
        except ValueError as e:
            raise KeyError_(
                what=str(e),
                where=reference,
                remedy="generate a supported key with `modelseal keygen`",
            ) from None
        self._key = key
        self.reference = reference
        self.key_id = key_id_of(public)
        self.public_key_pem = _pem_of(public)

    def __repr__(self) -> str:
        return f"FileSigner({self.reference!r}, key_id={self.key_id[:16]})"

    def sign(self, data: bytes) -> bytes:
        key = self._key
        if isinstance(key, ed25519.Ed25519PrivateKey):
            return key.sign(data)
        if isinstance(key, ec.EllipticCurvePrivateKey):
            algorithm = ec.ECDSA(_ec_hash(key.curve), deterministic_signing=True)
            return key.sign(data, algorithm)
        return key.sign(data, _pss(), hashes.SHA256())


# -- references -------------------------------------------------------------------------------


def redact_reference(reference: str) -> str:
    """`reference` safe to print: the query attribute `pin-value`, if someone wrote one, is
    dropped; everything else in a reference names files, never secrets."""
    base, sep, query = reference.partition("?")
    if not sep:
        return reference
    kept = [part for part in query.split("&") if not part.lower().startswith("pin-value")]
    return base + ("?" + "&".join(kept) if kept else "")


def read_secret_file(path: str, reference: str, what: str) -> bytes:
    """The secret in the file at `path`, without its trailing newline; KeyError_ naming the file
    (never its content) when it cannot be read."""
    try:
        with open(path, "rb") as f:
            data = f.read(MAX_SECRET_SIZE + 1)
    except OSError as e:
        raise KeyError_(
            what=f"cannot read the {what} file {path}: {e.strerror or type(e).__name__}",
            where=reference,
            remedy=f"create the file with the {what} on its first line, readable by this user",
        ) from None
    if len(data) > MAX_SECRET_SIZE:
        raise KeyError_(
            what=f"the {what} file {path} is larger than {MAX_SECRET_SIZE} bytes",
            where=reference,
            remedy=f"put only the {what} in it, on one line",
        )
    if data.endswith(b"\r\n"):
        return data[:-2]
    return data[:-1] if data.endswith(b"\n") else data


def _query(reference: str, query: str, allowed: tuple[str, ...]) -> dict[str, str]:
    try:
        pairs = parse_qsl(query, keep_blank_values=True, strict_parsing=True)
    except ValueError:
        raise KeyError_(
            what="the query part is not name=value pairs joined by '&'",
            where=redact_reference(reference),
            remedy=REFERENCE_HELP,
        ) from None
    result: dict[str, str] = {}
    for name, value in pairs:
        if name == "pin-value":
            raise KeyError_(
                what="a PIN may not be written into a key reference",
                where=redact_reference(reference),
                remedy="put the PIN in a file and use pin-source=file:PATH",
            )
        if name not in allowed or name in result:
            problem = "repeated" if name in result else "unknown"
            raise KeyError_(
                what=f"{problem} attribute {name!r}",
                where=redact_reference(reference),
                remedy=f"allowed here: {', '.join(allowed)}",
            )
        result[name] = value
    return result


def load_file_signer(reference: str) -> FileSigner:
    path, _, query = reference[len("file:") :].partition("?")
    options = _query(reference, query, ("passphrase-file",)) if query else {}
    if not path:
        raise KeyError_(what="no path after 'file:'", where=reference, remedy=REFERENCE_HELP)
    try:
        with open(path, "rb") as f:
            pem = f.read()
    except OSError as e:
        raise KeyError_(
            what=f"cannot read the key file: {e.strerror or type(e).__name__}",
            where=reference,
            remedy="check the path, or create a key with `modelseal keygen --out PATH`",
        ) from None
    passphrase_file = options.get("passphrase-file")
    passphrase = (
        read_secret_file(passphrase_file, reference, "passphrase") if passphrase_file else None
    )
    try:
        key = serialization.load_pem_private_key(pem, passphrase)
    except TypeError:
        # cryptography says TypeError when a passphrase is missing or superfluous.
        if passphrase is None:
            what, remedy = (
                "the key is encrypted and no passphrase file was given",
                "add ?passphrase-file=PATH to the reference",
            )
        else:
            what, remedy = (
                "the key is not encrypted but a passphrase file was given",
                "drop ?passphrase-file from the reference, or encrypt the key",
            )
        raise KeyError_(what=what, where=reference, remedy=remedy) from None
    except (ValueError, UnsupportedAlgorithm):
        what = (
            "cannot decrypt the key: wrong passphrase, or not a PEM private key"
            if passphrase is not None
            else "not a PEM private key"
        )
        raise KeyError_(
            what=what,
            where=reference,
            remedy="check the passphrase file's first line, and that the file is the PEM key "
            "`modelseal keygen` wrote",
        ) from None
    if not isinstance(
        key, (ec.EllipticCurvePrivateKey, ed25519.Ed25519PrivateKey, rsa.RSAPrivateKey)
    ):
        raise KeyError_(
            what=f"a {type(key).__name__} is not a supported key type",
            where=reference,
            remedy="use ECDSA P-256/P-384, Ed25519 or RSA of 3072 bits or more",
        )
    return FileSigner(key, reference)


# -- generation -------------------------------------------------------------------------------


def generate_private_key(key_type: str) -> PrivateKey:
    if key_type == "ecdsa-p256":
        return ec.generate_private_key(ec.SECP256R1())
    if key_type == "ecdsa-p384":
        return ec.generate_private_key(ec.SECP384R1())
    if key_type == "ed25519":
        return ed25519.Ed25519PrivateKey.generate()
    if key_type == "rsa-pss-3072":
        return rsa.generate_private_key(public_exponent=65537, key_size=3072)
    raise SpecError(
        what=f"unknown key type {key_type!r}",
        where="keygen",
        remedy=f"use one of {', '.join(KEY_TYPES)}",
    )


def public_path_for(private_path: str) -> str:
    """KEY.pem -> KEY.pub (any other name gets `.pub` appended)."""
    root, ext = os.path.splitext(private_path)
    return root + ".pub" if ext == ".pem" else private_path + ".pub"


def write_key_pair(key: PrivateKey, out_path: str, passphrase: bytes | None) -> tuple[str, str]:
    """Write `key` as PKCS#8 PEM to `out_path` (0600, atomically; encrypted when `passphrase`) and
    its public key next to it; (private path, public path). Refuses to overwrite a key."""
    public_path = public_path_for(out_path)
    for path in (out_path, public_path):
        if os.path.lexists(path):
            raise SpecError(
                what="refusing to overwrite an existing key file",
                where=path,
                remedy="choose another --out, or move the old key away first",
            )
    encryption: serialization.KeySerializationEncryption = (
        serialization.BestAvailableEncryption(passphrase)
        if passphrase
        else serialization.NoEncryption()
    )
    pem = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, encryption
    )
    write_atomic(out_path, pem, mode=0o600)  # the private key: its owner's only
    write_atomic(public_path, _pem_of(key.public_key()))
    return out_path, public_path
