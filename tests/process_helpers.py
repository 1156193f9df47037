"""Real processes for the tests: a ledger, node directories made by the CLI, nodes.

Imported by module name by the node tests and the backup tests alike (``pythonpath`` in
pyproject.toml puts tests/ on sys.path). Every process is started on free 127.0.0.1 ports,
logs to a file in the test's directory, and is killed by the owner's ``close()`` (tests call
it in a ``finally`` or a fixture teardown). Every wait here has a deadline.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import signal
import ssl
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import httpx

from quorumkeep.crypto.seal import MIN_MEMLIMIT, MIN_OPSLIMIT
from quorumkeep.devnet import forkserver
from quorumkeep.ledger.client import AccountSigner, LedgerClient, LedgerEvent
from quorumkeep.ledger.genesis import init_ledger
from quorumkeep.ledger.keyfile import load_signer
from quorumkeep.net.address import free_port
from quorumkeep.wire.tls import client_context

LEDGER_PASSPHRASE = "ledger passphrase for node tests"
NODE_PASSPHRASE = "node storage passphrase for node tests"
START_TIMEOUT = 30.0
T = TypeVar("T")


def cli(*args: str) -> list[str]:
    return [sys.executable, "-m", "quorumkeep.cli.main", *args]


def run_cli(
    *args: str, env: dict[str, str] | None = None, timeout: float = 60.0
) -> subprocess.CompletedProcess[str]:
    """The one way the tests run the `quorumkeep` command: captured text, bounded."""
    return forkserver.run(
        cli(*args), capture_output=True, text=True, timeout=timeout, env=env or dict(os.environ)
    )


SH_BLOCK = re.compile(r"```sh\n(.*?)```", re.S)
VENV_FIRST = "export PATH=$PWD/.venv/bin:$PATH"
"""How a document puts the project's commands first on PATH (from the repository root)."""
ROOT = Path(__file__).resolve().parents[1]


def sh_blocks(doc: Path) -> list[str]:
    """A document's ``sh`` code blocks, in order."""
    return SH_BLOCK.findall(doc.read_text("utf-8"))


def run_doc(doc: Path, directory: Path, timeout: float, **extra: str) -> str:
    """Run ``doc``'s ``sh`` blocks as written, in order, as one bash script (``set -euo
    pipefail``) from the repository root; returns its output, or AssertionError with its tail.

    Its environment is this one without any QUORUMKEEP_* value, as an operator's shell would
    be, plus ``extra``, except the suite's fork server (devnet/forkserver.py): with one, a
    ``quorumkeep`` shim (each command a fork of the server, tied to the shim's life and
    signals) goes first on PATH, again right after the document puts .venv/bin first. What
    the script leaves running is stopped: its process group, and the devnet at ``$QK``."""
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith("QUORUMKEEP_") or k == forkserver.ENV
    }
    env.update(extra)
    script = "set -euo pipefail\n" + "\n".join(sh_blocks(doc))
    if forkserver.ENV in env:
        shim = forkserver.write_shim(directory / "bin").parent
        env["PATH"] = f"{shim}{os.pathsep}{env.get('PATH', '')}"
        script = script.replace(VENV_FIRST, f"{VENV_FIRST}\nexport PATH={shim}:$PATH")
    path = directory / f"{doc.stem}.sh"
    path.write_text(script)
    run = subprocess.Popen(
        ["bash", str(path)],
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,  # its background jobs share this process group
    )
    try:
        output, _ = run.communicate(timeout=timeout)
        assert run.returncode == 0, output[-4000:]
        return output
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(run.pid, signal.SIGKILL)
        run.wait()
        devnet = Path(extra["QK"]) if "QK" in extra else None
        if devnet is not None and (devnet / "devnet.json").exists():
            from quorumkeep.devnet.network import Devnet

            Devnet(devnet).down(grace=1.0)


