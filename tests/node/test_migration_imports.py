"""The migration component (node/migration.py): import, conclude, settle, pause for a wipe.

Against an in-memory contract (component_helpers.FakeLedger) and a real keystore; the
destination is alice's new machine ALICE_B, the migration to it open in the contract.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
from component_helpers import (
    ALICE_A,
    ALICE_B,
    DOMAINS,
    EPOCH,
    FakeLedger,
    contract,
    metrics,
    open_keystore,
    running,
    settle,
    share_secret,
    unavailable,
)
from node_helpers import run

from quorumkeep.contract.state import ContractState
from quorumkeep.node.decisions import RecoveredShare
from quorumkeep.node.held_keys import HeldKeys
from quorumkeep.node.keystore import Keystore
from quorumkeep.node.migration import MigrationImports
from quorumkeep.node.onboarding import NodeStanding
from quorumkeep.wire.backup import BackupProtocolError


def recovered(pid: int = 1, epoch: int = EPOCH) -> list[RecoveredShare]:
    return [RecoveredShare(d, epoch, pid, share_secret(d, pid, epoch)) for d in DOMAINS]


class Destination:
    def __init__(self, tmp_path: Path, ledger: FakeLedger) -> None:
        self.ledger = ledger
        self.keystore: Keystore = open_keystore(tmp_path)
        self.held = HeldKeys(self.keystore)
        self.settled = 0
        self.standing = NodeStanding(
            account="alice",
            tls_public_key=ALICE_B.tls_public_key,
            participant_info=dict,
            metadata=self.keystore,
            held=self.held,
            call=ledger.call,
            metrics=metrics(),
            exit_on_decommission=False,
        )
        self.imports = MigrationImports(
            account="alice",
            tls_public_key=ALICE_B.tls_public_key,
            signer_public_key=ALICE_B.signer_public_key,
            read_state=ledger.read_state,
            call=ledger.call,
            held=self.held,
            standing=self.standing,
            metrics=metrics(),
            backoff=0.01,
            on_settled=self.on_settled,
        )

    def on_settled(self) -> None:
        self.settled += 1

    def slots(self) -> list[tuple[int, int]]:
        return [(r.domain_id, r.epoch) for r in self.keystore.key_shares()]

    async def until_idle(self, timeout: float = 10.0) -> None:
        async with asyncio.timeout(timeout):
            while self.imports.busy():
                await asyncio.sleep(0.005)


def concluded(state: ContractState, _args: object) -> ContractState:
    return contract(running(ALICE_B))


@pytest.fixture
def ledger() -> FakeLedger:
    return FakeLedger(contract(to=ALICE_B))


def test_imported_shares_are_stored_and_concluded(tmp_path: Path, ledger: FakeLedger) -> None:
    node = Destination(tmp_path, ledger)
    ledger.effects["conclude_node_migration"] = concluded

    async def main() -> None:
        await node.imports.import_shares(recovered())
        assert node.imports.status(ledger.state) == {
            "started_height": 50,
            "phase": "concluding",
            "epoch": EPOCH,
        }
        await node.until_idle()

    run(main())
    assert node.slots() == [(0, EPOCH), (1, EPOCH)]
    assert ledger.called("conclude_node_migration") == [{"keyset": running().keyset.to_json()}]
    assert node.settled == 1
    assert node.imports.status(ledger.state) is None


def test_shares_that_do_not_fit_are_refused_and_nothing_is_stored(
    tmp_path: Path, ledger: FakeLedger
) -> None:
    node = Destination(tmp_path, ledger)
    with pytest.raises(BackupProtocolError) as refused:
        run(node.imports.import_shares(recovered(pid=2)))
    assert refused.value.code == "shares_mismatch"
    assert node.slots() == [] and ledger.calls == []


def test_no_import_without_an_open_migration(tmp_path: Path) -> None:
    ledger = FakeLedger(contract())
    node = Destination(tmp_path, ledger)
    with pytest.raises(BackupProtocolError) as refused:
        run(node.imports.import_shares(recovered()))
    assert refused.value.code == "no_open_migration"
    assert node.slots() == []


def test_a_cancelled_migration_deletes_the_imported_shares(
    tmp_path: Path, ledger: FakeLedger
) -> None:
    node = Destination(tmp_path, ledger)
    ledger.fail("conclude_node_migration", unavailable())

    async def main() -> None:
        await node.imports.import_shares(recovered())
        ledger.state = contract()  # the operator cancelled the migration meanwhile
        node.imports.contract_moved()
        await node.until_idle()

    run(main())
    assert node.slots() == []
    assert node.settled == 1


def test_a_refused_conclusion_is_retried_until_the_state_shows_it(
    tmp_path: Path, ledger: FakeLedger
) -> None:
    node = Destination(tmp_path, ledger)
    ledger.fail("conclude_node_migration", unavailable(), unavailable())
    ledger.effects["conclude_node_migration"] = concluded

    async def main() -> None:
        await node.imports.import_shares(recovered())
        await node.until_idle()

    run(main())
    assert len(ledger.called("conclude_node_migration")) == 3
    assert node.slots() == [(0, EPOCH), (1, EPOCH)]


def test_no_conclude_call_once_the_shares_are_gone(tmp_path: Path, ledger: FakeLedger) -> None:
    """Shares are checked as still held, and matching the contract, before every call."""
    node = Destination(tmp_path, ledger)
    ledger.fail("conclude_node_migration", unavailable())

    async def main() -> None:
        await node.imports.import_shares(recovered())
        async with asyncio.timeout(10):
            while not ledger.called("conclude_node_migration"):
                await asyncio.sleep(0.001)
        node.keystore.wipe()  # whatever removed them, the contract must not hear "concluded"
        await node.until_idle()

    run(main())
    assert len(ledger.called("conclude_node_migration")) == 1
    assert node.settled == 1


def test_a_wipe_inside_paused_never_races_a_conclusion(tmp_path: Path, ledger: FakeLedger) -> None:
    """Decommissioning: the conclusion is cancelled, and has ended, before the wipe."""
    node = Destination(tmp_path, ledger)
    gate = ledger.gates["conclude_node_migration"] = asyncio.Event()

    async def main() -> None:
        await node.imports.import_shares(recovered())
        async with asyncio.timeout(10):
            while not ledger.called("conclude_node_migration"):
                await asyncio.sleep(0.001)
        async with node.imports.paused():
            assert not node.imports.busy() or node.imports.tasks()[0].done()
            node.held.wipe()
            gate.set()
            await settle()
        await asyncio.sleep(0.05)
        assert node.imports.status(ledger.state) == {
            "started_height": 50,
            "phase": "waiting_for_shares",
            "epoch": None,
        }

    run(main())
    assert len(ledger.called("conclude_node_migration")) == 1
    assert node.slots() == []


def test_a_restarted_destination_concludes_with_the_shares_it_holds(
    tmp_path: Path, ledger: FakeLedger
) -> None:
    node = Destination(tmp_path, ledger)
    node.held.store_recovered(running(), 1, recovered())
    ledger.effects["conclude_node_migration"] = concluded

    async def main() -> None:
        await node.imports.settle_held_shares()
        await node.until_idle()

    run(main())
    assert len(ledger.called("conclude_node_migration")) == 1
    assert node.slots() == [(0, EPOCH), (1, EPOCH)]


def test_held_shares_without_an_open_migration_are_deleted(tmp_path: Path) -> None:
    ledger = FakeLedger(contract(running(ALICE_A)))
    node = Destination(tmp_path, ledger)
    node.held.store_recovered(running(), 1, recovered())
    run(node.imports.settle_held_shares())
    assert node.slots() == [] and ledger.calls == []


def test_held_shares_are_kept_while_the_ledger_cannot_be_read(
    tmp_path: Path, ledger: FakeLedger
) -> None:
    node = Destination(tmp_path, ledger)
    node.held.store_recovered(running(), 1, recovered())
    ledger.fail("state", unavailable())
    run(node.imports.settle_held_shares())
    assert node.slots() == [(0, EPOCH), (1, EPOCH)]
