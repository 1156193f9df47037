"""Domains and key generation: vote_add_domains, vote_pk, aborts and cancellation."""

from __future__ import annotations

from typing import Any

import pytest
from contract_helpers import Driver, domain_secret, node, operator, point, user, verifying_shares

from quorumkeep.contract import (
    DomainNotFound,
    DuplicateVote,
    InvalidArguments,
    InvalidKeyEvent,
    InvalidProposal,
    InvalidState,
    NotOperator,
    NotParticipant,
    ProtocolStateNotRunning,
    SignerKeyMismatch,
)
from quorumkeep.crypto.group import base_mul, scalar_from_int

ACCOUNTS = ["alice", "bob", "carol"]
ED25519 = {"domains": [{"scheme": "Ed25519"}]}


def start_keygen(d: Driver, domains: dict[str, Any] = ED25519) -> None:
    for a in ACCOUNTS:
        d.call(operator(a), "vote_add_domains", domains)


def kid(domain_id: int = 0, epoch: int = 0, attempt: int = 0) -> dict[str, int]:
    return {"domain_id": domain_id, "epoch": epoch, "attempt": attempt}


def pk(domain_id: int = 0) -> str:
    return base_mul(domain_secret(domain_id)).hex()


def shares(domain_id: int = 0, salt: int = 0) -> dict[str, str]:
    """A sound package of the domain's test key for alice, bob, carol (ids 1..3), t = 2."""
    return verifying_shares(domain_secret(domain_id), [1, 2, 3], 2, salt)


def vote(
    key_event_id: dict[str, int] | None = None,
    public_key: str | None = None,
    verifying_shares: dict[str, str] | None = None,
) -> dict[str, Any]:
    """vote_pk arguments; by default domain 0's sound package in attempt 0."""
    key_event_id = key_event_id or kid()
    domain_id = key_event_id["domain_id"]
    return {
        "key_event_id": key_event_id,
        "public_key": public_key or pk(domain_id),
        "verifying_shares": verifying_shares or shares(domain_id),
    }


def test_every_participant_must_vote_the_same_domains() -> None:
    d = Driver(ACCOUNTS, 2)
    r = d.call(operator("alice"), "vote_add_domains", ED25519)
    assert r.value == {"votes": 1, "required": 3, "protocol_state": "Running"}
    d.call(operator("bob"), "vote_add_domains", {"domains": [{"scheme": "Ed25519"}] * 2})
    r = d.call(operator("carol"), "vote_add_domains", ED25519)
    assert r.value["votes"] == 2 and d.contract.protocol_state == "Running"
    # bob changes his vote to the list the others voted for
    r = d.call(operator("bob"), "vote_add_domains", ED25519)
    assert d.contract.protocol_state == "Initializing"
    kinds = [e.kind for e in r.events]
    assert kinds == ["add_domains_voted", "protocol_state_changed", "domains_added"]
    assert r.events[2].data["key_event_ids"] == [kid()]
    state = d.state
    assert state["next_domain_id"] == 1
    assert state["protocol_state"]["running"]["add_domains_votes"] == {}


def test_add_domains_is_running_only() -> None:
    d = Driver(ACCOUNTS, 2)
    start_keygen(d)
    with pytest.raises(ProtocolStateNotRunning):
        d.call(operator("alice"), "vote_add_domains", ED25519)


def test_add_domains_rejections() -> None:
    d = Driver(ACCOUNTS, 2)
    before = d.state
    with pytest.raises(NotParticipant):
        d.call(operator("mallory"), "vote_add_domains", ED25519)
    with pytest.raises(NotOperator):
        d.call(node("alice"), "vote_add_domains", ED25519)
    with pytest.raises(InvalidProposal):
        d.call(operator("alice"), "vote_add_domains", {"domains": [{"scheme": "Secp256k1"}]})
    with pytest.raises(InvalidProposal):
        d.call(
            operator("alice"),
            "vote_add_domains",
            {"domains": [{"scheme": "Ed25519", "domain_id": 3}]},
        )
    with pytest.raises(InvalidArguments):
        d.call(operator("alice"), "vote_add_domains", {"domains": []})
    with pytest.raises(InvalidArguments):
        d.call(operator("alice"), "vote_add_domains", {"domains": [{"scheme": "Ed25519", "x": 1}]})
    assert d.state == before
    d.call(
        operator("alice"), "vote_add_domains", {"domains": [{"scheme": "Ed25519", "domain_id": 0}]}
    )
    with pytest.raises(DuplicateVote):
        d.call(operator("alice"), "vote_add_domains", ED25519)  # same proposal, id implicit


def test_keys_complete_when_all_vote_the_same_key() -> None:
    d = Driver(ACCOUNTS, 2)
    start_keygen(d, {"domains": [{"scheme": "Ed25519"}, {"scheme": "Ed25519"}]})
    for a in ACCOUNTS[:2]:
        assert d.call(node(a), "vote_pk", vote(kid(0))).value == {"status": "voted"}
    r = d.call(node("carol"), "vote_pk", vote(kid(0)))
    assert r.value == {"status": "generated"}
    assert [e.kind for e in r.events] == ["pk_voted", "key_generated"]
    assert d.contract.protocol_state == "Initializing"
    for a in ACCOUNTS:
        r = d.call(node(a), "vote_pk", vote(kid(1)))
    assert [e.kind for e in r.events] == ["pk_voted", "key_generated", "protocol_state_changed"]
    assert d.contract.protocol_state == "Running"
    keyset = d.view("keyset")
    assert keyset == {
        "epoch": 0,
        "domains": [
            {"domain_id": 0, "scheme": "Ed25519", "public_key": pk(0)},
            {"domain_id": 1, "scheme": "Ed25519", "public_key": pk(1)},
        ],
    }


