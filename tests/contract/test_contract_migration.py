"""Backup services and node migrations (the reference design's cases and the gaps it left)."""

from __future__ import annotations

from typing import Any

import pytest
from contract_helpers import Driver, info, node, operator, point, sign_derived, user

from quorumkeep.contract import (
    InvalidArguments,
    KeyInUse,
    KeysetMismatch,
    MigrationNotFound,
    NotInitialized,
    NotOperator,
    NotParticipant,
    ProtocolStateNotRunning,
    SignerKeyMismatch,
)

ACCOUNTS = ["alice", "bob", "carol"]
BACKUP = {"identity_public_key": point(11).hex(), "encryption_public_key": "22" * 32}


def running() -> Driver:
    d = Driver(ACCOUNTS, 2)
    d.add_domain()
    return d


def initializing() -> Driver:
    d = running()
    for a in ACCOUNTS:
        d.call(operator(a), "vote_add_domains", {"domains": [{"scheme": "Ed25519"}]})
    assert d.contract.protocol_state == "Initializing"
    return d


def resharing() -> Driver:
    d = running()
    d.propose([*ACCOUNTS, "dave"], 3, [*ACCOUNTS, "dave"])
    assert d.contract.protocol_state == "Resharing"
    return d


STATES = {"Running": running, "Initializing": initializing, "Resharing": resharing}


# --- register_backup_service -----------------------------------------------------------


@pytest.mark.parametrize("make", STATES.values(), ids=STATES.keys())
def test_register_backup_service_succeeds_in_every_state(make: Any) -> None:
    d = make()
    registered = d.view("backup_service_info", {"account": "alice"}) is not None
    r = d.call(operator("alice"), "register_backup_service", BACKUP)
    assert r.events[0].kind == "backup_service_registered"
    assert r.events[0].data == {"account": "alice", **BACKUP, "replaced": registered}
    assert d.view("backup_service_info", {"account": "alice"}) == BACKUP
    other = {"identity_public_key": point(12).hex(), "encryption_public_key": "33" * 32}
    r = d.call(operator("alice"), "register_backup_service", other)  # overwrites
    assert r.events[0].data["replaced"] is True
    assert d.view("backup_service_info", {"account": "alice"}) == other


@pytest.mark.parametrize("make", STATES.values(), ids=STATES.keys())
def test_register_backup_service_by_a_non_participant_fails_in_every_state(make: Any) -> None:
    d = make()
    before = d.state
    with pytest.raises(NotParticipant):
        d.call(operator("mallory"), "register_backup_service", BACKUP)
    assert d.state == before


def test_register_backup_service_before_init() -> None:
    d = Driver(ACCOUNTS, 2)
    d.contract = type(d.contract)()
    with pytest.raises(NotInitialized):
        d.call(operator("alice"), "register_backup_service", BACKUP)


def test_prospective_participants_may_register() -> None:
    d = running()
    with pytest.raises(NotParticipant):
        d.call(operator("dave"), "register_backup_service", BACKUP)
    d.propose([*ACCOUNTS, "dave"], 3, ["alice"])  # dave appears in an open proposal
    d.call(operator("dave"), "register_backup_service", BACKUP)
    d.call(node("erin"), "submit_participant_info", info("erin"))  # a candidate
    d.call(operator("erin"), "register_backup_service", BACKUP)
    d = resharing()  # dave is in the set being built
    d.call(operator("dave"), "register_backup_service", BACKUP)


def test_register_backup_service_needs_the_operator_and_valid_keys() -> None:
    d = running()
    with pytest.raises(NotOperator):
        d.call(node("alice"), "register_backup_service", BACKUP)
    with pytest.raises(InvalidArguments):
        d.call(
            operator("alice"),
            "register_backup_service",
            dict(BACKUP, encryption_public_key="00" * 32),
        )
    with pytest.raises(InvalidArguments):
        d.call(
            operator("alice"),
            "register_backup_service",
            dict(BACKUP, identity_public_key="00" * 32),
        )
    with pytest.raises(InvalidArguments):
        d.call(
            operator("alice"), "register_backup_service", {"identity_public_key": point(11).hex()}
        )


# --- start_node_migration --------------------------------------------------------------


def test_start_migration_succeeds() -> None:
    d = running()
    args = d.migrate("bob")
    r = d.call(operator("bob", 20), "start_node_migration", args)
    expected = {
        "account": "bob",
        "participant_id": 2,
        "destination": args["destination"],
        "destination_signer_public_key": args["destination_signer_public_key"],
        "started_height": 20,
    }
    assert r.value == expected
    assert r.events[0].kind == "migration_started"
    assert r.events[0].data == {**expected, "replaced": False}
    assert d.view("migration_info") == {"bob": expected}
    assert d.view("migration_info", {"account": "bob"}) == expected
    assert d.view("migration_info", {"account": "alice"}) is None


