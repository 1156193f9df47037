"""Resharing: vote_new_parameters, vote_reshared, cancellation, ids, candidates."""

from __future__ import annotations

from typing import Any

import pytest
from contract_helpers import Driver, info, node, operator, sign_derived, user

from quorumkeep.contract import (
    AlreadyParticipant,
    DuplicateVote,
    InvalidArguments,
    InvalidKeyEvent,
    InvalidProposal,
    InvalidState,
    InvalidThreshold,
    KeyInUse,
    NotOperator,
    NotParticipant,
    ProtocolStateNotRunning,
    SignerKeyMismatch,
)

ACCOUNTS = ["alice", "bob", "carol", "dave"]


def driver() -> Driver:
    d = Driver(ACCOUNTS, 3)
    d.add_domain()
    return d


def proposal(d: Driver, accounts: list[str], threshold: int) -> dict[str, Any]:
    current = {p["account"]: p for p in d.view("participants")["participants"]}
    return {
        "epoch": d.state["protocol_state"]["next_epoch"],
        "proposal": {
            "participants": [current.get(a, info(a)) for a in accounts],
            "threshold": threshold,
        },
    }


def reshared(d: Driver, key_event_id: dict[str, int]) -> dict[str, Any]:
    """vote_reshared arguments with a sound package for the set being reshared to."""
    return {"key_event_id": key_event_id, "verifying_shares": d.next_shares(0)}


def ids(d: Driver) -> dict[str, int]:
    return {p["account"]: p["participant_id"] for p in d.view("participants")["participants"]}


def test_threshold_of_old_and_every_new_participant_start_the_resharing() -> None:
    d = driver()
    args = proposal(d, [*ACCOUNTS, "erin"], 4)
    for a in ["alice", "bob"]:
        d.call(operator(a), "vote_new_parameters", args)
    r = d.call(operator("erin"), "vote_new_parameters", args)  # the newcomer's own key
    assert r.value == {
        "old_votes": 2,
        "old_required": 3,
        "new_votes": 1,
        "new_required": 1,
        "protocol_state": "Running",
    }
    r = d.call(operator("carol"), "vote_new_parameters", args)
    assert d.contract.protocol_state == "Resharing"
    assert [e.kind for e in r.events] == [
        "new_parameters_voted",
        "protocol_state_changed",
        "resharing_started",
    ]
    started = r.events[2].data
    assert started["epoch"] == 1 and started["previous_epoch"] == 0
    assert started["key_event_ids"] == [{"domain_id": 0, "epoch": 1, "attempt": 0}]
    assert d.state["next_participant_id"] == 6
    view = d.view("participants")
    assert view["epoch"] == 0 and view["next"]["epoch"] == 1


def test_without_the_newcomer_the_resharing_does_not_start() -> None:
    d = driver()
    args = proposal(d, [*ACCOUNTS, "erin"], 4)
    for a in ACCOUNTS:
        d.call(operator(a), "vote_new_parameters", args)
    assert d.contract.protocol_state == "Running"


def test_resharing_completes_when_every_new_participant_confirms_every_domain() -> None:
    d = driver()
    d.add_domain()
    group_keys = d.view("keyset")["domains"]
    d.reshare(["alice", "bob", "carol", "erin", "frank"], 3)
    assert d.contract.protocol_state == "Running"
    state = d.state["protocol_state"]
    assert state["epoch"] == 1 and state["next_epoch"] == 2 and state["threshold"] == 3
    assert ids(d) == {"alice": 1, "bob": 2, "carol": 3, "erin": 5, "frank": 6}
    assert d.view("keyset") == {"epoch": 1, "domains": group_keys}


