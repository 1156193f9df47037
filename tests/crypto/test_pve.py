"""Publicly verifiable encryption: round trips, soundness (every altered part refused),
standard RSA-OAEP compatibility and the byte format (golden)."""

from __future__ import annotations

import hashlib
import os
from dataclasses import replace
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa
from hypothesis import given, settings
from hypothesis import strategies as st

from quorumkeep.crypto import pve
from quorumkeep.crypto.errors import InvalidEncoding
from quorumkeep.crypto.group import RandomBytes, base_mul, random_scalar, scalar_from_int

DATA = Path(__file__).parent / "data"


def _load_key() -> rsa.RSAPrivateKey:
    key = serialization.load_pem_private_key(
        (DATA / "ers-test-rsa2048.pem").read_bytes(), password=None
    )
    assert isinstance(key, rsa.RSAPrivateKey)
    return key


PRIVATE = _load_key()
PUBLIC = pve.RecoveryPublicKey.from_private(PRIVATE)
LABEL = pve.Label(0, 3, "alice", 2, bytes(range(32))).encode()


def counter_random() -> RandomBytes:
    """Deterministic 'randomness' for golden bytes: SHA-256 of a counter."""
    state = {"n": 0}

    def random_bytes(size: int) -> bytes:
        out = b""
        while len(out) < size:
            out += hashlib.sha256(b"test-rng" + state["n"].to_bytes(8, "big")).digest()
            state["n"] += 1
        return out[:size]

    return random_bytes


SHARE = scalar_from_int(0x1234567890ABCDEF1234567890ABCDEF)
POINT = base_mul(SHARE)


@pytest.fixture(scope="module")
def part() -> pve.Part:
    return pve.encrypt(PUBLIC, SHARE, LABEL, counter_random())


def test_round_trip(part: pve.Part) -> None:
    encoded = part.encode()
    decoded = pve.Part.decode(encoded)
    assert decoded == part
    pve.verify(PUBLIC, decoded, POINT, LABEL)
    assert pve.decrypt(PRIVATE, decoded, LABEL) == SHARE


def test_random_shares_round_trip() -> None:
    share = random_scalar(os.urandom)
    part = pve.encrypt(PUBLIC, share, LABEL, os.urandom)
    pve.verify(PUBLIC, part, base_mul(share), LABEL)
    assert pve.decrypt(PRIVATE, part, LABEL) == share


def test_golden_bytes(part: pve.Part) -> None:
    """The format is pinned: deterministic randomness and a fixed key give fixed bytes."""
    encoded = part.encode()
    header = (
        bytes([1])
        + (128).to_bytes(2, "big")
        + (256).to_bytes(2, "big")
        + PUBLIC.fingerprint
        + POINT
        + len(LABEL).to_bytes(2, "big")
        + LABEL
    )
    assert encoded.startswith(header)
    ones = sum((part.challenge[i >> 3] >> (i & 7)) & 1 for i in range(128))
    assert len(encoded) == len(header) + 16 + 128 * (16 + 256) + 32 * ones
    assert LABEL.hex() == (
        b"quorumkeep-ers-label-v1".hex()
        + "00000000"
        + "0000000000000003"
        + "0005"
        + b"alice".hex()
        + "0000000000000002"
        + bytes(range(32)).hex()
    )
    assert hashlib.sha256(encoded).hexdigest() == GOLDEN_DIGEST


GOLDEN_DIGEST = "6e8000cea1b104964826581bb96d0e7c10bc42cb0d9392fc8476d21ce779a82d"


def test_oaep_is_standard() -> None:
    """Our seeded RSAES-OAEP output is decrypted by a standard implementation, and the
    standard implementation's output by ours (the decryptor is the standard one)."""
    label = b"some label"
    ciphertext = pve.oaep_encrypt(PUBLIC, b"\x07" * 32, label, b"\x01" * 32)
    oaep = padding.OAEP(
        mgf=padding.MGF1(algorithm=hashes.SHA256()), algorithm=hashes.SHA256(), label=label
    )
    assert PRIVATE.decrypt(ciphertext, oaep) == b"\x07" * 32
    standard = PRIVATE.public_key().encrypt(b"\x09" * 32, oaep)
    assert pve.oaep_decrypt(PRIVATE, standard, label) == b"\x09" * 32


def test_wrong_share_refused(part: pve.Part) -> None:
    """A part encrypting another scalar is refused for this verifying share."""
    other = pve.encrypt(PUBLIC, scalar_from_int(5), LABEL, os.urandom)
    with pytest.raises(pve.InvalidProof, match="another point"):
        pve.verify(PUBLIC, other, POINT, LABEL)
    # Relabelling the point in the part does not help: the challenge no longer matches.
    with pytest.raises(pve.InvalidProof):
        pve.verify(PUBLIC, replace(other, point=POINT), POINT, LABEL)


def test_swapped_rows_refused(part: pve.Part) -> None:
    rows = list(part.rows)
    # two rows with the same challenge bit, so the layout stays decodable
    bits = [(part.challenge[i >> 3] >> (i & 7)) & 1 for i in range(128)]
    i = 0
    j = next(k for k in range(1, 128) if bits[k] == bits[0])
    rows[i], rows[j] = rows[j], rows[i]
    swapped = replace(part, rows=tuple(rows))
    with pytest.raises(pve.InvalidProof, match="challenge"):
        pve.verify(PUBLIC, pve.Part.decode(swapped.encode()), POINT, LABEL)


