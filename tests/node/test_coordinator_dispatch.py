"""The coordinator's run loop and dispatcher, in-process: one node against an in-memory
contract (component_helpers.FakeLedger as its ContractPort, a queue as its event stream),
with its real keystore and a real mesh listener on 127.0.0.1. No process is started.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from pathlib import Path
from typing import Any

from component_helpers import (
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
from quorumkeep.node.decisions import RecoveredShare
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


class Alice:
    """Alice's node: identity, real keystore holding her shares of EPOCH, her contract info."""

    def __init__(self, tmp_path: Path) -> None:
        directory = tmp_path / "alice"
        self.identity, storage_key = make_identity(directory, "alice")
        self.keystore = Keystore.open(directory, storage_key, self.identity.owner)
        self.me = ParticipantInfo(
            "alice",
            1,
            "127.0.0.1:1",
            "https://127.0.0.1:1",
            self.identity.tls_public_key,
            self.identity.signer_public_key,
        )
        held = HeldKeys(self.keystore)
        for domain_id in (0, 1):
            held.store(domain_id, EPOCH, *key_pair(1, domain_id))
        self.config = NodeConfig(
            account="alice",
            data_dir=directory,
            ledger_url="http://127.0.0.1:1",
            p2p_listen="127.0.0.1:1",
            web_listen="127.0.0.1:1",
            storage_key=PassphraseKeyConfig(passphrase_env="UNUSED"),
        )

    def slots(self) -> list[tuple[int, int]]:
        return [(r.domain_id, r.epoch) for r in self.keystore.key_shares()]

    async def running(
        self, ledger: FakeLedger, test: Callable[[Coordinator, EventFeed], Awaitable[None]]
    ) -> None:
        """Run the coordinator (and a mesh listener) while ``test`` runs; then stop it all."""
        feed = EventFeed(ledger)
        mesh = Mesh(self.identity, host="127.0.0.1", port=0)
        await mesh.start()
        coordinator = Coordinator(
            config=self.config,
            identity=self.identity,
            keystore=self.keystore,
            ledger=feed,  # type: ignore[arg-type]
            mesh=mesh,
            metrics=NodeMetrics(),
            settings=CoordinatorSettings(takeover_timeout=60.0, ledger_backoff=0.01),
            contract=ledger,
        )
        loop = asyncio.create_task(coordinator.run())
        try:
            await test(coordinator, feed)
        finally:
            loop.cancel()
            await asyncio.gather(loop, return_exceptions=True)
            await coordinator.close()
            await mesh.close()
            self.keystore.close()


def test_the_run_loop_applies_states_and_sign_events_and_decommissions(tmp_path: Path) -> None:
    alice = Alice(tmp_path)
    ledger = FakeLedger(contract(running(alice.me)))

    async def test(coordinator: Coordinator, feed: EventFeed) -> None:
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
        ledger.state = contract(running(member("alice", 1, generation=1)))
        await feed.events.put(LedgerEvent(12, 0, None, "participants_changed", {}))
        await until(lambda: alice.keystore.get_metadata(META_DECOMMISSIONED) == "1")
        assert ledger.reads > reads
        assert alice.slots() == []
        assert coordinator.status()["role"] == "decommissioned"
        assert coordinator.status()["participant_id"] is None
        assert ledger.called("respond") == []

    run(alice.running(ledger, test), timeout=60)


def test_a_node_replaced_while_down_wipes_before_it_imports_the_migration_back(
    tmp_path: Path,
) -> None:
    """A → B → A with A down during A → B: A's first state replaces it (it wipes and stands
    by) before anything is imported; then the shares come back and it takes part again."""
    alice = Alice(tmp_path)
    alice.keystore.set_metadata("participated_as", "1")
    ledger = FakeLedger(contract(running(member("alice", 1, generation=1)), to=alice.me))
    ledger.effects["conclude_node_migration"] = lambda state, args: contract(running(alice.me))

    async def test(coordinator: Coordinator, feed: EventFeed) -> None:
        await until(lambda: coordinator.ready)
        assert alice.slots() == []
        assert alice.keystore.get_metadata(META_DECOMMISSIONED) == "1"
        assert coordinator.status()["migration"] == {
            "started_height": 50,
            "phase": "waiting_for_shares",
            "epoch": None,
        }
        shares = [RecoveredShare(d, EPOCH, 1, key_pair(1, d)[0].signing_share) for d in (0, 1)]
        await coordinator.migration.import_shares(shares)
        await until(lambda: coordinator.status()["role"] == "participant")
        assert alice.slots() == [(0, EPOCH), (1, EPOCH)]
        assert alice.keystore.get_metadata(META_DECOMMISSIONED) is None
        assert len(ledger.called("conclude_node_migration")) == 1

    run(alice.running(ledger, test), timeout=60)


def test_a_warm_standby_keeps_its_shares_and_fails_over_without_an_import(
    tmp_path: Path,
) -> None:
    """Alice's node as a warm standby (it holds her shares of EPOCH, as after a push): while
    her participant runs elsewhere it keeps them and asks to be no candidate; a migration to
    it concludes from them, with no import."""
    alice = Alice(tmp_path)
    alice.config = alice.config.model_copy(update={"warm_standby": True})
    primary = running(member("alice", 1, generation=1))
    ledger = FakeLedger(contract(primary))
    ledger.effects["conclude_node_migration"] = lambda state, args: contract(running(alice.me))

    async def test(coordinator: Coordinator, feed: EventFeed) -> None:
        await until(lambda: coordinator.ready)
        status = coordinator.status()
        assert status["role"] == "waiting"
        assert status["warm_standby"]["fresh"] is True
        assert status["warm_standby"]["held_epoch"] == EPOCH
        await feed.events.put(LedgerEvent(11, 0, None, "participants_changed", {}))
        await until(lambda: ledger.reads >= 2)
        assert alice.slots() == [(0, EPOCH), (1, EPOCH)]
        ledger.state = contract(primary, to=alice.me)
        await feed.events.put(LedgerEvent(12, 0, None, "migration_started", {}))
        await until(lambda: coordinator.status()["role"] == "participant")
        assert len(ledger.called("conclude_node_migration")) == 1
        assert ledger.called("submit_participant_info") == []
        registry = coordinator.metrics.registry
        assert registry.get_sample_value("quorumkeep_migration_imports_total") == 0
        assert coordinator.status()["warm_standby"]["active"] is True

    run(alice.running(ledger, test), timeout=60)