def test_vote_reshared_events_and_rejections() -> None:
    d = driver()
    args = proposal(d, ["alice", "bob", "carol"], 2)
    for a in ["alice", "bob", "carol"]:
        d.call(operator(a), "vote_new_parameters", args)
    kid = {"domain_id": 0, "epoch": 1, "attempt": 0}
    before = d.state
    with pytest.raises(NotParticipant):  # dave leaves: not in the new set
        d.call(node("dave"), "vote_reshared", reshared(d, kid))
    with pytest.raises(SignerKeyMismatch):
        d.call(node("alice", 1), "vote_reshared", reshared(d, kid))
    with pytest.raises(InvalidKeyEvent):
        d.call(node("alice"), "vote_reshared", reshared(d, dict(kid, epoch=0)))
    assert d.state == before
    d.call(node("alice"), "vote_reshared", reshared(d, kid))
    with pytest.raises(DuplicateVote):
        d.call(node("alice"), "vote_reshared", reshared(d, kid))
    d.call(node("bob"), "vote_reshared", reshared(d, kid))
    r = d.call(node("carol"), "vote_reshared", reshared(d, kid))
    assert r.value == {"status": "completed"}
    assert [e.kind for e in r.events] == [
        "reshared_voted",
        "domain_reshared",
        "resharing_completed",
        "participants_changed",
        "protocol_state_changed",
    ]
    assert ids(d) == {"alice": 1, "bob": 2, "carol": 3}


def test_vote_reshared_outside_resharing_is_invalid_state() -> None:
    d = driver()
    with pytest.raises(InvalidState):
        d.call(
            node("alice"),
            "vote_reshared",
            {
                "key_event_id": {"domain_id": 0, "epoch": 1, "attempt": 0},
                "verifying_shares": d.running_shares(0),
            },
        )


def test_a_failed_resharing_attempt_is_retried_under_a_new_attempt() -> None:
    d = driver()
    args = proposal(d, ACCOUNTS, 3)
    for a in ACCOUNTS[:3]:
        d.call(operator(a), "vote_new_parameters", args)
    kid = {"domain_id": 0, "epoch": 1, "attempt": 0}
    d.call(node("alice"), "vote_reshared", reshared(d, kid))
    d.call(node("dave"), "vote_abort_key_event", {"key_event_id": kid})
    kid1 = dict(kid, attempt=1)
    for a in ACCOUNTS:
        d.call(node(a), "vote_reshared", reshared(d, kid1))
    assert d.contract.protocol_state == "Running"


def test_ids_of_leavers_are_never_reused() -> None:
    d = driver()
    d.reshare(["alice", "bob", "carol"], 2)
    d.reshare(["alice", "bob", "carol", "dave"], 3)  # dave returns
    assert ids(d)["dave"] == 5
    assert d.state["next_participant_id"] == 6


@pytest.mark.parametrize(
    ("accounts", "threshold"),
    [
        (ACCOUNTS, 1),
        (ACCOUNTS, 5),
        (ACCOUNTS, 2),  # below ceil(0.6 * 4) = 3
        ([*ACCOUNTS, "erin"], 2),  # below ceil(0.6 * 5) = 3
    ],
)
def test_threshold_rules(accounts: list[str], threshold: int) -> None:
    d = driver()
    before = d.state
    with pytest.raises(InvalidThreshold):
        d.call(operator("alice"), "vote_new_parameters", proposal(d, accounts, threshold))
    assert d.state == before


def test_too_few_old_participants_staying_is_invalid() -> None:
    d = driver()  # old threshold 3: keeping only two old members would lose the key
    with pytest.raises(InvalidProposal, match="stay"):
        d.call(operator("alice"), "vote_new_parameters", proposal(d, ["alice", "bob", "erin"], 2))


