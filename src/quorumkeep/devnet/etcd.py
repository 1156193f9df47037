"""Local etcd clusters on 127.0.0.1 (Debian's ``etcd-server``), for the devnet and tests.

A member is ``etcd`` with its data under the caller's directory, a client URL and a peer
URL on free ports, and the static initial cluster of every member. Started again after a
kill it rejoins with its data (``--initial-cluster-state new`` is ignored once a member has
data).
"""

from __future__ import annotations

import shutil
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

import httpx

ETCD_BINARY = "etcd"


def etcd_available() -> bool:
    return shutil.which(ETCD_BINARY) is not None


@dataclass(frozen=True)
class EtcdMember:
    name: str
    data_dir: Path
    client_port: int
    peer_port: int

    @property
    def client_url(self) -> str:
        return f"http://127.0.0.1:{self.client_port}"

    @property
    def peer_url(self) -> str:
        return f"http://127.0.0.1:{self.peer_port}"


def initial_cluster(members: list[EtcdMember]) -> str:
    return ",".join(f"{m.name}={m.peer_url}" for m in members)


def member_argv(member: EtcdMember, members: list[EtcdMember], token: str) -> list[str]:
    """The command line of one member of ``members`` (a cluster named by ``token``)."""
    return [
        ETCD_BINARY,
        "--name",
        member.name,
        "--data-dir",
        str(member.data_dir),
        "--listen-client-urls",
        member.client_url,
        "--advertise-client-urls",
        member.client_url,
        "--listen-peer-urls",
        member.peer_url,
        "--initial-advertise-peer-urls",
        member.peer_url,
        "--initial-cluster",
        initial_cluster(members),
        "--initial-cluster-token",
        token,
        "--initial-cluster-state",
        "new",
        # Short timeouts suit one machine: a lost leader is replaced within about a second.
        "--heartbeat-interval",
        "100",
        "--election-timeout",
        "1000",
        "--auto-compaction-mode",
        "revision",
        "--auto-compaction-retention",
        "10000",
        "--quota-backend-bytes",
        str(2 * 1024**3),
        "--log-level",
        "warn",
    ]


def healthy(client_url: str, timeout: float = 1.0) -> bool:
    """Whether the member answers /health with a cluster that has a leader."""
    try:
        response = httpx.get(f"{client_url}/health", timeout=timeout)
    except httpx.HTTPError:
        return False
    return response.status_code == 200 and response.json().get("health") == "true"


def leader_url(client_urls: list[str], timeout: float = 1.0) -> str | None:
    """The client URL of the member that is the cluster's Raft leader (None if no member
    that answers is the leader)."""
    for url in client_urls:
        try:
            response = httpx.post(f"{url}/v3/maintenance/status", json={}, timeout=timeout)
            status = response.json()
        except (httpx.HTTPError, ValueError):
            continue
        if not isinstance(status, dict) or response.status_code != 200:
            continue
        member = status.get("header", {}).get("member_id")
        if member is not None and member == status.get("leader"):
            return url
    return None


class LocalEtcd:
    """A cluster of ``size`` members as child processes (benchmarks; the devnet records
    its members as devnet processes instead)."""

    def __init__(self, directory: Path, ports: list[tuple[int, int]], token: str) -> None:
        self.directory = directory
        self.token = token
        self.members = [
            EtcdMember(f"m{i}", directory / f"m{i}", client, peer)
            for i, (client, peer) in enumerate(ports)
        ]
        self.procs: dict[str, subprocess.Popen[bytes]] = {}

    @property
    def urls(self) -> list[str]:
        return [m.client_url for m in self.members]

    def start(self, timeout: float = 60.0) -> LocalEtcd:
        self.directory.mkdir(parents=True, exist_ok=True)
        for member in self.members:
            with open(self.directory / f"{member.name}.log", "ab") as log:
                self.procs[member.name] = subprocess.Popen(
                    member_argv(member, self.members, self.token), stdout=log, stderr=log
                )
        deadline = time.monotonic() + timeout
        while not any(healthy(u) for u in self.urls):
            if time.monotonic() > deadline:
                self.close()
                raise RuntimeError(f"etcd did not get a leader within {timeout:g} s")
            time.sleep(0.1)
        return self

    def close(self) -> None:
        for proc in self.procs.values():
            if proc.poll() is None:
                proc.kill()
                proc.wait(10)
        self.procs.clear()
