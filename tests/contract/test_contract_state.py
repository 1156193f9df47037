"""JSON encoding of the state, the method table the ledger uses, and error codes."""

from __future__ import annotations

import json
from typing import Any

import pytest
from contract_helpers import Driver, domain_secret, info, operator, user

from quorumkeep.contract import (
    BACKUP_SERVICE_METHODS,
    ERRORS,
    EVENT_KINDS,
    FUNCTION_CALL_METHODS,
    METHODS,
    NODE_METHODS,
    VIEW_METHODS,
    CallContext,
    Contract,
    ContractError,
    Event,
    InvalidArguments,
    error_from_code,
)
from quorumkeep.crypto.group import base_mul


def canonical(contract: Contract) -> str:
    return json.dumps(contract.to_json(), sort_keys=True, separators=(",", ":"))


def states() -> dict[str, Driver]:
    running = Driver(["alice", "bob", "carol"], 2)
    running.add_domain()
    running.call(user("u1"), "sign", {"payload": "11" * 40, "path": "é/1", "domain_id": 0})
    running.call(
        operator("alice"),
        "register_backup_service",
        {
            "identity_public_key": info("zed")["tls_public_key"],
            "encryption_public_key": "44" * 32,
        },
    )
    running.call(operator("bob"), "start_node_migration", running.migrate("bob"))
    running.propose(["alice", "bob", "carol", "dave"], 3, ["alice"])
    running.call(operator("carol"), "vote_add_domains", {"domains": [{"scheme": "Ed25519"}]})
    running.call(
        operator("dave"),
        "vote_new_parameters",
        {
            "epoch": 1,
            "proposal": {
                "participants": [*running.view("participants")["participants"], info("dave")],
                "threshold": 3,
            },
        },
    )
    initializing = Driver(["alice", "bob", "carol"], 2)
    for a in ["alice", "bob", "carol"]:
        initializing.call(operator(a), "vote_add_domains", {"domains": [{"scheme": "Ed25519"}]})
    initializing.call(
        initializing.node("alice"),
        "vote_pk",
        {
            "key_event_id": {"domain_id": 0, "epoch": 0, "attempt": 0},
            "public_key": base_mul(domain_secret(0)).hex(),
            "verifying_shares": initializing.running_shares(0),
        },
    )
    initializing.call(operator("alice"), "vote_cancel_keygen", {})
    resharing = Driver(["alice", "bob", "carol"], 2)
    resharing.add_domain()
    resharing.propose(["alice", "bob", "carol", "erin"], 3, ["alice", "bob", "erin"])
    resharing.call(
        resharing.node("erin"),
        "vote_reshared",
        {
            "key_event_id": {"domain_id": 0, "epoch": 1, "attempt": 0},
            "verifying_shares": resharing.next_shares(0),
        },
    )
    resharing.call(operator("alice"), "vote_cancel_resharing", {})
    fresh = Driver(["alice", "bob"], 2)
    fresh.contract = Contract()
    return {
        "NotInitialized": fresh,
        "Running": running,
        "Initializing": initializing,
        "Resharing": resharing,
    }


@pytest.mark.parametrize("name", ["NotInitialized", "Running", "Initializing", "Resharing"])
def test_every_state_round_trips_through_json(name: str) -> None:
    d = states()[name]
    assert d.contract.protocol_state == name
    text = canonical(d.contract)
    again = Contract.from_json(json.loads(text))
    assert canonical(again) == text
    assert again.to_json() == d.contract.to_json()


def test_a_restored_contract_behaves_like_the_original() -> None:
    d = states()["Resharing"]
    restored = Contract.from_json(json.loads(canonical(d.contract)))
    ctx = d.node("bob")
    args = {
        "key_event_id": {"domain_id": 0, "epoch": 1, "attempt": 0},
        "verifying_shares": d.next_shares(0),
    }
    a = d.contract.call(ctx, "vote_reshared", args)
    b = restored.call(ctx, "vote_reshared", args)
    assert a == b and canonical(d.contract) == canonical(restored)


def test_equal_histories_give_equal_json() -> None:
    assert canonical(states()["Running"].contract) == canonical(states()["Running"].contract)


