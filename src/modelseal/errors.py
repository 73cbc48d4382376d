"""Errors a user can act on.

Every failure modelseal expects (bad input, a changed file, an unsafe archive) is a
`ModelsealError` that says where it happened, what check failed and what to do next, so the command
line and `model.pex` can print one line and exit with a stable code instead of a traceback. A
traceback still means a bug in modelseal or in a model's handler.

Standard library only: `model.pex` imports this module on hosts that have nothing but Python.
"""

from __future__ import annotations

from typing import ClassVar

EXIT_OK = 0
EXIT_FAILURE = 1
EXIT_USAGE = 2  # argparse's own code for usage errors.
EXIT_SPEC = 3
EXIT_INTEGRITY = 4
EXIT_KEY = 5
EXIT_PROVENANCE = 6
EXIT_NOT_REPRODUCED = 7  # modelseal rebuild / reproduce found a difference
# model.pex started by a Python it was not built for: its guard (format/pexguard.py) prints one
# line and exits with this before pex's bootstrap could look for another interpreter.
EXIT_WRONG_INTERPRETER = 8


class ModelsealError(Exception):
    """A failure with a place, a reason and a remedy; `exit_code` is what the process returns."""

    exit_code: ClassVar[int] = EXIT_FAILURE
    # Whether `what` already names both sides (`size expected 3 found 4`, which model.pex prints
    # as is): then the message does not repeat them.
    sides_in_what: ClassVar[bool] = False

    def __init__(
        self, *, what: str, where: str, remedy: str, expected: str = "", found: str = ""
    ) -> None:
        # Keyword-only: `what` and `where` are both strings, and swapping them would still print.
        # `expected` and `found` are the two sides of a failed comparison, when there is one: the
        # message shows them, and `modelseal verify --json` keeps them apart for machines.
        super().__init__(what, where, remedy)
        self.what = what
        self.where = where
        self.remedy = remedy
        self.expected = expected
        self.found = found
        self.sides_shown = self.sides_in_what

    def __str__(self) -> str:
        what = self.what
        if (self.expected or self.found) and not self.sides_shown:
            what += f": expected {self.expected or '(nothing)'}, found {self.found or '(nothing)'}"
        message = f"{self.where}: {what}."
        if self.remedy:
            message += f" {self.remedy[:1].upper()}{self.remedy[1:]}"
        return message


class SpecError(ModelsealError):
    """The input is wrong: a bundle spec, a manifest, a command's argument or a handler's name."""

    exit_code: ClassVar[int] = EXIT_SPEC


class IntegrityError(ModelsealError):
    """The bytes are not the ones recorded: a digest or size differs, a file is missing or extra,
    or an archive holds something a bundle never contains. `expected` and `found`, when given,
    are the two sides for verify's JSON report (the message already says them)."""

    exit_code: ClassVar[int] = EXIT_INTEGRITY
    sides_in_what: ClassVar[bool] = True


class KeyError_(ModelsealError):  # the builtin KeyError is a different thing.
    """A key reference cannot be used: its file or token is missing, the passphrase or PIN is
    wrong, or the key's type is not one modelseal signs with. The message names the reference
    with any secret left out, never the secret itself."""

    exit_code: ClassVar[int] = EXIT_KEY


class SigningError(ModelsealError):
    """Signing or provenance failed: a signer refused to sign, or a signature, layout or link
    does not verify (untrusted or revoked key, expired layout, a broken artifact rule)."""

    exit_code: ClassVar[int] = EXIT_PROVENANCE


# The failure classes of install-time verification, one per check, each with its own exit code:
# an operator's script (or a deployment controller) must tell "the archive is hostile" from "the
# model is too old for our policy" without parsing English (docs/verification.md). Each failure
# also carries what was expected and what was found, separately, for the `--json` report.
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

    @classmethod
    def from_error(cls, error: ModelsealError) -> VerificationError:
        """`error`, raised by a library function a check calls, re-classified as this check's
        failure so its exit code says which check failed, not which module noticed."""
        if isinstance(error, cls):
            return error
        result = cls(
            what=error.what,
            where=error.where,
            remedy=error.remedy,
            expected=error.expected,
            found=error.found,
        )
        result.sides_shown = error.sides_shown
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


EXIT_VULNERABLE = 17


class VulnerabilityError(VerificationError):
    """A distribution the SBOM lists is affected by an advisory at or above the configured
    severity (`modelseal audit-deps`, the build's gate, verify's policy): its own code, so a
    pipeline can tell "patch a dependency" from every other refusal."""

    check: ClassVar[str] = "policy"  # in verify, the policy's gate (docs/report.schema.json)
    exit_code: ClassVar[int] = EXIT_VULNERABLE
