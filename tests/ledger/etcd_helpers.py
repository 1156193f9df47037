"""A real etcd cluster and replicated ledger servers as child processes, for the tests."""

from __future__ import annotations

import signal
import subprocess
import time
from pathlib import Path

import httpx
from ledger_helpers import cli_command, free_port

from quorumkeep.devnet.etcd import EtcdMember, healthy, member_argv

START_TIMEOUT = 60.0


def wait_until(predicate: object, timeout: float, what: str) -> None:
    """Poll ``predicate`` every 0.1 s until it is true; fail after ``timeout`` s."""
    assert callable(predicate)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.1)
    raise AssertionError(f"timed out after {timeout} s waiting for {what}")


class EtcdCluster:
    def __init__(self, directory: Path, size: int = 3) -> None:
        self.directory = directory
        self.members = [
            EtcdMember(f"m{i}", directory / f"m{i}", free_port(), free_port()) for i in range(size)
        ]
        self.procs: dict[str, subprocess.Popen[bytes]] = {}

    @property
    def urls(self) -> list[str]:
        return [m.client_url for m in self.members]

    def start(self, name: str | None = None) -> EtcdCluster:
        for member in self.members:
            if name is not None and member.name != name:
                continue
            with open(self.directory / f"{member.name}.log", "ab") as log:
                self.procs[member.name] = subprocess.Popen(
                    member_argv(member, self.members, "quorumkeep-test"),
                    stdout=log,
                    stderr=log,
                )
        wait_until(
            lambda: any(healthy(u) for u in self.urls), START_TIMEOUT, "etcd to have a leader"
        )
        return self

    def kill(self, name: str) -> None:
        proc = self.procs.pop(name)
        proc.send_signal(signal.SIGKILL)
        proc.wait(10)

    def close(self) -> None:
        for name in list(self.procs):
            self.kill(name)


class LedgerServer:
    """`ledger serve --store etcd` on a free port."""

    def __init__(self, data_dir: Path, etcd_urls: list[str], name: str) -> None:
        self.data_dir = data_dir
        self.etcd_urls = etcd_urls
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log_path = data_dir.parent / f"{name}.log"
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> LedgerServer:
        with open(self.log_path, "ab") as log:
            self.proc = subprocess.Popen(
                cli_command(
                    "ledger",
                    "serve",
                    "--data",
                    str(self.data_dir),
                    "--listen",
                    f"127.0.0.1:{self.port}",
                    "--store",
                    "etcd",
                    "--etcd",
                    ",".join(self.etcd_urls),
                ),
                stdout=subprocess.DEVNULL,
                stderr=log,
            )

        def up() -> bool:
            assert self.proc is not None
            if self.proc.poll() is not None:
                raise AssertionError(f"ledger exited: {self.log_path.read_text()}")
            try:
                return httpx.get(f"{self.url}/health", timeout=1.0).status_code == 200
            except httpx.HTTPError:
                return False

        wait_until(up, START_TIMEOUT, "the ledger server")
        return self

    def kill(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait(10)

    def pause(self) -> None:
        """SIGSTOP: the process keeps its sockets but runs nothing (a long pause)."""
        assert self.proc is not None and self.proc.poll() is None
        self.proc.send_signal(signal.SIGSTOP)

    def resume(self) -> None:
        assert self.proc is not None
        self.proc.send_signal(signal.SIGCONT)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                self.kill()
