"""Key providers: registration, deregistration as an event, every node's deal and its rules."""

from __future__ import annotations

import random
from typing import Any

import pytest
from contract_helpers import Driver, info, node, operator, point, signer_key
from hypothesis import given, settings
from hypothesis import strategies as st

from quorumkeep.contract import (
    Contract,
    InvalidArguments,
    InvalidKeyProviders,
    KeyInUse,
    KeyProviderNotFound,
    NotInitialized,
    NotOperator,
    NotParticipant,
    SignerKeyMismatch,
)
from quorumkeep.contract.key_providers import release_standing
from quorumkeep.contract.state import ContractState
from quorumkeep.crypto.storage_split import StorageSecret, deal

ACCOUNTS = ["alice", "bob", "carol", "dave"]


def provider(account: str, n: int = 0) -> dict[str, str]:
    k = sum(map(ord, account)) * 10 + n
    return {
        "identity_public_key": point(k).hex(),
        "encryption_public_key": (bytes([k % 250 + 1]) * 32).hex(),
        "url": f"http://127.0.0.1:{9000 + k % 1000}",
    }


def network() -> Driver:
    d = Driver(ACCOUNTS, 3)
    d.add_domain()
    for a in ACCOUNTS:
        d.call(operator(a), "register_key_provider", provider(a))
    return d


def deal_args(
    account: str,
    providers: list[str],
    threshold: int = 2,
    epoch: int = 1,
    seed: int = 1,
    release: int = 500,
) -> dict[str, Any]:
    rng = random.Random(seed).randbytes
    d = deal(StorageSecret.generate(rng), threshold, len(providers), rng)
    return {
        "epoch": epoch,
        "threshold": threshold,
        "commitment": [c.hex() for c in d.commitment],
        "holders": [{"index": i + 1, "provider": p} for i, p in enumerate(providers)],
        "signer_public_key": signer_key(account).hex(),
        "release_public_key": point(release).hex(),
    }


# --- register / deregister -------------------------------------------------------------


def test_register_and_replace() -> None:
    d = Driver(ACCOUNTS, 3)
    r = d.call(operator("alice"), "register_key_provider", provider("alice"))
    assert r.events[0].kind == "key_provider_registered"
    assert r.events[0].data == {"account": "alice", **provider("alice"), "replaced": False}
    assert d.view("key_providers") == {"alice": {**provider("alice"), "holds_for": []}}
    r = d.call(operator("alice"), "register_key_provider", provider("alice", 1))
    assert r.events[0].data["replaced"] is True
    assert d.state["key_providers"]["providers"]["alice"] == provider("alice", 1)


def test_state_without_providers_keeps_its_bytes() -> None:
    d = Driver(ACCOUNTS, 3)
    assert "key_providers" not in d.state
    d = network()
    again = Contract.from_json(d.state)
    assert again.to_json() == d.state


def test_register_refusals_change_nothing() -> None:
    d = Driver(ACCOUNTS, 3)
    d.call(operator("bob"), "register_key_provider", provider("bob"))
    before = d.state
    with pytest.raises(NotParticipant):
        d.call(operator("mallory"), "register_key_provider", provider("mallory"))
    with pytest.raises(NotOperator):
        d.call(node("alice"), "register_key_provider", provider("alice"))
    with pytest.raises(KeyInUse, match="identity key"):
        d.call(operator("alice"), "register_key_provider", provider("bob"))
    taken = {**provider("alice"), "encryption_public_key": provider("bob")["encryption_public_key"]}
    with pytest.raises(KeyInUse, match="encryption key"):
        d.call(operator("alice"), "register_key_provider", taken)
    for bad in (
        {**provider("alice"), "url": "ftp://x"},
        {**provider("alice"), "identity_public_key": "00" * 32},
        {**provider("alice"), "encryption_public_key": "00" * 32},
        {**provider("alice"), "extra": 1},
        {"url": "http://127.0.0.1:1"},
    ):
        with pytest.raises(InvalidArguments):
            d.call(operator("alice"), "register_key_provider", bad)
    assert d.state == before


