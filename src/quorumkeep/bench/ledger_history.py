"""`quorumkeep bench ledger-history`: what a long-lived ledger costs on disk and at start.

Two measurements, each on a fresh ledger in a temporary directory:

- **idle growth**: a `ledger serve` process runs for ``idle_seconds`` with no traffic; the
  bytes the data directory grew by (after a clean stop, so SQLite's WAL is checkpointed) and
  the blocks it made are extrapolated to one day;
- **restart after history**: ``transactions`` real contract calls
  (``register_backup_service`` by 16 participant accounts, the `bench ledger` traffic) are
  built into blocks of ``per_block`` transactions *directly through the storage layer* —
  ``LedgerState.build_block`` (the producer's code: validation, contract execution, state
  hash) and ``BlockStore.append`` — because submitting a million transactions over HTTP
  would take hours on a small machine. Then `ledger serve` is started and timed from the
  process start until ``/health`` answers 200, against the same time for a fresh ledger.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import nacl.public
import nacl.signing

from quorumkeep.devnet import forkserver
from quorumkeep.ledger import snapshot
from quorumkeep.ledger.chain import LedgerState, make_genesis
from quorumkeep.ledger.client import AccountSigner
from quorumkeep.ledger.storage import BlockStore
from quorumkeep.ledger.transaction import FunctionCall, SignedTransaction, Transaction
from quorumkeep.net.address import free_port

START_TIMEOUT_S = 3600.0
CLIENTS = 16
DAY_S = 86_400


def _dir_bytes(directory: Path) -> int:
    return sum(p.stat().st_size for p in directory.rglob("*") if p.is_file())


def _key_hex(seed: bytes) -> str:
    return bytes(nacl.signing.SigningKey(seed).verify_key).hex()


class _Serve:
    """`ledger serve` as a child process; ``started_s`` is process start -> /health 200."""

    def __init__(self, data_dir: Path, extra: list[str]) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log = open(data_dir.parent / "serve.log", "ab")  # noqa: SIM115 - closed in stop()
        t0 = time.perf_counter()
        self.proc = forkserver.popen(
            [
                sys.executable,
                "-m",
                "quorumkeep.cli.main",
                "ledger",
                "serve",
                "--data",
                str(data_dir),
                "--listen",
                f"127.0.0.1:{self.port}",
                *extra,
            ],
            stdout=subprocess.DEVNULL,
            stderr=self.log,
        )
        deadline = time.monotonic() + START_TIMEOUT_S
        while True:
            if self.proc.poll() is not None:
                self.log.close()
                raise RuntimeError(f"the ledger exited with status {self.proc.returncode}")
            try:
                if httpx.get(f"{self.url}/health", timeout=1.0).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if time.monotonic() > deadline:
                self.stop()
                raise RuntimeError("the ledger did not become healthy")
            time.sleep(0.02)
        self.started_s = time.perf_counter() - t0

    def height(self) -> int:
        return int(httpx.get(f"{self.url}/v1/status", timeout=10.0).json()["height"])

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(120)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(15)
        self.log.close()


def _genesis(data_dir: Path, signers: list[AccountSigner]) -> None:
    store = BlockStore(data_dir, create=True)
    try:
        store.write_genesis(
            make_genesis(
                {s.account: [s.public_key] for s in signers},
                timestamp_ms=time.time_ns() // 1_000_000,
            )
        )
    finally:
        store.close()


def idle_growth(idle_seconds: float, serve_args: list[str] | None = None) -> dict[str, Any]:
    """Run a fresh, idle ledger for ``idle_seconds``; growth per day, extrapolated."""
    signer = AccountSigner("operator", nacl.signing.SigningKey(os.urandom(32)))
    with tempfile.TemporaryDirectory(prefix="quorumkeep-bench-idle-") as tmp:
        data_dir = Path(tmp) / "data"
        _genesis(data_dir, [signer])
        server = _Serve(data_dir, serve_args or [])
        server.stop()  # a first start and stop: what a fresh ledger holds at rest
        before = _dir_bytes(data_dir)
        server = _Serve(data_dir, serve_args or [])
        try:
            h0 = server.height()
            t0 = time.monotonic()
            time.sleep(idle_seconds)
            h1 = server.height()
            elapsed = time.monotonic() - t0
        finally:
            server.stop()
        after = _dir_bytes(data_dir)
    grown = after - before
    return {
        "seconds": round(elapsed, 1),
        "blocks": h1 - h0,
        "bytes": grown,
        "blocks_per_day": round((h1 - h0) * DAY_S / elapsed),
        "bytes_per_day": round(grown * DAY_S / elapsed),
        "mb_per_day": round(grown * DAY_S / elapsed / 1e6, 3),
    }


class HistoryBuilder:
    """Builds blocks of real contract calls straight into a data directory's block store."""

    def __init__(self, data_dir: Path) -> None:
        self.operator = AccountSigner("operator", nacl.signing.SigningKey(os.urandom(32)))
        self.clients = [
            AccountSigner(f"client-{i:03d}", nacl.signing.SigningKey(os.urandom(32)))
            for i in range(CLIENTS)
        ]
        _genesis(data_dir, [self.operator, *self.clients])
        self.store = BlockStore(data_dir)
        self.state = LedgerState.replay(self.store.iter_blocks())
        # Snapshots as a running ledger takes them (periodically, and at a clean stop).
        self.snapshots = snapshot.SnapshotPolicy(-1)
        self.nonces: dict[str, int] = {}
        self.timestamp_ms = self.state.timestamp_ms
        # A pool of argument sets, cycled: the contract replaces a service's info each time.
        self.args = [
            {
                "identity_public_key": _key_hex(os.urandom(32)),
                "encryption_public_key": bytes(nacl.public.PrivateKey.generate().public_key).hex(),
            }
            for _ in range(64)
        ]
        participants = [
            {
                "account": s.account,
                "url": f"127.0.0.1:{30000 + i}",
                "web_url": f"https://127.0.0.1:{31000 + i}",
                "tls_public_key": _key_hex(os.urandom(32)),
                "signer_public_key": _key_hex(os.urandom(32)),
            }
            for i, s in enumerate([self.operator, *self.clients])
        ]
        self.block(
            [self._tx(self.operator, "init", {"participants": participants, "threshold": 2})]
        )

    def _tx(self, signer: AccountSigner, method: str, args: dict[str, Any]) -> SignedTransaction:
        nonce = self.nonces.get(signer.account, 0) + 1
        self.nonces[signer.account] = nonce
        tx = Transaction(
            chain_id=self.state.chain_id,
            signer_account=signer.account,
            public_key=signer.public_key,
            nonce=nonce,
            block_height=self.state.height,
            actions=(FunctionCall(method, dict(args)),),
        )
        return signer.sign(tx)

    def block(self, batch: list[SignedTransaction]) -> None:
        self.timestamp_ms += 5
        block, applied = self.state.build_block(batch, self.timestamp_ms)
        for result in applied:
            if result.error is not None or result.outcome is None:
                raise RuntimeError(f"transaction refused: {result.error}")
            if result.outcome.status != "success":
                raise RuntimeError(f"call failed: {result.outcome.to_json()}")
        self.store.append(block)
        if self.snapshots.due(block):
            snapshot.take(self.store, self.state)
            self.snapshots.taken(block.height)

    def build(
        self, transactions: int, per_block: int, progress: Callable[[int], None] | None = None
    ) -> None:
        done = 0
        while done < transactions:
            n = min(per_block, transactions - done)
            batch = [
                self._tx(
                    self.clients[(done + i) % CLIENTS],
                    "register_backup_service",
                    self.args[(done + i) % len(self.args)],
                )
                for i in range(n)
            ]
            self.block(batch)
            done += n
            if progress is not None:
                progress(done)

    def close(self, final_snapshot: bool = True) -> None:
        """``final_snapshot=False`` leaves the store as a crash would: periodic snapshots
        only, so the next start replays the tail after the last one."""
        if final_snapshot and self.state.height > self.snapshots.last_height:
            snapshot.take(self.store, self.state)
        self.store.close()


