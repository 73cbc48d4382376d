"""Remote caching against a real REAPI server: BuildGrid on 127.0.0.1 with an in-memory CAS and
action cache (tests/e2e/remote/bgd_server.py), driven by pants.remote-cache.toml.

A release build (passphrase-protected key files) of a small model trained in the build
(examples/trained, standard library only: e2e/audit.py) fills the cache; a second, clean clone
with an empty local store and empty named caches must get every cacheable step from the server and
write the same bytes. A third build signs with a SoftHSM2 token (the only test here that needs
SoftHSM2). Then what the server holds is read back: no signing action, no key reference, key,
passphrase or PIN. Finally the build must survive a server that is down, and one that goes away in
the middle of the build.

Three Pants starts (every Pants start costs about 19 s of CPU before any work), each about a
fresh process on an empty store:
- the first build starts a pantsd in the audit workspace of e2e/audit.py (`keyfiles`, with the
  release-key tests' keys and token) on an empty local store; the server-down build reuses it,
  after the server is stopped, with the same options (so the same address, where nothing listens
  any more), on a changed model description so that the manifest and archive are new;
- the clean clone's build starts one on its empty store and named caches; the server-goes-away
  build reuses it, against a new server on the same port that exits after its first
  action-cache write;
- the token build is a fresh `--no-pantsd` Pants on an empty store of its own (through the clean
  clone's pantsd it ran every cacheable step again: docs/development.md, session 8).
The two server tests still run in different pantsd: with `remote_cache_warnings = "first_only"`
Pants warns once per error message per scheduler (a pantsd's life), and each must warn; each is
the first build with errors in its pantsd (the builds before them asserted none, or found the
server up). See docs/development.md, "The `e2e-audit` batch".
"""

from __future__ import annotations

import json
import re
import signal
import socket
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from e2e.audit import KeyFiles, Release
from e2e.repo import clone, run_pants, stop_pantsd, tree_digests
from e2e.test_release_keys import check_release_build

# The audit workspace's fixtures (`keyfiles`, `release`), one instance for the whole session.
pytest_plugins = ["e2e.audit"]

TARGET = "examples/trained:model"
BUNDLE = "dist/examples.trained"
BUNDLE_NAME = "trained-0.1.0"
PROFILE = "--pants-config-files=pants.remote-cache.toml"
# The modelseal tool's subcommands that sign or open keys: they must never reach a cache.
SIGNING_COMMANDS = {"sign", "link", "layout", "keys", "check-keys", "check-provenance",
                    "dev-keyring", "seal", "attest"}


def buildgrid_python() -> Path:
    """The Python of BuildGrid's venv, installed from 3rdparty/buildgrid by build-support."""
    out = subprocess.run(["bash", "build-support/buildgrid"], check=True, capture_output=True,
                         text=True).stdout
    return Path(out.strip()) / "python"


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class Server:
    process: subprocess.Popen[bytes]
    port: int
    dump: Path
    log: Path

    @property
    def address(self) -> str:
        return f"--remote-store-address=grpc://127.0.0.1:{self.port}"

    def stop(self) -> None:
        """SIGTERM: the server stops and writes what it holds to `dump`."""
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
        self.process.wait(timeout=120)

    def cached_actions(self) -> list[dict[str, object]]:
        out = subprocess.run(
            [str(buildgrid_python()), "tests/e2e/remote/bgd_server.py", "commands", str(self.dump)],
            check=True, capture_output=True, text=True,
        ).stdout
        return list(json.loads(out))


def start_server(root: Path, *extra: str, port: int | None = None) -> Server:
    """A BuildGrid server on `port` (by default a free one), once it listens."""
    python = buildgrid_python()
    root.mkdir(parents=True, exist_ok=True)
    port, log = port or free_port(), root / "server.log"
    with open(log, "wb") as out:
        process = subprocess.Popen(
            [str(python), "tests/e2e/remote/bgd_server.py", "--port", str(port),
             "--dump", str(root / "dump"), *extra],
            stdout=out, stderr=subprocess.STDOUT,
        )
    server = Server(process, port, root / "dump", log)
    deadline = time.monotonic() + 120
    while "listening" not in log.read_text(errors="replace"):
        assert process.poll() is None, log.read_text(errors="replace")
        assert time.monotonic() < deadline, "BuildGrid did not start in 120 s"
        time.sleep(0.2)
    return server


