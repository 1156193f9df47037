"""Shared pieces of the ledger tests: ledgers on disk, real server processes, signed txs."""

from __future__ import annotations

import os
import signal
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import nacl.public
import nacl.signing

from process_helpers import cli as cli_command
from process_helpers import free_port
from quorumkeep.crypto.seal import MIN_MEMLIMIT, MIN_OPSLIMIT
from quorumkeep.devnet import forkserver
from quorumkeep.ledger.client import AccountSigner
from quorumkeep.ledger.genesis import init_ledger
from quorumkeep.ledger.keyfile import load_signer
from quorumkeep.ledger.transaction import Action, FunctionCall, SignedTransaction, Transaction

PASSPHRASE = b"ledger tests passphrase"
FAST_COST = (MIN_OPSLIMIT, MIN_MEMLIMIT)  # key files in tests: Argon2id at its minimum cost
START_TIMEOUT = 30.0


@dataclass
class LedgerDir:
    path: Path
    chain_id: bytes
    signers: dict[str, AccountSigner]


def make_ledger(
    path: Path,
    accounts: tuple[str, ...] = ("alice", "bob", "carol", "dave"),
    *,
    tx_validity_blocks: int = 1000,
) -> LedgerDir:
    created = init_ledger(
        path,
        accounts,
        PASSPHRASE,
        tx_validity_blocks=tx_validity_blocks,
        passphrase_cost=FAST_COST,
    )
    signers = {name: load_signer(created.key_files[name], PASSPHRASE) for name in accounts}
    return LedgerDir(path, bytes.fromhex(created.chain_id), signers)


class LedgerProcess:
    """`quorumkeep ledger serve` as a child process on a free 127.0.0.1 port."""

    def __init__(self, data_dir: Path, *, idle_block_ms: int | None = 200) -> None:
        self.data_dir = data_dir
        self.idle_block_ms = idle_block_ms
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.proc: subprocess.Popen[bytes] | None = None
        self.log_path = data_dir.parent / f"{data_dir.name}-serve-{self.port}.log"

    def spawn(self) -> subprocess.Popen[bytes]:
        with open(self.log_path, "ab") as log:
            self.proc = forkserver.popen(
                cli_command(
                    "ledger",
                    "serve",
                    "--data",
                    str(self.data_dir),
                    "--listen",
                    f"127.0.0.1:{self.port}",
                    *(
                        []
                        if self.idle_block_ms is None
                        else ["--idle-block-ms", str(self.idle_block_ms)]
                    ),
                ),
                stdout=subprocess.DEVNULL,
                stderr=log,
            )
        return self.proc

    def start(self) -> LedgerProcess:
        self.spawn()
        deadline = time.monotonic() + START_TIMEOUT
        while time.monotonic() < deadline:
            assert self.proc is not None
            if self.proc.poll() is not None:
                raise RuntimeError(f"ledger exited {self.proc.returncode}: {self.log()}")
            try:
                if httpx.get(f"{self.url}/health", timeout=1.0).status_code == 200:
                    return self
            except httpx.HTTPError:
                pass
            time.sleep(0.05)
        self.kill()
        raise RuntimeError(f"ledger did not become healthy: {self.log()}")

    def log(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")
        except OSError:
            return ""

    def terminate(self, timeout: float = 15.0) -> int:
        if self.proc is None:
            return 0
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout)
        return int(self.proc.returncode)

    def kill(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait(15.0)


def random_ed25519() -> str:
    return bytes(nacl.signing.SigningKey.generate().verify_key).hex()


def random_x25519() -> str:
    return bytes(nacl.public.PrivateKey.generate().public_key).hex()


def participant(account: str, index: int) -> dict[str, Any]:
    return {
        "account": account,
        "url": f"127.0.0.1:{20000 + index}",
        "web_url": f"https://127.0.0.1:{21000 + index}",
        "tls_public_key": random_ed25519(),
        "signer_public_key": random_ed25519(),
    }


def init_args(accounts: list[str], threshold: int = 2) -> dict[str, Any]:
    return {
        "participants": [participant(a, i) for i, a in enumerate(accounts)],
        "threshold": threshold,
    }


def backup_service_args() -> dict[str, Any]:
    return {"identity_public_key": random_ed25519(), "encryption_public_key": random_x25519()}


def sign_tx(
    signer: AccountSigner,
    *,
    chain_id: bytes,
    nonce: int,
    block_height: int,
    actions: list[Action] | None = None,
) -> SignedTransaction:
    tx = Transaction(
        chain_id=chain_id,
        signer_account=signer.account,
        public_key=signer.public_key,
        nonce=nonce,
        block_height=block_height,
        actions=tuple(actions or [FunctionCall("register_backup_service", backup_service_args())]),
    )
    return signer.sign(tx)


def new_signer(account: str) -> AccountSigner:
    return AccountSigner(account, nacl.signing.SigningKey(os.urandom(32)))
