"""`quorumkeep sign` (ledger.signing.SignClient) rides out a ledger restart: a submission that
could not reach the ledger is sent again, the same signed transaction, until the timeout —
so the request lands exactly once."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from ledger_helpers import LedgerProcess, init_args, make_ledger
from test_ledger_process import ACCOUNTS, key_package

from quorumkeep.ledger.client import LedgerClient
from quorumkeep.ledger.errors import LedgerError
from quorumkeep.ledger.signing import SignClient, SignError

pytestmark = pytest.mark.slow


@pytest.fixture
def ledger(tmp_path: Path) -> Iterator[tuple[LedgerProcess, object]]:
    data = make_ledger(tmp_path / "data", ACCOUNTS)
    server = LedgerProcess(data.path, idle_block_ms=50).start()
    try:
        alice, bob = data.signers["alice"], data.signers["bob"]
        with LedgerClient(server.url) as client:
            client.call(alice, "init", init_args(["alice", "bob"]))
            for operator in (alice, bob):
                client.call(
                    operator,
                    "vote_add_domains",
                    {"domains": [{"scheme": "Ed25519", "backups_required": 0}]},
                )
            group_key, shares = key_package([1, 2], 2)
            vote = {
                "key_event_id": {"domain_id": 0, "epoch": 0, "attempt": 0},
                "public_key": group_key,
                "verifying_shares": shares,
            }
            for operator in (alice, bob):
                client.call(operator, "vote_pk", vote)
        yield server, data
    finally:
        server.kill()


def test_a_submission_during_a_ledger_restart_lands_once(
    ledger: tuple[LedgerProcess, object],
) -> None:
    server, data = ledger
    carol = data.signers["carol"]  # type: ignore[attr-defined]

    async def scenario() -> None:
        async with SignClient(server.url, [carol]) as client:
            server.kill()
            restarted = threading.Timer(2.0, server.start)
            restarted.start()
            try:
                request_id, _ = await client.submit(
                    b"\x01" * 32, "retry/path", 0, deadline=time.monotonic() + 60
                )
            finally:
                restarted.join()
            with LedgerClient(server.url) as plain:
                pending = plain.view("request", {"request_id": request_id})
                assert pending["payload"] == "01" * 32
                # exactly once: no second copy took the next request id
                with pytest.raises(LedgerError) as missing:
                    plain.view("request", {"request_id": request_id + 1})
                assert missing.value.code == "RequestNotFound"
            # and a ledger that stays down ends in a timeout, not at once
            server.kill()
            started = time.monotonic()
            with pytest.raises(SignError) as failure:
                await client.submit(b"\x02" * 32, "p", 0, deadline=time.monotonic() + 2)
            assert failure.value.code == "timeout"
            assert time.monotonic() - started >= 1.5

    asyncio.run(scenario())
