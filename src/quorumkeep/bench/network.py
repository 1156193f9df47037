"""Signing throughput and latency of a real devnet, plus its DKG and resharing times.

``run`` starts a devnet (ledger + nodes, separate processes on 127.0.0.1) in a temporary
directory and measures:

- ``unloaded``: the same three latencies for ``UNLOADED_REQUESTS`` requests sent one at a
  time (no queue: what one request costs end to end);
- ``dkg_seconds``: from the last operator's ``vote_add_domains`` to the contract being
  Running with domain 0's key (every node ran the DKG and voted its key);
- ``backup_gate_seconds``: from there until domain 0 may sign (backup before use: every
  operator's backup service fetched, verified and confirmed its shares in the contract);
- ``signatures_per_second``: ``requests`` sign requests kept ``concurrency`` in flight
  (submitted from as many access keys of the ``user`` account), divided by the wall time
  from the first submission to the last verified answer;
- ``latency_ms``: per request, from just before its ``sign`` transaction is sent to the
  moment its ``sign_responded`` event is read from the ledger (p50, p90, p99, max);
  ``submit_ms`` is the part of it until the ``sign`` transaction was in a durable block;
- ``ledger_latency_ms``: per request, the ledger's own view: timestamp of the block holding
  the ``respond`` minus that of the block holding the ``sign`` (millisecond clock);
- ``resharing_seconds``: from the last ``vote_new_parameters`` to Running at the new epoch,
  for n → n + 1 nodes with threshold t → t + 1 (the new node initialized and started first).

Every signature is verified with PyNaCl before it counts. Numbers are one run's, on
whatever machine runs it; nothing here asserts on them.
"""

from __future__ import annotations

import asyncio
import math
import os
import shutil
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from quorumkeep.devnet.network import USER, Devnet, operator_name
from quorumkeep.ledger.signing import Signature, SignClient

DEFAULT_CONCURRENCY = 64
WARMUP_REQUESTS = 20
UNLOADED_REQUESTS = 50
SIGN_TIMEOUT = 120.0

Progress = Callable[[str], None]


@dataclass(frozen=True)
class NetworkBench:
    nodes: int
    threshold: int
    requests: int
    concurrency: int
    signatures_per_second: float
    latency_ms: dict[str, float]
    submit_ms: dict[str, float]
    ledger_latency_ms: dict[str, float]
    unloaded: dict[str, Any]
    dkg_seconds: float
    backup_gate_seconds: float | None
    resharing_seconds: float | None
    resharing: str | None
    devnet_up_seconds: float

    def to_json(self) -> dict[str, Any]:
        return {
            "nodes": self.nodes,
            "threshold": self.threshold,
            "requests": self.requests,
            "concurrency": self.concurrency,
            "signatures_per_second": round(self.signatures_per_second, 1),
            "latency_ms": {k: round(v, 2) for k, v in self.latency_ms.items()},
            "submit_ms": {k: round(v, 2) for k, v in self.submit_ms.items()},
            "ledger_latency_ms": {k: round(v, 2) for k, v in self.ledger_latency_ms.items()},
            "unloaded": self.unloaded,
            "dkg_seconds": round(self.dkg_seconds, 3),
            "backup_gate_seconds": None
            if self.backup_gate_seconds is None
            else round(self.backup_gate_seconds, 3),
            "resharing_seconds": None
            if self.resharing_seconds is None
            else round(self.resharing_seconds, 3),
            "resharing": self.resharing,
            "devnet_up_seconds": round(self.devnet_up_seconds, 3),
        }


def percentile(values: list[float], q: float) -> float:
    """Nearest-rank percentile (q in 0..100) of a non-empty list."""
    ordered = sorted(values)
    rank = max(1, math.ceil(q / 100 * len(ordered)))
    return ordered[rank - 1]


def _rounded(values: dict[str, float]) -> dict[str, float]:
    return {k: round(v, 2) for k, v in values.items()}


def _ledger_latencies(results: list[Signature], stamps: dict[int, int]) -> list[float]:
    return [(stamps[r.response_height] - stamps[r.request_height]) / 1000 for r in results]


def spread(values: list[float]) -> dict[str, float]:
    """p50, p90, p99 and max, in milliseconds, of values in seconds."""
    return {
        "p50": percentile(values, 50) * 1000,
        "p90": percentile(values, 90) * 1000,
        "p99": percentile(values, 99) * 1000,
        "max": max(values) * 1000,
    }