def test_start_migration_last_call_wins() -> None:
    d = running()
    d.call(operator("bob"), "start_node_migration", d.migrate("bob"))
    second = d.migrate("bob")
    r = d.call(operator("bob"), "start_node_migration", second)
    assert r.events[0].data["replaced"] is True
    assert d.view("migration_info")["bob"]["destination"] == second["destination"]
    assert len(d.view("migration_info")) == 1


def test_start_migration_accepts_a_full_participant_info_as_destination() -> None:
    d = running()
    dest = dict(info("bob", 1), participant_id=2)
    d.call(operator("bob"), "start_node_migration", {"destination": dest})
    assert (
        d.view("migration_info")["bob"]["destination_signer_public_key"]
        == dest["signer_public_key"]
    )


def test_start_migration_by_a_non_participant() -> None:
    d = running()
    with pytest.raises(NotParticipant):
        d.call(operator("mallory"), "start_node_migration", d.migrate("mallory"))


def test_start_migration_needs_the_operator() -> None:
    d = running()
    with pytest.raises(NotOperator):
        d.call(node("bob"), "start_node_migration", d.migrate("bob"))


@pytest.mark.parametrize("make", [initializing, resharing], ids=["Initializing", "Resharing"])
def test_start_migration_outside_running(make: Any) -> None:
    d = make()
    before = d.state
    with pytest.raises(ProtocolStateNotRunning):
        d.call(operator("bob"), "start_node_migration", d.migrate("bob"))
    assert d.state == before


def test_start_migration_destination_rules() -> None:
    d = running()
    args = d.migrate("bob")
    dest = args["destination"]
    bad: list[tuple[type[Exception], dict[str, Any]]] = [
        (
            KeyInUse,
            dict(args, destination=dict(dest, tls_public_key=info("bob")["tls_public_key"])),
        ),
        (
            KeyInUse,
            dict(args, destination=dict(dest, tls_public_key=info("alice")["tls_public_key"])),
        ),
        (KeyInUse, dict(args, destination_signer_public_key=info("bob")["signer_public_key"])),
        (KeyInUse, dict(args, destination_signer_public_key=info("carol")["signer_public_key"])),
        (KeyInUse, dict(args, destination=dict(dest, url=info("carol")["url"]))),
        (InvalidArguments, {"destination": dest}),
        (InvalidArguments, dict(args, destination=dict(dest, account="alice"))),
        (InvalidArguments, dict(args, destination=dict(dest, participant_id=1))),
        (InvalidArguments, dict(args, destination=dict(dest, signer_public_key=point(3).hex()))),
        (InvalidArguments, dict(args, destination=dict(dest, url="nope"))),
        (InvalidArguments, dict(args, extra=True)),
    ]
    before = d.state
    for error, bad_args in bad:
        with pytest.raises(error):
            d.call(operator("bob"), "start_node_migration", bad_args)
    assert d.state == before
    # two open migrations may not target the same node
    d.call(operator("bob"), "start_node_migration", args)
    with pytest.raises(KeyInUse):
        d.call(operator("carol"), "start_node_migration", args)


# --- conclude_node_migration -----------------------------------------------------------


def test_conclude_migration_succeeds() -> None:
    d = running()
    args = d.migrate("bob")
    d.call(operator("bob"), "start_node_migration", args)
    before = d.view("participants")
    r = d.call(d.node("bob"), "conclude_node_migration", {"keyset": d.view("keyset")})
    assert [e.kind for e in r.events] == ["migration_concluded", "participants_changed"]
    bob = next(p for p in d.view("participants")["participants"] if p["account"] == "bob")
    assert bob == {
        "account": "bob",
        "participant_id": 2,  # kept
        **args["destination"],
        "signer_public_key": args["destination_signer_public_key"],
    }
    assert r.value == bob
    assert r.events[0].data["previous"] == before["participants"][1]
    assert d.view("migration_info") == {}
    assert d.view("participants")["epoch"] == before["epoch"]


def test_conclude_without_a_migration() -> None:
    d = running()
    with pytest.raises(MigrationNotFound):
        d.call(d.node("bob"), "conclude_node_migration", {"keyset": d.view("keyset")})


def test_conclude_with_a_keyset_mismatch() -> None:
    d = running()
    d.call(operator("bob"), "start_node_migration", d.migrate("bob"))
    keyset = d.view("keyset")
    wrong = [
        dict(keyset, epoch=1),
        dict(keyset, domains=[]),
        dict(keyset, domains=[dict(keyset["domains"][0], public_key=point(9).hex())]),
        dict(keyset, domains=[*keyset["domains"], {"domain_id": 1, "public_key": point(9).hex()}]),
        dict(keyset, domains=[dict(keyset["domains"][0], scheme="Other")]),
    ]
    before = d.state
    for w in wrong:
        with pytest.raises(KeysetMismatch):
            d.call(d.node("bob"), "conclude_node_migration", {"keyset": w})
    assert d.state == before
    # the scheme may be left out; domains compare as a set
    no_scheme = [
        {"domain_id": x["domain_id"], "public_key": x["public_key"]} for x in keyset["domains"]
    ]
    d.call(d.node("bob"), "conclude_node_migration", {"keyset": dict(keyset, domains=no_scheme)})


