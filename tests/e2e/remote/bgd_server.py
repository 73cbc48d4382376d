"""A loopback BuildGrid REAPI server (CAS, ByteStream and action cache, all in memory) for the
remote-cache tests. Run it with the Python of the venv that build-support/buildgrid prints:

    python bgd_server.py --port PORT --dump DIR [--die-after-cache-writes N]

It listens on 127.0.0.1:PORT only, prints `listening` once it serves, and on SIGTERM or SIGINT
stops and writes what it holds to DIR, for the tests to inspect:

    DIR/cas/<sha256>-<size>        every blob in the CAS (ActionResults live there too)
    DIR/action-cache.txt           `<action sha256>-<size> <ActionResult blob sha256>-<size>` lines

`python bgd_server.py commands DIR` prints each cached action of a dump (argv, environment,
outputs) as JSON.

With --die-after-cache-writes N it exits abruptly (no dump) half a second after accepting the
Nth action-cache write: a server that goes away in the middle of a build.

BuildGrid is not part of the build and not a dependency of modelseal: this file is test support,
kept out of Pants' python sources (it imports buildgrid, which no resolve holds).
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import sys
import tempfile
import threading
from pathlib import Path
from types import FrameType

from buildgrid.server.actioncache.caches.lru_cache import LruActionCache
from buildgrid.server.app.commands.cmd_server import _create_server_from_config
from buildgrid.server.app.settings.parser import load_config_value
from buildgrid.server.cas.storage.lru_memory_cache import LRUMemoryCache
from buildgrid.server.exceptions import ShutdownSignal

# thread-pool-size also bounds concurrent RPCs (gRPC's maximum_concurrent_rpcs): BuildGrid's
# default of 5 per core (10 here) refuses a build's burst of uploads with "Concurrent RPC limit
# exceeded!", and Pants then leaves that step out of the cache.
CONFIG = """
thread-pool-size: 128
server:
  - !channel
    address: "127.0.0.1:{port}"
    insecure-mode: true
authorization:
  method: none
storages:
  - !lru-storage &cas
    size: 4GB
caches:
  - !lru-action-cache &action-cache
    storage: *cas
    max-cached-refs: 100000
    allow-updates: true
    cache-failed-actions: false
instances:
  - name: ""
    services:
      - !action-cache
        cache: *action-cache
      - !cas
        storage: *cas
      - !bytestream
        storage: *cas
"""


def find(settings: object, kind: type) -> object:
    """The one object of a kind that the parsed configuration holds (YAML anchors share it)."""
    found: list[object] = []

    def walk(value: object) -> None:
        if isinstance(value, kind):
            if not any(value is seen for seen in found):
                found.append(value)
        elif isinstance(value, dict):
            for item in value.values():
                walk(item)
        elif isinstance(value, list):
            for item in value:
                walk(item)

    walk(settings)
    assert len(found) == 1, f"expected one {kind.__name__} in the configuration, found {found}"
    return found[0]


def dump(storage: LRUMemoryCache, cache: LruActionCache, out: Path) -> None:
    (out / "cas").mkdir(parents=True, exist_ok=True)
    blobs = dict(storage._storage)  # (hash, size) -> bytes: the in-memory CAS itself
    for (digest, size), data in blobs.items():
        (out / "cas" / f"{digest}-{size}").write_bytes(data)
    lines = [f"{action[0]}-{action[1]} {result.hash}-{result.size_bytes}\n"
             for action, result in dict(cache._digest_map).items()]
    # Written last, via a rename: the tests wait for this file.
    with tempfile.NamedTemporaryFile("w", dir=out, delete=False) as f:
        f.writelines(lines)
    os.replace(f.name, out / "action-cache.txt")


def commands(dump_dir: Path) -> list[dict[str, object]]:
    """Each action-cache entry of a dump: the action's argv, environment and outputs, as Pants
    uploaded them (Pants stores the Action and Command with every result it writes)."""
    from buildgrid._protos.build.bazel.remote.execution.v2 import remote_execution_pb2 as re_pb2

    def blob(digest: str) -> bytes:
        return (dump_dir / "cas" / digest).read_bytes()

    entries = []
    for line in (dump_dir / "action-cache.txt").read_text().splitlines():
        action_digest, result_digest = line.split()
        action = re_pb2.Action.FromString(blob(action_digest))
        command = re_pb2.Command.FromString(
            blob(f"{action.command_digest.hash}-{action.command_digest.size_bytes}"))
        result = re_pb2.ActionResult.FromString(blob(result_digest))
        entries.append({
            "action": action_digest,
            "argv": list(command.arguments),
            "env": {var.name: var.value for var in command.environment_variables},
            "output_files": [f.path for f in result.output_files],
            "output_directories": [d.path for d in result.output_directories],
            "exit_code": result.exit_code,
        })
    return entries


def main() -> int:
    if sys.argv[1:2] == ["commands"]:  # commands DUMP_DIR: print the cached actions as JSON
        json.dump(commands(Path(sys.argv[2])), sys.stdout, indent=1)
        return 0
    parser = argparse.ArgumentParser()
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--dump", type=Path, required=True)
    parser.add_argument("--die-after-cache-writes", type=int, default=0)
    args = parser.parse_args()

    settings = load_config_value(CONFIG.format(port=args.port))
    storage = find(settings, LRUMemoryCache)
    cache = find(settings, LruActionCache)
    assert isinstance(storage, LRUMemoryCache) and isinstance(cache, LruActionCache)
    if args.die_after_cache_writes:
        writes = 0
        lock = threading.Lock()
        update = cache.update_action_result

        def update_then_die(action_digest, action_result):  # type: ignore[no-untyped-def]
            nonlocal writes
            update(action_digest, action_result)
            with lock:
                writes += 1
                if writes == args.die_after_cache_writes:
                    # Let this write's answer reach the client first, then vanish.
                    threading.Timer(0.5, die, (writes,)).start()

        def die(writes: int) -> None:
            print(f"exiting after {writes} action-cache writes", flush=True)
            os._exit(0)

        cache.update_action_result = update_then_die  # type: ignore[method-assign]

    server = _create_server_from_config(settings)

    def stop(sig: int, _: FrameType | None) -> None:
        raise ShutdownSignal(f"signal {sig}")

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    try:
        server.start(on_server_start_cb=lambda: print("listening", flush=True))
    except (KeyboardInterrupt, ShutdownSignal):
        pass
    finally:
        server.stop()
    dump(storage, cache, args.dump)
    return 0


if __name__ == "__main__":
    sys.exit(main())
