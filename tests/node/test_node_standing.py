"""Held keys, onboarding and participants (node/held_keys.py, onboarding.py, participants.py).

Their rules on hand-made contract states, a real keystore and an in-memory contract; the
mesh is a fake of the three calls the participant follower makes. No process.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

import pytest
from component_helpers import (
    ALICE_A,
    ALICE_B,
    BOB,
    CAROL,
    EPOCH,
    FakeLedger,
    contract,
    key_pair,
    member,
    metrics,
    open_keystore,
    refused,
    running,
    unavailable,
)
from node_helpers import run

from quorumkeep.contract.attestation_state import AttestationState
from quorumkeep.contract.state import ContractState, Participants, Running
from quorumkeep.node.decisions import Role
from quorumkeep.node.held_keys import HeldKeys
from quorumkeep.node.keystore import Keystore
from quorumkeep.node.keystore_records import Presignature
from quorumkeep.node.mesh_peers import PeerInfo
from quorumkeep.node.onboarding import Decommissioned, NodeStanding
from quorumkeep.node.participants import ParticipantFollower


@pytest.fixture
def keystore(tmp_path: Path) -> Keystore:
    return open_keystore(tmp_path)


def slots(keystore: Keystore) -> list[tuple[int, int]]:
    return [(r.domain_id, r.epoch) for r in keystore.key_shares()]


def presignature(pid: str, ids: tuple[int, ...]) -> Presignature:
    commitments = {i: (bytes([i]) * 32, bytes([i + 100]) * 32) for i in ids}
    return Presignature(pid, 0, EPOCH, commitments, bytes(64))


# --- held keys -----------------------------------------------------------------------------


def test_only_our_shares_of_the_contracts_keys_are_in_force(keystore: Keystore) -> None:
    held = HeldKeys(keystore)
    held.store(0, EPOCH, *key_pair(1, 0))
    held.store(1, EPOCH, *key_pair(2, 1))  # another participant's share: never used
    in_force = held.select_in_force(contract(), me=1)
    assert list(in_force) == [(0, EPOCH)]
    assert held.in_force(0, EPOCH) and not held.in_force(1, EPOCH)
    assert held.select_in_force(contract(), me=None) == {}
    assert not held.in_force(0, EPOCH)


def test_older_epochs_go_once_every_domain_of_the_new_one_is_held(keystore: Keystore) -> None:
    held = HeldKeys(keystore)
    held.store(0, EPOCH - 1, *key_pair(1, 0, epoch=EPOCH - 1))
    held.store(0, EPOCH, *key_pair(1, 0))
    held.store(0, EPOCH + 1, *key_pair(1, 0, epoch=EPOCH + 1))  # a cancelled resharing's
    held.delete_obsolete(running())
    assert slots(keystore) == [(0, EPOCH - 1), (0, EPOCH)]  # domain 1 of EPOCH is missing
    held.store(1, EPOCH, *key_pair(1, 1))
    held.delete_obsolete(running())
    assert slots(keystore) == [(0, EPOCH), (1, EPOCH)]


def test_a_node_that_left_a_running_contract_deletes_everything(keystore: Keystore) -> None:
    held = HeldKeys(keystore)
    held.store(0, EPOCH, *key_pair(1, 0))
    keystore.add_presignatures([presignature("p1", (1, 2))])
    held.delete_departed(contract())
    assert slots(keystore) == [] and not held.holds_anything()


def test_stored_recovered_shares_read_back_as_recovered(keystore: Keystore) -> None:
    held = HeldKeys(keystore)
    held.store(0, EPOCH, *key_pair(1, 0))
    shares = held.recovered(running())
    assert [(s.domain_id, s.epoch, s.participant_id) for s in shares] == [(0, EPOCH, 1)]
    assert held.status() == {"keysets": {str(EPOCH): [0]}} and held.count() == 1


# --- onboarding ----------------------------------------------------------------------------


def standing(
    keystore: Keystore,
    ledger: FakeLedger,
    *,
    tls: bytes = ALICE_A.tls_public_key,
    exit: bool = False,
) -> NodeStanding:
    return NodeStanding(
        account="alice",
        tls_public_key=tls,
        participant_info=lambda: {"account": "alice", "tls_public_key": tls.hex()},
        metadata=keystore,
        held=HeldKeys(keystore),
        call=ledger.call,
        metrics=metrics(),
        exit_on_decommission=exit,
    )


def test_taking_part_survives_a_restart(keystore: Keystore) -> None:
    first = standing(keystore, FakeLedger())
    assert first.status() == {"role": "starting"}
    decision = first.decide(contract())
    assert (decision.role, decision.participant_id) == (Role.PARTICIPANT, 1)
    first.took_part(1)
    assert standing(keystore, FakeLedger()).participated_id() == 1


def test_a_replaced_node_wipes_and_stands_by_across_restarts(keystore: Keystore) -> None:
    node = standing(keystore, FakeLedger())
    node.took_part(1)
    HeldKeys(keystore).store(0, EPOCH, *key_pair(1, 0))
    replaced = contract(running(ALICE_B))
    decision = node.decide(replaced)
    assert decision.wipe
    run(node.decommission(decision.reason))
    assert slots(keystore) == []
    again = standing(keystore, FakeLedger())
    assert again.participated_id() is None and again.is_standby()
    assert not again.decide(replaced).wipe  # wiped once, then it stands by
    again.took_part(1)  # a migration back to it concluded
    assert not standing(keystore, FakeLedger()).is_standby()


def test_exit_on_decommission_raises_after_the_wipe(keystore: Keystore) -> None:
    node = standing(keystore, FakeLedger(), exit=True)
    HeldKeys(keystore).store(0, EPOCH, *key_pair(1, 0))
    with pytest.raises(Decommissioned):
        run(node.decommission("replaced"))
    assert slots(keystore) == []


def test_participant_info_is_offered_once_unless_the_ledger_was_down(keystore: Keystore) -> None:
    ledger = FakeLedger()
    outsider = member("dave", 9)
    node = standing(keystore, ledger, tls=outsider.tls_public_key)
    ledger.fail("submit_participant_info", unavailable(), refused("NotOperator"))
    state = contract()
    for _ in range(3):
        run(node.offer_info(state))  # down: offered again; refused: settled
    assert len(ledger.called("submit_participant_info")) == 2


def test_no_offer_before_the_contract_runs_or_when_already_a_candidate(keystore: Keystore) -> None:
    ledger = FakeLedger()
    node = standing(keystore, ledger)
    run(node.offer_info(ContractState()))
    run(node.offer_info(contract(candidates={"alice": ALICE_A})))
    assert ledger.calls == []


# --- participants --------------------------------------------------------------------------


class FakeMesh:
    def __init__(self) -> None:
        self.my_id: int | None = None
        self.updates: list[tuple[list[int], int | None]] = []

    def connected_peers(self) -> frozenset[int]:
        return frozenset({2})

    async def update_participants(
        self, participants: Mapping[int, PeerInfo], my_id: int | None
    ) -> frozenset[int]:
        self.updates.append((sorted(participants), my_id))
        self.my_id = my_id
        return frozenset()


def follower(keystore: Keystore, mesh: FakeMesh) -> ParticipantFollower:
    return ParticipantFollower(
        mesh=mesh,
        metadata=keystore,
        purge=lambda gone: keystore.purge_presignatures_involving(sorted(gone)),
        metrics=metrics(),
    )


def test_a_participant_replaced_while_we_were_down_has_its_presignatures_purged(
    keystore: Keystore,
) -> None:
    mesh = FakeMesh()
    run(follower(keystore, mesh).follow(contract(), 1))
    assert mesh.updates == [([1, 2, 3], 1)]
    keystore.add_presignatures(
        [presignature("with-bob", (1, 2)), presignature("with-carol", (1, 3))]
    )
    bob_moved = member("bob", 2, generation=1)
    moved = contract(
        Running(running().keyset, EPOCH + 1, Participants(2, (ALICE_A, bob_moved, CAROL)))
    )
    restarted = follower(keystore, FakeMesh())
    run(restarted.follow(moved, 1))
    assert [p.id for p in keystore.presignatures(0)] == ["with-carol"]
    status = restarted.status(1)
    assert status["participants"] == [1, 2, 3] and status["connected_peers"] == [2]
    assert [p["participant_id"] for p in status["peers"]] == [2, 3]
    assert restarted.connectivity(1) == (3, {2: True, 3: False})


def test_a_changed_participant_is_cut_off_the_mesh_before_its_presignatures_go(
    keystore: Keystore,
) -> None:
    """Purging first would let the old machine, still connected, start a batch that is
    stored after the purge (seen in the devnet test of a concluded migration)."""
    order: list[str] = []

    class OrderedMesh(FakeMesh):
        async def update_participants(
            self, participants: Mapping[int, PeerInfo], my_id: int | None
        ) -> frozenset[int]:
            order.append("mesh")
            return await super().update_participants(participants, my_id)

    def purge(gone: frozenset[int]) -> int:
        order.append(f"purge {sorted(gone)}")
        return keystore.purge_presignatures_involving(sorted(gone))

    peers = ParticipantFollower(
        mesh=OrderedMesh(), metadata=keystore, purge=purge, metrics=metrics()
    )
    run(peers.follow(contract(), 1))
    order.clear()
    bob_moved = member("bob", 2, generation=1)
    run(
        peers.follow(
            contract(
                Running(running().keyset, EPOCH + 1, Participants(2, (ALICE_A, bob_moved, CAROL)))
            ),
            1,
        )
    )
    assert order == ["mesh", "purge [2]"]


def test_the_mesh_is_only_told_about_changes(keystore: Keystore) -> None:
    mesh = FakeMesh()
    peers = follower(keystore, mesh)
    run(peers.follow(contract(), 1))
    run(peers.follow(contract(), 1))
    run(peers.follow(contract(), None))
    assert mesh.updates == [([1, 2, 3], 1), ([1, 2, 3], None)]
    assert BOB.participant_id in peers.peers


def test_a_restarted_peer_has_its_presignatures_purged_before_its_messages(
    keystore: Keystore,
) -> None:
    peers = follower(keystore, FakeMesh())
    keystore.add_presignatures(
        [presignature("with-bob", (1, 2)), presignature("with-carol", (1, 3))]
    )
    first, again, restarted = b"\x01" * 16, b"\x01" * 16, b"\x02" * 16
    peers.peer_connected(2, first)  # first sighting: we forgot everything at our own start
    peers.peer_connected(2, again)  # a reconnection of the same process
    assert {p.id for p in keystore.presignatures(0)} == {"with-bob", "with-carol"}
    peers.peer_connected(2, restarted)  # bob's new process forgot its nonces
    assert [p.id for p in keystore.presignatures(0)] == ["with-carol"]
    peers.peer_connected(3, restarted)  # another peer's first sighting, same bytes: nothing
    assert [p.id for p in keystore.presignatures(0)] == ["with-carol"]


def test_a_participant_the_contract_marked_is_dropped_from_the_mesh(keystore: Keystore) -> None:
    """A participant marked for its attestation is left out of the peers the mesh follows
    (its connections are refused) and its presignatures go; we keep our own entry."""
    keystore.add_presignatures(
        [presignature("with-bob", (1, 2)), presignature("with-carol", (1, 3))]
    )
    mesh = FakeMesh()
    run(follower(keystore, mesh).follow(contract(), 1))
    assert mesh.updates == [([1, 2, 3], 1)]
    marked = AttestationState(None, 604800, 3600, False, 0, marked={"bob": "expired"})
    run(follower(keystore, mesh).follow(contract(attestation=marked), 1))
    assert mesh.updates[-1] == ([1, 3], 1)
    assert [p.id for p in keystore.presignatures(0)] == ["with-carol"]
    mine = FakeMesh()
    run(follower(keystore, mine).follow(contract(attestation=marked), 2))
    assert mine.updates[-1] == ([1, 2, 3], 2)  # bob's own node keeps itself