def test_other_label_refused(part: pve.Part) -> None:
    other = pve.Label(0, 4, "alice", 2, bytes(range(32))).encode()
    with pytest.raises(pve.InvalidProof, match="another label"):
        pve.verify(PUBLIC, part, POINT, other)
    with pytest.raises(pve.InvalidProof, match="challenge"):
        pve.verify(PUBLIC, replace(part, label=other), POINT, other)


def test_other_key_refused(part: pve.Part) -> None:
    other = pve.RecoveryPublicKey.from_private(
        rsa.generate_private_key(public_exponent=65537, key_size=2048)
    )
    with pytest.raises(pve.InvalidProof, match="another recovery key"):
        pve.verify(other, part, POINT, LABEL)


def test_truncated_and_trailing_refused(part: pve.Part) -> None:
    encoded = part.encode()
    for cut in (0, 1, 40, len(encoded) // 2, len(encoded) - 1):
        with pytest.raises(pve.InvalidProof, match="truncated"):
            pve.Part.decode(encoded[:cut])
    with pytest.raises(pve.InvalidProof, match="trailing"):
        pve.Part.decode(encoded + b"\x00")


def test_bad_ciphertext_refused(part: pve.Part) -> None:
    row = part.rows[5]
    big = replace(row, ciphertext=b"\xff" * len(row.ciphertext))
    rows = list(part.rows)
    rows[5] = big
    with pytest.raises(pve.InvalidProof, match="modulus"):
        pve.verify(PUBLIC, replace(part, rows=tuple(rows)), POINT, LABEL)


@settings(max_examples=15, deadline=None)
@given(position=st.integers(min_value=0), flip=st.integers(min_value=1, max_value=255))
def test_any_flipped_byte_refused(part: pve.Part, position: int, flip: int) -> None:
    """Every single-byte change is refused: by the decoder or by the proof."""
    encoded = bytearray(part.encode())
    encoded[position % len(encoded)] ^= flip
    with pytest.raises(pve.InvalidProof):
        pve.verify(PUBLIC, pve.Part.decode(bytes(encoded)), POINT, LABEL)


def test_cheating_prover_is_caught() -> None:
    """A prover whose rows all encrypt a wrong unopened half is caught by the challenge:
    re-deriving the challenge after fixing rows changes it (the cut-and-choose)."""
    part = pve.encrypt(PUBLIC, SHARE, LABEL, os.urandom)
    rows = list(part.rows)
    # replace every unopened ciphertext by an encryption of garbage
    rows = [
        replace(r, ciphertext=pve.oaep_encrypt(PUBLIC, b"\x00" * 32, b"x", b"\x02" * 32))
        for r in rows
    ]
    with pytest.raises(pve.InvalidProof, match="challenge"):
        pve.verify(PUBLIC, replace(part, rows=tuple(rows)), POINT, LABEL)


def test_decrypt_with_wrong_key_fails(part: pve.Part) -> None:
    other = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    with pytest.raises(pve.DecryptionFailed, match="another recovery key"):
        pve.decrypt(other, part, LABEL)
    with pytest.raises(pve.DecryptionFailed, match="another label"):
        pve.decrypt(PRIVATE, part, b"other")


def test_decrypt_skips_bad_rows(part: pve.Part) -> None:
    """Decryption tries rows until one gives x: an undecryptable first row is skipped."""
    rows = list(part.rows)
    rows[0] = replace(rows[0], ciphertext=bytes(255) + b"\x05")
    assert pve.decrypt(PRIVATE, replace(part, rows=tuple(rows)), LABEL) == SHARE


def test_recovery_key_rules() -> None:
    small = rsa.generate_private_key(public_exponent=3, key_size=2048)
    der = small.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    with pytest.raises(InvalidEncoding, match="exponent"):
        pve.RecoveryPublicKey.from_der(der)
    with pytest.raises(InvalidEncoding, match="SubjectPublicKeyInfo"):
        pve.RecoveryPublicKey.from_der(b"\x30\x00")
    assert pve.RecoveryPublicKey.from_der(PUBLIC.spki_der) == PUBLIC
    assert len(PUBLIC.fingerprint) == 32


def test_package_digest_is_order_independent() -> None:
    shares = [(1, base_mul(scalar_from_int(1))), (2, base_mul(scalar_from_int(2)))]
    a = pve.package_digest(0, 1, POINT, 2, shares)
    assert a == pve.package_digest(0, 1, POINT, 2, list(reversed(shares)))
    assert a != pve.package_digest(0, 2, POINT, 2, shares)


_labels = st.builds(
    pve.Label,
    domain_id=st.integers(0, 2**32 - 1),
    epoch=st.integers(0, 2**64 - 1),
    account=st.text(max_size=20),
    participant_id=st.integers(1, 2**64 - 1),
    keyset_hash=st.binary(min_size=32, max_size=32),
)


@given(a=_labels, b=_labels)
def test_label_encoding_is_injective(a: pve.Label, b: pve.Label) -> None:
    """Distinct labels never encode alike (length prefixes, fixed-size fields)."""
    assert (a.encode() == b.encode()) == (a == b)
