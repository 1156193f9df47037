"""The protocol message codec: round trips, and one test per rejection rule."""

from __future__ import annotations

import contextlib
import json
import os
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from quorumkeep.crypto import dkg, frost, reshare
from quorumkeep.crypto.group import BASE, IDENTITY, ORDER, base_mul, random_scalar
from quorumkeep.crypto.keys import PublicKeyPackage, trusted_dealer_keygen
from quorumkeep.node.key_packages import (
    key_package_from_share,
    public_key_package_from_bytes,
    public_key_package_from_dict,
    public_key_package_hash,
    public_key_package_to_bytes,
    public_key_package_to_dict,
)
from quorumkeep.node.messages import (
    CHANNEL_DKG,
    CHANNEL_PRESIGN,
    CHANNEL_RESHARE,
    CHANNEL_SIGN,
    MAX_MESSAGE_SIZE,
    MESSAGE_TYPES,
    DkgConfirm,
    DkgEcho,
    DkgRound1,
    DkgRound2,
    Message,
    MessageError,
    PresignCommitments,
    PresignConfirm,
    PresignRequest,
    PresignStored,
    Refusal,
    ReshareConfirm,
    ReshareDeal,
    ReshareDealers,
    ReshareReady,
    SessionAbort,
    SignShare,
    SignShareRequest,
    decode,
    encode,
)

P1 = base_mul(random_scalar(os.urandom))
P2 = base_mul(random_scalar(os.urandom))
H = bytes(range(32))
S = random_scalar(os.urandom)
_, PUBLIC, _ = trusted_dealer_keygen(random_scalar(os.urandom), 2, [1, 2, 5], os.urandom)
_, ROUND1 = dkg.part1(1, [1, 2], 2, os.urandom, context=b"ctx")
RESHARE_PACKAGE = reshare.ResharePublicPackage((P1, P2))
COMMITMENTS = (frost.SigningCommitments(P1, P2), frost.SigningCommitments(P2, P1))

SAMPLES: list[tuple[str, Message]] = [
    (CHANNEL_DKG, SessionAbort("s", 3, "why")),
    (CHANNEL_RESHARE, SessionAbort("s", None, "timeout")),
    (CHANNEL_SIGN, Refusal("p", "not_pending", "no")),
    (CHANNEL_DKG, DkgRound1("dkg-1", ROUND1)),
    (CHANNEL_DKG, DkgEcho("dkg-1", {1: H, 2: H})),
    (CHANNEL_DKG, DkgRound2("dkg-1", dkg.Round2Package(random_scalar(os.urandom)))),
    (CHANNEL_DKG, DkgConfirm("dkg-1", H)),
    (CHANNEL_RESHARE, ReshareReady("r")),
    (CHANNEL_RESHARE, ReshareDealers("r", (1, 2), PUBLIC)),
    (CHANNEL_RESHARE, ReshareDeal("r", RESHARE_PACKAGE, reshare.SubShare(S))),
    (CHANNEL_RESHARE, ReshareConfirm("r", H, {1: H, 3: H})),
    (CHANNEL_PRESIGN, PresignRequest("1:ab", 0, 3, (1, 2, 3), 64)),
    (CHANNEL_PRESIGN, PresignCommitments("1:ab", COMMITMENTS)),
    (CHANNEL_PRESIGN, PresignConfirm("1:ab", {1: COMMITMENTS, 2: COMMITMENTS})),
    (CHANNEL_PRESIGN, PresignStored("1:ab")),
    (
        CHANNEL_SIGN,
        SignShareRequest(
            "1:ab:0", 9, 0, 3, b"\x00" * 32, "a/b", "user", ((1, P1, P2), (4, P2, P1))
        ),
    ),
    (CHANNEL_SIGN, SignShare("1:ab:0", H)),
]


def test_every_message_type_has_a_sample() -> None:
    assert {type(m).TYPE for _, m in SAMPLES} == set(MESSAGE_TYPES)


@pytest.mark.parametrize(("channel", "message"), SAMPLES, ids=lambda x: getattr(x, "TYPE", x))
def test_round_trip(channel: str, message: Message) -> None:
    payload = encode(message)
    assert payload.isascii() and b" " not in payload.replace(b"a/b", b"")
    assert decode(channel, payload) == message


