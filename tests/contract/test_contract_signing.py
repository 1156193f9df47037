"""Sign requests: submission, verified responses, timeouts and bounds."""

from __future__ import annotations

import pytest
from contract_helpers import (
    Driver,
    domain_secret,
    ed25519_sign,
    info,
    node,
    operator,
    sign_derived,
    user,
)
from nacl.signing import VerifyKey

from quorumkeep.contract import (
    Contract,
    DomainNotFound,
    InvalidArguments,
    InvalidSignature,
    NotParticipant,
    PayloadSize,
    RequestNotFound,
    SignerKeyMismatch,
    TooManyRequests,
)
from quorumkeep.crypto.derive import derive_public_key
from quorumkeep.crypto.group import base_mul

ACCOUNTS = ["alice", "bob", "carol"]
PAYLOAD = bytes(range(32))


def driver(config: dict[str, int] | None = None) -> Driver:
    d = Driver(ACCOUNTS, 2)
    if config is not None:
        d.contract = Contract()
        d.call(
            operator("alice"),
            "init",
            {"participants": [info(a) for a in ACCOUNTS], "threshold": 2, "config": config},
        )
    d.add_domain()
    return d


def request(d: Driver, payload: bytes = PAYLOAD, path: str = "m/0", height: int = 10) -> int:
    r = d.call(
        user("user1", height), "sign", {"payload": payload.hex(), "path": path, "domain_id": 0}
    )
    return int(r.value["request_id"])


def test_sign_records_the_caller_and_the_derived_key() -> None:
    d = driver()
    r = d.call(user("user1", 42), "sign", {"payload": PAYLOAD.hex(), "path": "m/0", "domain_id": 0})
    derived = derive_public_key(base_mul(domain_secret(0)), "user1", "m/0").hex()
    assert r.value == {
        "request_id": 0,
        "public_key": derived,
        "deadline_height": 642,
        "deadline_ms": 42_000 + 120_000,  # the block's time + sign_timeout_ms
    }
    pending = d.view("request", {"request_id": 0})
    assert pending == {
        "request_id": 0,
        "account": "user1",
        "payload": PAYLOAD.hex(),
        "path": "m/0",
        "domain_id": 0,
        "public_key": derived,
        "block_height": 42,
        "deadline_height": 642,
        "deadline_ms": 162_000,
    }
    assert r.events[0].kind == "sign_requested" and r.events[0].data == pending
    assert d.view("public_key", {"domain_id": 0, "account": "user1", "path": "m/0"}) == derived
    assert request(d) == 1  # ids are sequential


def test_a_valid_signature_under_the_derived_key_is_accepted() -> None:
    d = driver()
    rid = request(d)
    signature = sign_derived(0, "user1", "m/0", PAYLOAD)
    derived = bytes.fromhex(d.view("request", {"request_id": rid})["public_key"])
    VerifyKey(derived).verify(PAYLOAD, signature)  # independent check of the test signer
    r = d.call(node("bob"), "respond", {"request_id": rid, "signature": signature.hex()})
    assert r.value == {"request_id": rid}
    assert r.events[0].kind == "sign_responded"
    assert r.events[0].data["signature"] == signature.hex()
    assert r.events[0].data["responder"] == "bob"
    assert d.view("pending_requests") == []
    with pytest.raises(RequestNotFound):
        d.call(node("bob"), "respond", {"request_id": rid, "signature": signature.hex()})


@pytest.mark.parametrize(
    "signature",
    [
        ed25519_sign(domain_secret(0), PAYLOAD),  # under the underived group key
        sign_derived(0, "user2", "m/0", PAYLOAD),  # another account's key
        sign_derived(0, "user1", "m/1", PAYLOAD),  # another path
        sign_derived(0, "user1", "m/0", bytes(32)),  # another payload
        bytes(64),
    ],
)
def test_an_invalid_signature_is_rejected_and_the_request_stays(signature: bytes) -> None:
    d = driver()
    rid = request(d)
    before = d.state
    with pytest.raises(InvalidSignature):
        d.call(node("bob"), "respond", {"request_id": rid, "signature": signature.hex()})
    assert d.state == before


def test_respond_rejections() -> None:
    d = driver()
    rid = request(d)
    sig = sign_derived(0, "user1", "m/0", PAYLOAD).hex()
    with pytest.raises(NotParticipant):
        d.call(user("user1"), "respond", {"request_id": rid, "signature": sig})
    with pytest.raises(SignerKeyMismatch):
        d.call(node("bob", 2), "respond", {"request_id": rid, "signature": sig})
    with pytest.raises(RequestNotFound):
        d.call(node("bob"), "respond", {"request_id": rid + 1, "signature": sig})
    with pytest.raises(InvalidArguments):
        d.call(node("bob"), "respond", {"request_id": rid, "signature": sig[:-2]})
    with pytest.raises(InvalidArguments):
        d.call(node("bob"), "respond", {"request_id": -1, "signature": sig})


