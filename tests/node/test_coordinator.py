"""The coordinator's decisions as pure functions: onboarding role, sign leader, purges.

The end-to-end behaviour (keygen, signing with 3 node processes) is in test_process.py.
"""

from __future__ import annotations

import asyncio
import hashlib
import os
from collections import Counter
from collections.abc import Iterator
from typing import Any

import nacl.signing
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from node_helpers import run

from process_helpers import Ledger, free_port
from quorumkeep.contract import NODE_METHODS
from quorumkeep.contract.state import (
    ContractState,
    Destination,
    DomainKey,
    Initializing,
    KeyEvent,
    Keyset,
    Migration,
    ParticipantInfo,
    Participants,
    Resharing,
    Running,
)
from quorumkeep.crypto.group import base_mul, scalar_from_int
from quorumkeep.ledger.client import AccountSigner, AsyncLedgerClient, TxOutcome
from quorumkeep.ledger.errors import ContractCallFailed, LedgerError
from quorumkeep.ledger.transaction import Permission
from quorumkeep.node.calls import ContractCaller
from quorumkeep.node.decisions import (
    Role,
    changed_participants,
    first_attempt,
    leader_hash,
    onboarding_decision,
    peer_map,
    sign_leader,
    takeover_delay,
)


def key(label: str) -> bytes:
    return base_mul(scalar_from_int(int.from_bytes(hashlib.sha256(label.encode()).digest())))


def member(account: str, pid: int, generation: int = 0) -> ParticipantInfo:
    return ParticipantInfo(
        account=account,
        participant_id=pid,
        url=f"127.0.0.1:{7000 + pid + 100 * generation}",
        web_url=f"https://127.0.0.1:{8000 + pid}",
        tls_public_key=key(f"tls/{account}/{generation}"),
        signer_public_key=key(f"signer/{account}/{generation}"),
    )


def running(members: list[ParticipantInfo], threshold: int = 2, epoch: int = 0) -> Running:
    shares = tuple((m.participant_id, key(f"share/{m.participant_id}")) for m in members)
    keyset = Keyset(epoch, (DomainKey(0, "Ed25519", key("domain0"), shares),))
    return Running(keyset, epoch + 1, Participants(threshold, tuple(members)))


ALICE, BOB, CAROL, DAVE = (
    member(a, i + 1) for i, a in enumerate(["alice", "bob", "carol", "dave"])
)
MINE = ALICE.tls_public_key


def state_of(protocol: object, **kwargs: object) -> ContractState:
    return ContractState(protocol=protocol, **kwargs)  # type: ignore[arg-type]


# --- onboarding -------------------------------------------------------------------------


def test_not_initialized_is_not_participant() -> None:
    decision = onboarding_decision(ContractState(), "alice", MINE, participated=False)
    assert decision.role is Role.NOT_PARTICIPANT
    assert decision.participant_id is None


def test_account_not_listed_is_not_participant() -> None:
    state = state_of(running([BOB, CAROL, DAVE]))
    decision = onboarding_decision(state, "alice", MINE, participated=False)
    assert decision.role is Role.NOT_PARTICIPANT


def test_listed_with_my_key_participates() -> None:
    state = state_of(running([ALICE, BOB, CAROL]))
    decision = onboarding_decision(state, "alice", MINE, participated=False)
    assert (decision.role, decision.participant_id) == (Role.PARTICIPANT, 1)


def test_listed_with_other_key_and_no_migration_waits() -> None:
    state = state_of(running([ALICE, BOB, CAROL]))
    other = key("tls/alice/new-machine")
    decision = onboarding_decision(state, "alice", other, participated=False)
    assert (decision.role, decision.participant_id) == (Role.WAITING, 1)


def test_open_migration_to_me_waits_for_shares() -> None:
    new_tls = key("tls/alice/new-machine")
    migration = Migration(
        "alice", 1, Destination("127.0.0.1:9999", "https://127.0.0.1:9998", new_tls), key("s"), 5
    )
    state = state_of(running([ALICE, BOB, CAROL]), migrations={"alice": migration})
    decision = onboarding_decision(state, "alice", new_tls, participated=False)
    assert decision.role is Role.WAIT_FOR_MIGRATION
    # A migration to some other machine is not ours to wait for.
    assert (
        onboarding_decision(state, "alice", key("tls/alice/third"), participated=False).role
        is Role.WAITING
    )


def test_replaced_after_participating_is_decommissioned() -> None:
    replaced = member("alice", 1, generation=1)
    state = state_of(running([replaced, BOB, CAROL]))
    decision = onboarding_decision(state, "alice", MINE, participated=True)
    assert decision.role is Role.DECOMMISSIONED
    assert "replaced" in decision.reason


