"""`init`, dispatch and the NotInitialized state."""

from __future__ import annotations

import pytest
from contract_helpers import info, node, operator, user

from quorumkeep.contract import (
    AlreadyInitialized,
    Contract,
    InvalidArguments,
    InvalidThreshold,
    NotInitialized,
    NotOperator,
    NotParticipant,
    UnknownMethod,
)

ACCOUNTS = ["alice", "bob", "carol"]


def init_args(accounts: list[str] = ACCOUNTS, threshold: int = 2) -> dict[str, object]:
    return {"participants": [info(a) for a in accounts], "threshold": threshold}


def test_init_assigns_ids_in_order_and_runs_at_epoch_zero() -> None:
    c = Contract()
    result = c.call(operator("bob"), "init", init_args())
    state = c.to_json()
    running = state["protocol_state"]
    assert running["state"] == "Running"
    assert running["epoch"] == 0 and running["next_epoch"] == 1
    assert running["domains"] == []
    assert [(p["account"], p["participant_id"]) for p in running["participants"]] == [
        ("alice", 1),
        ("bob", 2),
        ("carol", 3),
    ]
    assert state["next_participant_id"] == 4
    assert state["config"] == {
        "sign_timeout_blocks": 600,
        "max_pending_requests": 10000,
        "sign_timeout_ms": 120_000,
    }
    assert [e.kind for e in result.events] == ["protocol_state_changed", "participants_changed"]
    assert result.events[0].data == {"from": "NotInitialized", "to": "Running", "epoch": 0}
    assert result.value["threshold"] == 2


def test_init_keeps_given_ids_and_config() -> None:
    c = Contract()
    members = [
        dict(info(a), participant_id=pid) for a, pid in zip(ACCOUNTS, [5, 2, 9], strict=True)
    ]
    config = {"sign_timeout_blocks": 20, "max_pending_requests": 3, "sign_timeout_ms": 5000}
    c.call(operator("alice"), "init", {"participants": members, "threshold": 3, "config": config})
    state = c.to_json()
    ids = [p["participant_id"] for p in state["protocol_state"]["participants"]]
    assert ids == [2, 5, 9]  # stored ascending by id
    assert state["next_participant_id"] == 10
    assert state["config"] == config


def test_init_twice_is_already_initialized() -> None:
    c = Contract()
    c.call(operator("alice"), "init", init_args())
    with pytest.raises(AlreadyInitialized):
        c.call(operator("alice"), "init", init_args())


def test_init_by_an_unlisted_account_is_not_participant() -> None:
    with pytest.raises(NotParticipant):
        Contract().call(operator("mallory"), "init", init_args())


def test_init_with_a_function_call_key_is_not_operator() -> None:
    with pytest.raises(NotOperator):
        Contract().call(node("alice"), "init", init_args())


@pytest.mark.parametrize("threshold", [0, 1, 4])
def test_init_threshold_outside_2_to_n_is_invalid(threshold: int) -> None:
    c = Contract()
    with pytest.raises(InvalidThreshold):
        c.call(operator("alice"), "init", init_args(threshold=threshold))
    assert c.to_json() == Contract().to_json()


def test_init_accepts_threshold_equal_to_n_and_2_of_2() -> None:
    Contract().call(operator("alice"), "init", init_args(threshold=3))
    Contract().call(operator("alice"), "init", init_args(["alice", "bob"], threshold=2))


