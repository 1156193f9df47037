"""Backup before use: the per-domain backup policy, `confirm_backup` and `KeyNotBackedUp`."""

from __future__ import annotations

import json
from typing import Any

import pytest
from contract_helpers import (
    HEIGHT,
    Driver,
    backup,
    backup_key,
    backup_registration,
    node,
    operator,
    sign_derived,
    user,
)
from hypothesis import given, settings
from hypothesis import strategies as st

from quorumkeep.contract import (
    Contract,
    DomainNotFound,
    DuplicateVote,
    InvalidArguments,
    InvalidProposal,
    KeyNotBackedUp,
    KeysetMismatch,
    NotInitialized,
    NotParticipant,
    SignerKeyMismatch,
)
from quorumkeep.contract.context import CallContext

ACCOUNTS = ["alice", "bob", "carol"]
SIGN = {"payload": "11" * 32, "path": "m/0", "domain_id": 0}


def gated(backups_required: int | None = None, accounts: list[str] = ACCOUNTS) -> Driver:
    """Domain 0 generated with the policy, every backup service registered, none confirmed."""
    d = Driver(accounts, 2)
    d.add_domain(backups_required, confirm=False)
    for a in accounts:
        d.register_backup(a)
    return d


def confirm(d: Driver, account: str, height: int = HEIGHT, **override: Any) -> Any:
    status = d.view("backup_status")
    args = {"epoch": status["epoch"], "keyset_hash": status["keyset_hash"], **override}
    return d.call(backup(account, height), "confirm_backup", args)


def domain_status(d: Driver, domain_id: int = 0) -> dict[str, Any]:
    return next(x for x in d.view("backup_status")["domains"] if x["domain_id"] == domain_id)


def test_a_new_domain_needs_every_operators_backup_by_default() -> None:
    d = gated()
    assert domain_status(d) == {
        "domain_id": 0,
        "policy": "all",
        "required": 3,
        "confirmed": [],
        "missing": ACCOUNTS,
        "signing_allowed": False,
        "wait": {
            "epoch": 0,
            "since_height": HEIGHT,
            "since_ms": HEIGHT * 1000,
            "opened_height": None,
            "opened_ms": None,
            "waited_ms": None,
        },
    }
    for i, a in enumerate(ACCOUNTS):
        with pytest.raises(KeyNotBackedUp) as refused:
            d.call(user("u1"), "sign", SIGN)
        assert f"{i} of 3" in refused.value.message
        assert ", ".join(ACCOUNTS[i:]) in refused.value.message
        r = confirm(d, a)
        assert r.events[0].kind == "backup_confirmed"
        assert r.events[0].data["account"] == a and r.events[0].data["domain_ids"] == [0]
    assert [e.kind for e in r.events] == ["backup_confirmed", "backup_policy_met"]
    assert r.events[1].data == {"domain_id": 0, "epoch": 0, "confirmed": ACCOUNTS, "required": 3}
    assert r.value == {"epoch": 0, "domains_opened": [0]}
    assert domain_status(d)["signing_allowed"] and domain_status(d)["missing"] == []
    d.call(user("u1"), "sign", SIGN)


def test_the_vote_creating_a_domain_may_require_fewer_backups() -> None:
    d = gated(2)
    assert domain_status(d)["policy"] == 2 and domain_status(d)["required"] == 2
    confirm(d, "carol")
    with pytest.raises(KeyNotBackedUp):
        d.call(user("u1"), "sign", SIGN)
    confirm(d, "alice")
    d.call(user("u1"), "sign", SIGN)
    assert domain_status(d)["missing"] == ["bob"]


def test_a_domain_voted_with_zero_required_backups_signs_at_once() -> None:
    d = Driver(ACCOUNTS, 2)
    d.add_domain(0, confirm=False)
    assert domain_status(d)["signing_allowed"]
    d.call(user("u1"), "sign", SIGN)


def test_votes_with_different_policies_are_different_proposals() -> None:
    d = Driver(ACCOUNTS, 2)
    d.call(operator("alice"), "vote_add_domains", {"domains": [{"scheme": "Ed25519"}]})
    d.call(
        operator("bob"),
        "vote_add_domains",
        {"domains": [{"scheme": "Ed25519", "backups_required": 1}]},
    )
    r = d.call(operator("carol"), "vote_add_domains", {"domains": [{"scheme": "Ed25519"}]})
    assert r.value["votes"] == 2 and d.contract.protocol_state == "Running"
    r = d.call(operator("bob"), "vote_add_domains", {"domains": [{"scheme": "Ed25519"}]})
    assert d.contract.protocol_state == "Initializing"


