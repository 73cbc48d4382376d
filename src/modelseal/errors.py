"""Errors a user can act on.

Every failure modelseal expects (bad input, a changed file, an unsafe archive) is a
`ModelsealError` that says where it happened, what check failed and what to do next, so the command
line and `model.pex` can print one line and exit with a stable code instead of a traceback. A
traceback still means a bug in modelseal or in a model's handler.

Standard library only: `model.pex` imports this module on hosts that have nothing but Python.
"""

from __future__ import annotations

from typing import ClassVar

EXIT_FAILURE = 1
EXIT_SPEC = 3
EXIT_INTEGRITY = 4
EXIT_KEY = 5
EXIT_PROVENANCE = 6


class ModelsealError(Exception):
    """A failure with a place, a reason and a remedy; `exit_code` is what the process returns."""

    exit_code: ClassVar[int] = EXIT_FAILURE

    def __init__(self, *, what: str, where: str, remedy: str) -> None:
        # Keyword-only: `what` and `where` are both strings, and swapping them would still print.
        super().__init__(what, where, remedy)
        self.what = what
        self.where = where
        self.remedy = remedy

    def __str__(self) -> str:
        message = f"{self.where}: {self.what}."
        if self.remedy:
            message += f" {self.remedy[:1].upper()}{self.remedy[1:]}"
        return message


class SpecError(ModelsealError):
    """The input is wrong: a bundle spec, a manifest, a command's argument or a handler's name."""

    exit_code: ClassVar[int] = EXIT_SPEC


class IntegrityError(ModelsealError):
    """The bytes are not the ones recorded: a digest or size differs, a file is missing or extra,
    or an archive holds something a bundle never contains."""

    exit_code: ClassVar[int] = EXIT_INTEGRITY


class KeyError_(ModelsealError):  # the builtin KeyError is a different thing.
    """A key reference cannot be used: its file or token is missing, the passphrase or PIN is
    wrong, or the key's type is not one modelseal signs with. The message names the reference
    with any secret left out, never the secret itself."""

    exit_code: ClassVar[int] = EXIT_KEY


class SigningError(ModelsealError):
    """Signing or provenance failed: a signer refused to sign, or a signature, layout or link
    does not verify (untrusted or revoked key, expired layout, a broken artifact rule)."""

    exit_code: ClassVar[int] = EXIT_PROVENANCE
