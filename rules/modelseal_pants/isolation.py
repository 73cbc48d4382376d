"""Run the model's code without network: in a new network namespace where the host allows one.

A Pants `Process` runs in a temporary directory, not a container: the engine does not isolate it
from the network. On Linux, `unshare --net --map-root-user` (util-linux) starts the process in a
network namespace of its own, with only a loopback interface that is down, so nothing the model
does (a socket, a subprocess, a C library) can reach any address, 127.0.0.1 included. That needs
unprivileged user namespaces or root; whether this host allows them is tested once, by running
`unshare` exactly so (`BinaryPathTest`), and the build falls back to the in-process socket guard
of `modelseal.embedded.evaluation.no_network` alone where it does not (macOS has no `unshare`;
some container runtimes forbid user namespaces). The guard runs in both cases.

Which one was used is a fact of the host, not of the model: the build logs it and records it
nowhere signed, so two hosts still produce the same bytes.
"""

from __future__ import annotations

from dataclasses import dataclass

from pants.core.util_rules.system_binaries import (
    BinaryPathRequest,
    BinaryPaths,
    BinaryPathTest,
    SearchPath,
)
from pants.engine.rules import Get, Rule, collect_rules, rule
from pants.util.logging import LogLevel

UNSHARE_ARGS = ("--net", "--map-root-user")
SEARCH_PATH = SearchPath(("/usr/bin", "/bin", "/usr/sbin", "/sbin"))


@dataclass(frozen=True)
class NetworkIsolationRequest:
    pass


@dataclass(frozen=True)
class NetworkIsolation:
    """`prefix` goes in front of the model's argv; empty: the socket guard alone."""

    prefix: tuple[str, ...]
    description: str  # for the log

    @property
    def namespace(self) -> bool:
        return bool(self.prefix)


SOCKET_GUARD_ONLY = NetworkIsolation(
    (), "with the in-process socket guard only (this host cannot create a network namespace: "
    "no `unshare`, or user namespaces not allowed)"
)


@rule(desc="Finding how to run a model without network", level=LogLevel.DEBUG)
async def network_isolation(_: NetworkIsolationRequest) -> NetworkIsolation:
    found = await Get(
        BinaryPaths,
        BinaryPathRequest(
            binary_name="unshare",
            search_path=SEARCH_PATH,
            # Really create the namespaces: finding the binary proves nothing about the kernel.
            test=BinaryPathTest([*UNSHARE_ARGS, "--", "/bin/sh", "-c", "exit 0"],
                                fingerprint_stdout=False),
        ),
    )
    if found.first_path is None:
        return SOCKET_GUARD_ONLY
    return NetworkIsolation(
        (found.first_path.path, *UNSHARE_ARGS, "--"),
        f"in a new network namespace ({found.first_path.path} {' '.join(UNSHARE_ARGS)}) "
        "and with the in-process socket guard",
    )


def rules() -> list[Rule]:
    return list(collect_rules())
