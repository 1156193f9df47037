"""Key providers as real processes (`provider init`, `provider run`) beside a real ledger.

Imported by module name (pytest puts this directory on sys.path); the name is unique. Every
process runs on free 127.0.0.1 ports, logs to a file and is killed by its owner's ``close``.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

from process_helpers import START_TIMEOUT, cli, free_port, run_cli, wait_until
from quorumkeep.devnet import forkserver

PROVIDER_PASSPHRASE = "provider passphrase for the tests"


@dataclass
class Provider:
    """A key provider directory made by `provider init --register`, and its process."""

    account: str
    directory: Path
    ledger_url: str
    key_file: Path
    ledger_passphrase_file: Path
    port: int = 0
    registration: dict[str, Any] = field(default_factory=dict)
    proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def log_path(self) -> Path:
        return self.directory.parent / f"{self.directory.name}.log"

    def env(self) -> dict[str, str]:
        return {**os.environ, "QUORUMKEEP_PROVIDER_PASSPHRASE": PROVIDER_PASSPHRASE}

    def init(self) -> Provider:
        self.port = free_port()
        result = run_cli(
            "provider",
            "init",
            "--account",
            self.account,
            "--dir",
            str(self.directory),
            "--ledger",
            self.ledger_url,
            "--listen",
            f"127.0.0.1:{self.port}",
            "--kdf-cost",
            "minimum",
            "--register",
            "--operator-key",
            str(self.key_file),
            "--operator-passphrase-file",
            str(self.ledger_passphrase_file),
            "--json",
            env=self.env(),
        )
        assert result.returncode == 0, result.stderr + result.stdout
        return self

    def start(self) -> Provider:
        with open(self.log_path, "ab") as log:
            self.proc = forkserver.popen(
                cli(
                    "provider",
                    "run",
                    "--config",
                    str(self.directory / "provider.toml"),
                    "--log-level",
                    "DEBUG",
                ),
                stdout=subprocess.DEVNULL,
                stderr=log,
                env=self.env(),
            )
        return self

    def wait_healthy(self) -> Provider:
        def healthy() -> bool:
            assert self.proc is not None
            if self.proc.poll() is not None:
                raise AssertionError(f"provider {self.account} exited: {self.log()}")
            try:
                return httpx.get(f"{self.url}/health", timeout=1.0).status_code == 200
            except httpx.HTTPError:
                return False

        wait_until(healthy, START_TIMEOUT, f"provider {self.account} to serve")
        return self

    def log(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")
        except OSError:
            return ""

    def status(self) -> dict[str, Any]:
        result = run_cli(
            "provider", "status", "--config", str(self.directory / "provider.toml"), "--json"
        )
        assert result.returncode == 0, result.stderr
        document: dict[str, Any] = json.loads(result.stdout)
        return document

    def kill(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait(15)

    close = kill


BACKUP_PASSPHRASE = "backup passphrase for the tests"


@dataclass
class HostedProvider(Provider):
    """The same key provider, run inside its operator's backup service: `backup init
    --key-provider DIR/provider.toml` writes the one setting, `backup run` runs both."""

    @property
    def backup_directory(self) -> Path:
        return self.directory.parent / f"backup-{self.account}"

    def env(self) -> dict[str, str]:
        return {**super().env(), "QUORUMKEEP_BACKUP_PASSPHRASE": BACKUP_PASSPHRASE}

    def init(self) -> HostedProvider:
        super().init()
        result = run_cli(
            "backup",
            "init",
            "--account",
            self.account,
            "--dir",
            str(self.backup_directory),
            "--ledger",
            self.ledger_url,
            "--kdf-cost",
            "minimum",
            "--key-provider",
            str(self.directory / "provider.toml"),
            env=self.env(),
        )
        assert result.returncode == 0, result.stderr + result.stdout
        return self

    def start(self) -> HostedProvider:
        with open(self.log_path, "ab") as log:
            self.proc = forkserver.popen(
                cli(
                    "backup",
                    "run",
                    "--config",
                    str(self.backup_directory / "backup.toml"),
                    "--log-level",
                    "DEBUG",
                ),
                stdout=subprocess.DEVNULL,
                stderr=log,
                env=self.env(),
            )
        return self