def test_conclude_by_a_non_participant() -> None:
    d = running()
    with pytest.raises(NotParticipant):
        d.call(node("mallory"), "conclude_node_migration", {"keyset": d.view("keyset")})


def test_conclude_with_the_wrong_signer_key() -> None:
    d = running()
    d.call(operator("bob"), "start_node_migration", d.migrate("bob"))
    keyset = d.view("keyset")
    with pytest.raises(SignerKeyMismatch):  # the old node's key
        d.call(node("bob", 0), "conclude_node_migration", {"keyset": keyset})
    with pytest.raises(SignerKeyMismatch):  # even the operator's full-access key
        d.call(operator("bob"), "conclude_node_migration", {"keyset": keyset})


def test_conclude_while_resharing() -> None:
    d = resharing()
    with pytest.raises(ProtocolStateNotRunning):
        d.call(d.node("bob"), "conclude_node_migration", {"keyset": d.view("keyset")})


def test_a_resharing_started_mid_migration_cancels_it() -> None:
    d = running()
    d.call(operator("bob"), "start_node_migration", d.migrate("bob"))
    d.call(operator("carol"), "start_node_migration", d.migrate("carol"))
    voters = [*ACCOUNTS, "dave"]
    d.propose([*ACCOUNTS, "dave"], 3, voters[:3])
    current = {p["account"]: p for p in d.view("participants")["participants"]}
    r = d.call(
        operator("dave"),
        "vote_new_parameters",
        {
            "epoch": 1,
            "proposal": {"participants": [*current.values(), info("dave")], "threshold": 3},
        },
    )
    kinds = [e.kind for e in r.events]
    assert kinds == [
        "new_parameters_voted",
        "protocol_state_changed",
        "resharing_started",
        "migration_cancelled",
        "migration_cancelled",
    ]
    assert [e.data["account"] for e in r.events[3:]] == ["bob", "carol"]
    assert r.events[3].data["reason"] == "resharing started"
    assert d.view("migration_info") == {}
    with pytest.raises(ProtocolStateNotRunning):
        d.call(d.node("bob"), "conclude_node_migration", {"keyset": d.view("keyset")})


def test_key_generation_starting_mid_migration_cancels_it() -> None:
    d = running()
    d.call(operator("bob"), "start_node_migration", d.migrate("bob"))
    for a in ACCOUNTS:
        r = d.call(operator(a), "vote_add_domains", {"domains": [{"scheme": "Ed25519"}]})
    assert r.events[-1].kind == "migration_cancelled"
    assert r.events[-1].data == {
        "account": "bob",
        "participant_id": 2,
        "reason": "key generation started",
    }
    assert d.view("migration_info") == {}


# --- cancel_node_migration -------------------------------------------------------------


def test_cancel_migration_succeeds() -> None:
    d = running()
    d.call(operator("bob"), "start_node_migration", d.migrate("bob"))
    with pytest.raises(NotOperator):
        d.call(node("bob"), "cancel_node_migration", {})
    r = d.call(operator("bob"), "cancel_node_migration", {})
    assert r.events[0].kind == "migration_cancelled"
    assert r.events[0].data["reason"] == "cancelled by the operator"
    assert d.view("migration_info") == {}


def test_cancel_with_nothing_to_cancel() -> None:
    d = running()
    before = d.state
    with pytest.raises(MigrationNotFound):
        d.call(operator("bob"), "cancel_node_migration", {})
    assert d.state == before


# --- the decommissioned node, back-migration ------------------------------------------


def test_after_a_migration_the_old_node_key_is_refused_and_the_new_one_serves() -> None:
    d = running()
    d.call(operator("bob"), "start_node_migration", d.migrate("bob"))
    d.call(d.node("bob"), "conclude_node_migration", {"keyset": d.view("keyset")})
    payload = bytes(32)
    rid = d.call(user("u1"), "sign", {"payload": payload.hex(), "path": "", "domain_id": 0}).value[
        "request_id"
    ]
    sig = sign_derived(0, "u1", "", payload).hex()
    with pytest.raises(SignerKeyMismatch):
        d.call(node("bob", 0), "respond", {"request_id": rid, "signature": sig})
    d.call(d.node("bob"), "respond", {"request_id": rid, "signature": sig})


def test_back_migration_a_to_b_to_a() -> None:
    d = running()
    original = info("bob", 0)
    d.call(operator("bob"), "start_node_migration", d.migrate("bob"))
    d.call(d.node("bob"), "conclude_node_migration", {"keyset": d.view("keyset")})
    back = {
        "destination": {k: original[k] for k in ("url", "web_url", "tls_public_key")},
        "destination_signer_public_key": original["signer_public_key"],
    }
    d.call(operator("bob"), "start_node_migration", back)
    d.call(node("bob", 0), "conclude_node_migration", {"keyset": d.view("keyset")})
    bob = next(p for p in d.view("participants")["participants"] if p["account"] == "bob")
    assert bob == dict(original, participant_id=2)