def counters(output: str) -> dict[str, int]:
    """The counters `[stats].log` prints at the end of a run."""
    return {name: int(value) for name, value in re.findall(r"^\s+(\w+): (\d+)$", output, re.M)}


@dataclass(frozen=True)
class Workspace:
    """A repository, the options and environment of its pantsd's builds (the same options, so
    that every build reuses the pantsd the first one started), and where its store is."""

    repo: Path
    options: tuple[str, ...]
    env: dict[str, str]
    store: Path
    named_caches: Path | None  # None: the shared named caches

    def build(self, *args: str, env: dict[str, str] | None = None
              ) -> subprocess.CompletedProcess[str]:
        return run_pants(self.repo, *self.options, *args, env=env or self.env, pantsd=True)


@dataclass(frozen=True)
class RemoteBuilds:
    first: subprocess.CompletedProcess[str]
    second: subprocess.CompletedProcess[str]
    first_workspace: Workspace  # the audit workspace, on the first build's store and pantsd
    second_workspace: Workspace  # the clean clone, on its own store, named caches and pantsd
    # Each build's bundle, read right after it: later builds in the same workspaces rewrite dist/.
    first_digests: dict[str, str]
    second_digests: dict[str, str]
    server: Server  # running until test_signing_and_secrets_never_reach_the_server stops it
    # Every build's output against `server`, to search for secrets (the token build adds its own).
    outputs: list[subprocess.CompletedProcess[str]]


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    started = start_server(tmp_path_factory.mktemp("server"))
    try:
        yield started
    finally:
        if started.process.poll() is None:
            started.process.kill()


