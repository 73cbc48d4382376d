"""`modelseal verify` and `modelseal run`: the commands a deployment host runs.

`verify` prints one line per check (or a JSON report with `--json`) and exits with the failed
check's code (docs/verification.md). `run` verifies the same way and only then starts the PEX,
from the very files that were verified, so there is no window in which a verified tar and an
unverified extraction could differ.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import shutil
import signal
import subprocess
import sys
import tempfile
from collections.abc import Callable, Iterator, Mapping, Sequence

from modelseal.errors import EXIT_FAILURE, EXIT_OK, ModelsealError, SpecError
from modelseal.format.canonical import canonical_json
from modelseal.format.safe_extract import (
    DEFAULT_LIMITS,
    Limits,
    copy_verified,
    private_directory,
    remove_tree,
)
from modelseal.keys.core import PublicKey
from modelseal.verify.checks import (
    Report,
    TerminalProgress,
    VerifyOptions,
    default_progress,
    verified_bundle,
)
from modelseal.verify.policy import Policy

__all__ = [
    "child_environment",
    "extract",
    "extract_arguments",
    "run",
    "run_arguments",
    "split_passthrough",
    "verify",
    "verify_arguments",
]

# Keys, the policy and the revocation list are small: read at most this much of each.
MAX_CONFIG_SIZE = 1024 * 1024

# What changes the code a Python process or a PEX loads, removed from `run`'s child
# (docs/verification.md lists them): pex's own settings, the interpreter's, and the dynamic
# loader's. PEX_ROOT is then set to a new empty directory; PYTHONNOUSERSITE keeps the user's
# site-packages (and their .pth files) out.
SCRUBBED_PREFIXES = ("PEX_", "__PEX_", "PYTHON", "LD_", "DYLD_")


def verify_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("bundle", metavar="BUNDLE_OR_TAR", help="a bundle directory or its .tar")
    parser.add_argument(
        "--trust", required=True, metavar="OWNER.pub", help="the layout owner's public key"
    )
    parser.add_argument(
        "--release-key",
        metavar="RELEASE.pub",
        help="pin: model.sig must be signed by this key (it must also be one the layout "
        "authorizes for the sign step, which is all that is required without this option)",
    )
    parser.add_argument("--policy", metavar="FILE", help="a modelseal.policy/v1 JSON file")
    parser.add_argument(
        "--revocations", metavar="FILE", help="a modelseal.revocations/v1 list of revoked key ids"
    )
    parser.add_argument("--json", action="store_true", help="print a JSON report on stdout")
    parser.add_argument(
        "--allow-development",
        action="store_true",
        help='accept "trust": "development" bundles (testing only)',
    )
    parser.add_argument(
        "--max-member-size",
        type=int,
        default=DEFAULT_LIMITS.max_member_size,
        metavar="BYTES",
        help=f"largest file accepted in a tar (default {DEFAULT_LIMITS.max_member_size})",
    )
    parser.add_argument(
        "--max-total-size",
        type=int,
        default=DEFAULT_LIMITS.max_total_size,
        metavar="BYTES",
        help=f"largest bundle accepted (default {DEFAULT_LIMITS.max_total_size})",
    )


    parser.add_argument(
        "--python",
        metavar="PATH",
        default=None,
        help="the interpreter that runs the model, checked against the bundle's runtime "
        "(default: python3 on PATH, else the one running modelseal)",
    )


def model_python(args: argparse.Namespace) -> str:
    return str(args.python or shutil.which("python3") or sys.executable)


def run_arguments(parser: argparse.ArgumentParser) -> None:
    verify_arguments(parser)
    parser.epilog = "Arguments after `--` go to the model's PEX, e.g. `-- predict` or `-- info`."


def _read(path: str, what: str) -> bytes:
    with open(path, "rb") as f:
        data = f.read(MAX_CONFIG_SIZE + 1)
    if len(data) > MAX_CONFIG_SIZE:
        raise SpecError(
            what=f"the {what} is larger than {MAX_CONFIG_SIZE} bytes",
            where=path,
            remedy=f"pass the {what} file itself",
        )
    return data


def _options(args: argparse.Namespace, progress: TerminalProgress | None) -> VerifyOptions:
    """Read every input the checks trust before any check runs: a bad key or policy file is a
    usage problem (exit 3 or 5), not a verdict on the bundle."""
    from modelseal.signing.provenance import load_revocations

    owner = PublicKey.from_pem(_read(args.trust, "owner key"), source=args.trust)
    release = None
    if args.release_key:
        pinned = _read(args.release_key, "release key")
        release = PublicKey.from_pem(pinned, source=args.release_key)
    policy = None
    if args.policy:
        policy = Policy.from_bytes(_read(args.policy, "policy"), source=args.policy)
    revoked: frozenset[str] = frozenset()
    if args.revocations:
        revoked = load_revocations(_read(args.revocations, "revocation list"), args.revocations)
    if args.max_member_size < 0 or args.max_total_size < 0:
        raise SpecError(
            what="size limits must not be negative",
            where="--max-member-size/--max-total-size",
            remedy="pass a number of bytes",
        )
    return VerifyOptions(
        owner=owner,
        release=release,
        policy=policy,
        policy_source=args.policy or "policy",
        revoked=revoked,
        allow_development=args.allow_development,
        limits=Limits(
            max_member_size=args.max_member_size,
            max_total_size=args.max_total_size,
            max_members=DEFAULT_LIMITS.max_members,
        ),
        progress=progress,
        python=model_python(args),
    )


def _input_failure(error: ModelsealError | OSError) -> tuple[dict[str, object], int]:
    """The JSON report for a failure before the checks ran (arguments, key, policy, I/O)."""
    if isinstance(error, ModelsealError):
        where, code, remedy, message = error.where, error.exit_code, error.remedy, str(error)
    else:
        where = str(error.filename or "")
        code, remedy, message = EXIT_FAILURE, "", f"{where}: {error.strerror or error}"
    report = {
        "ok": False,
        "checks": [],
        "failure": {
            "check": "input",
            "where": where,
            "expected": "",
            "found": "",
            "remedy": remedy,
            "exit_code": code,
            "message": message,
        },
    }
    return report, code


def _print_report(report: Report, as_json: bool, *, quiet: bool = False) -> None:
    """The report on stdout; with `quiet` (for `run`, whose stdout is the model's) only the
    failure, on stderr."""
    if as_json:
        sys.stdout.buffer.write(canonical_json(report.to_json()))
        sys.stdout.flush()
        return
    for check in report.checks:
        if check.ok and not quiet:
            print(f"ok      {check.name}: {check.detail}")
    if report.failure is not None:
        print(f"modelseal: error: {report.failure.check}: {report.failure}", file=sys.stderr)
    elif report.manifest is not None and not quiet:
        manifest = report.manifest
        print(f"verified {manifest.name} {manifest.version} ({manifest.trust})")
    sys.stdout.flush()


class _Signalled(BaseException):
    """SIGTERM (or SIGINT) during verify, run or extract: unwinds like an exception, so the
    private directory is removed (and `run`'s child killed) before the process exits."""

    def __init__(self, number: int) -> None:
        super().__init__(number)
        self.number = number


@contextlib.contextmanager
def _signals_unwind() -> Iterator[None]:
    def handler(number: int, frame: object) -> None:
        raise _Signalled(number)

    previous = {n: signal.signal(n, handler) for n in (signal.SIGTERM, signal.SIGINT)}
    try:
        yield
    finally:
        for number, old in previous.items():
            signal.signal(number, old)


def _verify_then(
    args: argparse.Namespace,
    command: Sequence[str] | None,
    then: Callable[[Report], int] | None = None,
) -> int:
    try:
        with _signals_unwind():
            return _verify_then_inner(args, command, then)
    except _Signalled as s:
        name = signal.Signals(s.number).name
        print(f"modelseal: error: stopped by {name}; nothing was kept", file=sys.stderr)
        return 128 + s.number


def _verify_then_inner(
    args: argparse.Namespace,
    command: Sequence[str] | None,
    then: Callable[[Report], int] | None,
) -> int:
    progress = None if args.json else default_progress()
    try:
        options = _options(args, progress)
        with verified_bundle(args.bundle, options) as report:
            if progress is not None:
                progress.close()
            if command is not None and report.ok:
                return _run_pex(report, command, model_python(args))
            if then is not None and report.ok:
                _print_report(report, args.json)
                return then(report)
            _print_report(report, args.json, quiet=command is not None)
            return EXIT_OK if report.failure is None else report.failure.exit_code
    except (ModelsealError, OSError) as e:
        if not args.json:
            raise  # cli.main prints it as one line, with the error's exit code.
        document, code = _input_failure(e)
        sys.stdout.buffer.write(canonical_json(document))
        sys.stdout.flush()
        return code
    finally:
        if progress is not None:
            progress.close()


def _run_pex(report: Report, command: Sequence[str], python: str) -> int:
    """Run the verified PEX with `command`, stdin, stdout and stderr passed through; its code
    (128 + N when a signal N ended it, as shells report it)."""
    manifest = report.manifest
    assert manifest is not None
    pex = os.path.join(report.bundle_dir, *manifest.runtime.pex.split("/"))
    sys.stdout.flush()
    # A new, empty PEX_ROOT: pex unpacks into $PEX_ROOT/unzipped_pexes/<hash from PEX-INFO>
    # and trusts what it finds there, so a shared cache filled by a forged PEX with the same
    # PEX-INFO would run instead of the verified bytes.
    pex_root = private_directory("modelseal-pex-root-")
    try:
        env = child_environment(os.environ, pex_root)
        completed = subprocess.run([python, pex, *command], cwd=report.bundle_dir, env=env)
    finally:
        remove_tree(pex_root)
    code = completed.returncode
    return 128 - code if code < 0 else code


def child_environment(environ: Mapping[str, str], pex_root: str) -> dict[str, str]:
    """`environ` without what changes the code Python or pex loads (SCRUBBED_PREFIXES), with
    PEX_ROOT set to `pex_root` and the user's site-packages off."""
    env = {k: v for k, v in environ.items() if not k.upper().startswith(SCRUBBED_PREFIXES)}
    env["PEX_ROOT"] = pex_root
    env["PYTHONNOUSERSITE"] = "1"
    return env


def verify(args: argparse.Namespace) -> int:
    return _verify_then(args, None)


def extract_arguments(parser: argparse.ArgumentParser) -> None:
    verify_arguments(parser)
    parser.add_argument(
        "directory", metavar="DIR", help="where to write the verified bundle (DIR/<name>-<version>)"
    )


def extract(args: argparse.Namespace) -> int:
    """Verify the tar, then write out exactly the verified bytes: the safe `tar xf`."""
    if not os.path.isfile(args.bundle):
        raise SpecError(
            what="not a bundle tar",
            where=args.bundle,
            remedy="pass the .tar that `pants package` wrote (a directory needs no extraction)",
        )
    return _verify_then(args, None, lambda report: _write_out(report, args.directory))


def _write_out(report: Report, directory: str) -> int:
    """Copy the verified private copy into `directory/<top>`, hashing every byte copied against
    the digests the checks used; a temporary directory renamed into place, so nothing half
    written remains."""
    source = report.bundle_dir
    target = os.path.join(directory, os.path.basename(source))
    if os.path.lexists(target):
        raise SpecError(
            what="already exists", where=target, remedy="remove it or extract somewhere else"
        )
    os.makedirs(directory, exist_ok=True)
    staging = tempfile.mkdtemp(prefix=".modelseal-extract-", dir=directory)
    try:
        copy_verified(source, os.path.join(staging, "bundle"), report.digests)
        os.rename(os.path.join(staging, "bundle"), target)
    finally:
        remove_tree(staging)
    print(f"modelseal: extracted to {target}", file=sys.stderr)
    return EXIT_OK


def run(args: argparse.Namespace) -> int:
    command: list[str] = list(getattr(args, "passthrough", []))
    if not command:
        raise SpecError(
            what="nothing to run",
            where="run",
            remedy="add the model's command after `--`, e.g. `-- predict` or `-- info`",
        )
    return _verify_then(args, command)


def split_passthrough(argv: Sequence[str]) -> tuple[list[str], list[str] | None]:
    """(the arguments for modelseal, those after the first `--` for `run`): argparse's own `--`
    handling differs between Python versions, and the PEX's arguments must pass through intact.
    Only `run` takes them; for any other command the argv is returned unchanged."""
    args = list(argv)
    if "--" not in args:
        return args, None
    head, tail = args[: args.index("--")], args[args.index("--") + 1 :]
    command = next((a for a in head if not a.startswith("-")), None)
    if command != "run":
        return args, None
    return head, tail
