"""`quorumkeep bench ledger` runs end to end (tiny sizes; the numbers are not asserted)."""

from __future__ import annotations

import json

import pytest
from ledger_helpers import cli_command

from quorumkeep.devnet import forkserver
from quorumkeep.devnet.etcd import etcd_available

pytestmark = pytest.mark.slow


@pytest.mark.parametrize(
    "store",
    [
        "sqlite",
        pytest.param(
            "etcd", marks=pytest.mark.skipif(not etcd_available(), reason="etcd not installed")
        ),
    ],
)
def test_bench_ledger_json(store: str) -> None:
    result = forkserver.run(
        cli_command(
            "bench", "ledger", "--json", "--transactions", "6", "--clients", "3", "--views", "6",
            "--store", store,
        ),
        capture_output=True,
        text=True,
        timeout=180,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    body = json.loads(result.stdout)
    assert body["store"] == store
    assert body["sequential"]["transactions"] == 6
    assert body["concurrent"]["clients"] == 3
    assert body["concurrent"]["transactions"] == 6
    for phase in ("sequential", "concurrent"):
        assert body[phase]["tx_per_s"] > 0
        assert 0 < body[phase]["p50_ms"] <= body[phase]["p99_ms"]
    assert body["views"]["sequential_per_s"] > 0


def test_bench_ledger_history_json() -> None:
    result = forkserver.run(
        cli_command(
            "bench", "ledger-history", "--json", "--idle-seconds", "1", "--transactions", "40",
            "--per-block", "4",
        ),
        capture_output=True,
        text=True,
        timeout=180,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    body = json.loads(result.stdout)
    assert body["idle"]["blocks"] == 0  # no block when nothing happens
    assert body["restart"]["blocks"] == 11  # init, then 40 calls 4 a block
    assert len(body["restart"]["restart_s"]) == 2