@pytest.fixture(scope="module")
def remote(
    keyfiles: KeyFiles, server: Server, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[RemoteBuilds]:
    root = tmp_path_factory.mktemp("remote")
    # The compared builds sign with passphrase-protected file keys only: deterministic ECDSA gives
    # the same signatures, so the archive (which holds them) is the same action in both builds.
    assert (keyfiles.repo / "examples/trained/BUILD").is_file()  # keyfiles adds it
    # The workspace is shared with the release-key tests, which must have cleaned up: the manifest
    # records a dirty tree, and the clean clone below would then differ from this build.
    status = subprocess.run(["git", "-C", str(keyfiles.repo), "status", "--porcelain"],
                            check=True, capture_output=True, text=True).stdout
    assert not status, f"the audit workspace is not clean:\n{status}"
    # -ldebug: the manifest, archive and signing processes log at debug level.
    first_workspace = Workspace(
        keyfiles.repo,
        (PROFILE, server.address, "-ldebug", f"--local-store-dir={root / 'store-1'}"),
        keyfiles.env, root / "store-1", None,
    )
    # A new pantsd on an empty store. Not the audit pantsd with new options: Pants 2.17 then
    # reinitializes that daemon in place ("Initialization options changed"), and in the whole
    # batch, after the release-key tests had built this target there, the first build ran no
    # manifest step (seen in CI at 65411a9). The server-down test reuses this new pantsd.
    stop_pantsd(keyfiles.repo)
    started = time.monotonic()
    first = first_workspace.build("package", TARGET)
    assert first.returncode == 0, first.stderr[-5000:]
    print(f"first build (fills the remote cache): {time.monotonic() - started:.0f} s")
    first_digests = tree_digests(keyfiles.repo / BUNDLE)

    # A clean clone elsewhere, another HOME, an empty local store and empty named caches.
    second_repo = clone(root / "other" / "checkout", source=keyfiles.repo)
    (root / "home-2").mkdir()
    second_workspace = Workspace(
        second_repo,
        (PROFILE, server.address, "-ldebug", f"--local-store-dir={root / 'store-2'}",
         f"--named-caches-dir={root / 'named-caches-2'}"),
        {**keyfiles.env, "HOME": str(root / "home-2")}, root / "store-2",
        root / "named-caches-2",
    )
    try:
        started = time.monotonic()
        second = second_workspace.build("package", TARGET)
        assert second.returncode == 0, second.stderr[-5000:]
        print(f"second build (from the remote cache): {time.monotonic() - started:.0f} s")
        yield RemoteBuilds(first, second, first_workspace, second_workspace, first_digests,
                           tree_digests(second_repo / BUNDLE), server, [first, second])
    finally:
        stop_pantsd(second_repo)  # the audit workspace's pantsd ends with `keyfiles`


def test_clean_clone_gets_every_cacheable_step_from_the_server(remote: RemoteBuilds) -> None:
    first, second = counters(remote.first.stderr), counters(remote.second.stderr)
    print("first:", {k: v for k, v in first.items() if k.startswith("remote") and v})
    print("second:", {k: v for k, v in second.items() if k.startswith("remote") and v})
    # Pants' own words for a failed cache call (one warning: `remote_cache_warnings`).
    for build, result in (("first", remote.first), ("second", remote.second)):
        for line in result.stderr.splitlines():
            if "remote" in line.lower() and ("failed" in line.lower() or "error" in line.lower()):
                print(f"{build}: {line}")
    # The first build found nothing and wrote every cacheable result.
    assert first["remote_cache_requests"] > 0
    assert first["remote_cache_requests_cached"] == 0
    assert first["remote_cache_write_successes"] == first["remote_cache_requests"]
    assert first["remote_cache_write_errors"] == first["remote_cache_read_errors"] == 0
    # The second asked for the same steps and got every one of them.
    assert second["remote_cache_requests"] == first["remote_cache_requests"]
    assert second["remote_cache_requests_cached"] == second["remote_cache_requests"]
    assert second["remote_cache_requests_uncached"] == 0
    assert second["remote_cache_read_errors"] == 0
    # The expensive steps ran in the first build only: the runtime PEX, training, assembly.
    for step in (f"Building model.pex for {TARGET}", "Training examples/trained:train",
                 f"Writing the manifest of {TARGET}", f"Archiving {BUNDLE_NAME} for {TARGET}"):
        assert f"Completed: {step}" in remote.first.stderr, step
        assert f"Completed: {step}" not in remote.second.stderr, step
    # Signing ran again, locally, in the second build.
    assert f"Completed: Signing {TARGET}" in remote.second.stderr

    one, two = remote.first_digests, remote.second_digests
    assert one and one == two
    assert f"model/{BUNDLE_NAME}.tar" in one and f"model/{BUNDLE_NAME}/model.sig" in one


def test_a_token_signature_reuses_every_step_before_signing(
    remote: RemoteBuilds, release: Release, tmp_path: Path
) -> None:
    """The release signer in a SoftHSM2 token (PIN from a file): every step up to signing comes
    from the cache; a token's ECDSA is randomized, so the archive of the new signature is new.
    A fresh Pants on an empty store of its own (run through the clean clone's pantsd and store
    instead, it ran every cacheable step again: docs/development.md, session 8)."""
    started = time.monotonic()
    repo = clone(tmp_path / "repo", source=remote.first_workspace.repo)
    token = run_pants(repo, PROFILE, remote.server.address, "-ldebug",
                      f"--local-store-dir={tmp_path / 'store'}", "package", TARGET, env=release.env)
    remote.outputs.append(token)
    assert token.returncode == 0, token.stderr[-5000:]
    # The release build of test_release_keys.py: it verifies and leaks no secret.
    check_release_build(release, token, repo, tmp_path / "store", tmp_path)
    print(f"token build: {time.monotonic() - started:.0f} s")
    first, counted = counters(remote.first.stderr), counters(token.stderr)
    print("token:", {k: v for k, v in counted.items() if k.startswith("remote") and v})
    assert counted["remote_cache_requests"] == first["remote_cache_requests"]
    assert counted["remote_cache_requests_uncached"] == counted["remote_cache_write_successes"] >= 1
    for step in (f"Building model.pex for {TARGET}", "Training examples/trained:train"):
        assert f"Completed: {step}" not in token.stderr, step
    assert f"Completed: Signing {TARGET}" in token.stderr
    assert f"Completed: Archiving {BUNDLE_NAME} for {TARGET}" in token.stderr
    assert '"trust":"release"' in (
        tmp_path / "repo" / BUNDLE / f"model/{BUNDLE_NAME}/manifest.json").read_text()


def test_signing_and_secrets_never_reach_the_server(
    remote: RemoteBuilds, keyfiles: KeyFiles
) -> None:
    remote.server.stop()
    dump = remote.server.dump
    assert (dump / "action-cache.txt").is_file(), remote.server.log.read_text(errors="replace")
    actions = remote.server.cached_actions()
    argvs = [[str(arg) for arg in entry["argv"]] for entry in actions]  # type: ignore[attr-defined]
    # What should be there is there: the runtime PEX, training, the manifest and the archive...
    assert any("model.pex" in entry["output_files"] for entry in actions)  # type: ignore[operator]
    assert any("--entry-point=trained.train:train" in argv for argv in argvs)
    assert any(argv[1:2] == ["manifest"] for argv in argvs)
    assert any(argv[1:2] == ["archive"] for argv in argvs)
    # ...and no signing step, no key reference.
    tool_argvs = [argv for argv in argvs if "modelseal-tool" in argv[0]]
    assert not [argv for argv in tool_argvs if argv[1] in SIGNING_COMMANDS]
    assert not [arg for argv in argvs for arg in argv if "key=" in arg]

    # Every blob the server holds: no passphrase, PIN, key text or bytes, not even where the keys
    # are (a key reference names that directory).
    blobs = sorted((dump / "cas").iterdir())
    assert len(blobs) > len(actions)
    needles = [secret.encode() for secret in keyfiles.secrets] + list(keyfiles.key_bytes)
    needles.append(str(keyfiles.keys).encode())
    for blob in blobs:
        data = blob.read_bytes()
        assert not [needle for needle in needles if needle in data], blob.name
    for output in remote.outputs:
        assert not [s for s in keyfiles.secrets if s in output.stdout + output.stderr]


def build_changed(workspace: Workspace, description: str) -> subprocess.CompletedProcess[str]:
    """A build, through the workspace's pantsd, of the model with another description: the PEX
    and training are what that pantsd already built, the manifest and archive are new, so the
    build asks the server (and fails to reach it). The work tree is restored afterwards."""
    build_file = workspace.repo / "examples/trained/BUILD"
    text = build_file.read_text()
    assert "description=" in text
    build_file.write_text(re.sub(r'description="[^"]*"', f'description="{description}"', text))
    try:
        built = workspace.build("package", TARGET)
    finally:
        build_file.write_text(text)
    print(*(line for line in built.stderr.splitlines() if "[WARN]" in line), sep="\n")
    return built


def test_build_succeeds_with_a_warning_when_the_server_is_down(remote: RemoteBuilds) -> None:
    """The first build's pantsd, whose options name the server's address: with the server
    stopped (test_signing_and_secrets_never_reach_the_server stops it first; stopping is
    idempotent), nothing listens there."""
    remote.server.stop()
    started = time.monotonic()
    built = build_changed(remote.first_workspace, "Trained, with the server down.")
    print(f"build with the server down: {time.monotonic() - started:.0f} s")
    assert built.returncode == 0, built.stderr[-5000:]
    assert re.search(r"\[WARN\].*remote cache", built.stderr, re.I), built.stderr[-5000:]
    stats = counters(built.stderr)
    assert stats["remote_cache_write_successes"] == 0
    assert stats["remote_cache_read_errors"] + stats["remote_cache_write_errors"] > 0
    manifest = remote.first_workspace.repo / BUNDLE / f"model/{BUNDLE_NAME}/manifest.json"
    assert "Trained, with the server down." in manifest.read_text()


def test_build_succeeds_with_a_warning_when_the_server_goes_away(
    remote: RemoteBuilds, tmp_path: Path
) -> None:
    """The clean clone's pantsd, against a new server on the first one's port (stopped first),
    which accepts the first result (the manifest's) and then exits, mid-build."""
    remote.server.stop()
    server = start_server(tmp_path / "server", "--die-after-cache-writes", "1",
                          port=remote.server.port)
    try:
        started = time.monotonic()
        built = build_changed(remote.second_workspace, "Trained, with a server that goes away.")
        print(f"build with a server that goes away: {time.monotonic() - started:.0f} s")
        assert server.process.wait(timeout=60) == 0
        assert "exiting after 1 action-cache writes" in server.log.read_text()
    finally:
        if server.process.poll() is None:
            server.process.kill()
    assert built.returncode == 0, built.stderr[-5000:]
    assert re.search(r"\[WARN\].*remote cache", built.stderr, re.I), built.stderr[-5000:]
    stats = counters(built.stderr)
    assert stats["remote_cache_write_successes"] >= 1
    assert stats["remote_cache_read_errors"] + stats["remote_cache_write_errors"] > 0
    manifest = remote.second_workspace.repo / BUNDLE / f"model/{BUNDLE_NAME}/manifest.json"
    assert "Trained, with a server that goes away." in manifest.read_text()
