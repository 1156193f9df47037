"""Key events (node/key_events.py): which runs start, what is stored, what is voted.

The key protocols are a fake of :class:`KeyProtocols` that hands out the shares of
component_helpers.running() (real scalars and verifying shares); the contract is FakeLedger;
the keystore is real. No mesh, no process.
"""

from __future__ import annotations

import asyncio
from collections.abc import Collection
from pathlib import Path

from component_helpers import (
    ALICE_A,
    BOB,
    CAROL,
    EPOCH,
    FakeLedger,
    key_pair,
    metrics,
    open_keystore,
    running,
)
from node_helpers import run

from quorumkeep.contract.state import (
    Domain,
    Initializing,
    KeyEvent,
    KeyEventId,
    Participants,
    Resharing,
)
from quorumkeep.crypto.group import Element
from quorumkeep.crypto.keys import KeyPackage, PublicKeyPackage
from quorumkeep.node.held_keys import HeldKeys, KeyPair
from quorumkeep.node.key_events import META_KEYGEN, KeyEvents, TaskKey
from quorumkeep.node.keystore import Keystore


class FakeProtocols:
    def __init__(self, *, fail: bool = False, block: bool = False) -> None:
        self.sessions: list[str] = []
        self.absent: list[tuple[int, ...]] = []
        self.fail = fail
        self.block = block

    async def dkg(
        self, *, session_id: str, me: int, participants: list[int], threshold: int, timeout: float
    ) -> KeyPair:
        self.sessions.append(session_id)
        if self.block:
            await asyncio.Event().wait()
        if self.fail:
            raise TimeoutError("participant 3 never answered")
        return key_pair(me, int(session_id.split("-")[1]))

    async def reshare(
        self,
        *,
        session_id: str,
        me: int,
        old: Participants,
        new: Participants,
        old_public: PublicKeyPackage,
        old_key: KeyPackage | None,
        group_public_key: Element,
        timeout: float,
        attempt: int,
        absent: Collection[int] = (),
    ) -> KeyPair | None:
        self.sessions.append(session_id)
        self.absent.append(tuple(absent))
        if self.fail:
            raise TimeoutError("too few dealers")
        if new.get("alice") is None:
            return None  # dealt, leaving the set
        return key_pair(me, int(session_id.split("-")[1]), epoch=EPOCH + 1)


def initializing(*events: KeyEvent) -> Initializing:
    return Initializing(running=running(), generating=list(events))


def generating(domain_id: int, attempt: int = 0, **fields: object) -> KeyEvent:
    return KeyEvent(Domain(domain_id, "Ed25519"), EPOCH, attempt, **fields)  # type: ignore[arg-type]


def component(
    tmp_path: Path, ledger: FakeLedger, protocols: FakeProtocols
) -> tuple[KeyEvents, Keystore, HeldKeys]:
    keystore = open_keystore(tmp_path)
    held = HeldKeys(keystore)
    events = KeyEvents(
        account="alice",
        protocols=protocols,
        held=held,
        keystore=keystore,
        call=ledger.call,
        metrics=metrics(),
        timeout=5.0,
    )
    return events, keystore, held


async def finished(events: KeyEvents) -> None:
    async with asyncio.timeout(10):
        while events.tasks():
            await asyncio.sleep(0.005)


def test_task_keys_are_typed_and_named_after_the_session() -> None:
    key = TaskKey("dkg", KeyEventId(0, 4, 2))
    assert str(key) == "dkg-0-4-2"
    assert key == TaskKey("dkg", KeyEventId(0, 4, 2)) != TaskKey("reshare", KeyEventId(0, 4, 2))


def test_one_dkg_per_domain_not_yet_voted_then_stored_then_vote_pk(tmp_path: Path) -> None:
    ledger, protocols = FakeLedger(), FakeProtocols()
    events, keystore, held = component(tmp_path, ledger, protocols)
    voted = generating(1, votes={"alice": b"\x00" * 32})

    async def main() -> None:
        events.on_initializing(initializing(generating(0), voted), me=1)
        assert events.running() == [TaskKey("dkg", KeyEventId(0, EPOCH, 0))]
        await finished(events)

    run(main())
    assert protocols.sessions == [f"dkg-0-{EPOCH}-0"]
    votes = ledger.called("vote_pk")
    assert [v["key_event_id"] for v in votes] == [{"domain_id": 0, "epoch": EPOCH, "attempt": 0}]
    assert votes[0]["public_key"] == key_pair(1, 0)[1].group_public_key.hex()
    assert keystore.get_metadata(META_KEYGEN.format(domain=0, epoch=EPOCH)) == "0"
    assert held.load(0, EPOCH)[0].identifier == 1