def test_secret_fields_are_hidden_from_repr() -> None:
    assert S.hex() not in repr(DkgRound2("s", dkg.Round2Package(S)))
    assert S.hex() not in repr(ReshareDeal("s", RESHARE_PACKAGE, reshare.SubShare(S)))


def mutate(message: Message, **changes: Any) -> bytes:
    obj = json.loads(encode(message))
    for key, value in changes.items():
        if value is ...:
            del obj[key]
        else:
            obj[key] = value
    return json.dumps(obj).encode()


SIGN = SAMPLES[-2][1]
PRESIGN = SAMPLES[11][1]


@pytest.mark.parametrize(
    ("channel", "payload", "match"),
    [
        (CHANNEL_SIGN, b"\xff", "not a JSON document"),
        (CHANNEL_SIGN, b"[" * 100_000, "not a JSON document"),
        (CHANNEL_SIGN, b"[]", "expected a JSON object"),
        (CHANNEL_SIGN, b'{"type":"sign_share","type":"sign_share"}', "duplicate key"),
        (CHANNEL_SIGN, b'{"type":"sign_share","session":"s","share":NaN}', "NaN"),
        (CHANNEL_SIGN, b'{"type":"no_such","session":"s"}', "unknown message type"),
        (CHANNEL_SIGN, b'{"type":7,"session":"s"}', "unknown message type"),
        (CHANNEL_SIGN, encode(DkgConfirm("s", H)), "not allowed on channel"),
        (CHANNEL_DKG, encode(ReshareReady("s")), "not allowed on channel"),
        (CHANNEL_SIGN, mutate(SIGN, caller=...), "missing keys"),
        (CHANNEL_SIGN, mutate(SIGN, extra=1), "unknown keys"),
        (CHANNEL_SIGN, mutate(SIGN, session=""), "session"),
        (CHANNEL_SIGN, mutate(SIGN, session="a b"), "session"),
        (CHANNEL_SIGN, mutate(SIGN, session="x" * 129), "session"),
        (CHANNEL_SIGN, mutate(SIGN, session="é"), "session"),
        (CHANNEL_SIGN, mutate(SIGN, session=5), "session"),
        (CHANNEL_SIGN, mutate(SIGN, request_id=True), "request_id"),
        (CHANNEL_SIGN, mutate(SIGN, request_id=1.0), "request_id"),
        (CHANNEL_SIGN, mutate(SIGN, request_id=-1), "request_id"),
        (CHANNEL_SIGN, mutate(SIGN, request_id=2**63), "request_id"),
        (CHANNEL_SIGN, mutate(SIGN, request_id="1"), "request_id"),
        (CHANNEL_SIGN, mutate(SIGN, payload="0"), "payload"),
        (CHANNEL_SIGN, mutate(SIGN, payload="AB" * 32), "lowercase"),
        (CHANNEL_SIGN, mutate(SIGN, payload="zz" * 32), "not a hex string"),
        (CHANNEL_SIGN, mutate(SIGN, payload="00" * 4097), "at most"),
        (CHANNEL_SIGN, mutate(SIGN, payload=[0]), "hex string"),
        (CHANNEL_SIGN, mutate(SIGN, path="p" * 257), "path"),
        (CHANNEL_SIGN, mutate(SIGN, path=None), "path"),
        (CHANNEL_SIGN, mutate(SIGN, caller=""), "caller"),
        (CHANNEL_SIGN, mutate(SIGN, commitments=[]), "empty"),
        (CHANNEL_SIGN, mutate(SIGN, commitments={}), "expected a list"),
        (CHANNEL_SIGN, mutate(SIGN, commitments=[[1, P1.hex()]]), "identifier, hiding"),
        (
            CHANNEL_SIGN,
            mutate(SIGN, commitments=[[2, P1.hex(), P2.hex()], [1, P1.hex(), P2.hex()]]),
            "ascending",
        ),
        (
            CHANNEL_SIGN,
            mutate(SIGN, commitments=[[1, P1.hex(), P2.hex()], [1, P1.hex(), P2.hex()]]),
            "ascending",
        ),
        (CHANNEL_SIGN, mutate(SIGN, commitments=[[0, P1.hex(), P2.hex()]]), "identifier"),
        (CHANNEL_SIGN, mutate(SIGN, commitments=[[1, P1.hex()[:62], P2.hex()]]), "hiding"),
        (CHANNEL_SIGN, mutate(SignShare("s", H), share=H.hex()[:-2]), "share"),
        (CHANNEL_SIGN, mutate(Refusal("s", "x", "y"), code="Bad Code"), "code"),
        (CHANNEL_SIGN, mutate(Refusal("s", "x", "y"), reason="r" * 201), "reason"),
        (CHANNEL_DKG, mutate(SessionAbort("s", 1, "y"), culprit=0), "culprit"),
        (CHANNEL_DKG, mutate(SessionAbort("s", 1, "y"), culprit="1"), "culprit"),
        (CHANNEL_PRESIGN, mutate(PRESIGN, count=0), "count"),
        (CHANNEL_PRESIGN, mutate(PRESIGN, count=65), "count"),
        (CHANNEL_PRESIGN, mutate(PRESIGN, participants=[1, 1, 2]), "ascending"),
        (CHANNEL_PRESIGN, mutate(PRESIGN, participants=[2, 1]), "ascending"),
        (CHANNEL_PRESIGN, mutate(PRESIGN, participants=[True, 2]), "participants"),
        (
            CHANNEL_PRESIGN,
            mutate(PresignCommitments("s", COMMITMENTS), commitments=""),
            "pairs of 32-byte",
        ),
        (
            CHANNEL_PRESIGN,
            mutate(PresignCommitments("s", COMMITMENTS), commitments="00" * 96),
            "pairs of 32-byte",
        ),
        (
            CHANNEL_PRESIGN,
            mutate(PresignCommitments("s", COMMITMENTS), commitments="00" * 64 * 65),
            "at most",
        ),
        (
            CHANNEL_PRESIGN,
            mutate(
                PresignConfirm("s", {1: COMMITMENTS}),
                commitments=[[1, "00" * 128], [2, "00" * 64]],
            ),
            "different counts",
        ),
        (
            CHANNEL_PRESIGN,
            mutate(PresignConfirm("s", {1: COMMITMENTS}), commitments=[[1, "00" * 128, 3]]),
            "identifier, hex",
        ),
        (
            CHANNEL_PRESIGN,
            mutate(PresignConfirm("s", {1: COMMITMENTS}), commitments=[[1, "00" * 100]]),
            "pairs of 32-byte",
        ),
        (CHANNEL_DKG, mutate(DkgEcho("s", {1: H}), hashes=[[1, H.hex()], [1, H.hex()]]), "asc"),
        (CHANNEL_DKG, mutate(DkgEcho("s", {1: H}), hashes=[[1, H.hex()[:10]]]), "hex digits"),
        (CHANNEL_DKG, mutate(DkgEcho("s", {1: H}), hashes=[1]), "identifier, hex"),
        (CHANNEL_DKG, mutate(DkgConfirm("s", H), public_key_package_hash="00"), "hex digits"),
        (
            CHANNEL_DKG,
            mutate(DkgRound2("s", dkg.Round2Package(S)), share=ORDER.to_bytes(32, "little").hex()),
            "share",
        ),
        (
            CHANNEL_DKG,
            mutate(DkgRound1("s", ROUND1), package={"commitment": [], "proof": {}}),
            "package",
        ),
        (
            CHANNEL_RESHARE,
            mutate(ReshareDeal("s", RESHARE_PACKAGE, reshare.SubShare(S)), package={"x": 1}),
            "package",
        ),
        (
            CHANNEL_RESHARE,
            mutate(
                ReshareDeal("s", RESHARE_PACKAGE, reshare.SubShare(S)),
                package={"commitment": [IDENTITY.hex()]},
            ),
            "package",
        ),
        (
            CHANNEL_RESHARE,
            mutate(ReshareDealers("s", (1,), PUBLIC), dealers=[2, 1]),
            "ascending",
        ),
        (
            CHANNEL_RESHARE,
            mutate(ReshareDealers("s", (1,), PUBLIC), old_public={"threshold": 2}),
            "old_public",
        ),
        (
            CHANNEL_RESHARE,
            mutate(ReshareConfirm("s", H, {1: H}), packages=[[1, "zz" * 32]]),
            "hex",
        ),
    ],
)
def test_rejections(channel: str, payload: bytes, match: str) -> None:
    with pytest.raises(MessageError, match=match) as caught:
        decode(channel, payload)
    assert caught.value.code == "invalid_message"
    assert len(str(caught.value)) < 300  # one readable line, never a dump of the input


