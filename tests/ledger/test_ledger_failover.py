"""Several ledger URLs in one client: failover between real ledger processes."""

from __future__ import annotations

from pathlib import Path

import pytest
from ledger_helpers import LedgerProcess, backup_service_args, free_port, init_args, make_ledger

from quorumkeep.ledger.client import LedgerClient
from quorumkeep.ledger.errors import LedgerError
from quorumkeep.ledger.failover import split_urls

pytestmark = pytest.mark.slow


def test_split_urls() -> None:
    assert split_urls("http://a:1/") == ["http://a:1"]
    assert split_urls(" http://a:1, http://b:2/ ,") == ["http://a:1", "http://b:2"]
    for bad in (" , ", "http://[::1", "notaurl", "ftp://a:1", "http://a:1,http://"):
        with pytest.raises(LedgerError) as refused:
            split_urls(bad)
        assert refused.value.code == "InvalidLedgerUrl" and refused.value.status == 400


def test_a_dead_first_url_fails_over_to_the_next(tmp_path: Path) -> None:
    ledger = make_ledger(tmp_path / "data", ("alice", "bob"))
    server = LedgerProcess(ledger.path, idle_block_ms=None).start()
    dead = f"http://127.0.0.1:{free_port()}"  # nothing listens here
    try:
        with LedgerClient(f"{dead},{server.url}") as client:
            assert client.status()["height"] == 0
            outcome = client.call(ledger.signers["alice"], "init", init_args(["alice", "bob"]))
            assert outcome.ok
            assert client.call(
                ledger.signers["bob"], "register_backup_service", backup_service_args()
            ).ok
        with LedgerClient(f"{dead},{dead.replace('http', 'http', 1)}") as client:
            with pytest.raises(LedgerError) as refused:
                client.status()
            assert refused.value.code == "LedgerUnavailable"
    finally:
        server.kill()
