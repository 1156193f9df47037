"""The backup endpoints answer nothing before the coordinator applied the first contract state.

Until then the node does not know whether it was replaced (and must wipe) or whether a
migration to it is open: a backup served or an import taken then could contradict what the
first state decides. The gate answers first, before any header is read or the ledger asked.
In-process through the ASGI app (no sockets, no processes).
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from typing import Any

import httpx

from quorumkeep.node.backup_api import BackupNodeDeps, backup_router
from quorumkeep.node.metrics import MetricsSnapshot, NodeMetrics
from quorumkeep.node.web import create_app
from quorumkeep.wire.backup import PATH_KEYSHARES, PATH_RECOVERY_SESSION, Ed25519Signer


class Gate:
    def __init__(self) -> None:
        self.ready = False
        self.views: list[str] = []
        self.imports = 0

    async def read_view(self, method: str, args: Mapping[str, Any]) -> Any:
        self.views.append(method)
        raise AssertionError("the ledger must not be read before the first state")

    async def current_shares(self, keyset: Any) -> list[Any]:
        raise AssertionError("no share may be read before the first state")

    async def import_shares(self, verified: Any) -> None:
        self.imports += 1


def answers(gate: Gate) -> list[tuple[int, str]]:
    deps = BackupNodeDeps(
        account="alice",
        tls_signer=Ed25519Signer(bytes(32)),
        read_view=gate.read_view,
        current_shares=gate.current_shares,
        import_shares=gate.import_shares,
        ready=lambda: gate.ready,
    )
    app = create_app(
        status=dict, metrics=NodeMetrics(), snapshot=MetricsSnapshot, routers=[backup_router(deps)]
    )

    async def main() -> list[tuple[int, str]]:
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://node") as client:
            replies = [
                await client.get(PATH_KEYSHARES, headers={"Quorumkeep-Purpose": "backup"}),
                await client.post(PATH_RECOVERY_SESSION),
                await client.put(PATH_KEYSHARES, content=b"{}"),
            ]
        return [(r.status_code, r.json()["error"]["code"]) for r in replies]

    return asyncio.run(main())


def test_backup_and_import_wait_for_the_first_contract_state() -> None:
    gate = Gate()
    assert answers(gate) == [(503, "contract_unavailable")] * 3
    assert gate.views == [] and gate.imports == 0


def test_once_the_state_is_applied_requests_are_checked_as_usual() -> None:
    gate = Gate()
    gate.ready = True
    assert all(status == 400 for status, _ in answers(gate))
    assert gate.imports == 0