def test_removed_after_participating_is_not_decommissioned() -> None:
    # Leaving through a resharing is not a replacement: the node deletes its old shares
    # (coordinator) but is not wiped as a replaced machine would be.
    state = state_of(running([BOB, CAROL, DAVE]))
    decision = onboarding_decision(state, "alice", MINE, participated=True)
    assert decision.role is Role.NOT_PARTICIPANT


def test_newcomer_in_a_resharing_participates() -> None:
    previous = running([BOB, CAROL, DAVE], threshold=2)
    newcomer = member("alice", 5)
    protocol = Resharing(
        previous,
        1,
        Participants(3, (BOB, CAROL, DAVE, newcomer)),
        [KeyEvent(previous.keyset.domains[0].domain, 1, 0)],
    )
    decision = onboarding_decision(
        state_of(protocol), "alice", newcomer.tls_public_key, participated=False
    )
    assert (decision.role, decision.participant_id) == (Role.PARTICIPANT, 5)


def test_departing_holder_in_a_resharing_still_participates() -> None:
    previous = running([ALICE, BOB, CAROL], threshold=2)
    protocol = Resharing(previous, 1, Participants(2, (BOB, CAROL)), [])
    decision = onboarding_decision(state_of(protocol), "alice", MINE, participated=True)
    assert (decision.role, decision.participant_id) == (Role.PARTICIPANT, 1)


# --- participant map and purges -----------------------------------------------------------


def test_peer_map_is_the_serving_set_plus_the_new_set_in_a_resharing() -> None:
    previous = running([ALICE, BOB, CAROL])
    newcomer = member("erin", 5)
    protocol = Resharing(previous, 1, Participants(3, (BOB, CAROL, newcomer)), [])
    peers = peer_map(state_of(protocol))
    assert sorted(peers) == [1, 2, 3, 5]
    assert peers[5].tls_public_key == newcomer.tls_public_key
    assert sorted(peer_map(state_of(previous))) == [1, 2, 3]
    initializing = Initializing(previous, [KeyEvent(previous.keyset.domains[0].domain, 0, 0)])
    assert sorted(peer_map(state_of(initializing))) == [1, 2, 3]
    assert peer_map(ContractState()) == {}


def test_changed_participants_are_those_with_a_new_key_or_gone() -> None:
    before = {1: key("a"), 2: key("b"), 3: key("c"), 4: key("d")}
    after = {1: key("a"), 2: key("b2"), 3: key("c"), 5: key("e")}
    assert changed_participants(before, after) == frozenset({2, 4})
    assert changed_participants(before, before) == frozenset()
    assert changed_participants({}, after) == frozenset()


# --- leader -------------------------------------------------------------------------------


def test_leader_hash_is_documented_sha256_prefix() -> None:
    expected = hashlib.sha256(b"quorumkeep sign leader v1\x00" + (7).to_bytes(8, "big")).digest()
    assert leader_hash(7) == int.from_bytes(expected[:8], "big")
    with pytest.raises(ValueError):
        leader_hash(-1)


def test_leader_rotates_through_participants_with_attempts() -> None:
    participants = [4, 1, 9]
    first = sign_leader(3, participants, 0)
    order = sorted(participants)
    start = order.index(first)
    for attempt in range(7):
        assert sign_leader(3, participants, attempt) == order[(start + attempt) % 3]
    with pytest.raises(ValueError):
        sign_leader(3, [], 0)


def test_leaders_spread_over_participants() -> None:
    counts = Counter(sign_leader(r, [1, 2, 3, 4], 0) for r in range(400))
    assert set(counts) == {1, 2, 3, 4}
    assert min(counts.values()) > 60


@settings(max_examples=60, deadline=None)
@given(
    request_id=st.integers(0, 2**63 - 1),
    participants=st.sets(st.integers(1, 50), min_size=1, max_size=8),
    data=st.data(),
)
def test_first_attempt_names_me(
    request_id: int, participants: set[int], data: st.DataObject
) -> None:
    me = data.draw(st.sampled_from(sorted(participants)))
    k = first_attempt(request_id, participants, me)
    assert 0 <= k < len(participants)
    assert sign_leader(request_id, participants, k) == me
    assert all(sign_leader(request_id, participants, j) != me for j in range(k))


