"""The classes an adversarial review got through `verify` and `run` (issue 14), one test each.

Every crafted input runs through the real command line in a child process, which must end with
the documented exit code and one line naming the problem, never a traceback, within 10 s and
256 MiB (peak resident set, from the child's rusage), leaving its scratch directory empty and
nothing outside it written.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import signal
import subprocess
import sys
import tarfile
import time
from dataclasses import dataclass
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from core.signing_fixtures import Keys, flip_byte, make_keys, write_ec_key
from core.verify_fixtures import make_signed_bundle, member, raw_tar, resign, tar_of
from modelseal.cli import main as cli_main
from modelseal.errors import EXIT_ARCHIVE, EXIT_SIGNATURE, EXIT_SPEC
from modelseal.keys.core import PublicKey
from modelseal.keys.reference import load_signer
from modelseal.signing.release import sign_release
from modelseal.verify.checks import VerifyOptions, verified_bundle

MAX_SECONDS = 10.0
MAX_MIB = 256.0
TOP = "iris-1.0.0"
# The command line in a child process (imported here too, so the test depends on all of it).
MAIN = f"import sys; from {cli_main.__name__} import main; sys.exit(main())"


@pytest.fixture(scope="module")
def keys(tmp_path_factory: pytest.TempPathFactory) -> Keys:
    return make_keys(str(tmp_path_factory.mktemp("keys")))


@dataclass
class Outcome:
    code: int
    out: str
    err: str
    seconds: float
    peak_mib: float


def modelseal(args: list[str], tmp: Path, stdin: str = "") -> Outcome:
    """`modelseal ARGS` in a child with its own empty TMPDIR (checked empty afterwards); its exit
    code, output, wall time and peak resident memory."""
    scratch = tmp / "scratch"
    scratch.mkdir(exist_ok=True)
    env = {**os.environ, "TMPDIR": str(scratch), "PYTHONPATH": os.pathsep.join(sys.path)}
    out_path, err_path = tmp / "stdout", tmp / "stderr"
    start = time.monotonic()
    with open(out_path, "w") as out, open(err_path, "w") as err:
        child = subprocess.Popen(
            [sys.executable, "-c", MAIN, *args],
            stdin=subprocess.PIPE, stdout=out, stderr=err, env=env, text=True,
        )
        assert child.stdin is not None
        child.stdin.write(stdin)
        child.stdin.close()
        # wait4, not Popen.wait: its rusage is this child's own peak resident set.
        _, status, usage = os.wait4(child.pid, 0)
        child.returncode = os.waitstatus_to_exitcode(status)
    seconds = time.monotonic() - start
    assert list(scratch.iterdir()) == [], "verify left its scratch directory behind"
    return Outcome(
        child.returncode, out_path.read_text(), err_path.read_text(), seconds,
        usage.ru_maxrss / 1024,
    )


def assert_refused(outcome: Outcome, code: int, *words: str) -> None:
    assert outcome.code == code, outcome.err
    assert "Traceback" not in outcome.err
    lines = outcome.err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("modelseal: error: "), outcome.err
    for word in words:
        assert word in lines[0]
    assert outcome.seconds < MAX_SECONDS, f"{outcome.seconds:.1f} s"
    assert outcome.peak_mib < MAX_MIB, f"{outcome.peak_mib:.0f} MiB"
    print(f"measured: {outcome.seconds:.2f} s, {outcome.peak_mib:.0f} MiB peak: {lines[0][:100]}")


def verify_args(target: Path | str, keys: Keys, *extra: str) -> list[str]:
    return ["verify", str(target), "--trust", keys.pub("owner"), *extra]


# -- 1. unverified code runs ------------------------------------------------------------------


def _header_at(data: bytearray, name: str) -> int:
    """Offset of the header block of the member called `name`."""
    offset = 0
    while offset < len(data):
        if data[offset : offset + 100].split(b"\0", 1)[0] == name.encode():
            return offset
        offset += 512
    raise AssertionError(f"no header {name}")


def _fix_checksum(data: bytearray, offset: int) -> None:
    block = data[offset : offset + 512]
    block[148:156] = b" " * 8
    data[offset + 148 : offset + 156] = b"%06o\0 " % sum(block)


def test_a_tar_gnu_tar_reads_differently_is_refused(
    tmp_path: Path, keys: Keys
) -> None:
    """A mode field `000755 1` (with a valid checksum): Python's tarfile stops reading there and
    lists fewer members; GNU tar reads on. Our reader refuses the header."""
    bundle = make_signed_bundle(str(tmp_path / "b"), keys)
    genuine = tar_of(bundle, str(tmp_path / "genuine.tar"))
    data = bytearray(Path(genuine).read_bytes())
    offset = _header_at(data, f"{TOP}/manifest.json")
    data[offset + 100 : offset + 108] = b"000644 1"
    _fix_checksum(data, offset)
    crafted = tmp_path / "crafted.tar"
    crafted.write_bytes(bytes(data))
    gnu = subprocess.run(["tar", "-tf", str(crafted)], capture_output=True, text=True).stdout
    with tarfile.open(crafted) as tar:
        python = [m.name for m in tar]
    assert len(gnu.splitlines()) > len(python)  # The two readers really disagree.
    outcome = modelseal(verify_args(crafted, keys), tmp_path)
    assert_refused(outcome, EXIT_ARCHIVE, "manifest.json", "mode field is not a plain octal")


def test_run_passes_no_loader_variables(tmp_path: Path, keys: Keys) -> None:
    bundle = make_signed_bundle(str(tmp_path / "b"), keys)
    tar = tar_of(bundle, str(tmp_path / f"{TOP}.tar"))
    hostile = str(tmp_path / "hostile")
    os.makedirs(hostile)
    Path(hostile, "sitecustomize.py").write_text(f"open({str(tmp_path / 'ran')!r}, 'w').close()\n")
    env_before = dict(os.environ)
    try:
        os.environ.update(PYTHONPATH=hostile, PEX_INHERIT_PATH="prefer", PEX_MODULE="evil",
                          PEX_ROOT=str(tmp_path / "shared-pex-root"))
        outcome = modelseal(["run", tar, "--trust", keys.pub("owner"), "--", "predict"], tmp_path)
    finally:
        os.environ.clear()
        os.environ.update(env_before)
    assert outcome.code == 0, outcome.err
    seen = json.loads(outcome.out)
    assert seen["env"] == ["PEX_ROOT", "PYTHONNOUSERSITE"]
    assert not seen["pex_root"].startswith(str(tmp_path / "shared-pex-root"))
    assert not (tmp_path / "ran").exists()


# -- 2. unsigned content ----------------------------------------------------------------------


@pytest.mark.parametrize("as_tar", [False, True], ids=["directory", "tar"])
def test_an_unsigned_provenance_tree_is_refused(tmp_path: Path, keys: Keys, as_tar: bool) -> None:
    """model.sig records `provenance/files.link` as ignored (for model_signing's sake): a
    directory of that name must not smuggle content past it."""
    bundle = Path(make_signed_bundle(str(tmp_path / "b"), keys))
    hidden = bundle / "provenance" / "files.link"
    hidden.mkdir()
    (hidden / "sitecustomize.py").write_text("import os; os.system('echo owned')\n")
    (hidden / "evil.pth").write_text("import sitecustomize\n")
    resign(str(bundle), keys)  # A valid model.sig that ignores provenance/files.link.
    target: Path | str = tar_of(str(bundle), str(tmp_path / f"{TOP}.tar")) if as_tar else bundle
    outcome = modelseal(verify_args(target, keys), tmp_path)
    assert_refused(outcome, EXIT_SIGNATURE, "provenance/files.link/", "not signed by model.sig")


@pytest.mark.parametrize("pin", [True, False], ids=["pinned", "unpinned"])
def test_model_sig_by_a_key_the_layout_does_not_name(
    tmp_path: Path, keys: Keys, pin: bool
) -> None:
    bundle = make_signed_bundle(str(tmp_path / "b"), keys)
    foreign = load_signer("file:" + write_ec_key(str(tmp_path / "foreign.pem")))
    sign_release(bundle, foreign)  # Re-sign every file, valid in itself.
    foreign_pub = tmp_path / "foreign.pub"
    foreign_pub.write_bytes(foreign.public_key_pem)
    extra = ["--release-key", str(foreign_pub)] if pin else []
    outcome = modelseal(verify_args(bundle, keys, *extra), tmp_path)
    assert_refused(outcome, EXIT_SIGNATURE, "another key")


def test_the_release_key_is_an_optional_pin(tmp_path: Path, keys: Keys) -> None:
    bundle = make_signed_bundle(str(tmp_path / "b"), keys)
    assert modelseal(verify_args(bundle, keys), tmp_path).code == 0
    pinned = modelseal(verify_args(bundle, keys, "--release-key", keys.pub("release")), tmp_path)
    assert pinned.code == 0, pinned.err


# -- 3 and 4. hangs, blow-ups and tracebacks before any signature is checked ------------------


def _pax_sparse(path: Path) -> str:
    record = b"GNU.sparse.map=" + b"9" * 400_000 + b"\n"
    length = len(record) + 7
    data = b"%d %s" % (length, record)
    pax = member(f"{TOP}/PaxHeaders/x", tarfile.XHDTYPE, len(data))
    return raw_tar(str(path), [(member(TOP, tarfile.DIRTYPE), None), (pax, data)])


def _long_names(path: Path, name: str, chained: int = 1) -> str:
    payload = name.encode() + b"\0"
    records = [(member("././@LongLink", tarfile.GNUTYPE_LONGNAME, len(payload)), payload)]
    return raw_tar(str(path), [(member(TOP, tarfile.DIRTYPE), None), *records * chained,
                               (member(f"{TOP}/x", size=1), b"x")])


CRAFTED = {
    # name: (builder, exit code, words of the message)
    "pax GNU.sparse records": (_pax_sparse, EXIT_ARCHIVE, ("a pax header",)),
    "500,000 segments": (
        lambda p: _long_names(p, TOP + "/a" * 500_000), EXIT_ARCHIVE, ("long-name record",)),
    "350 chained long names": (
        lambda p: _long_names(p, TOP + "/n", chained=350), EXIT_ARCHIVE, ("second long-name",)),
    "1,500 segments": (
        lambda p: _long_names(p, TOP + "/a" * 1500), EXIT_ARCHIVE, ("too many segments",)),
    "a 300-byte segment": (
        lambda p: _long_names(p, f"{TOP}/{'x' * 300}"), EXIT_ARCHIVE, ("segment", "too long")),
    "a sparse member": (
        lambda p: raw_tar(str(p), [
            (member(TOP, tarfile.DIRTYPE), None),
            (member(f"{TOP}/w", tarfile.GNUTYPE_SPARSE, 2 * 1024**3), None),
        ]),
        EXIT_ARCHIVE, ("a sparse file",)),
    "a 2 GiB weights file the manifest does not declare": (
        lambda p: raw_tar(str(p), [(member(TOP, tarfile.DIRTYPE), None),
                                   (member(f"{TOP}/weights", tarfile.DIRTYPE), None),
                                   (member(f"{TOP}/weights/big.bin", size=2 * 1024**3), None)]),
        EXIT_ARCHIVE, ("larger than the manifest allows",)),
    "a 2 GiB model.sig": (
        lambda p: raw_tar(str(p), [(member(TOP, tarfile.DIRTYPE), None),
                                   (member(f"{TOP}/model.sig", size=2 * 1024**3), None)]),
        EXIT_ARCHIVE, ("model.sig", "larger than the manifest allows")),
}


@pytest.mark.parametrize("name", sorted(CRAFTED))
def test_crafted_tars_end_fast_small_and_cleanly(tmp_path: Path, keys: Keys, name: str) -> None:
    build, code, words = CRAFTED[name]
    tar = build(tmp_path / "crafted.tar")
    assert os.path.getsize(tar) < 1.5 * 1024**2
    assert_refused(modelseal(verify_args(tar, keys), tmp_path), code, *words)


def test_a_sparse_2_gib_model_sig_in_a_directory(tmp_path: Path, keys: Keys) -> None:
    bundle = Path(make_signed_bundle(str(tmp_path / "b"), keys))
    with open(bundle / "model.sig", "r+b") as f:
        f.truncate(2 * 1024**3)
    outcome = modelseal(verify_args(bundle, keys), tmp_path)
    assert_refused(outcome, EXIT_ARCHIVE, "model.sig", "larger than modelseal reads")


def test_a_revocation_list_nested_200000_deep(tmp_path: Path, keys: Keys) -> None:
    bundle = make_signed_bundle(str(tmp_path / "b"), keys)
    deep = tmp_path / "revoked.json"
    deep.write_text("[" * 200_000)
    outcome = modelseal(verify_args(bundle, keys, "--revocations", str(deep)), tmp_path)
    assert_refused(outcome, EXIT_SPEC, "revoked.json", "nested too deeply")


def test_a_model_sig_nested_deep(tmp_path: Path, keys: Keys) -> None:
    bundle = Path(make_signed_bundle(str(tmp_path / "b"), keys))
    (bundle / "model.sig").write_text('{"a":' * 100_000)
    outcome = modelseal(verify_args(bundle, keys), tmp_path)
    assert_refused(outcome, EXIT_SIGNATURE, "model.sig", "nested too deeply")


# -- 5. leftovers -----------------------------------------------------------------------------


@pytest.mark.parametrize("number", [signal.SIGTERM, signal.SIGINT], ids=lambda n: n.name)
def test_a_signal_removes_the_scratch_directory(
    tmp_path: Path, keys: Keys, number: signal.Signals
) -> None:
    bundle = make_signed_bundle(str(tmp_path / "b"), keys)
    tar = tar_of(bundle, str(tmp_path / f"{TOP}.tar"))
    # An interpreter that never answers the runtime check's probe: verify waits there, with
    # the tar extracted into its scratch directory.
    slow = tmp_path / "slow-python"
    slow.write_text("#!/bin/sh\nexec sleep 60\n")
    slow.chmod(0o755)
    scratch = tmp_path / "scratch"
    scratch.mkdir()
    env = {**os.environ, "TMPDIR": str(scratch), "PYTHONPATH": os.pathsep.join(sys.path)}
    child = subprocess.Popen(
        [sys.executable, "-c", MAIN, *verify_args(tar, keys, f"--python={slow}")],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env, text=True,
    )
    deadline = time.monotonic() + 30
    while not list(scratch.iterdir()) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert list(scratch.iterdir()), "verify never extracted"
    time.sleep(0.5)
    child.send_signal(number)
    _, err = child.communicate(timeout=30)
    assert child.returncode == 128 + number, err
    assert err.strip().splitlines() == [f"modelseal: error: stopped by {number.name}; "
                                        "nothing was kept"]
    assert list(scratch.iterdir()) == []


# -- 3. extract: the safe `tar xf` -------------------------------------------------------------


def test_extract_writes_exactly_the_verified_bytes(tmp_path: Path, keys: Keys) -> None:
    bundle = Path(make_signed_bundle(str(tmp_path / "b"), keys))
    tar = tar_of(str(bundle), str(tmp_path / f"{TOP}.tar"))
    out = tmp_path / "installed"
    done = modelseal(["extract", tar, str(out), "--trust", keys.pub("owner")], tmp_path)
    assert done.code == 0, done.err
    extracted = out / TOP
    files = sorted(p.relative_to(bundle) for p in bundle.rglob("*") if p.is_file())
    assert sorted(p.relative_to(extracted) for p in extracted.rglob("*") if p.is_file()) == files
    for path in files:
        assert (extracted / path).read_bytes() == (bundle / path).read_bytes()
        mode = (extracted / path).stat().st_mode & 0o777
        assert mode == (0o755 if str(path) == "model.pex" else 0o644)
    assert [p.name for p in out.iterdir()] == [TOP]  # No staging directory left behind.
    # Extracting again would overwrite: refused, nothing changed.
    again = modelseal(["extract", tar, str(out), "--trust", keys.pub("owner")], tmp_path)
    assert again.code == EXIT_SPEC and "already exists" in again.err


def test_extract_writes_nothing_for_a_forged_tar(tmp_path: Path, keys: Keys) -> None:
    bundle = Path(make_signed_bundle(str(tmp_path / "b"), keys))
    flip_byte(str(bundle / "weights" / "model.bin"), offset=100)  # Same size, other bytes.
    tar = tar_of(str(bundle), str(tmp_path / f"{TOP}.tar"))
    out = tmp_path / "installed"
    outcome = modelseal(["extract", tar, str(out), "--trust", keys.pub("owner")], tmp_path)
    assert_refused(outcome, EXIT_SIGNATURE, "weights/model.bin")
    assert not out.exists() or list(out.iterdir()) == []


# -- the reader against GNU tar ---------------------------------------------------------------


def _genuine_small_tar(directory: Path) -> tuple[bytes, list[int]]:
    from modelseal.format.archive import write_tar

    root = directory / "b"
    (root / "weights" / ("long-" * 30)).mkdir(parents=True, exist_ok=True)
    (root / "manifest.json").write_bytes(b"{}\n")
    (root / "model.pex").write_bytes(b"pex" * 100)
    (root / "weights" / ("long-" * 30) / "w.bin").write_bytes(bytes(range(256)) * 3)
    out = directory / "small.tar"
    write_tar(root, out, top=TOP, mtime=1700000000)
    data = out.read_bytes()
    headers = [o for o in range(0, len(data), 512) if data[o + 257 : o + 263] == b"ustar "]
    return data, headers


@pytest.fixture(scope="module")
def small_tar(tmp_path_factory: pytest.TempPathFactory) -> tuple[bytes, list[int]]:
    return _genuine_small_tar(tmp_path_factory.mktemp("small"))


def _ours(path: Path) -> list[tuple[str, int, str]] | None:
    from modelseal.errors import ArchiveError
    from modelseal.format.tarstream import read_entries

    try:
        with open(path, "rb") as f:
            return [
                (
                    ("d" if e.entry.is_dir else "-") + _perms(e.mode),
                    e.entry.size,
                    e.name + ("/" if e.entry.is_dir else ""),
                )
                for e in read_entries(f, str(path), 1000)
            ]
    except ArchiveError:
        return None


def _perms(mode: int) -> str:
    return "".join(c if mode & (1 << (8 - i)) else "-" for i, c in enumerate("rwxrwxrwx"))


def _gnu(path: Path) -> list[tuple[str, int, str]] | None:
    listed = subprocess.run(
        ["tar", "-tvf", str(path)], capture_output=True, text=True, errors="replace",
        env={**os.environ, "TZ": "UTC", "LC_ALL": "C"},
    )
    if listed.returncode != 0:
        return None
    rows = []
    for line in listed.stdout.splitlines():
        perms, owner, size, _date, _time, name = line.split(maxsplit=5)
        assert owner == "0/0", line
        rows.append((perms, int(size), name))
    return rows


@settings(
    max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    edits=st.lists(st.tuples(st.integers(0, 10**6), st.integers(0, 255)), min_size=1, max_size=4),
    fix_checksums=st.booleans(),
    cut=st.one_of(st.none(), st.integers(0, 10**6)),
)
def test_mutated_tars_list_as_gnu_tar_lists_them_or_are_refused(
    small_tar: tuple[bytes, list[int]],
    tmp_path: Path,
    edits: list[tuple[int, int]],
    fix_checksums: bool,
    cut: int | None,
) -> None:
    genuine, headers = small_tar
    data = bytearray(genuine)
    touched = set()
    for position, value in edits:
        # Mostly inside headers, where the formats' corners are.
        offset = headers[position % len(headers)] + position % 512 if position % 3 else position
        offset %= len(data)
        data[offset] = value
        touched.add(offset - offset % 512)
    if fix_checksums:
        for block in touched:
            if block in headers:
                _fix_checksum(data, block)
    if cut is not None:
        del data[cut % (len(data) + 1) :]
    path = tmp_path / "mutated.tar"
    path.write_bytes(bytes(data))
    ours = _ours(path)
    if ours is not None:
        assert _gnu(path) == ours


# -- the clock and the keys verification is given ---------------------------------------------


@pytest.mark.parametrize(
    ("expires", "before", "after"),
    [(2099, 2030, 2100), (2020, 2019, 2021)],
    ids=["in-the-future", "expired-by-the-wall-clock"],
)
def test_the_verify_clock_reaches_the_layout_expiry(
    tmp_path: Path, keys: Keys, expires: int, before: int, after: int
) -> None:
    """`VerifyOptions.now` is the clock of every time check, the layout's expiry included: a
    layout that expired by the wall clock still verifies at a `now` before its expiry, so no
    check (in-toto's own included) reads another clock."""
    at = dt.datetime(expires, 1, 1, tzinfo=dt.timezone.utc)
    bundle = make_signed_bundle(str(tmp_path / "b"), keys, expires=at)
    owner = PublicKey.from_pem(keys.signers["owner"].public_key_pem)
    for year, expired in ((before, False), (after, True)):
        options = VerifyOptions(owner=owner, now=dt.datetime(year, 1, 1, tzinfo=dt.timezone.utc))
        with verified_bundle(bundle, options) as report:
            provenance = [c for c in report.checks if c.name == "provenance"]
            assert provenance and provenance[0].ok is not expired, report.checks
            if expired:
                assert report.failure is not None and "expired" in str(report.failure)
