"""Remote caching against a real REAPI server: BuildGrid on 127.0.0.1 with an in-memory CAS and
action cache (tests/e2e/remote/bgd_server.py), driven by pants.remote-cache.toml.

A release build (passphrase-protected key files, a SoftHSM2 token) of examples/iris:model fills the
cache; a second, clean clone with an empty local store and empty named caches must get every
cacheable step from the server and write the same bytes. Then what the server holds is read back:
no signing action, no key reference, key, passphrase or PIN. Finally the build must survive a
server that is down, and one that goes away in the middle of the build.
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
from e2e.repo import clone, run_pants, tree_digests
from e2e.test_release_keys import Release, release  # noqa: F401 (a fixture, for this module)

TARGET = "examples/iris:model"
BUNDLE = "dist/examples.iris"
PROFILE = "--pants-config-files=pants.remote-cache.toml"
# The modelseal tool's subcommands that sign or open keys: they must never reach a cache.
SIGNING_COMMANDS = {"sign", "link", "layout", "keys", "check-keys", "check-provenance",
                    "dev-keyring"}


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


def start_server(root: Path, *extra: str) -> Server:
    python = buildgrid_python()
    root.mkdir(parents=True, exist_ok=True)
    port, log = free_port(), root / "server.log"
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
class RemoteBuilds:
    first: subprocess.CompletedProcess[str]
    second: subprocess.CompletedProcess[str]
    token: subprocess.CompletedProcess[str]  # the release build that signs in the SoftHSM2 token
    first_repo: Path
    second_repo: Path
    first_store: Path  # the local store of the first build (it holds every step's result)
    file_env: dict[str, str]  # release keys, all passphrase-protected files
    server: Server  # stopped: its dump holds what it stored


@pytest.fixture(scope="module")
def remote(release: Release, tmp_path_factory: pytest.TempPathFactory) -> Iterator[RemoteBuilds]:  # noqa: F811
    root = tmp_path_factory.mktemp("remote")
    # The compared builds sign with passphrase-protected file keys only: deterministic ECDSA gives
    # the same signatures, so the archive (which holds them) is the same action in both builds. A
    # token's ECDSA is randomized: its signatures, and so the archive, differ from run to run.
    passphrase = release.keys / "passphrase"
    file_env = {**release.env, "PANTS_MODELSEAL_RELEASE_KEY":
                f"file:{release.keys / 'package.pem'}?passphrase-file={passphrase}"}
    server = start_server(root / "server")
    try:
        first_store = root / "store-1"
        started = time.monotonic()
        # -ldebug: the manifest, archive and signing processes log at debug level.
        first = run_pants(release.repo, PROFILE, server.address, "-ldebug",
                          f"--local-store-dir={first_store}", "package", TARGET, env=file_env)
        assert first.returncode == 0, first.stderr[-5000:]
        print(f"first build (fills the remote cache): {time.monotonic() - started:.0f} s")

        # A clean clone elsewhere, another HOME, an empty local store and empty named caches.
        second_repo = clone(root / "other" / "checkout")
        (root / "home-2").mkdir()
        env = {**file_env, "HOME": str(root / "home-2")}
        started = time.monotonic()
        second = run_pants(second_repo, PROFILE, server.address, "-ldebug",
                           f"--local-store-dir={root / 'store-2'}",
                           f"--named-caches-dir={root / 'named-caches-2'}",
                           "package", TARGET, env=env)
        assert second.returncode == 0, second.stderr[-5000:]
        print(f"second build (from the remote cache): {time.monotonic() - started:.0f} s")

        # The release signer in a SoftHSM2 token (PIN from a file): a new signature, a new archive.
        started = time.monotonic()
        token = run_pants(clone(root / "token" / "repo"), PROFILE, server.address, "-ldebug",
                          f"--local-store-dir={root / 'store-3'}", "package", TARGET,
                          env=release.env)
        assert token.returncode == 0, token.stderr[-5000:]
        print(f"token build: {time.monotonic() - started:.0f} s")
    finally:
        server.stop()
    assert (server.dump / "action-cache.txt").is_file(), server.log.read_text(errors="replace")
    yield RemoteBuilds(first, second, token, release.repo, second_repo, first_store, file_env,
                       server)


def test_clean_clone_gets_every_cacheable_step_from_the_server(remote: RemoteBuilds) -> None:
    first, second = counters(remote.first.stderr), counters(remote.second.stderr)
    print("first:", {k: v for k, v in first.items() if k.startswith("remote") and v})
    print("second:", {k: v for k, v in second.items() if k.startswith("remote") and v})
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
    for step in (f"Building model.pex for {TARGET}", "Training examples/iris:train",
                 f"Writing the manifest of {TARGET}", f"Archiving iris-1.0.0 for {TARGET}"):
        assert f"Completed: {step}" in remote.first.stderr, step
        assert f"Completed: {step}" not in remote.second.stderr, step
    # Signing ran again, locally, in the second build.
    assert f"Completed: Signing {TARGET}" in remote.second.stderr

    one, two = (tree_digests(repo / BUNDLE) for repo in (remote.first_repo, remote.second_repo))
    assert one and one == two
    assert "model/iris-1.0.0.tar" in one and "model/iris-1.0.0/model.sig" in one

    # Signing in the token: every step up to signing from the cache; the archive of the new
    # signature is new. Signing ran here, with the token.
    token = counters(remote.token.stderr)
    print("token:", {k: v for k, v in token.items() if k.startswith("remote") and v})
    assert token["remote_cache_requests"] == first["remote_cache_requests"]
    assert token["remote_cache_requests_uncached"] == token["remote_cache_write_successes"] >= 1
    for step in (f"Building model.pex for {TARGET}", "Training examples/iris:train"):
        assert f"Completed: {step}" not in remote.token.stderr, step
    assert f"Completed: Signing {TARGET}" in remote.token.stderr
    assert f"Completed: Archiving iris-1.0.0 for {TARGET}" in remote.token.stderr
    assert '"trust":"release"' in (
        remote.first_repo / BUNDLE / "model/iris-1.0.0/manifest.json").read_text()


def test_signing_and_secrets_never_reach_the_server(
    remote: RemoteBuilds, release: Release  # noqa: F811
) -> None:
    actions = remote.server.cached_actions()
    argvs = [[str(arg) for arg in entry["argv"]] for entry in actions]  # type: ignore[attr-defined]
    # What should be there is there: the runtime PEX, training, the manifest and the archive...
    assert any("model.pex" in entry["output_files"] for entry in actions)  # type: ignore[operator]
    assert any("--entry-point=iris.train:train" in argv for argv in argvs)
    assert any(argv[1:2] == ["manifest"] for argv in argvs)
    assert any(argv[1:2] == ["archive"] for argv in argvs)
    # ...and no signing step, no key reference.
    tool_argvs = [argv for argv in argvs if "modelseal-tool" in argv[0]]
    assert not [argv for argv in tool_argvs if argv[1] in SIGNING_COMMANDS]
    assert not [arg for argv in argvs for arg in argv if "key=" in arg]

    # Every blob the server holds: no passphrase, PIN, key text or bytes, not even where the keys
    # are (a key reference names that directory).
    blobs = sorted((remote.server.dump / "cas").iterdir())
    assert len(blobs) > len(actions)
    needles = [secret.encode() for secret in release.secrets] + list(release.key_bytes)
    needles.append(str(release.keys).encode())
    for blob in blobs:
        data = blob.read_bytes()
        assert not [needle for needle in needles if needle in data], blob.name
    for output in (remote.first, remote.second, remote.token):
        assert not [s for s in release.secrets if s in output.stdout + output.stderr]


def rebuild_changed(
    remote: RemoteBuilds, tmp: Path, server_address: str, description: str
) -> subprocess.CompletedProcess[str]:
    """A clone whose model description differs: the PEX and training are local-cache hits, the
    manifest and archive are new, so the build asks the server (and fails to write to it)."""
    repo = clone(tmp / "repo")
    build_file = repo / "examples/iris/BUILD"
    text = build_file.read_text()
    assert "description=" in text
    build_file.write_text(re.sub(r'description="[^"]*"', f'description="{description}"', text))
    built = run_pants(repo, PROFILE, server_address, f"--local-store-dir={remote.first_store}",
                      "package", TARGET, env=remote.file_env)
    print(*(line for line in built.stderr.splitlines() if "[WARN]" in line), sep="\n")
    return built


def test_build_succeeds_with_a_warning_when_the_server_is_down(
    remote: RemoteBuilds, tmp_path: Path
) -> None:
    down = f"--remote-store-address=grpc://127.0.0.1:{free_port()}"  # nothing listens there
    started = time.monotonic()
    built = rebuild_changed(remote, tmp_path, down, "Iris, with the server down.")
    print(f"build with the server down: {time.monotonic() - started:.0f} s")
    assert built.returncode == 0, built.stderr[-5000:]
    assert re.search(r"\[WARN\].*remote cache", built.stderr, re.I), built.stderr[-5000:]
    stats = counters(built.stderr)
    assert stats["remote_cache_read_errors"] + stats["remote_cache_write_errors"] > 0
    manifest = tmp_path / "repo" / BUNDLE / "model/iris-1.0.0/manifest.json"
    assert "Iris, with the server down." in manifest.read_text()


def test_build_succeeds_with_a_warning_when_the_server_goes_away(
    remote: RemoteBuilds, tmp_path: Path
) -> None:
    # The server accepts the first result (the manifest's) and then exits, mid-build.
    server = start_server(tmp_path / "server", "--die-after-cache-writes", "1")
    try:
        started = time.monotonic()
        built = rebuild_changed(remote, tmp_path, server.address,
                                "Iris, with a server that goes away.")
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
    manifest = tmp_path / "repo" / BUNDLE / "model/iris-1.0.0/manifest.json"
    assert "Iris, with a server that goes away." in manifest.read_text()
