"""The failure classes of install-time verification, one per check, each with its own exit code.

An operator's script (or a deployment controller) must tell "the archive is hostile" from "the
model is too old for our policy" without parsing English, so every check that `modelseal verify`
runs has its own `ModelsealError` subclass and exit code (docs/verification.md). Each failure also
carries what was expected and what was found, separately, for the `--json` report.

Standard library only, like `modelseal.errors`, which these extend.
"""

from __future__ import annotations

from typing import ClassVar

from modelseal.errors import ModelsealError

__all__ = [
    "EXIT_ARCHIVE",
    "EXIT_INTEGRITY_CHECK",
    "EXIT_POLICY",
    "EXIT_PROVENANCE_CHECK",
    "EXIT_RUNTIME",
    "EXIT_SIGNATURE",
    "EXIT_TRUST",
    "ArchiveError",
    "IntegrityCheckError",
    "PolicyError",
    "ProvenanceCheckError",
    "RuntimeCheckError",
    "SignatureCheckError",
    "TrustError",
    "VerificationError",
]

EXIT_ARCHIVE = 10
EXIT_SIGNATURE = 11
EXIT_PROVENANCE_CHECK = 12
EXIT_INTEGRITY_CHECK = 13
EXIT_RUNTIME = 14
EXIT_POLICY = 15
EXIT_TRUST = 16


class VerificationError(ModelsealError):
    """A check of `modelseal verify` failed. `check` names it; `expected` and `found` are the two
    sides of the comparison when there is one (empty strings otherwise)."""

    check: ClassVar[str] = "verify"

    def __init__(
        self, *, what: str, where: str, remedy: str, expected: str = "", found: str = ""
    ) -> None:
        # The message shows both sides; the report keeps them apart for machines.
        shown = what
        if expected or found:
            shown = f"{what}: expected {expected or '(nothing)'}, found {found or '(nothing)'}"
        super().__init__(what=shown, where=where, remedy=remedy)
        self.expected = expected
        self.found = found

    @classmethod
    def from_error(cls, error: ModelsealError) -> VerificationError:
        """`error`, raised by a library function a check calls, re-classified as this check's
        failure so its exit code says which check failed, not which module noticed."""
        if isinstance(error, cls):
            return error
        result = cls(what=error.what, where=error.where, remedy=error.remedy)
        # `what` already shows both sides when the original had them; keep them for the report.
        result.expected = str(getattr(error, "expected", ""))
        result.found = str(getattr(error, "found", ""))
        return result


class ArchiveError(VerificationError):
    """The tar (or directory) holds something a bundle never contains, or exceeds a size limit;
    nothing of it was trusted or run."""

    check: ClassVar[str] = "archive"
    exit_code: ClassVar[int] = EXIT_ARCHIVE


class SignatureCheckError(VerificationError):
    """`model.sig` is missing, malformed, made with another key, or does not match the files."""

    check: ClassVar[str] = "signature"
    exit_code: ClassVar[int] = EXIT_SIGNATURE


class ProvenanceCheckError(VerificationError):
    """The in-toto layout or a link does not verify: owner signature, expiry, link signatures,
    thresholds, revoked keys, artifact rules."""

    check: ClassVar[str] = "provenance"
    exit_code: ClassVar[int] = EXIT_PROVENANCE_CHECK


class IntegrityCheckError(VerificationError):
    """The files differ from what `manifest.json` records, or the manifest cannot be read."""

    check: ClassVar[str] = "integrity"
    exit_code: ClassVar[int] = EXIT_INTEGRITY_CHECK


class RuntimeCheckError(VerificationError):
    """The model cannot run on this host: interpreter or wheel tags do not match."""

    check: ClassVar[str] = "runtime"
    exit_code: ClassVar[int] = EXIT_RUNTIME


class TrustError(VerificationError):
    """A development-trust bundle where release trust is required."""

    check: ClassVar[str] = "trust"
    exit_code: ClassVar[int] = EXIT_TRUST


class PolicyError(VerificationError):
    """The bundle is authentic but the deployment policy refuses it (metrics, license, signers,
    age, required steps)."""

    check: ClassVar[str] = "policy"
    exit_code: ClassVar[int] = EXIT_POLICY
