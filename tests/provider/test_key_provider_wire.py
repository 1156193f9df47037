"""The key-provider protocol's messages (pure): round trips, the binding of every field,
forged and replayed-elsewhere messages refused with their codes."""

from __future__ import annotations

import dataclasses
import hashlib
import random
from collections.abc import Callable
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from quorumkeep.attest.dev import DevMeasurements, dev_platform_public_key, make_dev_quote
from quorumkeep.attest.eventlog import replay_rtmr3, runtime_event
from quorumkeep.attest.evidence import Evidence, Measurement
from quorumkeep.crypto.seal import KxKeyPair
from quorumkeep.crypto.storage_split import KeyPiece, StorageSecret, deal, verify_piece
from quorumkeep.wire.backup.statements import Ed25519Signer
from quorumkeep.wire.key_provider import (
    Deposit,
    KeyProviderError,
    Release,
    ReleaseRequest,
    check_deposit_signature,
    check_release_attestation,
    check_release_signature,
    make_deposit,
    make_release_request,
    open_deposit,
    open_release,
    release_report_data,
    seal_release,
)


def rng(seed: int) -> Callable[[int], bytes]:
    return random.Random(seed).randbytes


SPLIT = deal(StorageSecret.generate(rng(1)), 2, 3, rng(2))
NODE = Ed25519Signer(bytes(range(32)))
RELEASE = Ed25519Signer(bytes(range(1, 33)))
PROVIDER_ID = Ed25519Signer(bytes(range(2, 34)))
PROVIDER_KX = KxKeyPair.from_seed(bytes(range(3, 35)))


def deposit(**overrides: Any) -> Deposit:
    args: dict[str, Any] = {
        "account": "alice",
        "epoch": 1,
        "threshold": 2,
        "commitment": SPLIT.commitment,
        "piece": SPLIT.pieces[2],
        "signer": NODE,
        "release_public_key": RELEASE.public_key,
        "provider_identity": PROVIDER_ID.public_key,
        "provider_encryption": PROVIDER_KX.public_key,
        "now_ms": 1_000,
        "random_bytes": rng(3),
    }
    args.update(overrides)
    return make_deposit(**args)


def test_deposit_round_trip_and_open() -> None:
    d = deposit()
    again = Deposit.from_json(d.to_json())
    assert again == d
    check_deposit_signature(again, PROVIDER_ID.public_key)
    piece = open_deposit(again, PROVIDER_KX, PROVIDER_ID.public_key)
    assert piece == SPLIT.pieces[2] and verify_piece(piece, SPLIT.commitment)
    assert SPLIT.pieces[2].value.hex() not in str(d.to_json())


@pytest.mark.parametrize(
    "change",
    [
        {"account": "bob"},
        {"epoch": 2},
        {"index": 3},
        {"timestamp_ms": 2_000},
        {"release_public_key": NODE.public_key},
        {"commitment": tuple(reversed(SPLIT.commitment))},
    ],
)
def test_every_deposit_field_is_signed(change: dict[str, Any]) -> None:
    forged = dataclasses.replace(deposit(), **change)
    with pytest.raises(KeyProviderError) as info:
        check_deposit_signature(forged, PROVIDER_ID.public_key)
    assert info.value.code == "bad_signature"


def test_a_deposit_for_another_provider_neither_verifies_nor_opens() -> None:
    d = deposit()
    other = Ed25519Signer(bytes(range(9, 41)))
    with pytest.raises(KeyProviderError, match="not signed"):
        check_deposit_signature(d, other.public_key)
    with pytest.raises(KeyProviderError) as info:
        open_deposit(d, KxKeyPair.from_seed(bytes(32)), PROVIDER_ID.public_key)
    assert info.value.code == "decryption_failed"
    # re-signed by the node for other fields, the sealed piece no longer opens
    moved = dataclasses.replace(d, index=3)
    resigned = dataclasses.replace(
        moved, signature=NODE.sign(moved.statement(PROVIDER_ID.public_key))
    )
    check_deposit_signature(resigned, PROVIDER_ID.public_key)
    with pytest.raises(KeyProviderError, match="does not open"):
        open_deposit(resigned, PROVIDER_KX, PROVIDER_ID.public_key)


def request(
    nonce: bytes = b"\x07" * 32, requester: KxKeyPair | None = None
) -> tuple[ReleaseRequest, KxKeyPair]:
    requester = requester or KxKeyPair.generate(rng(4))
    return (
        make_release_request(
            account="alice",
            epoch=1,
            release_signer=RELEASE,
            requester=requester,
            nonce=nonce,
            provider_identity=PROVIDER_ID.public_key,
        ),
        requester,
    )


def test_release_round_trip() -> None:
    req, requester = request()
    again = ReleaseRequest.from_json(req.to_json())
    assert again == req
    check_release_signature(again, PROVIDER_ID.public_key)
    release = seal_release(again, SPLIT.pieces[2], PROVIDER_KX, rng(5))
    back = Release.from_json(release.to_json())
    assert open_release(back, req, requester, PROVIDER_KX.public_key, 2) == SPLIT.pieces[2]


