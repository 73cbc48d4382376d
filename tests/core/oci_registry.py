"""A real CNCF distribution registry (Debian's `docker-registry`) for the tests, on 127.0.0.1.

Each registry gets a config file written here: filesystem storage in a temp directory, an access
log on stderr (read back to count blob uploads), and, when asked, basic authentication from an
htpasswd file (bcrypt, written by Apache's `htpasswd`, the format the registry reads).
"""

from __future__ import annotations

import base64
import json
import re
import socket
import subprocess
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path

USER = "modelseal"
# Test-only credentials for a registry that lives for one test run on 127.0.0.1.
PASSWORD = "insecure-test-password"

# An access-log line of a completed upload: PUT .../blobs/uploads/<session>?digest=... answered 201.
_BLOB_PUT = re.compile(
    r'"PUT /v2/[^ ]*/blobs/uploads/[^ "]*digest=(sha256(?::|%3A)[0-9a-f]{64})[^ "]*'
    r' HTTP/[0-9.]+" 201 '
)


@dataclass
class RunningRegistry:
    host: str  # 127.0.0.1:PORT
    storage: Path
    log: Path
    process: subprocess.Popen[bytes]
    docker_config: Path | None  # a config.json with the credentials, when auth is on

    def blob_uploads(self) -> list[str]:
        """The digests of every blob upload the registry completed (its access log's PUTs)."""
        text = self.log.read_text(errors="replace")
        return [d.replace("%3A", ":") for d in _BLOB_PUT.findall(text)]

    def blob_path(self, digest: str) -> Path:
        """Where the filesystem driver keeps the blob's bytes (to tamper with them)."""
        hex_digest = digest.split(":", 1)[1]
        return (
            self.storage / "docker/registry/v2/blobs/sha256" / hex_digest[:2] / hex_digest / "data"
        )

    def stop(self) -> None:
        self.process.terminate()
        try:
            self.process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def start_registry(directory: Path, *, auth: bool = False) -> RunningRegistry:
    directory.mkdir(parents=True, exist_ok=True)
    storage = directory / "storage"
    storage.mkdir()
    port = _free_port()
    config: dict[str, object] = {
        "version": 0.1,
        "log": {"level": "info", "accesslog": {"disabled": False}},
        "storage": {"filesystem": {"rootdirectory": str(storage)}},
        "http": {"addr": f"127.0.0.1:{port}"},
    }
    docker_config = None
    if auth:
        htpasswd = directory / "htpasswd"
        # -i: the password on stdin, never on argv.
        subprocess.run(
            ["htpasswd", "-B", "-c", "-i", str(htpasswd), USER],
            input=PASSWORD.encode(),
            check=True,
            capture_output=True,
        )
        config["auth"] = {"htpasswd": {"realm": "modelseal-test", "path": str(htpasswd)}}
        docker_config = directory / "docker" / "config.json"
        docker_config.parent.mkdir()
        token = base64.b64encode(f"{USER}:{PASSWORD}".encode()).decode()
        docker_config.write_text(json.dumps({"auths": {f"127.0.0.1:{port}": {"auth": token}}}))
    config_file = directory / "config.yml"
    # JSON is YAML: the registry reads this file as its configuration.
    config_file.write_text(json.dumps(config))
    log = directory / "registry.log"
    with open(log, "wb") as out:
        process = subprocess.Popen(
            ["docker-registry", "serve", str(config_file)], stdout=out, stderr=subprocess.STDOUT
        )
    host = f"127.0.0.1:{port}"
    deadline = time.monotonic() + 30
    while True:
        try:
            urllib.request.urlopen(f"http://{host}/v2/", timeout=2)
            break
        except urllib.error.HTTPError:
            break  # 401 with auth on: it answers.
        except OSError:
            if process.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"docker-registry did not start: {log.read_text()}") from None
            time.sleep(0.1)
    return RunningRegistry(host, storage, log, process, docker_config)
