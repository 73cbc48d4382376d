"""RFC 7512 PKCS#11 references: `pkcs11:token=T;object=K?module-path=LIB&pin-source=file:PATH`
(the grammar is described in `modelseal.keys.pkcs11`). A reference never carries a PIN.

Our own parser, not a library's: `python-pkcs11` (the binding `modelseal.keys.pkcs11` uses) reads
no RFC 7512 URIs, and no well-kept PyPI package does only that.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from urllib.parse import unquote, unquote_to_bytes

from modelseal.errors import KeyError_
from modelseal.keys.core import redact_reference

MODULE_ENV = "MODELSEAL_PKCS11_MODULE"

PATH_ATTRIBUTES = ("token", "manufacturer", "model", "serial", "slot-id", "object", "id", "type")
QUERY_ATTRIBUTES = ("module-path", "pin-source")
TOKEN_ATTRIBUTES = {"token": "label", "manufacturer": "manufacturer", "model": "model"}

# -- references -------------------------------------------------------------------------------


@dataclass(frozen=True)
class Pkcs11Reference:
    """A parsed `pkcs11:` reference. `shown` is the reference safe to print (it never holds a
    secret: the PIN is only ever in the file `pin_file` names)."""

    shown: str
    token: dict[str, str] = field(default_factory=dict)
    slot_id: int | None = None
    serial: str | None = None
    label: str | None = None
    key_id: bytes | None = None
    module_path: str | None = None
    pin_file: str | None = None


def fail(what: str, shown: str, remedy: str) -> KeyError_:
    return KeyError_(what=what, where=shown, remedy=remedy)


def _pairs(text: str, separator: str, allowed: tuple[str, ...], shown: str) -> dict[str, str]:
    result: dict[str, str] = {}
    for part in text.split(separator) if text else []:
        name, sep, value = part.partition("=")
        if name == "pin-value":
            raise fail(
                "a PIN may not be written into a key reference",
                shown,
                "put the PIN in a file and use pin-source=file:PATH",
            )
        if not sep or not name:
            raise fail(
                f"{part!r} is not an attribute=value pair",
                shown,
                "see RFC 7512 and docs/signing.md, 'PKCS#11'",
            )
        if name not in allowed or name in result:
            problem = "repeated" if name in result else "unknown"
            raise fail(
                f"{problem} attribute {name!r}", shown, f"allowed here: {', '.join(allowed)}"
            )
        result[name] = value
    return result


def parse_reference(reference: str, environ: Mapping[str, str] | None = None) -> Pkcs11Reference:
    """Parse an RFC 7512 reference; KeyError_ naming it (without secrets) when it is malformed."""
    env = os.environ if environ is None else environ
    shown = redact_reference(reference)
    if not reference.startswith("pkcs11:"):
        raise fail("not a pkcs11: reference", shown, "start it with pkcs11:")
    path, _, query = reference[len("pkcs11:") :].partition("?")
    attributes = _pairs(path, ";", PATH_ATTRIBUTES, shown)
    options = _pairs(query, "&", QUERY_ATTRIBUTES, shown)
    try:
        text = {n: unquote(v, errors="strict") for n, v in attributes.items() if n != "id"}
    except UnicodeDecodeError:
        raise fail(
            "a percent-encoded attribute other than id is not UTF-8",
            shown,
            "percent-encode the UTF-8 bytes of labels",
        ) from None
    if text.get("type", "private") != "private":
        raise fail(
            f"type={text['type']} does not name a private key",
            shown,
            "use type=private, or leave type out",
        )
    slot_id = None
    if "slot-id" in text:
        if not text["slot-id"].isdigit():
            raise fail("slot-id is not a decimal number", shown, "write e.g. slot-id=0")
        slot_id = int(text["slot-id"])
    module_path = unquote(options["module-path"]) if "module-path" in options else None
    if not module_path:
        module_path = env.get(MODULE_ENV) or None
    pin_file = None
    if "pin-source" in options:
        source = unquote(options["pin-source"])
        if source.startswith("file://"):
            source = source[len("file://") :]
            if not source.startswith("/"):
                raise fail(
                    "pin-source=file:// must be followed by an absolute path",
                    shown,
                    "write pin-source=file:/path/to/pin or pin-source=file:relative/path",
                )
        elif source.startswith("file:"):
            source = source[len("file:") :]
        else:
            raise fail(
                "pin-source must be a file: URI",
                shown,
                "write the PIN on the first line of a file and use pin-source=file:PATH",
            )
        if not source:
            raise fail("no path after pin-source=file:", shown, "write pin-source=file:PATH")
        pin_file = source
    return Pkcs11Reference(
        shown=shown,
        token={k: text[k] for k in TOKEN_ATTRIBUTES if k in text},
        slot_id=slot_id,
        serial=text.get("serial"),
        label=text.get("object"),
        key_id=unquote_to_bytes(attributes["id"]) if "id" in attributes else None,
        module_path=module_path,
        pin_file=pin_file,
    )