def restart_after_history(
    transactions: int,
    per_block: int = 100,
    serve_args: list[str] | None = None,
    progress: Callable[[int], None] | None = None,
    keep_dir: Path | None = None,
) -> dict[str, Any]:
    """Start time of a fresh ledger and of one holding ``transactions`` transactions."""
    with tempfile.TemporaryDirectory(prefix="quorumkeep-bench-history-") as tmp:
        root = keep_dir or Path(tmp)
        fresh_dir = root / "fresh" / "data"
        fresh_dir.parent.mkdir(parents=True, exist_ok=True)
        _genesis(fresh_dir, [AccountSigner("operator", nacl.signing.SigningKey(os.urandom(32)))])
        fresh = []
        for _ in range(3):
            server = _Serve(fresh_dir, serve_args or [])
            fresh.append(server.started_s)
            server.stop()
        data_dir = root / "history" / "data"
        data_dir.parent.mkdir(parents=True, exist_ok=True)
        t0 = time.perf_counter()
        builder = HistoryBuilder(data_dir)
        try:
            builder.build(transactions, per_block, progress)
            height = builder.state.height
        finally:
            builder.close(final_snapshot=False)
        build_s = time.perf_counter() - t0
        size = _dir_bytes(data_dir)
        starts = []
        for _ in range(2):
            server = _Serve(data_dir, serve_args or [])
            starts.append(server.started_s)
            if server.height() < height:
                server.stop()
                raise RuntimeError("the restarted ledger is behind the history it was given")
            server.stop()
    fresh_s = min(fresh)
    restart_s = min(starts)
    return {
        "transactions": transactions,
        "per_block": per_block,
        "blocks": height,
        "build_s": round(build_s, 1),
        "data_bytes": size,
        "fresh_start_s": round(fresh_s, 3),
        # The first start follows a crash-like end (periodic snapshots only, if any), the
        # second a clean stop of the first.
        "restart_s": [round(s, 3) for s in starts],
        "restart_over_fresh": round(restart_s / fresh_s, 2),
    }


def run(
    *, idle_seconds: float = 120.0, transactions: int = 1_000_000, per_block: int = 100
) -> dict[str, Any]:
    result: dict[str, Any] = {"benchmark": "ledger-history", "cpus": os.cpu_count()}
    if idle_seconds > 0:
        result["idle"] = idle_growth(idle_seconds)
    if transactions > 0:
        result["restart"] = restart_after_history(transactions, per_block)
    return result