def test_vote_pk_outside_initializing_is_invalid_state() -> None:
    d = Driver(ACCOUNTS, 2)
    with pytest.raises(InvalidState):
        d.call(node("alice"), "vote_pk", vote())


def test_vote_pk_rejections() -> None:
    d = Driver(ACCOUNTS, 2)
    start_keygen(d)
    before = d.state
    with pytest.raises(NotParticipant):
        d.call(node("mallory"), "vote_pk", vote())
    with pytest.raises(SignerKeyMismatch):
        d.call(node("alice", generation=5), "vote_pk", vote())
    for stale in (kid(attempt=1), kid(epoch=1), kid(domain_id=7)):
        with pytest.raises(InvalidKeyEvent):
            d.call(node("alice"), "vote_pk", vote(stale))
    with pytest.raises(InvalidArguments):
        d.call(node("alice"), "vote_pk", vote(public_key="01" + "00" * 31))
    assert d.state == before
    # the operator's full-access key may vote for its node
    d.call(operator("alice"), "vote_pk", vote())
    with pytest.raises(DuplicateVote):
        d.call(node("alice"), "vote_pk", vote())


def test_conflicting_keys_abort_the_attempt() -> None:
    d = Driver(ACCOUNTS, 2)
    start_keygen(d)
    d.call(node("alice"), "vote_pk", vote())
    other = verifying_shares(scalar_from_int(5), [1, 2, 3], 2)  # a sound package of 5·G
    r = d.call(node("bob"), "vote_pk", vote(public_key=point(5).hex(), verifying_shares=other))
    assert r.value == {"status": "aborted", "next_key_event_id": kid(attempt=1)}
    assert [e.kind for e in r.events] == ["pk_voted", "key_event_aborted"]
    event = d.state["protocol_state"]["generating"][0]
    assert event["attempt"] == 1 and event["votes"] == {}
    with pytest.raises(InvalidKeyEvent):
        d.call(node("carol"), "vote_pk", vote())
    for a in ACCOUNTS:
        d.call(node(a), "vote_pk", vote(kid(attempt=1)))
    assert d.contract.protocol_state == "Running"


def test_a_participant_may_abort_the_current_attempt() -> None:
    d = Driver(ACCOUNTS, 2)
    start_keygen(d)
    d.call(node("alice"), "vote_pk", vote())
    with pytest.raises(NotParticipant):
        d.call(node("mallory"), "vote_abort_key_event", {"key_event_id": kid()})
    with pytest.raises(SignerKeyMismatch):
        d.call(node("bob", 3), "vote_abort_key_event", {"key_event_id": kid()})
    r = d.call(node("bob"), "vote_abort_key_event", {"key_event_id": kid()})
    assert r.value == {"next_key_event_id": kid(attempt=1)}
    assert r.events[0].data["reason"] == "aborted by bob"
    with pytest.raises(InvalidKeyEvent):
        d.call(node("bob"), "vote_abort_key_event", {"key_event_id": kid()})


def test_abort_in_running_is_invalid_state() -> None:
    d = Driver(ACCOUNTS, 2)
    with pytest.raises(InvalidState):
        d.call(node("bob"), "vote_abort_key_event", {"key_event_id": kid()})


def test_cancel_keygen_needs_a_threshold_and_keeps_finished_domains() -> None:
    d = Driver(ACCOUNTS, 2)
    start_keygen(d, {"domains": [{"scheme": "Ed25519"}, {"scheme": "Ed25519"}]})
    for a in ACCOUNTS:
        d.call(node(a), "vote_pk", vote(kid(0)))
    with pytest.raises(NotOperator):
        d.call(node("alice"), "vote_cancel_keygen", {})
    with pytest.raises(NotParticipant):
        d.call(operator("mallory"), "vote_cancel_keygen", {})
    r = d.call(operator("alice"), "vote_cancel_keygen", {})
    assert r.value == {"votes": 1, "required": 2, "protocol_state": "Initializing"}
    with pytest.raises(DuplicateVote):
        d.call(operator("alice"), "vote_cancel_keygen", {})
    r = d.call(operator("bob"), "vote_cancel_keygen", {})
    assert [e.kind for e in r.events] == [
        "cancel_keygen_voted",
        "keygen_cancelled",
        "protocol_state_changed",
    ]
    assert r.events[1].data == {"epoch": 0, "cancelled_domain_ids": [1], "kept_domain_ids": [0]}
    assert [x["domain_id"] for x in d.view("keyset")["domains"]] == [0]
    # the cancelled domain's id is never handed out again
    assert d.add_domain() == 2


def test_cancel_keygen_outside_initializing_is_invalid_state() -> None:
    d = Driver(ACCOUNTS, 2)
    with pytest.raises(InvalidState):
        d.call(operator("alice"), "vote_cancel_keygen", {})


def test_existing_domains_keep_signing_during_keygen() -> None:
    d = Driver(ACCOUNTS, 2)
    d.add_domain()
    start_keygen(d)
    r = d.call(user("user1"), "sign", {"payload": "00" * 32, "path": "a", "domain_id": 0})
    assert r.value["request_id"] == 0
    with pytest.raises(DomainNotFound, match="no key yet"):
        d.call(user("user1"), "sign", {"payload": "00" * 32, "path": "a", "domain_id": 1})