def test_proposal_rejections() -> None:
    d = driver()
    args = proposal(d, ACCOUNTS, 3)
    before = d.state
    with pytest.raises(InvalidProposal, match="epoch"):
        d.call(operator("alice"), "vote_new_parameters", dict(args, epoch=2))
    changed = proposal(d, ACCOUNTS, 3)
    changed["proposal"]["participants"][1]["url"] = "10.0.0.1:1"
    with pytest.raises(InvalidProposal, match="migration"):
        d.call(operator("alice"), "vote_new_parameters", changed)
    wrong_id = proposal(d, ACCOUNTS, 3)
    wrong_id["proposal"]["participants"][1]["participant_id"] = 7
    with pytest.raises(InvalidProposal):
        d.call(operator("alice"), "vote_new_parameters", wrong_id)
    newcomer_id = proposal(d, [*ACCOUNTS, "erin"], 3)
    newcomer_id["proposal"]["participants"][4]["participant_id"] = 1
    with pytest.raises(InvalidProposal):
        d.call(operator("alice"), "vote_new_parameters", newcomer_id)
    clash = proposal(d, [*ACCOUNTS, "erin"], 3)
    clash["proposal"]["participants"][4]["tls_public_key"] = info("alice")["tls_public_key"]
    with pytest.raises(InvalidProposal):
        d.call(operator("alice"), "vote_new_parameters", clash)
    dup = proposal(d, [*ACCOUNTS, "alice"], 3)
    with pytest.raises(InvalidProposal):
        d.call(operator("alice"), "vote_new_parameters", dup)
    with pytest.raises(NotParticipant):
        d.call(operator("mallory"), "vote_new_parameters", args)
    with pytest.raises(NotOperator):
        d.call(node("alice"), "vote_new_parameters", args)
    with pytest.raises(InvalidArguments):
        d.call(operator("alice"), "vote_new_parameters", {"epoch": 1})
    assert d.state == before
    d.call(operator("alice"), "vote_new_parameters", args)
    with pytest.raises(DuplicateVote):
        d.call(operator("alice"), "vote_new_parameters", args)


def test_newcomer_ids_may_be_given_as_assigned() -> None:
    d = driver()
    args = proposal(d, [*ACCOUNTS, "erin"], 3)
    args["proposal"]["participants"][4]["participant_id"] = 5
    d.call(operator("alice"), "vote_new_parameters", args)


def test_vote_new_parameters_outside_running() -> None:
    d = driver()
    args = proposal(d, ACCOUNTS, 3)
    for a in ACCOUNTS[:3]:
        d.call(operator(a), "vote_new_parameters", args)
    with pytest.raises(ProtocolStateNotRunning):
        d.call(operator("alice"), "vote_new_parameters", args)


def test_cancel_resharing_returns_to_the_previous_running_state() -> None:
    d = driver()
    running_before = d.view("participants")
    args = proposal(d, [*ACCOUNTS, "erin"], 3)
    for a in [*ACCOUNTS, "erin"]:
        d.call(operator(a), "vote_new_parameters", args)
    assert d.contract.protocol_state == "Resharing"
    with pytest.raises(NotParticipant):  # a newcomer has no say in cancelling
        d.call(operator("erin"), "vote_cancel_resharing", {})
    with pytest.raises(NotOperator):
        d.call(node("alice"), "vote_cancel_resharing", {})
    for a in ["alice", "bob"]:
        d.call(operator(a), "vote_cancel_resharing", {})
    with pytest.raises(DuplicateVote):
        d.call(operator("bob"), "vote_cancel_resharing", {})
    r = d.call(operator("carol"), "vote_cancel_resharing", {})
    assert [e.kind for e in r.events] == [
        "cancel_resharing_voted",
        "resharing_cancelled",
        "protocol_state_changed",
    ]
    assert d.view("participants") == running_before
    state = d.state
    assert state["protocol_state"]["epoch"] == 0
    assert state["protocol_state"]["next_epoch"] == 2  # epoch 1 is spent
    assert state["next_participant_id"] == 6  # erin's id 5 is spent
    d.reshare([*ACCOUNTS, "erin"], 3)
    assert d.state["protocol_state"]["epoch"] == 2 and ids(d)["erin"] == 6


def test_cancel_resharing_outside_resharing_is_invalid_state() -> None:
    with pytest.raises(InvalidState):
        driver().call(operator("alice"), "vote_cancel_resharing", {})


def test_resharing_without_domains_completes_at_once() -> None:
    d = Driver(["alice", "bob", "carol"], 2)
    args = proposal(d, ["alice", "bob", "carol"], 2)
    d.call(operator("alice"), "vote_new_parameters", args)
    r = d.call(operator("bob"), "vote_new_parameters", args)
    assert [e.kind for e in r.events][-2:] == ["participants_changed", "protocol_state_changed"]
    assert d.contract.protocol_state == "Running"
    assert d.state["protocol_state"]["epoch"] == 1