def test_a_request_not_answered_in_time_fails_in_on_block() -> None:
    d = driver({"sign_timeout_blocks": 5})
    first = request(d, height=10)
    second = request(d, height=12)
    assert d.contract.on_block(14, 0) == []
    events = d.contract.on_block(15, 0)
    assert [(e.kind, e.data["request_id"]) for e in events] == [("sign_failed", first)]
    assert events[0].data["reason"] == "not answered within 5 blocks"
    assert [r["request_id"] for r in d.view("pending_requests")] == [second]
    sig = sign_derived(0, "user1", "m/0", PAYLOAD).hex()
    with pytest.raises(RequestNotFound):
        d.call(node("bob"), "respond", {"request_id": first, "signature": sig})
    assert [e.data["request_id"] for e in d.contract.on_block(100, 0)] == [second]
    assert d.view("pending_requests") == []


def test_a_request_fails_by_block_time_whichever_deadline_comes_first() -> None:
    d = driver({"sign_timeout_blocks": 1000, "sign_timeout_ms": 5000})
    assert d.contract.next_timeout_ms() is None
    first = request(d, height=10)  # block time 10 000 ms (contract_helpers), deadline 15 000
    second = request(d, height=12)  # deadline 17 000
    assert d.contract.next_timeout_ms() == 15_000
    assert d.contract.on_block(13, 14_999) == []
    events = d.contract.on_block(14, 15_000)
    assert [(e.kind, e.data["request_id"]) for e in events] == [("sign_failed", first)]
    assert events[0].data["reason"] == "not answered in time"
    assert events[0].data["deadline_ms"] == 15_000
    assert d.contract.next_timeout_ms() == 17_000
    assert [e.data["request_id"] for e in d.contract.on_block(15, 10**9)] == [second]
    assert d.contract.next_timeout_ms() is None


def test_pending_requests_round_trip_with_their_deadline_time() -> None:
    d = driver({"sign_timeout_ms": 7000})
    request(d, height=3)
    state = d.contract.to_json()
    assert state["sign_requests"][0]["deadline_ms"] == 10_000
    assert Contract.from_json(state).to_json() == state
    assert Contract.from_json(state).next_timeout_ms() == 10_000


@pytest.mark.parametrize("size", [0, 31, 1233, 5000])
def test_payload_outside_32_to_1232_bytes_is_payload_size(size: int) -> None:
    d = driver()
    with pytest.raises(PayloadSize):
        d.call(user("user1"), "sign", {"payload": "ab" * size, "path": "", "domain_id": 0})


@pytest.mark.parametrize("size", [32, 1232])
def test_payload_bounds_are_inclusive(size: int) -> None:
    d = driver()
    payload = bytes([7]) * size
    rid = request(d, payload=payload)
    sig = sign_derived(0, "user1", "m/0", payload).hex()
    d.call(node("alice"), "respond", {"request_id": rid, "signature": sig})


@pytest.mark.parametrize(
    "args",
    [
        {"payload": "AB" * 32, "path": "", "domain_id": 0},
        {"payload": "abc", "path": "", "domain_id": 0},
        {"payload": 5, "path": "", "domain_id": 0},
        {"payload": "ab" * 32, "path": "x" * 257, "domain_id": 0},
        {"payload": "ab" * 32, "path": "\ud800", "domain_id": 0},
        {"payload": "ab" * 32, "path": 1, "domain_id": 0},
        {"payload": "ab" * 32, "path": "", "domain_id": "0"},
        {"payload": "ab" * 32, "path": ""},
    ],
)
def test_malformed_sign_arguments(args: dict[str, object]) -> None:
    with pytest.raises(InvalidArguments):
        driver().call(user("user1"), "sign", args)


def test_sign_on_an_unknown_domain() -> None:
    d = driver()
    with pytest.raises(DomainNotFound):
        d.call(user("user1"), "sign", {"payload": PAYLOAD.hex(), "path": "", "domain_id": 1})
    with pytest.raises(DomainNotFound):
        d.view("public_key", {"domain_id": 1, "account": "user1", "path": ""})


def test_pending_requests_are_capped() -> None:
    d = driver({"max_pending_requests": 2})
    request(d)
    request(d)
    before = d.state
    with pytest.raises(TooManyRequests):
        request(d)
    assert d.state == before


def test_request_view_of_an_unknown_id() -> None:
    with pytest.raises(RequestNotFound):
        driver().view("request", {"request_id": 3})
