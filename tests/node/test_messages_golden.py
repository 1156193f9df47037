"""The mesh messages' payload bytes, pinned (docs/node-protocols.md).

Every message type is built from fixed points and scalars; the SHA-256 of its payload is a
literal taken from the hand-written codec the declarative one replaced. A change to any of
them is a change of the mesh format, which peers of the previous version would refuse, not a
refactoring. Pure: no processes.
"""

from __future__ import annotations

import hashlib

import pytest

from quorumkeep.crypto import dkg, frost, reshare
from quorumkeep.crypto.group import Element, base_mul, scalar_from_int
from quorumkeep.crypto.keys import PublicKeyPackage
from quorumkeep.node import messages as m


def P(k: int) -> Element:
    return base_mul(scalar_from_int(k))


H = bytes(range(32))
C = (frost.SigningCommitments(P(3), P(4)), frost.SigningCommitments(P(5), P(6)))
PUB = PublicKeyPackage(P(7), {1: P(8), 2: P(9), 5: P(10)}, 2)
SAMPLES: list[tuple[str, m.Message]] = [
    ("dkg", m.SessionAbort("s", 3, "why")),
    ("reshare", m.SessionAbort("s", None, "timeout")),
    ("sign", m.Refusal("p", "not_pending", "no")),
    ("dkg", m.DkgEcho("dkg-1", {1: H, 2: H})),
    ("dkg", m.DkgRound2("dkg-1", dkg.Round2Package(scalar_from_int(11)))),
    ("dkg", m.DkgConfirm("dkg-1", H)),
    ("reshare", m.ReshareReady("r")),
    ("reshare", m.ReshareDealers("r", (1, 2), PUB)),
    (
        "reshare",
        m.ReshareDeal(
            "r", reshare.ResharePublicPackage((P(1), P(2))), reshare.SubShare(scalar_from_int(12))
        ),
    ),
    ("reshare", m.ReshareConfirm("r", H, {1: H, 3: H})),
    ("presign", m.PresignRequest("1:ab", 0, 3, (1, 2, 3), 64)),
    ("presign", m.PresignCommitments("1:ab", C)),
    ("presign", m.PresignConfirm("1:ab", {1: C, 2: C})),
    ("presign", m.PresignStored("1:ab")),
    (
        "sign",
        m.SignShareRequest(
            "1:ab:0", 9, 0, 3, b"\x00" * 32, "a/b", "user", ((1, P(1), P(2)), (4, P(2), P(1)))
        ),
    ),
    ("sign", m.SignShare("1:ab:0", H)),
]
PINNED = [
    "3838b53b8909f0283ffce925a1a702345fbdd07c49cb1c6401dd1286ea31052b",  # abort
    "36ea7dfa7ccd2a44a9c686b97ef2e4c6fb509a025dce6aac7418238abcdc2ef7",  # abort
    "8de4f48a2ba65bfbb474e56f28c201cde134625f0c01171c4873c8776995b816",  # refusal
    "b54b39fff84b8d9da5522c3dd8052168d7b65dbfa98f107d7fa0ad09f7ec0070",  # dkg_echo
    "09815905bb237e978e1742e4d3861691496e989631cf19f9759ba5a463d11091",  # dkg_round2
    "20f6358df9da96a84d5a9361f4996ab4ac2a20f8b13a4b8e5e0295cfee06361a",  # dkg_confirm
    "9a2aba241f42a63bf7f5eb8ee33d7e4b6cac8d06c43d7da18ff4a71ac7d950fa",  # reshare_ready
    "2045c5282d91190cda1801a118644761e826b53b4d9ad8503c97f8914624e371",  # reshare_dealers
    "199697593c0bbf3add51793e281bdc85a5748d11c306e982f080da6bf2ba5768",  # reshare_deal
    "3140617b26d9dfa304f3fd770a5bb26d840c2fa777ae79336606e06ec9895237",  # reshare_confirm
    "1f0ad19e27e700608967af11997df9648dca535da9a8592d9a5461956878cc16",  # presign_request
    "2828a63d827c2ebc4335ef4d3a7c574688a37237049dda23a3ddc75c907501d6",  # presign_commitments
    "f75f66aa28b12cc46c079016b219b5dc6be0c81bf5a83a856f7e6685028ad3a3",  # presign_confirm
    "76ae949715708635b5127fc36c4b488002166b7988470eaff906c64875f3f208",  # presign_stored
    "b0f19bd437ddb96d9c8539eecc4943b62e6f0e6391b22303d688b12a8903a79a",  # sign_request
    "2db65ead8ddd0ba92796759c1ddcd69b78d8c0f561ebf73c691f63d0dd506785",  # sign_share
]


@pytest.mark.parametrize(
    ("channel", "message", "digest"),
    [(c, msg, d) for (c, msg), d in zip(SAMPLES, PINNED, strict=True)],
    ids=lambda x: getattr(x, "TYPE", None) if isinstance(x, m.Message) else None,
)
def test_payload_bytes_are_pinned(channel: str, message: m.Message, digest: str) -> None:
    payload = m.encode(message)
    assert hashlib.sha256(payload).hexdigest() == digest
    assert m.decode(channel, payload) == message


def test_every_message_type_is_pinned() -> None:
    assert {type(msg).TYPE for _, msg in SAMPLES} >= set(m.MESSAGE_TYPES) - {"dkg_round1"}