def test_forged_release_requests_refused() -> None:
    req, _ = request()
    for change in (
        {"account": "mallory"},
        {"epoch": 9},
        {"nonce": b"\x08" * 32},
        {"requester_public_key": KxKeyPair.generate(rng(6)).public_key},
        {"release_public_key": NODE.public_key},
    ):
        with pytest.raises(KeyProviderError) as info:
            check_release_signature(dataclasses.replace(req, **change), PROVIDER_ID.public_key)
        assert info.value.code == "bad_signature"
    # signed for another provider
    with pytest.raises(KeyProviderError):
        check_release_signature(req, NODE.public_key)


def test_a_release_opens_only_for_its_request() -> None:
    req, requester = request()
    release = seal_release(req, SPLIT.pieces[1], PROVIDER_KX, rng(7))
    other, _ = request(nonce=b"\x09" * 32, requester=requester)
    with pytest.raises(KeyProviderError) as info:  # an answer replayed to a later request
        open_release(release, other, requester, PROVIDER_KX.public_key, 1)
    assert info.value.code == "piece_mismatch"
    with pytest.raises(KeyProviderError):  # not from the registered provider key
        open_release(release, req, requester, KxKeyPair.generate(rng(8)).public_key, 1)
    with pytest.raises(KeyProviderError, match="index 1, not 2"):
        open_release(release, req, requester, PROVIDER_KX.public_key, 2)


@settings(max_examples=60, deadline=None)
@given(
    st.dictionaries(
        st.text(max_size=20),
        st.one_of(
            st.none(),
            st.integers(),
            st.text(max_size=80),
            st.lists(st.text(max_size=64), max_size=3),
        ),
        max_size=12,
    )
)
def test_garbage_is_malformed_request(body: dict[str, Any]) -> None:
    for parse in (Deposit.from_json, ReleaseRequest.from_json):
        with pytest.raises(KeyProviderError) as info:
            parse(body)
        assert info.value.code == "malformed_request"
    with pytest.raises(KeyProviderError) as info:
        Release.from_json(body)
    assert info.value.code == "malformed_response"


def test_piece_repr_hidden() -> None:
    release = Release("alice", 1, 1, b"\x01" * 72)
    assert "0101" not in repr(release)
    assert "value=<hidden>" in repr(KeyPiece(1, SPLIT.pieces[1].value))


# --- a release's attestation ------------------------------------------------------------------

PLATFORM_SEED = hashlib.sha256(b"key provider tests platform").digest()


def dev_quote(report: bytes, build: str = "v1") -> tuple[dict[str, Any], Measurement]:
    app = hashlib.sha256(f"compose/{build}".encode()).digest()
    m = Measurement(*(hashlib.sha384(t.encode()).digest() for t in ("a", "b", "c", build)), app)
    events = (runtime_event("compose-hash", app),)
    dm = DevMeasurements(m.mrtd, m.rtmr0, m.rtmr1, m.rtmr2, replay_rtmr3(list(events)))
    quote = make_dev_quote(PLATFORM_SEED, dm, report)
    return Evidence("dev", quote, None, events).to_json(), m


def policy(*measurements: Measurement) -> dict[str, Any]:
    return {
        "dev_platform_public_key": dev_platform_public_key(PLATFORM_SEED).hex(),
        "tcb_policy": {"statuses": ["UpToDate"], "advisory_ids": []},
        "allowed_measurements": {"node": [m.to_json() for m in measurements]},
    }


def test_a_release_attestation_binds_the_fresh_key_and_the_nonce() -> None:
    req, _ = request()
    evidence, m = dev_quote(release_report_data(req))
    attested = dataclasses.replace(req, attestation=evidence)
    assert check_release_attestation(attested, policy(m), 1_700_000_000) == m.measurement_id
    # the same quote for another nonce or another fresh key
    other, _ = request(nonce=b"\x0a" * 32)
    with pytest.raises(KeyProviderError) as info:
        check_release_attestation(dataclasses.replace(other, attestation=evidence), policy(m), 0)
    assert info.value.code == "attestation_invalid" and "report_data" in info.value.message
    # a build not on the node allow-list
    _, other_build = dev_quote(b"\x00" * 64, "v2")
    with pytest.raises(KeyProviderError, match="not on the node allow-list"):
        check_release_attestation(attested, policy(other_build), 0)
    # a contract without attestation, a release without one, garbage
    with pytest.raises(KeyProviderError) as info:
        check_release_attestation(attested, None, 0)
    assert info.value.code == "attestation_required"
    with pytest.raises(KeyProviderError) as info:
        check_release_attestation(req, policy(m), 0)
    assert info.value.code == "attestation_required"
    with pytest.raises(KeyProviderError) as info:
        check_release_attestation(dataclasses.replace(req, attestation={"x": 1}), policy(m), 0)
    assert info.value.code == "attestation_invalid"
