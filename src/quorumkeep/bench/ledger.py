"""`quorumkeep bench ledger`: throughput and latency of a real ledger process over HTTP.

A fresh ledger (temporary directory, SQLite with fsync per block) is started as a child
process; the clients run in this process. Traffic is the contract's
``register_backup_service`` (a realistic operator call that changes state and emits an
event) signed by per-client accounts, so concurrent clients never race for a nonce.
Latency is submit → outcome as the client sees it: signing, HTTP, queueing, block
building, the durable commit and the answer.
"""

from __future__ import annotations

import asyncio
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import httpx
import nacl.public
import nacl.signing

from quorumkeep.devnet import forkserver
from quorumkeep.devnet.etcd import LocalEtcd
from quorumkeep.ledger.chain import make_genesis
from quorumkeep.ledger.client import AccountSigner, AsyncLedgerClient
from quorumkeep.ledger.storage import BlockStore
from quorumkeep.net.address import free_port

START_TIMEOUT_S = 60.0


def _key_hex(seed: bytes) -> str:
    return bytes(nacl.signing.SigningKey(seed).verify_key).hex()


def _backup_args() -> dict[str, Any]:
    return {
        "identity_public_key": _key_hex(os.urandom(32)),
        "encryption_public_key": bytes(nacl.public.PrivateKey.generate().public_key).hex(),
    }


def _percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    index = min(len(ordered) - 1, max(0, round(q * (len(ordered) - 1))))
    return ordered[index]


def _summary(latencies: list[float], elapsed: float) -> dict[str, Any]:
    return {
        "transactions": len(latencies),
        "seconds": round(elapsed, 3),
        "tx_per_s": round(len(latencies) / elapsed, 1),
        "p50_ms": round(_percentile(latencies, 0.50) * 1e3, 2),
        "p99_ms": round(_percentile(latencies, 0.99) * 1e3, 2),
        "mean_ms": round(statistics.fmean(latencies) * 1e3, 2),
    }


class _Server:
    def __init__(self, data_dir: Path, idle_block_ms: int, extra: list[str] | None = None) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log = open(data_dir.parent / "serve.log", "wb")  # noqa: SIM115 - closed in stop()
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
                "--idle-block-ms",
                str(idle_block_ms),
                *(extra or []),
            ],
            stdout=subprocess.DEVNULL,
            stderr=self.log,
        )

    def wait_healthy(self) -> None:
        deadline = time.monotonic() + START_TIMEOUT_S
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"the ledger exited with status {self.proc.returncode}")
            try:
                if httpx.get(f"{self.url}/health", timeout=1.0).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.05)
        raise RuntimeError("the ledger did not become healthy")

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(15)
        self.log.close()


async def _timed(calls: int, call: Callable[[int], Awaitable[Any]], latencies: list[float]) -> None:
    for i in range(calls):
        start = time.perf_counter()
        await call(i)
        latencies.append(time.perf_counter() - start)