def test_the_policy_is_in_the_vote_events_and_the_state() -> None:
    d = Driver(ACCOUNTS, 2)
    domains = {"domains": [{"scheme": "Ed25519", "backups_required": 1}]}
    r = d.call(operator("alice"), "vote_add_domains", domains)
    assert r.events[0].data["domains"] == [
        {"domain_id": 0, "scheme": "Ed25519", "backups_required": 1}
    ]
    assert d.state["protocol_state"]["add_domains_votes"]["alice"][0]["backups_required"] == 1
    assert Contract.from_json(d.state).to_json() == d.state
    d.call(operator("bob"), "vote_add_domains", domains)
    r = d.call(operator("carol"), "vote_add_domains", domains)
    added = next(e for e in r.events if e.kind == "domains_added")
    assert added.data["domains"] == [{"domain_id": 0, "scheme": "Ed25519", "backups_required": 1}]
    assert d.state["backup_gate"] == {"policies": {"0": 1}, "confirmations": {}}


@pytest.mark.parametrize(
    ("value", "error"),
    [(4, InvalidProposal), (-1, InvalidArguments), ("all", InvalidArguments),
     (True, InvalidArguments), (257, InvalidArguments)],
)  # fmt: skip
def test_a_policy_beyond_the_participants_or_malformed_is_refused(value: Any, error: type) -> None:
    d = Driver(ACCOUNTS, 2)
    before = d.state
    with pytest.raises(error):
        d.call(
            operator("alice"),
            "vote_add_domains",
            {"domains": [{"scheme": "Ed25519", "backups_required": value}]},
        )
    assert d.state == before


def test_a_state_before_any_key_keeps_its_bytes() -> None:
    d = Driver(ACCOUNTS, 2)
    assert "backup_gate" not in d.state  # no policy, confirmation or key to wait for
    d.add_domain(confirm=False)
    assert d.state["backup_gate"] == {
        "policies": {},
        "confirmations": {},
        "waits": {"0": {"epoch": 0, "since_height": HEIGHT, "since_ms": HEIGHT * 1000,
                        "opened_height": None, "opened_ms": None}},
    }  # fmt: skip
    d.register_backup("alice")
    confirm(d, "alice")
    state = d.state
    assert set(state["backup_gate"]["confirmations"]) == {"alice"}
    assert Contract.from_json(state).to_json() == state


# --- confirm_backup refusals ---------------------------------------------------------------


def _refusals(d: Driver) -> list[tuple[CallContext, dict[str, Any], type]]:
    status = d.view("backup_status")
    good = {"epoch": status["epoch"], "keyset_hash": status["keyset_hash"]}
    return [
        # not a participant (even with a key that would be its backup service's)
        (backup("mallory"), good, NotParticipant),
        # not the operator's backup service: the node's key, a full-access key, another
        # account's backup key, a key of an earlier registration
        (node("alice"), good, SignerKeyMismatch),
        (operator("alice"), good, SignerKeyMismatch),
        (CallContext("alice", backup_key("bob"), False, 10, 10_000), good, SignerKeyMismatch),
        (backup("alice", generation=1), good, SignerKeyMismatch),
        # the wrong epoch or keyset hash
        (backup("alice"), {**good, "epoch": 1}, KeysetMismatch),
        (backup("alice"), {**good, "keyset_hash": "00" * 32}, KeysetMismatch),
        # malformed
        (backup("alice"), {"epoch": 0}, InvalidArguments),
        (backup("alice"), {**good, "keyset_hash": "ab"}, InvalidArguments),
        (backup("alice"), {**good, "epoch": "0"}, InvalidArguments),
        (backup("alice"), {**good, "extra": 1}, InvalidArguments),
    ]


@pytest.mark.parametrize("case", range(11))
def test_confirm_backup_refusals_change_nothing(case: int) -> None:
    d = gated()
    ctx, args, error = _refusals(d)[case]
    before = d.state
    with pytest.raises(error):
        d.call(ctx, "confirm_backup", args)
    assert d.state == before


def test_confirm_backup_needs_a_registered_backup_service() -> None:
    d = Driver(ACCOUNTS, 2)
    d.add_domain(confirm=False)
    with pytest.raises(SignerKeyMismatch, match="no registered backup service"):
        confirm(d, "alice")


def test_confirm_backup_twice_is_a_duplicate() -> None:
    d = gated()
    confirm(d, "alice")
    before = d.state
    with pytest.raises(DuplicateVote):
        confirm(d, "alice")
    assert d.state == before


def test_confirm_backup_without_a_key_is_domain_not_found_and_before_init_not_initialized() -> None:
    d = Driver(ACCOUNTS, 2)
    d.register_backup("alice")
    with pytest.raises(DomainNotFound):
        confirm(d, "alice")
    with pytest.raises(NotInitialized):
        Contract().call(backup("alice"), "confirm_backup", {"epoch": 0, "keyset_hash": "00" * 32})
    with pytest.raises(NotInitialized):
        Contract().view("backup_status", {})