@pytest.mark.parametrize(
    "corrupt",
    [
        lambda s: s.update(format=1),  # before verifying shares were stored
        lambda s: s["protocol_state"]["domains"][0]["verifying_shares"].pop("3"),
        lambda s: s["protocol_state"]["domains"][0]["verifying_shares"].update(
            {"4": info("x")["tls_public_key"]}  # a valid point for a non-participant
        ),
        lambda s: s["protocol_state"]["domains"][0].pop("verifying_shares"),
        lambda s: s.pop("candidates"),
        lambda s: s["protocol_state"].update(state="Paused"),
        lambda s: s["protocol_state"].update(epoch="0"),
        lambda s: s["sign_requests"][0].update(payload="zz"),
        lambda s: s.update(extra=1),
    ],
)
def test_from_json_refuses_a_corrupt_state(corrupt: Any) -> None:
    data = states()["Running"].contract.to_json()
    corrupt(data)
    with pytest.raises(ValueError, match="invalid contract state"):
        Contract.from_json(data)


def test_method_table() -> None:
    operator_methods = {
        "init",
        "vote_add_domains",
        "vote_cancel_keygen",
        "vote_new_parameters",
        "vote_cancel_resharing",
        "register_backup_service",
        "start_node_migration",
        "cancel_node_migration",
        "vote_measurement",
        "vote_tcb_policy",
        "vote_recovery_key",
        "register_key_provider",
        "deregister_key_provider",
    }
    assert {m for m, spec in METHODS.items() if spec.full_access_only} == operator_methods
    assert set(NODE_METHODS) == {
        "vote_pk",
        "vote_abort_key_event",
        "vote_reshared",
        "respond",
        "conclude_node_migration",
        "submit_participant_info",
        "submit_attestation",
        "verify_attestations",
        "submit_recovery_part",
        "record_key_providers",
    }
    assert set(BACKUP_SERVICE_METHODS) == {"confirm_backup", "submit_attestation"}
    assert FUNCTION_CALL_METHODS == NODE_METHODS | BACKUP_SERVICE_METHODS
    assert set(METHODS) == operator_methods | FUNCTION_CALL_METHODS | {"sign"}
    assert not FUNCTION_CALL_METHODS & operator_methods
    assert {
        "state",
        "migration_info",
        "backup_service_info",
        "pending_requests",
        "request",
        "public_key",
        "public_key_package",
        "participants",
        "keyset",
        "candidates",
        "attestations",
        "attestation_policy",
        "recovery_key",
        "recovery_parts",
        "backup_status",
        "key_providers",
        "key_provider_deal",
    } == VIEW_METHODS


def test_error_codes_are_stable_and_round_trip() -> None:
    for code, cls in ERRORS.items():
        assert cls.code == code == cls.__name__
        error = error_from_code(code, "a\nb")
        assert type(error) is cls and error.message == "a b"
        assert error.to_json() == {"code": code, "message": "a b"}
    assert type(error_from_code("Unheard", "x")) is ContractError


def test_events_are_json_and_of_known_kinds() -> None:
    d = Driver(["alice", "bob", "carol"], 2)
    d.add_domain()
    r = d.call(user("u1"), "sign", {"payload": "11" * 40, "path": "p", "domain_id": 0})
    for event in r.events:
        assert event.kind in EVENT_KINDS
        assert Event.from_json(json.loads(json.dumps(event.to_json()))) == event


def test_views_validate_their_arguments() -> None:
    d = Driver(["alice", "bob", "carol"], 2)
    cases: list[tuple[str, dict[str, Any]]] = [
        ("state", {"x": 1}),
        ("backup_service_info", {}),
        ("backup_service_info", {"account": "A"}),
        ("request", {"request_id": "1"}),
        ("public_key", {"domain_id": 0, "account": "u1"}),
        ("public_key_package", {}),
        ("public_key_package", {"domain_id": "0"}),
        ("public_key_package", {"domain_id": 0, "epoch": 0}),
        ("migration_info", {"account": 5}),
    ]
    for method, args in cases:
        with pytest.raises(InvalidArguments):
            d.view(method, args)
    with pytest.raises(InvalidArguments):
        d.contract.view("state", [])  # type: ignore[arg-type]


def test_views_change_nothing() -> None:
    d = states()["Running"]
    before = canonical(d.contract)
    for method in VIEW_METHODS:
        args: dict[str, Any] = {}
        if method in ("backup_service_info", "key_provider_deal"):
            args = {"account": "alice"}
        elif method == "request":
            args = {"request_id": 0}
        elif method == "public_key":
            args = {"domain_id": 0, "account": "u1", "path": "p"}
        elif method in ("public_key_package", "recovery_key", "recovery_parts"):
            args = {"domain_id": 0}
        value = d.view(method, args)
        json.dumps(value)
        if isinstance(value, dict):
            value.clear()  # mutating a returned value must not reach the state
    assert canonical(d.contract) == before


def test_call_context_is_frozen() -> None:
    ctx = CallContext("alice", bytes(32), True, 1, 2)
    with pytest.raises(AttributeError):
        ctx.full_access = False  # type: ignore[misc]
