"""The devnet directory and its record, ``DIR/devnet.json``.

Layout (every path in devnet.json is relative to DIR, so a devnet directory can move)::

    DIR/devnet.json          this record: ledger URL, accounts, processes (argv, pid, ports)
    DIR/.lock                held (flock) while a command changes the devnet
    DIR/secrets/             0700; one 0600 passphrase file per account and per node
    DIR/accounts/<a>.json    each account's full-access key file, sealed under its passphrase
    DIR/ledger/              the ledger's data directory (ledger.sqlite)
    DIR/nodes/<name>/        one node's directory (node.toml, identity, keystore)
    DIR/logs/<name>.log      stdout and stderr of each process, appended across restarts
    DIR/dev-platform.key     0600; the development platform key's seed (devnet/attestation.py)
    DIR/ers/                 the emergency recovery key (offline in production; ers keygen)
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from quorumkeep.devnet.errors import DevnetError
from quorumkeep.devnet.processes import ProcessRecord

DEVNET_FILE = "devnet.json"
DEVNET_FORMAT = "quorumkeep-devnet-v1"
LOCK_FILE = ".lock"
ACCOUNTS_DIR = "accounts"
LEDGER_DIR = "ledger"
NODES_DIR = "nodes"
LOGS_DIR = "logs"

PHASE_CREATING = "creating"
PHASE_READY = "ready"


@dataclass
class AccountRecord:
    """A ledger account the devnet created, and where its key file and passphrase are."""

    name: str
    role: str  # "operator" or "user"
    key_file: str
    secret: str
    public_key: str

    def to_json(self) -> dict[str, Any]:
        return {
            "role": self.role,
            "key_file": self.key_file,
            "secret": self.secret,
            "public_key": self.public_key,
        }

    @classmethod
    def from_json(cls, name: str, value: Mapping[str, Any]) -> AccountRecord:
        return cls(
            name=name,
            role=str(value["role"]),
            key_file=str(value["key_file"]),
            secret=str(value["secret"]),
            public_key=str(value["public_key"]),
        )


@dataclass
class DevnetRecord:
    """Everything devnet commands need to find and drive a devnet."""

    threshold: int
    nodes: int
    phase: str = PHASE_CREATING
    chain_id: str | None = None
    ledger_url: str | None = None
    accounts: dict[str, AccountRecord] = field(default_factory=dict)
    processes: dict[str, ProcessRecord] = field(default_factory=dict)
    key_source: str = "passphrase"
    """Where new nodes get their storage key: ``passphrase`` or ``peers`` (key providers)."""

    def to_json(self) -> dict[str, Any]:
        return {
            "key_source": self.key_source,
            "format": DEVNET_FORMAT,
            "phase": self.phase,
            "threshold": self.threshold,
            "nodes": self.nodes,
            "chain_id": self.chain_id,
            "ledger_url": self.ledger_url,
            "accounts": {n: a.to_json() for n, a in sorted(self.accounts.items())},
            "processes": {n: p.to_json() for n, p in self.processes.items()},
        }

    @classmethod
    def from_json(cls, value: Any) -> DevnetRecord:
        try:
            if value.get("format") != DEVNET_FORMAT:
                raise ValueError("format")
            return cls(
                threshold=int(value["threshold"]),
                nodes=int(value["nodes"]),
                phase=str(value["phase"]),
                chain_id=value.get("chain_id"),
                ledger_url=value.get("ledger_url"),
                key_source=str(value.get("key_source", "passphrase")),
                accounts={
                    str(n): AccountRecord.from_json(str(n), a)
                    for n, a in dict(value["accounts"]).items()
                },
                processes={
                    str(n): ProcessRecord.from_json(p) for n, p in dict(value["processes"]).items()
                },
            )
        except (AttributeError, KeyError, TypeError, ValueError):
            raise DevnetError(
                "devnet_file_invalid", f"{DEVNET_FILE} is not a {DEVNET_FORMAT} record"
            ) from None

    def node_names(self) -> list[str]:
        return [n for n, p in self.processes.items() if p.kind == "node"]


class DevnetDir:
    """A devnet directory on disk."""

    def __init__(self, path: Path | str) -> None:
        self.path = Path(path).absolute()

    @property
    def record_path(self) -> Path:
        return self.path / DEVNET_FILE

    def exists(self) -> bool:
        return self.record_path.exists()

    def load(self) -> DevnetRecord:
        try:
            raw = self.record_path.read_bytes()
        except FileNotFoundError:
            raise DevnetError(
                "no_devnet", f"{self.path} holds no devnet ({DEVNET_FILE} missing)"
            ) from None
        except OSError as exc:
            raise DevnetError(
                "devnet_file_unreadable", f"cannot read {self.record_path}: {exc.strerror}"
            ) from None
        try:
            value = json.loads(raw)
        except ValueError:
            raise DevnetError("devnet_file_invalid", f"{self.record_path} is not JSON") from None
        return DevnetRecord.from_json(value)

    def save(self, record: DevnetRecord) -> None:
        """Atomic replace: readers see the old or the new record, never a mix."""
        data = (json.dumps(record.to_json(), indent=2) + "\n").encode()
        tmp = self.path / f".{DEVNET_FILE}.{os.getpid()}.tmp"
        with open(tmp, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, self.record_path)

    @contextlib.contextmanager
    def locked(self, wait: float = 10.0) -> Iterator[None]:
        """Exclusive while a command changes this devnet; another one waits up to ``wait`` s."""
        self.path.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.path / LOCK_FILE, os.O_RDWR | os.O_CREAT, 0o600)
        try:
            deadline = time.monotonic() + wait
            while True:
                try:
                    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                    break
                except BlockingIOError:
                    if time.monotonic() >= deadline:
                        raise DevnetError(
                            "devnet_busy",
                            f"another devnet command is changing {self.path}; retry later",
                        ) from None
                    time.sleep(0.05)
            yield
        finally:
            os.close(fd)

    def resolve(self, relative: str) -> Path:
        return self.path / relative