def test_a_new_backup_service_must_confirm_again() -> None:
    d = gated()
    for a in ACCOUNTS:
        confirm(d, a)
    d.call(operator("bob"), "register_backup_service", backup_registration("bob", 1))
    assert domain_status(d)["missing"] == ["bob"]
    with pytest.raises(KeyNotBackedUp, match="missing: bob"):
        d.call(user("u1"), "sign", SIGN)
    with pytest.raises(SignerKeyMismatch):  # the old service's key no longer counts
        confirm(d, "bob")
    d.call(backup("bob", generation=1), "confirm_backup", {
        "epoch": 0, "keyset_hash": d.keyset_hash()})  # fmt: skip
    d.call(user("u1"), "sign", SIGN)
    # registering the same keys again is no new service: the confirmation stays
    d.call(operator("alice"), "register_backup_service", backup_registration("alice"))
    assert domain_status(d)["signing_allowed"]


# --- epochs, new domains, resharing --------------------------------------------------------


def test_a_new_domain_waits_while_the_existing_one_keeps_signing() -> None:
    d = Driver(ACCOUNTS, 2)
    d.add_domain()
    d.add_domain(confirm=False)
    d.call(user("u1"), "sign", SIGN)  # domain 0: its backups of epoch 0 still hold it
    with pytest.raises(KeyNotBackedUp):
        d.call(user("u1"), "sign", {**SIGN, "domain_id": 1})
    assert domain_status(d, 1)["missing"] == ACCOUNTS
    for a in ACCOUNTS:
        r = confirm(d, a)
    assert r.value == {"epoch": 0, "domains_opened": [1]}
    d.call(user("u1"), "sign", {**SIGN, "domain_id": 1})


def test_after_a_resharing_the_new_epoch_waits_for_its_own_confirmations() -> None:
    d = Driver(ACCOUNTS, 2)
    d.add_domain()
    d.propose([*ACCOUNTS, "dave"], 3, ["alice", "bob", "dave"])
    assert d.contract.protocol_state == "Resharing"
    d.call(user("u1"), "sign", SIGN)  # the previous epoch keeps signing while resharing
    pending = d.call(user("u1"), "sign", SIGN).value["request_id"]
    d.register_backup("dave")
    with pytest.raises(KeysetMismatch):  # a backup of the epoch being built is not in force
        confirm(d, "alice", epoch=1)
    with pytest.raises(NotParticipant):  # a newcomer holds nothing of the serving epoch
        confirm(d, "dave")
    d.reshare([*ACCOUNTS, "dave"], 3)  # already proposed: completes it
    assert d.view("participants")["epoch"] == 1
    status = domain_status(d)
    assert status["required"] == 4 and status["confirmed"] == []
    with pytest.raises(KeyNotBackedUp, match="at epoch 1: 0 of 4"):
        d.call(user("u1"), "sign", SIGN)
    with pytest.raises(KeysetMismatch):  # last epoch's backup is not this one's
        confirm(d, "alice", epoch=0)
    operators = d.view("backup_status")["operators"]
    assert operators["alice"]["confirmation"]["epoch"] == 0 and not operators["alice"]["current"]
    # the request admitted before the resharing is still answered
    signature = sign_derived(0, "u1", "m/0", bytes.fromhex(SIGN["payload"]))
    d.call(node("alice"), "respond", {"request_id": pending, "signature": signature.hex()})
    d.confirm_backups()
    d.call(user("u1"), "sign", SIGN)


def wait(d: Driver, domain_id: int = 0) -> dict[str, Any]:
    found: dict[str, Any] = domain_status(d, domain_id)["wait"]
    return found


def test_the_wait_for_backups_is_recorded_from_the_key_to_the_last_confirmation() -> None:
    d = gated()
    for i, a in enumerate(ACCOUNTS):
        confirm(d, a, height=HEIGHT + 3 + i)
    assert wait(d) == {
        "epoch": 0,
        "since_height": HEIGHT,
        "since_ms": HEIGHT * 1000,
        "opened_height": HEIGHT + 5,
        "opened_ms": (HEIGHT + 5) * 1000,
        "waited_ms": 5000,
    }
    d.call(user("u1", HEIGHT + 9), "sign", SIGN)  # an open gate stays as it opened
    assert wait(d)["opened_height"] == HEIGHT + 5
    state = d.state
    assert state["backup_gate"]["waits"]["0"]["opened_height"] == HEIGHT + 5
    assert Contract.from_json(state).to_json() == state


def test_a_domain_without_backups_required_opens_in_the_block_of_its_key() -> None:
    d = Driver(ACCOUNTS, 2)
    d.add_domain(0, confirm=False)
    assert wait(d)["since_height"] == wait(d)["opened_height"] == HEIGHT
    assert wait(d)["waited_ms"] == 0


