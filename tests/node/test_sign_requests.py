"""Sign-request leadership (node/sign_requests.py): the pending set, leading, is_pending.

In-memory: the contract is component_helpers.FakeLedger, the signing service a fake that
returns a fixed signature or fails as told. No mesh, no process.
"""

from __future__ import annotations

import asyncio
from typing import Any

from component_helpers import FakeLedger, contract, metrics, refused, running, sign_request
from node_helpers import run

from quorumkeep.ledger.client import LedgerEvent
from quorumkeep.node.decisions import sign_leader
from quorumkeep.node.protocols.sign import SignJob
from quorumkeep.node.sign_requests import SignRequests

PARTICIPANTS = [1, 2, 3]
SIGNATURE = bytes(range(64))


class FakeSigner:
    def __init__(self, *failures: Exception) -> None:
        self.jobs: list[SignJob] = []
        self.failures = list(failures)

    async def lead(self, job: SignJob) -> bytes:
        self.jobs.append(job)
        await asyncio.sleep(0)
        if self.failures:
            raise self.failures.pop(0)
        return SIGNATURE


def requests(ledger: FakeLedger, signer: FakeSigner | None = None) -> SignRequests:
    component = SignRequests(
        call=ledger.call,
        view=ledger.view,
        connected=lambda: frozenset(PARTICIPANTS),
        metrics=metrics(),
        takeover_timeout=0.01,
        uniform=lambda: 0.0,
    )
    component.leader = signer
    return component


def event(kind: str, request_id: Any, height: int = 20, **data: Any) -> LedgerEvent:
    body: dict[str, Any] = {"request_id": request_id}
    if kind == "sign_requested" and isinstance(request_id, int):
        body.update(sign_request(request_id).to_json())
    body.update(data)
    return LedgerEvent(height, 0, None, kind, body)


def matches(component: SignRequests, request_id: int, payload: bytes = b"\x01" * 32) -> bool:
    return run(component.is_pending(request_id, payload, "a/b", 0, "user"))


def first_in_line(request_id: int) -> int:
    return sign_leader(request_id, PARTICIPANTS, 0)


# --- the pending set -----------------------------------------------------------------------


def test_only_sign_events_are_taken() -> None:
    component = requests(FakeLedger())
    assert not component.note(LedgerEvent(1, 0, None, "vote_pk", {}))
    assert component.note(event("sign_requested", 0))


def test_events_apply_to_the_last_state_and_old_ids_never_come_back() -> None:
    component = requests(FakeLedger())
    component.on_state(contract(next_request_id=5, requests={4: sign_request(4)}))
    for item in (
        event("sign_requested", 3),  # answered already: below next_request_id
        event("sign_requested", 5),
        event("sign_requested", 6),
        event("sign_responded", 4),
        event("sign_failed", 6),
    ):
        component.note(item)
    assert component.apply_events()
    assert component.status() == {"pending_requests": 1}
    assert matches(component, 5)
    assert not matches(component, 3) and not matches(component, 4)


def test_an_event_that_does_not_parse_asks_for_a_full_read_and_changes_nothing() -> None:
    component = requests(FakeLedger())
    component.on_state(contract(next_request_id=5))
    component.note(event("sign_requested", 5))
    component.note(event("sign_requested", 6, payload="not hex"))
    assert not component.apply_events()
    assert component.pending_count == 0
    component.drop_events()
    component.on_state(contract(next_request_id=7, requests={5: sign_request(5)}))
    assert component.pending_count == 1


def test_is_pending_compares_every_field() -> None:
    component = requests(FakeLedger())
    component.on_state(contract(next_request_id=1, requests={0: sign_request(0)}))
    assert matches(component, 0)
    assert not matches(component, 0, payload=b"\x02" * 32)
    assert not run(component.is_pending(0, b"\x01" * 32, "a/c", 0, "user"))
    assert not run(component.is_pending(0, b"\x01" * 32, "a/b", 1, "user"))
    assert not run(component.is_pending(0, b"\x01" * 32, "a/b", 0, "mallory"))