def test_genesis_registrations_and_init_keeps_only_participants() -> None:
    c = Contract()
    for a in ("alice", "bob", "mallory"):
        c.call(operator(a), "register_key_provider", provider(a))
    r = c.call(
        operator("alice"),
        "init",
        {"participants": [info(a) for a in ("alice", "bob")], "threshold": 2},
    )
    dropped = [e for e in r.events if e.kind == "key_provider_deregistered"]
    assert [e.data["account"] for e in dropped] == ["mallory"]
    assert sorted(c.view("key_providers", {})) == ["alice", "bob"]
    with pytest.raises(NotInitialized):  # deals need the contract
        c2 = Contract()
        c2.call(operator("alice"), "record_key_providers", deal_args("alice", ["bob", "carol"]))


def test_deregistration_is_an_event_naming_the_affected_nodes() -> None:
    d = network()
    d.call(node("alice"), "record_key_providers", deal_args("alice", ["bob", "carol", "dave"]))
    d.call(node("bob"), "record_key_providers", deal_args("bob", ["alice", "carol"]))
    assert d.view("key_providers")["carol"]["holds_for"] == ["alice", "bob"]
    r = d.call(operator("carol"), "deregister_key_provider", {})
    assert r.value == {"affected": ["alice", "bob"]}
    assert r.events[0].kind == "key_provider_deregistered"
    assert r.events[0].data == {
        "account": "carol",
        "affected": ["alice", "bob"],
        "reason": "deregistered",
    }
    assert "carol" not in d.view("key_providers")
    with pytest.raises(KeyProviderNotFound):
        d.call(operator("carol"), "deregister_key_provider", {})
    with pytest.raises(NotOperator):
        d.call(node("bob"), "deregister_key_provider", {})
    with pytest.raises(InvalidArguments):
        d.call(operator("bob"), "deregister_key_provider", {"x": 1})


# --- record_key_providers --------------------------------------------------------------


def test_a_node_records_its_deal_and_anyone_sees_it() -> None:
    d = network()
    args = deal_args("alice", ["bob", "carol", "dave"])
    r = d.call(node("alice", height=12), "record_key_providers", args)
    assert r.value == {"epoch": 1}
    event = r.events[0]
    assert event.kind == "key_providers_recorded"
    assert event.data["replaced_epoch"] is None
    view = d.view("key_provider_deal", {"account": "alice"})
    assert view == {
        "account": "alice",
        "deal": {**args, "recorded_height": 12},
        "standing": "participant",
        "node_keys": {signer_key("alice").hex(): "participant"},
    }
    assert d.view("key_provider_deal", {"account": "bob"})["deal"] is None
    assert d.view("key_provider_deal", {"account": "erin"}) == {
        "account": "erin",
        "deal": None,
        "standing": None,
        "node_keys": {},
    }
    assert d.view("key_providers")["bob"]["holds_for"] == ["alice"]


def test_rotation_replaces_the_deal_and_names_who_let_go() -> None:
    d = network()
    d.call(node("alice"), "record_key_providers", deal_args("alice", ["bob", "carol"]))
    r = d.call(node("alice"), "record_key_providers", deal_args("alice", ["dave", "bob"], epoch=2))
    assert r.events[0].data["replaced_epoch"] == 1
    assert r.events[0].data["released_by"] == ["carol"]
    with pytest.raises(InvalidKeyProviders, match="epoch must grow"):
        d.call(node("alice"), "record_key_providers", deal_args("alice", ["bob", "carol"], epoch=2))