def test_a_stored_attempt_is_voted_without_running_again(tmp_path: Path) -> None:
    ledger, protocols = FakeLedger(), FakeProtocols()
    events, keystore, held = component(tmp_path, ledger, protocols)
    held.store(0, EPOCH, *key_pair(1, 0))
    keystore.set_metadata(META_KEYGEN.format(domain=0, epoch=EPOCH), "0")

    async def main() -> None:
        events.on_initializing(initializing(generating(0)), me=1)
        await finished(events)

    run(main())
    assert protocols.sessions == []
    assert len(ledger.called("vote_pk")) == 1


def test_a_failed_run_votes_to_abort(tmp_path: Path) -> None:
    ledger, protocols = FakeLedger(), FakeProtocols(fail=True)
    events, _keystore, _held = component(tmp_path, ledger, protocols)

    async def main() -> None:
        events.on_initializing(initializing(generating(0)), me=1)
        await finished(events)

    run(main())
    assert ledger.called("vote_abort_key_event") == [
        {"key_event_id": {"domain_id": 0, "epoch": EPOCH, "attempt": 0}}
    ]
    assert ledger.called("vote_pk") == []


def test_a_run_no_longer_wanted_is_cancelled(tmp_path: Path) -> None:
    ledger, protocols = FakeLedger(), FakeProtocols(block=True)
    events, _keystore, _held = component(tmp_path, ledger, protocols)

    async def main() -> None:
        events.on_initializing(initializing(generating(0)), me=1)
        await asyncio.sleep(0)
        first = events.tasks()
        events.on_initializing(initializing(generating(0, attempt=1)), me=1)
        assert events.running() == [TaskKey("dkg", KeyEventId(0, EPOCH, 1))]
        await asyncio.sleep(0)
        assert first[0].cancelled()
        events.cancel_all()
        assert events.running() == []

    run(main())


def resharing(new: Participants) -> Resharing:
    return Resharing(
        previous=running(),
        epoch=EPOCH + 1,
        parameters=new,
        resharing=[KeyEvent(Domain(0, "Ed25519"), EPOCH + 1, 0)],
    )


def test_a_member_of_the_new_set_stores_the_new_share_and_votes_reshared(
    tmp_path: Path,
) -> None:
    ledger, protocols = FakeLedger(), FakeProtocols()
    events, _keystore, held = component(tmp_path, ledger, protocols)
    held.store(0, EPOCH, *key_pair(1, 0))

    async def main() -> None:
        events.on_resharing(resharing(Participants(2, (ALICE_A, BOB, CAROL))), me=1)
        await finished(events)

    run(main())
    assert protocols.sessions == [f"reshare-0-{EPOCH + 1}-0"]
    assert len(ledger.called("vote_reshared")) == 1
    assert held.load(0, EPOCH + 1)[0].identifier == 1


def test_a_holder_leaving_the_set_deals_once_and_does_not_vote(tmp_path: Path) -> None:
    ledger, protocols = FakeLedger(), FakeProtocols()
    events, _keystore, held = component(tmp_path, ledger, protocols)
    held.store(0, EPOCH, *key_pair(1, 0))
    state = resharing(Participants(2, (BOB, CAROL)))

    async def main() -> None:
        events.on_resharing(state, me=1)
        await finished(events)
        events.on_resharing(state, me=1)  # dealt already: not again
        assert events.running() == []

    run(main())
    assert len(protocols.sessions) == 1
    assert ledger.called("vote_reshared") == [] and ledger.called("vote_abort_key_event") == []


def test_marked_departing_holders_are_passed_on_as_absent(tmp_path: Path) -> None:
    """The coordinator names the departing holders the contract marked (attestation); every
    resharing run leaves them out of its session."""
    ledger, protocols = FakeLedger(), FakeProtocols()
    events, _keystore, held = component(tmp_path, ledger, protocols)
    held.store(0, EPOCH, *key_pair(1, 0))

    async def main() -> None:
        events.on_resharing(resharing(Participants(2, (ALICE_A, BOB))), me=1, absent=[3])
        await finished(events)

    run(main())
    assert protocols.absent == [(3,)]
    assert len(ledger.called("vote_reshared")) == 1