async def _measure(
    url: str,
    operator: AccountSigner,
    clients: list[AccountSigner],
    transactions: int,
    views: int,
) -> dict[str, Any]:
    participants = [
        {
            "account": s.account,
            "url": f"127.0.0.1:{30000 + i}",
            "web_url": f"https://127.0.0.1:{31000 + i}",
            "tls_public_key": _key_hex(os.urandom(32)),
            "signer_public_key": _key_hex(os.urandom(32)),
        }
        for i, s in enumerate([operator, *clients])
    ]
    async with AsyncLedgerClient(url) as ledger:
        await ledger.call(operator, "init", {"participants": participants, "threshold": 2})
        # Warm-up: connections, nonce caches, code paths.
        for signer in clients:
            await ledger.call(signer, "register_backup_service", _backup_args())

        def submit(signer: AccountSigner) -> Callable[[int], Awaitable[Any]]:
            async def one(_: int) -> Any:
                return await ledger.call(signer, "register_backup_service", _backup_args())

            return one

        sequential: list[float] = []
        t0 = time.perf_counter()
        await _timed(transactions, submit(clients[0]), sequential)
        sequential_s = time.perf_counter() - t0

        # One client per simulated consumer (as every node and backup service has its own):
        # httpx's connection pool degrades when one client carries many concurrent requests.
        consumers = [AsyncLedgerClient(url) for _ in clients]
        try:
            await asyncio.gather(  # warm-up: each consumer learns its nonce and the chain
                *[
                    c.call(s, "register_backup_service", _backup_args())
                    for c, s in zip(consumers, clients, strict=True)
                ]
            )
            concurrent: list[float] = []
            per_client = max(1, transactions // len(clients))
            start_height = (await ledger.status())["height"]

            def submit_with(
                client: AsyncLedgerClient, signer: AccountSigner
            ) -> Callable[[int], Awaitable[Any]]:
                async def one(_: int) -> Any:
                    return await client.call(signer, "register_backup_service", _backup_args())

                return one

            t0 = time.perf_counter()
            await asyncio.gather(
                *[
                    _timed(per_client, submit_with(c, s), concurrent)
                    for c, s in zip(consumers, clients, strict=True)
                ]
            )
            concurrent_s = time.perf_counter() - t0
            status = await ledger.status()
            blocks = status["height"] - start_height

            async def view(_: int) -> Any:
                return await ledger.view("backup_service_info", {"account": clients[0].account})

            view_latencies: list[float] = []
            t0 = time.perf_counter()
            await _timed(views, view, view_latencies)
            views_sequential_s = time.perf_counter() - t0

            def view_with(client: AsyncLedgerClient) -> Callable[[int], Awaitable[Any]]:
                async def one(_: int) -> Any:
                    return await client.view("backup_service_info", {"account": clients[0].account})

                return one

            concurrent_views: list[float] = []
            t0 = time.perf_counter()
            await asyncio.gather(
                *[_timed(views // len(clients), view_with(c), concurrent_views) for c in consumers]
            )
            views_concurrent_s = time.perf_counter() - t0
        finally:
            for consumer in consumers:
                await consumer.aclose()

    return {
        "sequential": _summary(sequential, sequential_s),
        "concurrent": {
            "clients": len(clients),
            **_summary(concurrent, concurrent_s),
            "blocks": blocks,
            "tx_per_block": round(len(concurrent) / max(blocks, 1), 2),
        },
        "views": {
            "sequential_per_s": round(len(view_latencies) / views_sequential_s, 1),
            "sequential_p50_ms": round(_percentile(view_latencies, 0.5) * 1e3, 2),
            "concurrent_per_s": round(len(concurrent_views) / views_concurrent_s, 1),
        },
    }


def run(
    *,
    transactions: int = 500,
    clients: int = 16,
    views: int = 2000,
    idle_block_ms: int = 200,
    store: str = "sqlite",
) -> dict[str, Any]:
    """Start a fresh ledger process (on ``store``: sqlite or etcd), drive it, stop it;
    return the measurements."""
    if transactions < 1 or clients < 1 or views < clients:
        raise ValueError("need transactions >= 1, clients >= 1 and views >= clients")
    operator = AccountSigner("operator", nacl.signing.SigningKey(os.urandom(32)))
    signers = [
        AccountSigner(f"client-{i:03d}", nacl.signing.SigningKey(os.urandom(32)))
        for i in range(clients)
    ]
    with tempfile.TemporaryDirectory(prefix="quorumkeep-bench-ledger-") as tmp:
        data_dir = Path(tmp) / "data"
        genesis_store = BlockStore(data_dir, create=True)
        try:
            genesis_store.write_genesis(
                make_genesis(
                    {s.account: [s.public_key] for s in [operator, *signers]},
                    timestamp_ms=time.time_ns() // 1_000_000,
                )
            )
        finally:
            genesis_store.close()
        cluster: LocalEtcd | None = None
        extra: list[str] = []
        storage = "SQLite WAL, synchronous=FULL, one commit per block"
        if store == "etcd":
            cluster = LocalEtcd(
                Path(tmp) / "etcd", [(free_port(), free_port()) for _ in range(3)], "bench"
            ).start()
            extra = ["--store", "etcd", "--etcd", ",".join(cluster.urls)]
            storage = "etcd, 3 members on this machine, one compare-and-create per block"
        elif store != "sqlite":
            raise ValueError(f"unknown store {store!r}")
        try:
            server = _Server(data_dir, idle_block_ms, extra)
            try:
                server.wait_healthy()
                result = asyncio.run(_measure(server.url, operator, signers, transactions, views))
            finally:
                server.stop()
        finally:
            if cluster is not None:
                cluster.close()
    return {
        "benchmark": "ledger",
        "store": store,
        "storage": storage,
        "cpus": os.cpu_count(),
        **result,
    }
