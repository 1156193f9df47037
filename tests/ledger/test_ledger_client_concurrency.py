"""Many concurrent calls with one access key through one AsyncLedgerClient.

Regression: a task retrying after InvalidNonce forgot the key's nonce while another task
was between its nonce check and its use, which crashed that task with a KeyError.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
from ledger_helpers import LedgerProcess, backup_service_args, init_args, make_ledger

from quorumkeep.ledger.client import AsyncLedgerClient


@pytest.mark.slow
def test_concurrent_calls_with_one_key_all_land(tmp_path: Path) -> None:
    ledger = make_ledger(tmp_path / "data")
    server = LedgerProcess(ledger.path).start()
    try:

        async def run() -> list[str]:
            async with AsyncLedgerClient(server.url) as client:
                await client.call(ledger.signers["alice"], "init", init_args(["alice", "bob"]))
                outcomes = await asyncio.gather(
                    *(
                        client.call(
                            ledger.signers["bob"], "register_backup_service", backup_service_args()
                        )
                        for _ in range(24)
                    ),
                    return_exceptions=True,
                )
                return [o if isinstance(o, BaseException) else o.status for o in outcomes]

        results = asyncio.run(run())
        assert all(r == "success" for r in results), results
    finally:
        server.terminate()