def test_oversize_payload_is_refused_before_parsing() -> None:
    with pytest.raises(MessageError, match="exceeds"):
        decode(CHANNEL_SIGN, b" " * (MAX_MESSAGE_SIZE + 1))


def test_lone_surrogate_in_a_string_is_refused() -> None:
    payload = encode(SIGN).replace(b'"a/b"', b'"\\ud800"')
    with pytest.raises(MessageError, match="path"):
        decode(CHANNEL_SIGN, payload)


def test_public_key_package_encodings() -> None:
    data = public_key_package_to_bytes(PUBLIC)
    assert public_key_package_from_bytes(data) == PUBLIC
    assert public_key_package_from_dict(public_key_package_to_dict(PUBLIC)) == PUBLIC
    assert len(public_key_package_hash(PUBLIC)) == 32
    bad_cases = {
        "truncated": data[:3],
        "wrong length": data[:-1],
        "ascending": data[:4] + data[4 + 40 : 4 + 80] + data[4 : 4 + 40] + data[4 + 80 :],
        "threshold": (9).to_bytes(2, "big") + data[2:],
        "group key": data[:-32] + IDENTITY,
        "verifying share": data[:12] + bytes(32) + data[44:],
    }
    for match, bad in bad_cases.items():
        with pytest.raises(MessageError, match=match):
            public_key_package_from_bytes(bad)
    as_dict: dict[str, Any] = public_key_package_to_dict(PUBLIC)
    for field, value, match in [
        ("threshold", 0, "threshold"),
        ("group_public_key", IDENTITY.hex(), "group key"),
        ("verifying_shares", [[1, BASE.hex()], [1, BASE.hex()]], "ascending"),
    ]:
        with pytest.raises(MessageError, match=match):
            public_key_package_from_dict({**as_dict, field: value})
    with pytest.raises(MessageError):
        public_key_package_from_dict({**as_dict, "extra": 1})