def test_requests_during_resharing_are_served_by_the_previous_participants() -> None:
    d = driver()
    args = proposal(d, ["alice", "bob", "carol", "erin"], 3)
    for a in ["alice", "bob", "carol", "erin"]:
        d.call(operator(a), "vote_new_parameters", args)
    payload = bytes(range(40))
    r = d.call(user("user1"), "sign", {"payload": payload.hex(), "path": "x", "domain_id": 0})
    sig = sign_derived(0, "user1", "x", payload).hex()
    with pytest.raises(NotParticipant):
        d.call(node("erin"), "respond", {"request_id": r.value["request_id"], "signature": sig})
    d.call(node("dave"), "respond", {"request_id": r.value["request_id"], "signature": sig})


def test_votes_survive_a_migration_of_an_existing_participant() -> None:
    d = driver()
    args = proposal(d, ACCOUNTS, 3)
    d.call(operator("alice"), "vote_new_parameters", args)
    d.call(operator("bob"), "vote_new_parameters", args)
    d.call(operator("carol"), "start_node_migration", d.migrate("carol"))
    keyset = d.view("keyset")
    d.call(d.node("carol"), "conclude_node_migration", {"keyset": keyset})
    # carol's info changed; her vote with the new info is the same proposal
    d.call(operator("carol"), "vote_new_parameters", proposal(d, ACCOUNTS, 3))
    assert d.contract.protocol_state == "Resharing"


def test_candidates_submit_their_info_and_leave_the_list_on_joining() -> None:
    d = driver()
    erin = info("erin")
    with pytest.raises(AlreadyParticipant):
        d.call(node("alice"), "submit_participant_info", info("alice"))
    with pytest.raises(SignerKeyMismatch):
        d.call(node("erin", 1), "submit_participant_info", erin)
    with pytest.raises(InvalidArguments):
        d.call(node("erin"), "submit_participant_info", info("frank"))
    with pytest.raises(InvalidArguments):
        d.call(node("erin"), "submit_participant_info", dict(erin, participant_id=5))
    with pytest.raises(KeyInUse):
        d.call(
            node("erin"),
            "submit_participant_info",
            dict(erin, tls_public_key=info("bob")["tls_public_key"]),
        )
    r = d.call(node("erin"), "submit_participant_info", erin)
    assert r.events[0].data == {"account": "erin", "participant": erin, "replaced": False}
    assert d.view("candidates") == {"erin": erin}
    d.reshare([*ACCOUNTS, "erin"], 3)
    assert d.view("candidates") == {}


def test_a_participant_being_removed_cannot_abort_the_resharing() -> None:
    d = driver()
    args = proposal(d, ACCOUNTS[:3], 2)  # dave is being removed
    for a in ACCOUNTS[:3]:
        d.call(operator(a), "vote_new_parameters", args)
    kid = {"domain_id": 0, "epoch": 1, "attempt": 0}
    before = d.state
    with pytest.raises(NotParticipant):
        d.call(node("dave"), "vote_abort_key_event", {"key_event_id": kid})
    assert d.state == before
    for a in ACCOUNTS[:3]:
        d.call(node(a), "vote_reshared", reshared(d, kid))
    assert d.contract.protocol_state == "Running"
    assert "dave" not in ids(d)


def test_a_member_of_the_new_set_may_abort_an_attempt_of_the_resharing() -> None:
    d = driver()
    args = proposal(d, ACCOUNTS[:3], 2)
    for a in ACCOUNTS[:3]:
        d.call(operator(a), "vote_new_parameters", args)
    kid = {"domain_id": 0, "epoch": 1, "attempt": 0}
    r = d.call(node("carol"), "vote_abort_key_event", {"key_event_id": kid})
    assert r.value == {"next_key_event_id": dict(kid, attempt=1)}
