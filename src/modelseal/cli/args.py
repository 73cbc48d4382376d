"""Arguments and argument readers shared by several command groups.

Kept in one module so that command groups do not import each other (the build steps and the
signing commands both read `--known-digests` and artifact paths).
"""

from __future__ import annotations

import os
from collections.abc import Mapping

from modelseal.errors import IntegrityError, SpecError
from modelseal.format.digests import sha256_files

# How a `--key` option's help names a reference. Not keys.core.REFERENCE_HELP: importing that
# module loads `cryptography`, which `--help` must not wait for.
REFERENCE = (
    "a key reference: file:PATH[?passphrase-file=PATH], pkcs11:... or env:NAME (docs/signing.md)"
)
KNOWN_DIGESTS_HELP = (
    "a JSON file {path: {sha256, size}} of files whose digests the caller already holds for "
    "exactly these bytes (the Pants rules pass Pants' own digests of what they materialized): "
    "those files are not read again, only their sizes checked"
)


def read_known_digests(path: str | None) -> dict[str, tuple[str, int]]:
    """The --known-digests file: {relative POSIX path: (sha256, size)}; {} for None."""
    if not path:
        return {}
    from modelseal.format.canonical import load_json

    try:
        with open(path, "rb") as f:
            document = load_json(f.read())
    except (OSError, ValueError) as e:
        raise SpecError(what=f"cannot be read ({e})", where=path, remedy="pass the file the "
                        "build wrote") from None
    result: dict[str, tuple[str, int]] = {}
    if isinstance(document, dict):
        for name, value in document.items():
            digest = value.get("sha256") if isinstance(value, dict) else None
            size = value.get("size") if isinstance(value, dict) else None
            if not (
                isinstance(digest, str)
                and len(digest) == 64
                and all(c in "0123456789abcdef" for c in digest)
                and isinstance(size, int)
                and not isinstance(size, bool)
                and size >= 0
            ):
                break
            result[name] = (digest, size)
        else:
            return result
    raise SpecError(
        what="expected {path: {\"sha256\": hex, \"size\": bytes}}",
        where=path,
        remedy="pass the file the build wrote",
    )


def artifacts(
    paths: list[str], option: str, known: Mapping[str, tuple[str, int]] | None = None
) -> dict[str, str]:
    """{relative POSIX path: sha256} of files, and of every file below directories. Files in
    `known` (by that path) are not read: their size is checked and the known digest used."""
    files: list[str] = []
    for path in paths:
        if os.path.isabs(path):
            raise SpecError(
                what="absolute paths would make the link differ between machines",
                where=f"{option} {path}",
                remedy="run from the training directory and pass relative paths",
            )
        if os.path.isdir(path):
            for directory, _, names in os.walk(path):
                files.extend(os.path.join(directory, n) for n in names)
        elif os.path.isfile(path):
            files.append(path)
        else:
            raise SpecError(
                what="no such file or directory",
                where=f"{option} {path}",
                remedy="pass paths relative to the current directory that exist now",
            )
    relative = {p: os.path.normpath(p).replace(os.sep, "/") for p in files}
    result: dict[str, str] = {}
    unknown = []
    for path, name in relative.items():
        given = (known or {}).get(name)
        if given is None:
            unknown.append(path)
            continue
        size = os.stat(path).st_size
        if size != given[1]:
            raise IntegrityError(
                what=f"{size} bytes, but its known digest is of {given[1]} bytes",
                where=f"{option} {name}",
                remedy="the file changed after its digest was taken: run the step again",
            )
        result[name] = given[0]
    hashed = sha256_files(unknown)
    for path in unknown:
        result[relative[path]] = hashed[path][0]
    return result
