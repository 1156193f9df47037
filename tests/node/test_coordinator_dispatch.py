"""The coordinator's run loop and dispatcher, in-process: one node against an in-memory
contract (component_helpers.FakeLedger as its ContractPort, a queue as its event stream),
with its real keystore and a real mesh listener on 127.0.0.1. No process is started.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable, Mapping
from pathlib import Path
from typing import Any

from component_helpers import (
    BOB,
    CAROL,
    EPOCH,
    FakeLedger,
    contract,
    key_pair,
    member,
    running,
    sign_request,
)
from node_helpers import make_identity, run

from quorumkeep.contract.state import ParticipantInfo
from quorumkeep.ledger.client import LedgerEvent
from quorumkeep.node.config import NodeConfig, PassphraseKeyConfig
from quorumkeep.node.coordinator import Coordinator, CoordinatorSettings
from quorumkeep.node.held_keys import HeldKeys
from quorumkeep.node.keystore import Keystore
from quorumkeep.node.mesh import Mesh
from quorumkeep.node.metrics import NodeMetrics
from quorumkeep.node.onboarding import META_DECOMMISSIONED


class EventFeed:
    """The ledger as the run loop reads it: its height, a view, the event stream."""

    def __init__(self, ledger: FakeLedger) -> None:
        self.ledger = ledger
        self.events: asyncio.Queue[LedgerEvent] = asyncio.Queue()

    async def status(self) -> dict[str, Any]:
        return {"height": 10}

    async def view(self, method: str, args: Mapping[str, Any] | None = None) -> Any:
        return await self.ledger.view(method, args or {})

    async def follow_events(self, since: int) -> AsyncIterator[LedgerEvent]:
        while True:
            yield await self.events.get()


async def until(predicate: Callable[[], bool], timeout: float = 20.0) -> None:
    async with asyncio.timeout(timeout):
        while not predicate():
            await asyncio.sleep(0.01)


def test_the_run_loop_applies_states_and_sign_events_and_decommissions(tmp_path: Path) -> None:
    identity, storage_key = make_identity(tmp_path / "alice", "alice")
    keystore = Keystore.open(tmp_path / "alice", storage_key, identity.owner)
    me = ParticipantInfo(
        "alice",
        1,
        "127.0.0.1:1",
        "https://127.0.0.1:1",
        identity.tls_public_key,
        identity.signer_public_key,
    )
    held = HeldKeys(keystore)
    for domain_id in (0, 1):
        held.store(domain_id, EPOCH, *key_pair(1, domain_id))
    ledger = FakeLedger(contract(running(me)))
    config = NodeConfig(
        account="alice",
        data_dir=tmp_path / "alice",
        ledger_url="http://127.0.0.1:1",
        p2p_listen="127.0.0.1:1",
        web_listen="127.0.0.1:1",
        storage_key=PassphraseKeyConfig(passphrase_env="UNUSED"),
    )

    async def main() -> None:
        feed = EventFeed(ledger)
        mesh = Mesh(identity, host="127.0.0.1", port=0)
        await mesh.start()
        coordinator = Coordinator(
            config=config,
            identity=identity,
            keystore=keystore,
            ledger=feed,  # type: ignore[arg-type]
            mesh=mesh,
            metrics=NodeMetrics(),
            settings=CoordinatorSettings(takeover_timeout=60.0),
            contract=ledger,
        )
        await coordinator.start()
        running_task = asyncio.create_task(coordinator.run())
        try:
            assert not coordinator.ready
            await until(lambda: coordinator.ready)
            status = coordinator.status()
            assert (status["role"], status["participant_id"]) == ("participant", 1)
            assert status["keysets"] == {str(EPOCH): [0, 1]}
            assert status["participants"] == [1, 2, 3] and status["migration"] is None
            reads = ledger.reads

            # A sign event alone is applied to the last state: no re-read.
            request = sign_request(0)
            await feed.events.put(LedgerEvent(11, 0, None, "sign_requested", request.to_json()))
            await until(lambda: coordinator.status()["pending_requests"] == 1)
            assert ledger.reads == reads
            assert await coordinator.sign_requests.is_pending(
                0, request.payload, request.path, request.domain_id, request.account
            )

            # Replaced by a migration: any other event means a re-read, and the node wipes.
            alice_elsewhere = member("alice", 1, generation=1)
            ledger.state = contract(running(alice_elsewhere))
            await feed.events.put(LedgerEvent(12, 0, None, "participants_changed", {}))
            await until(lambda: keystore.get_metadata(META_DECOMMISSIONED) == "1")
            assert coordinator.status()["role"] == "decommissioned"
            assert ledger.reads > reads
            assert keystore.key_shares() == []
            assert coordinator.status()["participant_id"] is None
            assert ledger.called("respond") == []
        finally:
            running_task.cancel()
            await asyncio.gather(running_task, return_exceptions=True)
            await coordinator.close()
            await mesh.close()
            keystore.close()

    run(main(), timeout=60)
    assert BOB.participant_id == 2 and CAROL.participant_id == 3