def test_a_request_announced_on_the_stream_is_pending_before_the_batch_is_applied() -> None:
    ledger = FakeLedger()
    component = requests(ledger)
    component.on_state(contract(next_request_id=3))
    component.note(event("sign_requested", 3))
    assert matches(component, 3)
    assert ledger.reads == 0


def test_a_member_waits_briefly_for_the_announcement_then_asks_the_ledger() -> None:
    ledger = FakeLedger()
    component = requests(ledger)
    component.on_state(contract(next_request_id=3))

    async def announced_later() -> bool:
        asking = asyncio.create_task(component.is_pending(3, b"\x01" * 32, "a/b", 0, "user"))
        await asyncio.sleep(0.01)
        component.note(event("sign_requested", 3))
        return await asking

    assert run(announced_later())
    ledger.views[("request", repr([("request_id", 4)]))] = sign_request(4).to_json()
    assert matches(component, 4)  # never announced: the ledger's view answers
    assert not matches(component, 5)  # neither announced nor known to the ledger


def test_a_request_below_the_next_id_and_not_pending_is_not_pending() -> None:
    ledger = FakeLedger()
    component = requests(ledger)
    component.on_state(contract(next_request_id=9))
    assert not matches(component, 2)


# --- leading -------------------------------------------------------------------------------


def lead_once(component: SignRequests, me: int, settle: float = 0.2) -> None:
    async def main() -> None:
        component.serve(running(), me, lambda domain, epoch: True)
        await asyncio.sleep(settle)
        component.cancel_all()

    run(main())


def test_the_first_leader_in_line_signs_and_responds() -> None:
    ledger = FakeLedger()
    signer = FakeSigner()
    component = requests(ledger, signer)
    component.on_state(contract(next_request_id=1, requests={0: sign_request(0)}))
    lead_once(component, first_in_line(0))
    assert [job.request_id for job in signer.jobs] == [0]
    assert ledger.called("respond") == [{"request_id": 0, "signature": SIGNATURE.hex()}]
    assert component.pending_count == 0


def test_a_failed_attempt_is_retried_with_backoff() -> None:
    ledger = FakeLedger()
    signer = FakeSigner(RuntimeError("no presignature"), RuntimeError("peer gone"))
    component = requests(ledger, signer)
    component.on_state(contract(next_request_id=1, requests={0: sign_request(0)}))
    lead_once(component, first_in_line(0), settle=0.5)
    assert len(signer.jobs) == 3
    assert len(ledger.called("respond")) == 1


def test_a_request_answered_by_another_leader_is_not_led_again() -> None:
    ledger = FakeLedger()
    ledger.fail("respond", refused("RequestNotFound"))
    signer = FakeSigner()
    component = requests(ledger, signer)
    state = contract(next_request_id=1, requests={0: sign_request(0)})
    component.on_state(state)
    lead_once(component, first_in_line(0))
    assert len(ledger.called("respond")) == 1
    lead_once(component, first_in_line(0))  # our last state still lists it: not led again
    assert len(signer.jobs) == 1


def test_no_leading_without_the_key_in_force_or_outside_the_serving_set() -> None:
    signer = FakeSigner()
    component = requests(FakeLedger(), signer)
    component.on_state(contract(next_request_id=1, requests={0: sign_request(0)}))

    async def main() -> None:
        component.serve(running(), first_in_line(0), lambda domain, epoch: False)
        component.serve(running(), 7, lambda domain, epoch: True)  # a newcomer
        await asyncio.sleep(0.1)

    run(main())
    assert signer.jobs == [] and component.tasks() == []


def test_a_request_leaving_the_pending_set_cancels_its_leader() -> None:
    signer = FakeSigner()
    component = requests(FakeLedger(), signer)
    component.on_state(contract(next_request_id=1, requests={0: sign_request(0)}))
    later = next(p for p in PARTICIPANTS if p != first_in_line(0))

    async def main() -> None:
        component.serve(running(), later, lambda domain, epoch: True)
        assert len(component.tasks()) == 1
        component.note(event("sign_responded", 0))
        assert component.apply_events()
        component.serve(running(), later, lambda domain, epoch: True)
        await asyncio.sleep(0)
        assert component.tasks() == []

    run(main())
    assert signer.jobs == []
