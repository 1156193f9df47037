"""watch_events against the ledger's app in-process: it asks the ledger to leave out the
sign events it ignores, and signals the events it does not."""

from __future__ import annotations

import asyncio
import contextlib
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import httpx
import nacl.public
import nacl.signing

from quorumkeep.backup.monitor import IGNORED_EVENTS, watch_events
from quorumkeep.crypto.seal import MIN_MEMLIMIT, MIN_OPSLIMIT
from quorumkeep.ledger.client import AsyncLedgerClient
from quorumkeep.ledger.genesis import init_ledger
from quorumkeep.ledger.keyfile import load_signer
from quorumkeep.ledger.node import LedgerNode
from quorumkeep.ledger.server import create_app

PASSPHRASE = b"monitor tests passphrase"


def _key() -> str:
    return bytes(nacl.signing.SigningKey.generate().verify_key).hex()


class _Recording(httpx.AsyncBaseTransport):
    def __init__(self, inner: httpx.AsyncBaseTransport) -> None:
        self.inner = inner
        self.event_queries: list[dict[str, list[str]]] = []

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        if request.url.path == "/v1/events":
            self.event_queries.append(parse_qs(urlsplit(str(request.url)).query))
        return await self.inner.handle_async_request(request)


def test_watch_events_leaves_sign_events_to_the_ledger(tmp_path: Path) -> None:
    created = init_ledger(
        tmp_path / "data",
        ("alice", "bob"),
        PASSPHRASE,
        passphrase_cost=(MIN_OPSLIMIT, MIN_MEMLIMIT),
    )
    alice = load_signer(created.key_files["alice"], PASSPHRASE)
    members = [
        {
            "account": account,
            "url": f"127.0.0.1:{20000 + i}",
            "web_url": f"https://127.0.0.1:{21000 + i}",
            "tls_public_key": _key(),
            "signer_public_key": _key(),
        }
        for i, account in enumerate(("alice", "bob"))
    ]

    async def run() -> list[dict[str, list[str]]]:
        node = LedgerNode(tmp_path / "data", idle_block_ms=50)
        await node.start()
        transport = _Recording(httpx.ASGITransport(app=create_app(node)))
        changed = asyncio.Event()
        try:
            async with AsyncLedgerClient("http://ledger", transport=transport) as ledger:
                await ledger.call(alice, "init", {"participants": members, "threshold": 2})
                head = int((await ledger.status())["height"])
                watcher = asyncio.create_task(watch_events(ledger, head, changed))
                await asyncio.sleep(0.2)
                assert not changed.is_set()
                args = {
                    "identity_public_key": _key(),
                    "encryption_public_key": bytes(
                        nacl.public.PrivateKey.generate().public_key
                    ).hex(),
                }
                await ledger.call(alice, "register_backup_service", args)
                await asyncio.wait_for(changed.wait(), 10)
                watcher.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await watcher
        finally:
            await node.stop()
        return transport.event_queries

    queries = asyncio.run(run())
    assert queries
    for query in queries:
        assert set(query["exclude_kinds"][0].split(",")) == IGNORED_EVENTS
        assert "kinds" not in query