def test_takeover_delay_counts_only_connected_earlier_leaders() -> None:
    participants = [1, 2, 3, 4]
    rid = 11
    order = [sign_leader(rid, participants, k) for k in range(4)]
    last = order[3]
    everyone = set(participants) - {last}
    assert takeover_delay(rid, participants, last, everyone, 2.0) == 6.0
    assert takeover_delay(rid, participants, order[0], everyone, 2.0) == 0.0
    # The first leader is down (not connected): the second takes over at once.
    assert takeover_delay(rid, participants, order[1], everyone - {order[0]}, 2.0) == 0.0
    assert takeover_delay(rid, participants, last, {order[1]}, 2.0) == 2.0
    with pytest.raises(ValueError):
        takeover_delay(rid, participants, 99, everyone, 2.0)


# --- contract calls with one key, concurrently (against a real ledger process) -----------


@pytest.fixture(scope="module")
def ledger(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Ledger]:
    base = tmp_path_factory.mktemp("calls-ledger")
    served = Ledger(base / "data", ("alice", "bob", "carol")).create()
    try:
        served.start(idle_block_ms=50)
        infos: list[dict[str, Any]] = []
        for account in ("alice", "bob"):
            info = member(account, 1 + len(infos)).to_json()
            del info["participant_id"]
            infos.append(info)
        served.call("alice", "init", {"participants": infos, "threshold": 2})
        yield served
    finally:
        served.close()


def candidate(signer: AccountSigner, k: int) -> dict[str, str]:
    return {
        "account": signer.account,
        "url": f"127.0.0.1:{9000 + k}",
        "web_url": f"https://127.0.0.1:{9500 + k}",
        "tls_public_key": key(f"candidate tls {k}").hex(),
        "signer_public_key": signer.public_key_hex,
    }


@pytest.mark.slow
def test_concurrent_calls_with_one_key_all_go_through(ledger: Ledger) -> None:
    signer = AccountSigner("carol", nacl.signing.SigningKey(os.urandom(32)))
    with ledger.client() as client:
        client.add_key(ledger.signers["carol"], signer.public_key, Permission(tuple(NODE_METHODS)))

    async def scenario() -> tuple[list[TxOutcome], int]:
        async with AsyncLedgerClient(ledger.url) as client:
            caller = ContractCaller(client, signer)
            outcomes = await asyncio.gather(
                *(caller.call("submit_participant_info", candidate(signer, k)) for k in range(40))
            )
            return list(outcomes), caller.nonce_retries

    outcomes, retries = run(scenario(), timeout=60)
    assert retries < 40  # rounds keep refusals rare (typically none)
    assert all(o.ok for o in outcomes)
    assert len({o.tx_hash for o in outcomes}) == 40
    with ledger.client() as client:
        keys = {k["public_key"]: k for k in client.account("carol")["keys"]}
    assert keys[signer.public_key_hex]["nonce"] >= 40


@pytest.mark.slow
def test_a_contract_rejection_is_raised_at_once_and_a_used_key_is_caught_up(ledger: Ledger) -> None:
    signer = AccountSigner("carol", nacl.signing.SigningKey(os.urandom(32)))
    with ledger.client() as client:
        client.add_key(ledger.signers["carol"], signer.public_key, Permission(tuple(NODE_METHODS)))
        # Someone else uses the key first: our caller must catch up with its nonce.
        client.call(signer, "submit_participant_info", candidate(signer, 100))
        client.call(signer, "submit_participant_info", candidate(signer, 101))

    async def scenario() -> tuple[str, bool]:
        async with AsyncLedgerClient(ledger.url) as client:
            caller = ContractCaller(client, signer)
            wrong = {**candidate(signer, 102), "account": "bob"}
            with pytest.raises(ContractCallFailed) as failure:
                await caller.call("submit_participant_info", wrong)
            ok = (await caller.call("submit_participant_info", candidate(signer, 103))).ok
            return failure.value.code, ok

    code, ok = run(scenario(), timeout=60)
    assert code == "InvalidArguments"
    assert ok


def test_an_unreachable_ledger_fails_after_bounded_retries() -> None:
    signer = AccountSigner("carol", nacl.signing.SigningKey(os.urandom(32)))

    async def scenario() -> LedgerError:
        async with AsyncLedgerClient(f"http://127.0.0.1:{free_port()}", timeout=2) as client:
            caller = ContractCaller(client, signer, attempts=3, backoff=0.01)
            with pytest.raises(LedgerError) as failure:
                await caller.call("respond", {"request_id": 0, "signature": "00" * 64})
            return failure.value

    error = run(scenario(), timeout=30)
    assert error.code == "LedgerUnavailable"