@pytest.mark.parametrize(
    "mutate",
    [
        lambda ps: ps.append(dict(ps[0])),  # same account twice
        lambda ps: ps[1].update(tls_public_key=ps[0]["tls_public_key"]),
        lambda ps: ps[1].update(signer_public_key=ps[0]["signer_public_key"]),
        lambda ps: ps[1].update(url=ps[0]["url"]),
        lambda ps: ps[0].update(participant_id=1),  # some ids given, others not
        lambda ps: ps[0].update(participant_id=0),
        lambda ps: ps[0].update(tls_public_key="00" * 32),  # not a valid point
        lambda ps: ps[0].update(tls_public_key="AB" * 32),  # uppercase hex
        lambda ps: ps[0].update(signer_public_key="01" + "00" * 31),  # identity, small order
        lambda ps: ps[0].update(url="no-port"),
        lambda ps: ps[0].update(url="host:70000"),
        lambda ps: ps[0].update(web_url="ftp://x"),
        lambda ps: ps[0].update(account="Bad Account"),
        lambda ps: ps[0].update(extra=1),
        lambda ps: ps[0].pop("web_url"),
    ],
)
def test_init_with_malformed_participants_is_invalid_arguments(mutate: object) -> None:
    args = init_args()
    mutate(args["participants"])  # type: ignore[operator]
    c = Contract()
    with pytest.raises(InvalidArguments):
        c.call(operator("alice"), "init", args)
    assert c.to_json() == Contract().to_json()


@pytest.mark.parametrize(
    "args",
    [
        {"participants": [], "threshold": 2},
        {"participants": "x", "threshold": 2},
        {"participants": [info("alice"), info("bob")], "threshold": True},
        {"participants": [info("alice"), info("bob")], "threshold": "2"},
        {"participants": [info("alice"), info("bob")]},
        {"participants": [info("alice"), info("bob")], "threshold": 2, "what": 1},
        {"participants": [info("alice"), info("bob")], "threshold": 2, "config": {"x": 1}},
        {
            "participants": [info("alice"), info("bob")],
            "threshold": 2,
            "config": {"sign_timeout_blocks": 0},
        },
        {
            "participants": [info("alice"), info("bob")],
            "threshold": 2,
            "config": {"sign_timeout_ms": 999},
        },
        {
            "participants": [info("alice"), info("bob")],
            "threshold": 2,
            "config": {"sign_timeout_ms": 86_400_001},
        },
    ],
)
def test_init_with_malformed_arguments_is_invalid_arguments(args: dict[str, object]) -> None:
    with pytest.raises(InvalidArguments):
        Contract().call(operator("alice"), "init", args)


def test_unknown_method_and_view() -> None:
    c = Contract()
    with pytest.raises(UnknownMethod) as info_:
        c.call(operator("alice"), "transfer", {})
    assert info_.value.code == "UnknownMethod"
    with pytest.raises(UnknownMethod):
        c.view("balance", {})


def test_args_must_be_an_object() -> None:
    with pytest.raises(InvalidArguments):
        Contract().call(operator("alice"), "init", [])  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("method", "args"),
    [
        ("sign", {"payload": "00" * 32, "path": "", "domain_id": 0}),
        ("respond", {"request_id": 0, "signature": "00" * 64}),
        (
            "register_backup_service",
            {
                "identity_public_key": info("a")["tls_public_key"],
                "encryption_public_key": "11" * 32,
            },
        ),
        ("cancel_node_migration", {}),
        (
            "vote_pk",
            {
                "key_event_id": {"domain_id": 0, "epoch": 0, "attempt": 0},
                "public_key": info("a")["tls_public_key"],
                "verifying_shares": {"1": info("b")["tls_public_key"]},
            },
        ),
        ("vote_cancel_keygen", {}),
        ("vote_cancel_resharing", {}),
        ("submit_participant_info", info("alice")),
    ],
)
def test_calls_before_init_are_not_initialized(method: str, args: dict[str, object]) -> None:
    c = Contract()
    with pytest.raises(NotInitialized):
        c.call(user("alice"), method, args)
    assert c.to_json() == Contract().to_json()


def test_running_only_calls_before_init_are_not_initialized() -> None:
    with pytest.raises(NotInitialized):
        Contract().call(operator("alice"), "vote_add_domains", {"domains": [{"scheme": "Ed25519"}]})


def test_views_before_init() -> None:
    c = Contract()
    assert c.view("state", {})["protocol_state"] == {"state": "NotInitialized"}
    assert c.view("pending_requests", {}) == []
    assert c.view("migration_info", {}) == {}
    assert c.view("backup_service_info", {"account": "alice"}) is None
    with pytest.raises(NotInitialized):
        c.view("participants", {})
    with pytest.raises(NotInitialized):
        c.view("keyset", {})