def test_deal_rules() -> None:
    d = network()
    before = d.state
    with pytest.raises(InvalidKeyProviders, match="own operator"):
        d.call(node("alice"), "record_key_providers", deal_args("alice", ["alice", "bob"]))
    with pytest.raises(InvalidKeyProviders, match="one piece"):
        d.call(node("alice"), "record_key_providers", deal_args("alice", ["bob", "bob"]))
    d.call(operator("dave"), "deregister_key_provider", {})
    before = d.state
    with pytest.raises(InvalidKeyProviders, match="not registered"):
        d.call(node("alice"), "record_key_providers", deal_args("alice", ["bob", "dave"]))
    bad: list[dict[str, Any]] = []
    ok = deal_args("alice", ["bob", "carol"])
    bad.append({**ok, "threshold": 1})
    bad.append({**ok, "threshold": 3})  # more than m
    bad.append({**ok, "epoch": 0})
    bad.append({**ok, "commitment": ok["commitment"][:1]})
    bad.append({**ok, "commitment": [ok["commitment"][0], "01" + "00" * 31]})
    bad.append(
        {**ok, "holders": [{"index": 2, "provider": "bob"}, {"index": 1, "provider": "carol"}]}
    )
    bad.append({**ok, "holders": [{"index": 1, "provider": "bob"}]})
    bad.append({**ok, "recorded_height": 3})
    for args in bad:
        with pytest.raises(InvalidArguments):
            d.call(node("alice"), "record_key_providers", args)
    assert d.state == before


def test_who_may_record() -> None:
    d = network()
    before = d.state
    with pytest.raises(NotParticipant):  # a node key the contract does not list
        d.call(
            node("alice", generation=5),
            "record_key_providers",
            deal_args("alice", ["bob", "carol"]),
        )
    with pytest.raises(SignerKeyMismatch):  # the node records a deal naming another key
        args = {**deal_args("alice", ["bob", "carol"]), "signer_public_key": point(7).hex()}
        d.call(node("alice"), "record_key_providers", args)
    with pytest.raises(SignerKeyMismatch):  # the operator may not vouch for an unlisted node
        args = {**deal_args("alice", ["bob", "carol"]), "signer_public_key": point(7).hex()}
        d.call(operator("alice"), "record_key_providers", args)
    assert d.state == before
    # The operator records for its listed node; and for an account not listed yet.
    d.call(operator("alice"), "record_key_providers", deal_args("alice", ["bob", "carol"]))
    d.call(operator("erin"), "record_key_providers", deal_args("erin", ["bob", "carol"]))
    deal_, standing = release_standing(ContractState.from_json(d.state), "erin")
    assert deal_ is not None and standing is None


def test_standing_follows_the_contract() -> None:
    d = network()
    # A candidate records its own deal.
    d.call(operator("erin"), "submit_participant_info", info("erin"))
    d.call(node("erin"), "record_key_providers", deal_args("erin", ["bob", "carol"]))
    assert d.view("key_provider_deal", {"account": "erin"})["standing"] == "candidate"
    # A migration destination records its deal; once concluded the old node's deal is stale.
    d.call(node("alice"), "record_key_providers", deal_args("alice", ["bob", "carol"]))
    new = info("alice", 1)
    d.call(operator("alice"), "start_node_migration", {"destination": new})
    assert d.view("key_provider_deal", {"account": "alice"})["standing"] == "participant"
    d.call(
        node("alice", generation=1),
        "record_key_providers",
        {
            **deal_args("alice", ["carol", "dave"], epoch=2),
            "signer_public_key": new["signer_public_key"],
        },
    )
    assert d.view("key_provider_deal", {"account": "alice"})["standing"] == "destination"
    d.call(operator("alice"), "cancel_node_migration", {})
    assert d.view("key_provider_deal", {"account": "alice"})["standing"] is None


@settings(max_examples=30, deadline=None)
@given(
    args=st.dictionaries(
        st.sampled_from(
            [
                "epoch",
                "threshold",
                "commitment",
                "holders",
                "signer_public_key",
                "release_public_key",
                "x",
            ]
        ),
        st.one_of(
            st.none(), st.integers(-2, 40), st.text(max_size=8), st.lists(st.integers(), max_size=3)
        ),
    )
)
def test_garbage_arguments_are_typed_errors_and_change_nothing(args: dict[str, Any]) -> None:
    d = network()
    before = d.state
    with pytest.raises(InvalidArguments):
        d.call(node("alice"), "record_key_providers", args)
    assert d.state == before
