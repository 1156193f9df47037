"""Emergency recovery in the contract: the unanimous recovery-key vote and the recording of
parts (proof checked against the key, the caller's verifying share and the label)."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest
from contract_helpers import Driver, domain_secret, node, operator, polynomial
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from quorumkeep.contract import (
    Contract,
    DomainNotFound,
    DuplicateVote,
    InvalidArguments,
    InvalidRecoveryKey,
    InvalidRecoveryPart,
    KeysetMismatch,
    NotOperator,
    NotParticipant,
    ProtocolStateNotRunning,
    RecoveryKeyNotSet,
    SignerKeyMismatch,
)
from quorumkeep.contract.recovery import MAX_PART_BYTES
from quorumkeep.crypto import pve
from quorumkeep.crypto.group import identifier_scalar, polynomial_evaluate

ACCOUNTS = ["alice", "bob", "carol"]  # participant ids 1, 2, 3; threshold 2
KEY_FILE = Path(__file__).parent.parent / "crypto" / "data" / "ers-test-rsa2048.pem"
_private = serialization.load_pem_private_key(KEY_FILE.read_bytes(), password=None)
assert isinstance(_private, rsa.RSAPrivateKey)
PUBLIC = pve.RecoveryPublicKey.from_private(_private)
KEY_ARGS = {
    "domain_id": 0,
    "public_key": PUBLIC.spki_der.hex(),
    "fingerprint": PUBLIC.fingerprint.hex(),
}


def running(domains: int = 1) -> Driver:
    d = Driver(ACCOUNTS, 2)
    for _ in range(domains):
        d.add_domain()
    return d


def with_key(d: Driver) -> Driver:
    for a in ACCOUNTS:
        d.call(operator(a), "vote_recovery_key", KEY_ARGS)
    return d


def share(d: Driver, account: str, salt: int = 0, domain_id: int = 0) -> bytes:
    view = d.view("participants")
    pid = next(p["participant_id"] for p in view["participants"] if p["account"] == account)
    coefficients = polynomial(domain_secret(domain_id), view["threshold"], salt)
    return polynomial_evaluate(identifier_scalar(pid), coefficients)


def part_args(
    d: Driver, account: str, *, salt: int = 0, secret: bytes | None = None, label_account: str = ""
) -> dict[str, Any]:
    """A part for ``account`` in the epoch in force, as the node would make it."""
    package = d.view("public_key_package", {"domain_id": 0})
    view = d.view("participants")
    pid = next(
        p["participant_id"]
        for p in view["participants"]
        if p["account"] == (label_account or account)
    )
    keyset_hash = pve.package_digest(
        0,
        package["epoch"],
        bytes.fromhex(package["public_key"]),
        package["threshold"],
        [(int(k), bytes.fromhex(v)) for k, v in package["verifying_shares"].items()],
    )
    label = pve.Label(0, package["epoch"], label_account or account, pid, keyset_hash).encode()
    scalar = secret if secret is not None else share(d, label_account or account, salt)
    part = pve.encrypt(PUBLIC, scalar, label, os.urandom).encode()
    return {"domain_id": 0, "epoch": package["epoch"], "part": part.hex()}


# --- the vote -----------------------------------------------------------------------------


def test_key_set_only_by_every_participant() -> None:
    d = running()
    first = d.call(operator("alice"), "vote_recovery_key", KEY_ARGS)
    assert first.value == {"votes": 1, "required": 3, "set": False}
    assert [e.kind for e in first.events] == ["recovery_key_voted"]
    d.call(operator("bob"), "vote_recovery_key", KEY_ARGS)
    assert d.view("recovery_key", {"domain_id": 0})["key"] is None
    last = d.call(operator("carol"), "vote_recovery_key", KEY_ARGS)
    assert last.value["set"] is True
    assert [e.kind for e in last.events] == ["recovery_key_voted", "recovery_key_set"]
    assert last.events[1].data["fingerprint"] == PUBLIC.fingerprint.hex()
    view = d.view("recovery_key", {"domain_id": 0})
    assert view["key"] == {
        "public_key": PUBLIC.spki_der.hex(),
        "fingerprint": KEY_ARGS["fingerprint"],
    }
    assert view["votes"] == {}
    with pytest.raises(DuplicateVote):
        d.call(operator("alice"), "vote_recovery_key", KEY_ARGS)


def test_changed_vote_counts_once() -> None:
    other = pve.RecoveryPublicKey.from_private(
        rsa.generate_private_key(public_exponent=65537, key_size=2048)
    )
    other_args = {
        "domain_id": 0,
        "public_key": other.spki_der.hex(),
        "fingerprint": other.fingerprint.hex(),
    }
    d = running()
    d.call(operator("alice"), "vote_recovery_key", KEY_ARGS)
    with pytest.raises(DuplicateVote):
        d.call(operator("alice"), "vote_recovery_key", KEY_ARGS)
    d.call(operator("alice"), "vote_recovery_key", other_args)
    d.call(operator("bob"), "vote_recovery_key", KEY_ARGS)
    result = d.call(operator("carol"), "vote_recovery_key", KEY_ARGS)
    assert result.value == {"votes": 2, "required": 3, "set": False}


@pytest.mark.parametrize(
    ("ctx", "args", "error"),
    [
        (operator("zed"), KEY_ARGS, NotParticipant),
        (node("alice"), KEY_ARGS, NotOperator),
        (operator("alice"), {**KEY_ARGS, "domain_id": 7}, DomainNotFound),
        (operator("alice"), {**KEY_ARGS, "fingerprint": "00" * 32}, InvalidRecoveryKey),
        (operator("alice"), {**KEY_ARGS, "public_key": "3000"}, InvalidRecoveryKey),
        (operator("alice"), {**KEY_ARGS, "extra": 1}, InvalidArguments),
        (operator("alice"), {**KEY_ARGS, "fingerprint": "00"}, InvalidArguments),
    ],
)
def test_vote_rejections(ctx: Any, args: dict[str, Any], error: type[Exception]) -> None:
    d = running()
    before = d.state
    with pytest.raises(error):
        d.call(ctx, "vote_recovery_key", args)
    assert d.state == before


def test_small_exponent_key_refused() -> None:
    weak = rsa.generate_private_key(public_exponent=3, key_size=2048).public_key()
    der = weak.public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    import hashlib

    args = {"domain_id": 0, "public_key": der.hex(), "fingerprint": hashlib.sha256(der).hexdigest()}
    with pytest.raises(InvalidRecoveryKey, match="exponent"):
        running().call(operator("alice"), "vote_recovery_key", args)


# --- parts --------------------------------------------------------------------------------


def test_part_recorded_and_viewed() -> None:
    d = with_key(running())
    result = d.call(d.node("alice"), "submit_recovery_part", part_args(d, "alice"))
    part = bytes.fromhex(part_args(d, "alice")["part"])  # another part, same share
    assert len(part) > 30_000
    [event] = result.events
    assert event.kind == "recovery_part_recorded"
    assert event.data["account"] == "alice" and event.data["participant_id"] == 1
    assert event.data["digest"] == result.value
    view = d.view("recovery_parts", {"domain_id": 0})
    assert view["parts"]["alice"]["digest"] == result.value
    assert view["complete"] is False
    d.call(d.node("bob"), "submit_recovery_part", part_args(d, "bob"))
    assert d.view("recovery_parts", {"domain_id": 0})["complete"] is True
    assert d.view("recovery_parts", {"domain_id": 0, "epoch": 9}) is None
    # the state (with its recovery records) survives a JSON round trip
    assert Contract.from_json(d.state).to_json() == d.state


def test_state_without_recovery_keeps_its_json() -> None:
    d = running()
    assert "emergency_recovery" not in d.state


def test_part_rejections() -> None:
    d = running()
    with pytest.raises(RecoveryKeyNotSet):
        d.call(d.node("alice"), "submit_recovery_part", part_args(d, "alice"))
    with_key(d)
    good = part_args(d, "alice")
    cases: list[tuple[Any, dict[str, Any], type[Exception]]] = [
        (node("zed"), good, NotParticipant),
        (node("alice", generation=5), good, SignerKeyMismatch),
        (d.node("alice"), {**good, "epoch": good["epoch"] + 1}, KeysetMismatch),
        (d.node("alice"), {**good, "domain_id": 3}, DomainNotFound),
        (d.node("alice"), {**good, "part": "00" * 10}, InvalidRecoveryPart),
        (d.node("alice"), {**good, "part": "00" * (MAX_PART_BYTES + 1)}, InvalidArguments),
        # a part encrypting something that is not alice's share
        (d.node("alice"), part_args(d, "alice", secret=share(d, "bob")), InvalidRecoveryPart),
        # bob's (valid) part submitted by alice: another label and point
        (d.node("alice"), part_args(d, "bob"), InvalidRecoveryPart),
    ]
    for ctx, args, error in cases:
        before = d.state
        with pytest.raises(error):
            d.call(ctx, "submit_recovery_part", args)
        assert d.state == before, error
    d.call(d.node("alice"), "submit_recovery_part", good)
    with pytest.raises(DuplicateVote):
        d.call(d.node("alice"), "submit_recovery_part", part_args(d, "alice"))


def test_truncated_part_refused() -> None:
    d = with_key(running())
    args = part_args(d, "alice")
    args["part"] = args["part"][:-64]
    with pytest.raises(InvalidRecoveryPart, match="truncated"):
        d.call(d.node("alice"), "submit_recovery_part", args)


def test_parts_only_while_running_and_per_epoch() -> None:
    d = with_key(running())
    d.call(d.node("alice"), "submit_recovery_part", part_args(d, "alice"))
    old_epoch = d.view("public_key_package", {"domain_id": 0})["epoch"]
    new_set = ["alice", "bob", "carol", "dave"]
    d.propose(new_set, 3, new_set)
    assert d.contract.protocol_state == "Resharing"
    with pytest.raises(ProtocolStateNotRunning):
        d.call(d.node("bob"), "submit_recovery_part", part_args(d, "bob"))
    while d.contract.protocol_state == "Resharing":
        event = next(e for e in d.state["protocol_state"]["resharing"] if e["public_key"] is None)
        kid = {k: event[k] for k in ("domain_id", "epoch", "attempt")}
        args = {"key_event_id": kid, "verifying_shares": d.next_shares(kid["domain_id"])}
        for a in new_set:
            d.call(d.node(a), "vote_reshared", args)
    new_epoch = d.view("public_key_package", {"domain_id": 0})["epoch"]
    assert new_epoch > old_epoch
    # the new epoch's shares come from the resharing's polynomial (salt 1)
    d.call(d.node("alice"), "submit_recovery_part", part_args(d, "alice", salt=1))
    assert d.view("recovery_parts", {"domain_id": 0, "epoch": old_epoch})["parts"].keys() == {
        "alice"
    }
    assert set(d.view("recovery_parts", {"domain_id": 0})["parts"]) == {"alice"}
