"""What verification takes and gives: its options, each check's result, the report, and the
terminal progress line.

Kept apart from the checks themselves so that the command line and the JSON report can use these
records without the checks' imports, and so that the checks read as one numbered sequence.
"""

from __future__ import annotations

import datetime as dt
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import IO

from modelseal.errors import ModelsealError, VerificationError
from modelseal.format.manifest import Manifest
from modelseal.format.safe_extract import DEFAULT_LIMITS, Limits
from modelseal.keys.core import PublicKey
from modelseal.verify.host import Host
from modelseal.verify.policy import Policy

CHECKS = ("archive", "signature", "provenance", "integrity", "runtime", "trust", "policy")

Progress = Callable[[int, int], None]  # (bytes hashed so far, bytes in total)


@dataclass(frozen=True)
class VerifyOptions:
    """Everything verification trusts: the owner's key (parsed once, by the command line), the
    optional release-key pin, revoked key ids, the policy, and the limits. `now` is the clock
    for the layout's expiry and the policy's age; `host` and `progress` are for tests and
    terminals."""

    owner: PublicKey
    release: PublicKey | None = None  # model.sig's signer must also be this key
    policy: Policy | None = None
    policy_source: str = "policy"
    revoked: frozenset[str] = frozenset()
    allow_development: bool = False
    limits: Limits = DEFAULT_LIMITS
    now: dt.datetime | None = None
    host: Host | None = None
    python: str | None = None  # the interpreter that will run the model; None: this one
    progress: Progress | None = None
    workers: int | None = None


@dataclass(frozen=True)
class CheckResult:
    name: str
    ok: bool
    detail: str


REPORT_SCHEMA = "modelseal.report/v1"


@dataclass(frozen=True)
class RuntimeMatch:
    """The environment the runtime check matched: the interpreter that will run the model and
    the constraints it satisfied, so a report says on what the verdict holds."""

    python: str
    implementation: str
    version: str
    system: str
    machine: str
    glibc: str | None
    manifest_constraint: str
    pex_constraint: str | None  # None: the PEX has no PEX-INFO
    wheels: str

    def to_json(self) -> dict[str, object]:
        return {
            "python": self.python,
            "implementation": self.implementation,
            "version": self.version,
            "system": self.system,
            "machine": self.machine,
            "glibc": self.glibc,
            "manifest_constraint": self.manifest_constraint,
            "pex_constraint": self.pex_constraint,
            "wheels": self.wheels,
        }


@dataclass
class Report:
    """The outcome: the checks that ran, in order, and the failure that stopped them (if any),
    with the facts the checks established on the way (signers, layout, runtime), which the
    `modelseal.report/v1` JSON document carries for operators and CI (docs/verification.md).
    `bundle_dir` is the verified directory (the private extracted copy for a tar) while the
    context of `verified_bundle` is open."""

    checks: list[CheckResult] = field(default_factory=list)
    failure: VerificationError | None = None
    bundle_dir: str = ""
    manifest: Manifest | None = None
    # (sha256, size) of every file, hashed once by the archive check (not in the JSON report).
    digests: dict[str, tuple[str, int]] = field(default_factory=dict)
    manifest_sha256: str | None = None
    release_key_id: str | None = None
    owner_key_id: str | None = None
    layout_expires: str | None = None
    layout_steps: tuple[str, ...] = ()
    link_signers: tuple[tuple[str, str], ...] = ()  # (step, full key id), sorted
    runtime: RuntimeMatch | None = None

    @property
    def ok(self) -> bool:
        return self.failure is None and len(self.checks) == len(CHECKS)

    def to_json(
        self, *, command: str = "verify", path: str = "", kind: str = "", sha256: str | None = None
    ) -> dict[str, object]:
        """The `modelseal.report/v1` document (docs/report.schema.json). `path`, `kind` and
        `sha256` describe the artifact as the caller named it (a tar's digest, or None for a
        directory)."""
        failure: dict[str, object] | None = None
        if self.failure is not None:
            failure = failure_json(self.failure, self.failure.check)
        status = {c.name: ("passed" if c.ok else "failed") for c in self.checks}
        details = {c.name: c.detail for c in self.checks}
        manifest = self.manifest
        return {
            "schema": REPORT_SCHEMA,
            "command": command,
            "ok": self.ok,
            "verified": True,
            "artifact": {"path": path, "kind": kind, "sha256": sha256},
            "model": None
            if manifest is None
            else {
                "name": manifest.name,
                "version": manifest.version,
                "manifest_sha256": self.manifest_sha256,
            },
            "trust": None if manifest is None else manifest.trust,
            "signers": {
                "owner": self.owner_key_id,
                "release": self.release_key_id,
                "links": [{"step": step, "key_id": key} for step, key in self.link_signers],
            },
            "layout": None
            if self.layout_expires is None
            else {"expires": self.layout_expires, "steps": list(self.layout_steps)},
            "runtime": None if self.runtime is None else self.runtime.to_json(),
            "checks": [
                {
                    "name": name,
                    "status": status.get(name, "not_run"),
                    "detail": details.get(name, ""),
                }
                for name in CHECKS
            ],
            "failure": failure,
        }


def failure_json(error: ModelsealError, check: str) -> dict[str, object]:
    """A failure as the report holds it: where, what, both sides of the comparison, the remedy
    and the exit code, apart, so that CI need not parse the message."""
    return {
        "check": check,
        "where": error.where,
        "what": error.what,
        "expected": error.expected,
        "found": error.found,
        "remedy": error.remedy,
        "exit_code": error.exit_code,
        "message": str(error),
    }


class TerminalProgress:
    """One self-overwriting line of bytes hashed, at most ten updates a second; `close` clears
    it. Only for a terminal: logs and pipes get nothing."""

    def __init__(self, stream: IO[str]) -> None:
        self._stream = stream
        self._last = 0.0
        self._lock = threading.Lock()

    def __call__(self, done: int, total: int) -> None:
        now = time.monotonic()
        with self._lock:
            if now - self._last < 0.1 and done < total:
                return
            self._last = now
            percent = 100 * done // total if total else 100
            self._stream.write(f"\rhashing {_size(done)} / {_size(total)} ({percent}%)")
            self._stream.flush()

    def close(self) -> None:
        with self._lock:
            if self._last:
                self._stream.write("\r\x1b[K")
                self._stream.flush()
                self._last = 0.0


def _size(count: int) -> str:
    value = float(count)
    for unit in ("B", "KiB", "MiB", "GiB"):
        if value < 1024 or unit == "GiB":
            return f"{value:.1f} {unit}" if unit != "B" else f"{count} B"
        value /= 1024
    return f"{count} B"  # pragma: no cover - the loop always returns.