async def _sign_many(
    devnet: Devnet, count: int, concurrency: int, label: str
) -> tuple[float, list[Signature], dict[int, int]]:
    """(wall seconds, verified signatures, block height -> timestamp ms of their blocks)."""
    # One access key of `user` per request in flight: a key's transactions go one after
    # the other (nonce order), so fewer keys would queue requests in this client.
    signers = devnet.user_signers(concurrency, USER)
    gate = asyncio.Semaphore(concurrency)
    results: list[Signature] = []

    async with SignClient(devnet.ledger_url, signers) as client:

        async def one(i: int) -> None:
            async with gate:
                payload = os.urandom(32)
                result = await client.sign(payload, f"{label}/{i % 8}", timeout=SIGN_TIMEOUT)
                results.append(result)

        started = time.perf_counter()
        await asyncio.gather(*(one(i) for i in range(count)))
        wall = time.perf_counter() - started

        # After the clock stopped: the timestamps of the blocks involved.
        heights = sorted({h for r in results for h in (r.request_height, r.response_height)})
        fetch_gate = asyncio.Semaphore(16)
        stamps: dict[int, int] = {}

        async def stamp(height: int) -> None:
            async with fetch_gate:
                stamps[height] = int((await client.client.block(height))["timestamp_ms"])

        await asyncio.gather(*(stamp(h) for h in heights))
    return wall, results, stamps


def run(
    *,
    nodes: int = 4,
    threshold: int = 3,
    requests: int = 500,
    concurrency: int = DEFAULT_CONCURRENCY,
    reshare: bool = True,
    keep_dir: Path | None = None,
    progress: Progress | None = None,
) -> NetworkBench:
    report = progress or (lambda _: None)
    directory = keep_dir or Path(tempfile.mkdtemp(prefix="quorumkeep-bench-"))
    devnet: Devnet | None = None
    try:
        report(f"starting a {threshold}-of-{nodes} devnet in {directory}")
        started = time.perf_counter()
        devnet = Devnet.up(
            directory / "devnet",
            nodes=nodes,
            threshold=threshold,
            spare_operators=1,
            progress=report,
        )
        up_seconds = time.perf_counter() - started
        report(f"warming up ({WARMUP_REQUESTS} signatures)")
        asyncio.run(_sign_many(devnet, WARMUP_REQUESTS, min(concurrency, 8), "warmup"))
        report(f"signing {UNLOADED_REQUESTS} payloads one at a time")
        _, single, single_stamps = asyncio.run(_sign_many(devnet, UNLOADED_REQUESTS, 1, "one"))
        report(f"signing {requests} payloads, {concurrency} in flight")
        wall, results, stamps = asyncio.run(_sign_many(devnet, requests, concurrency, "bench"))
        ledger_latencies = _ledger_latencies(results, stamps)
        resharing_seconds = None
        resharing = None
        if reshare:
            newcomer = operator_name(nodes + 1)
            new_threshold = min(threshold + 1, nodes + 1)
            report(f"resharing {threshold}-of-{nodes} -> {new_threshold}-of-{nodes + 1}")
            name = devnet.add_node(newcomer)
            devnet.wait_node_healthy(name)
            devnet.reshare(threshold=new_threshold, add=[name])
            resharing_seconds = devnet.timings["resharing"]
            resharing = f"{threshold}-of-{nodes} -> {new_threshold}-of-{nodes + 1}"
        return NetworkBench(
            nodes=nodes,
            threshold=threshold,
            requests=requests,
            concurrency=concurrency,
            signatures_per_second=requests / wall,
            latency_ms=spread([r.latency_s for r in results]),
            submit_ms=spread([r.submit_latency_s for r in results]),
            ledger_latency_ms=spread(ledger_latencies),
            unloaded={
                "requests": UNLOADED_REQUESTS,
                "latency_ms": _rounded(spread([r.latency_s for r in single])),
                "submit_ms": _rounded(spread([r.submit_latency_s for r in single])),
                "ledger_latency_ms": _rounded(spread(_ledger_latencies(single, single_stamps))),
            },
            dkg_seconds=devnet.timings["dkg"],
            backup_gate_seconds=devnet.timings.get("backup_gate"),
            resharing_seconds=resharing_seconds,
            resharing=resharing,
            devnet_up_seconds=up_seconds,
        )
    finally:
        if devnet is not None:
            devnet.down(grace=5.0)
        if keep_dir is None:
            shutil.rmtree(directory, ignore_errors=True)