def test_key_package_from_share_checks_the_share() -> None:
    packages, public, _ = trusted_dealer_keygen(random_scalar(os.urandom), 2, [1, 2], os.urandom)
    assert key_package_from_share(1, packages[1].signing_share, public) == packages[1]
    with pytest.raises(MessageError, match="does not match"):
        key_package_from_share(1, packages[2].signing_share, public)
    with pytest.raises(MessageError, match="no verifying share"):
        key_package_from_share(3, packages[1].signing_share, public)


@settings(max_examples=40, deadline=None)
@given(
    request_id=st.integers(0, 2**63 - 1),
    payload=st.binary(max_size=64),
    path=st.text(max_size=40),
    caller=st.text(min_size=1, max_size=20),
    ids=st.sets(st.integers(1, 2**63 - 1), min_size=1, max_size=5),
)
def test_sign_request_round_trips(
    request_id: int, payload: bytes, path: str, caller: str, ids: set[int]
) -> None:
    try:
        path.encode("utf-8")
        caller.encode("utf-8")
    except UnicodeEncodeError:
        return  # not representable text: the codec refuses it (test above)
    commitments = tuple((i, P1, P2) for i in sorted(ids))
    message = SignShareRequest("x:y:0", request_id, 1, 2, payload, path, caller, commitments)
    assert decode(CHANNEL_SIGN, encode(message)) == message


@settings(max_examples=60, deadline=None)
@given(st.binary(max_size=200))
def test_arbitrary_bytes_never_crash_the_decoder(data: bytes) -> None:
    for channel in (CHANNEL_DKG, CHANNEL_SIGN):
        with contextlib.suppress(MessageError):
            decode(channel, data)


def test_public_key_package_type() -> None:
    assert isinstance(PUBLIC, PublicKeyPackage)
