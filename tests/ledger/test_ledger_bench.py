"""`quorumkeep bench ledger` runs end to end (tiny sizes; the numbers are not asserted)."""

from __future__ import annotations

import json
import subprocess

import pytest
from ledger_helpers import cli_command

pytestmark = pytest.mark.slow


def test_bench_ledger_json() -> None:
    result = subprocess.run(
        cli_command(
            "bench", "ledger", "--json", "--transactions", "6", "--clients", "3", "--views", "6"
        ),
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr
    body = json.loads(result.stdout)
    assert body["sequential"]["transactions"] == 6
    assert body["concurrent"]["clients"] == 3
    assert body["concurrent"]["transactions"] == 6
    for phase in ("sequential", "concurrent"):
        assert body[phase]["tx_per_s"] > 0
        assert 0 < body[phase]["p50_ms"] <= body[phase]["p99_ms"]
    assert body["views"]["sequential_per_s"] > 0