def wait_until(condition: Callable[[], T], timeout: float, what: str, step: float = 0.05) -> T:
    """The one bounded wait of the tests, for a condition no event announces: its first
    truthy value, or AssertionError naming ``what`` after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        time.sleep(step)


@dataclass
class Ledger:
    """A ledger made with the library (fast key-file KDF) and served by `ledger serve`."""

    directory: Path
    accounts: tuple[str, ...]
    signers: dict[str, AccountSigner] = field(default_factory=dict)
    key_files: dict[str, Path] = field(default_factory=dict)
    passphrase_file: Path | None = None
    port: int = 0
    proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def log_path(self) -> Path:
        return self.directory.parent / "ledger.log"

    def create(self) -> Ledger:
        created = init_ledger(
            self.directory,
            self.accounts,
            LEDGER_PASSPHRASE.encode(),
            passphrase_cost=(MIN_OPSLIMIT, MIN_MEMLIMIT),
        )
        self.key_files = {a: Path(p) for a, p in created.key_files.items()}
        self.signers = {
            a: load_signer(self.key_files[a], LEDGER_PASSPHRASE.encode()) for a in self.accounts
        }
        self.passphrase_file = self.directory.parent / "ledger-passphrase"
        self.passphrase_file.write_text(LEDGER_PASSPHRASE + "\n")
        return self

    def start(self, idle_block_ms: int = 200) -> Ledger:
        self.port = free_port()
        with open(self.log_path, "ab") as log:
            self.proc = forkserver.popen(
                cli(
                    "ledger",
                    "serve",
                    "--data",
                    str(self.directory),
                    "--listen",
                    f"127.0.0.1:{self.port}",
                    "--idle-block-ms",
                    str(idle_block_ms),
                ),
                stdout=subprocess.DEVNULL,
                stderr=log,
            )

        def healthy() -> bool:
            assert self.proc is not None
            if self.proc.poll() is not None:
                raise AssertionError(f"ledger exited: {self.log_path.read_text()}")
            try:
                return httpx.get(f"{self.url}/health", timeout=1.0).status_code == 200
            except httpx.HTTPError:
                return False

        wait_until(healthy, START_TIMEOUT, "the ledger to serve")
        return self

    def client(self) -> LedgerClient:
        return LedgerClient(self.url, timeout=30.0)

    def call(self, account: str, method: str, args: dict[str, Any]) -> Any:
        with self.client() as client:
            return client.call(self.signers[account], method, args).value

    def view(self, method: str, args: dict[str, Any] | None = None) -> Any:
        with self.client() as client:
            return client.view(method, args or {})

    def wait_event(
        self, predicate: Callable[[LedgerEvent], bool], timeout: float, since: int = -1
    ) -> LedgerEvent:
        deadline = time.monotonic() + timeout
        with self.client() as client:
            cursor = since
            while True:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise AssertionError(f"no matching ledger event within {timeout}s")
                events, cursor_next = client.events(cursor, min(remaining, 5.0))
                for event in events:
                    if predicate(event):
                        return event
                cursor = max(cursor, cursor_next)

    def close(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait(15)


@dataclass
class Node:
    """A node directory made by `quorumkeep node init`, and its `node run` process."""

    account: str
    directory: Path
    ledger_url: str
    p2p_port: int = 0
    web_port: int = 0
    info: dict[str, str] = field(default_factory=dict)
    proc: subprocess.Popen[bytes] | None = None

    @property
    def config_path(self) -> Path:
        return self.directory / "node.toml"

    @property
    def log_path(self) -> Path:
        return self.directory.parent / f"{self.directory.name}.log"

    @property
    def web_url(self) -> str:
        return f"https://127.0.0.1:{self.web_port}"

    def env(self) -> dict[str, str]:
        return {**os.environ, "QUORUMKEEP_PASSPHRASE": NODE_PASSPHRASE}

    def init(self) -> Node:
        self.p2p_port = free_port()
        self.web_port = free_port()
        result = run_cli(
            "node",
            "init",
            "--account",
            self.account,
            "--dir",
            str(self.directory),
            "--ledger",
            self.ledger_url,
            "--p2p",
            f"127.0.0.1:{self.p2p_port}",
            "--web",
            f"127.0.0.1:{self.web_port}",
            "--kdf-cost",
            "minimum",
            env=self.env(),
        )
        assert result.returncode == 0, result.stderr
        self.info = json.loads(result.stdout)
        return self

    def start(self, *extra: str, env: dict[str, str] | None = None) -> Node:
        with open(self.log_path, "ab") as log:
            self.proc = forkserver.popen(
                cli(
                    "node",
                    "run",
                    "--config",
                    str(self.config_path),
                    "--takeover-timeout",
                    "1.0",
                    "--presignatures",
                    "8",
                    "--log-level",
                    "DEBUG",
                    *extra,
                ),
                stdout=subprocess.DEVNULL,
                stderr=log,
                env=env or self.env(),
            )
        return self

    def log(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")
        except OSError:
            return ""

    def certificate(self) -> bytes:
        return (self.directory / "tls-cert.pem").read_bytes()

    def https(self) -> httpx.Client:
        """A client that trusts exactly this node's certificate (pinned, no CA)."""
        context: ssl.SSLContext = client_context(None, None, None, [self.certificate()])
        return httpx.Client(base_url=self.web_url, verify=context, timeout=5.0)

    def get(self, path: str) -> httpx.Response:
        with self.https() as client:
            return client.get(path)

    def wait_healthy(self, timeout: float = START_TIMEOUT) -> None:
        def healthy() -> bool:
            assert self.proc is not None
            if self.proc.poll() is not None:
                raise AssertionError(f"node {self.account} exited: {self.log()}")
            try:
                return self.get("/health").status_code == 200
            except httpx.HTTPError:
                return False

        wait_until(healthy, timeout, f"node {self.account} to serve /health")

    def status(self) -> dict[str, Any]:
        response = self.get("/status")
        response.raise_for_status()
        result: dict[str, Any] = response.json()
        return result

    def wait_status(
        self, predicate: Callable[[dict[str, Any]], bool], timeout: float, what: str
    ) -> dict[str, Any]:
        """The node's /status once ``predicate`` holds for it."""
        seen: dict[str, Any] = {}

        def check() -> bool:
            seen.clear()
            seen.update(self.status())
            return predicate(seen)

        wait_until(check, timeout, f"{self.account}: {what}")
        return seen

    def terminate(self, timeout: float = 15.0) -> int:
        assert self.proc is not None
        self.proc.send_signal(signal.SIGTERM)
        return self.proc.wait(timeout)

    def close(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait(15)