def test_a_resharing_begins_a_new_wait_and_a_replaced_service_another() -> None:
    d = Driver(ACCOUNTS, 2)
    d.add_domain()
    first = wait(d)
    assert first["epoch"] == 0 and first["waited_ms"] == 0  # helpers confirm in one block
    d.reshare(ACCOUNTS, 2)  # completes at HEIGHT
    assert wait(d) == {
        "epoch": 1,
        "since_height": HEIGHT,
        "since_ms": HEIGHT * 1000,
        "opened_height": None,
        "opened_ms": None,
        "waited_ms": None,
    }
    for i, a in enumerate(ACCOUNTS):
        confirm(d, a, height=HEIGHT + 1 + i)
    assert wait(d)["opened_height"] == HEIGHT + 3 and wait(d)["waited_ms"] == 3000
    # a new backup service withdraws its account's confirmation: the domain waits again
    d.call(operator("bob", HEIGHT + 20), "register_backup_service", backup_registration("bob", 1))
    assert wait(d)["since_height"] == HEIGHT + 20 and wait(d)["opened_height"] is None
    d.call(backup("bob", HEIGHT + 22, 1), "confirm_backup", {
        "epoch": 1, "keyset_hash": d.keyset_hash()})  # fmt: skip
    assert wait(d)["waited_ms"] == 2000


def test_a_policy_above_a_shrunk_set_requires_the_whole_set() -> None:
    accounts = ["alice", "bob", "carol", "dave"]
    d = Driver(accounts, 3)
    d.add_domain(4)
    d.reshare(["alice", "bob", "carol"], 2)
    status = domain_status(d)
    assert status["policy"] == 4 and status["required"] == 3
    d.confirm_backups()
    d.call(user("u1"), "sign", SIGN)


def test_a_cancelled_key_generation_drops_the_unfinished_domains_policy() -> None:
    d = Driver(ACCOUNTS, 2)
    for a in ACCOUNTS:
        d.call(
            operator(a),
            "vote_add_domains",
            {"domains": [{"scheme": "Ed25519", "backups_required": 1}]},
        )
    assert d.state["backup_gate"]["policies"] == {"0": 1}
    for a in ["alice", "bob"]:
        d.call(operator(a), "vote_cancel_keygen", {})
    assert "backup_gate" not in d.state


# --- the property ----------------------------------------------------------------------------

ATTEMPTS = st.lists(
    st.tuples(
        st.sampled_from([*ACCOUNTS, "mallory"]),
        st.sampled_from(["backup", "old-backup", "node", "operator"]),
        st.sampled_from(["right", "old-epoch", "other-hash"]),
    ),
    max_size=12,
)


@settings(max_examples=60, deadline=None)
@given(policy=st.sampled_from([None, 0, 1, 2, 3]), attempts=ATTEMPTS)
def test_sign_is_allowed_exactly_when_enough_valid_confirmations_arrived(
    policy: int | None, attempts: list[tuple[str, str, str]]
) -> None:
    """Whatever confirmations are attempted, by whom and with which key and keyset: only
    those by a participant's current backup key naming the keyset in force count, every
    other one is refused and changes nothing, and `sign` succeeds exactly when the counted
    ones reach the policy."""
    d = Driver(ACCOUNTS, 2)
    for a in ACCOUNTS:
        d.register_backup(a, generation=1)
        d.register_backup(a)  # generation 1 is now an old key
    d.add_domain(policy, confirm=False)
    status = d.view("backup_status")
    counted: set[str] = set()
    for account, key, keyset in attempts:
        ctx = {
            "backup": backup(account),
            "old-backup": backup(account, generation=1),
            "node": node(account),
            "operator": operator(account),
        }[key]
        args = {
            "epoch": status["epoch"] + (1 if keyset == "old-epoch" else 0),
            "keyset_hash": status["keyset_hash"] if keyset != "other-hash" else "aa" * 32,
        }
        valid = account != "mallory" and key == "backup" and keyset == "right"
        before = json.dumps(d.state, sort_keys=True)
        try:
            d.call(ctx, "confirm_backup", args)
        except (NotParticipant, SignerKeyMismatch, KeysetMismatch, DuplicateVote) as exc:
            assert not valid or (isinstance(exc, DuplicateVote) and account in counted)
            assert json.dumps(d.state, sort_keys=True) == before
        else:
            assert valid and account not in counted
            counted.add(account)
    need = len(ACCOUNTS) if policy is None else policy
    assert set(domain_status(d)["confirmed"]) == counted
    if len(counted) >= need:
        d.call(user("u1"), "sign", SIGN)
    else:
        with pytest.raises(KeyNotBackedUp):
            d.call(user("u1"), "sign", SIGN)
