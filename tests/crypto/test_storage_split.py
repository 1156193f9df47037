"""Storage-key splitting (Feldman VSS): round trips, any k of m, bad pieces named, re-deals."""

from __future__ import annotations

import hashlib
import random
from collections.abc import Callable

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from quorumkeep.crypto import group
from quorumkeep.crypto.errors import CheaterDetected, InvalidEncoding, InvalidParameters
from quorumkeep.crypto.storage_split import (
    KeyPiece,
    StorageSecret,
    check_commitment,
    check_split_parameters,
    combine,
    deal,
    verify_piece,
)


def rng_of(seed: int) -> Callable[[int], bytes]:
    return random.Random(seed).randbytes


def test_storage_key_golden() -> None:
    # BLAKE2b-256(s = 1 as 32 bytes LE, personal "qk-storage-split"); docs/key-provider-protocol.md
    secret = StorageSecret(group.ONE)
    assert secret.storage_key().hex() == (
        "487d16a5d6ec92488d064d31a7cb15ebc0fb73c575bf9d7f4942c0d808c3ee8a"
    )
    expected = hashlib.blake2b(group.ONE, digest_size=32, person=b"qk-storage-split").digest()
    assert secret.storage_key() == expected
    assert secret.public() == group.BASE


def test_secret_and_piece_repr_hide_values() -> None:
    secret = StorageSecret.generate(rng_of(1))
    d = deal(secret, 2, 3, rng_of(2))
    assert secret.value.hex() not in repr(secret)
    for piece in d.pieces.values():
        assert piece.value.hex() not in repr(piece)
        assert piece.value.hex() not in repr(d)


@settings(max_examples=25, deadline=None)
@given(
    m=st.integers(2, 7),
    data=st.data(),
    seed=st.integers(0, 2**32),
)
def test_any_k_pieces_give_the_secret(m: int, data: st.DataObject, seed: int) -> None:
    k = data.draw(st.integers(2, m))
    secret = StorageSecret.generate(rng_of(seed))
    d = deal(secret, k, m, rng_of(seed + 1))
    assert d.commitment[0] == secret.public()
    subset = data.draw(st.lists(st.sampled_from(range(1, m + 1)), min_size=k, unique=True))
    pieces = {f"p{i}": d.pieces[i] for i in subset}
    assert all(verify_piece(p, d.commitment) for p in pieces.values())
    assert combine(pieces, d.commitment, k).storage_key() == secret.storage_key()


def test_fewer_than_k_pieces_refused() -> None:
    secret = StorageSecret.generate(rng_of(3))
    d = deal(secret, 3, 4, rng_of(4))
    with pytest.raises(InvalidParameters, match="need 3 pieces"):
        combine({"a": d.pieces[1], "b": d.pieces[2]}, d.commitment, 3)


@settings(max_examples=20, deadline=None)
@given(seed=st.integers(0, 2**32), index=st.integers(1, 4), delta=st.integers(1, 2**64))
def test_a_corrupted_piece_fails_and_is_named(seed: int, index: int, delta: int) -> None:
    secret = StorageSecret.generate(rng_of(seed))
    d = deal(secret, 2, 4, rng_of(seed + 7))
    good = d.pieces[index]
    bad = KeyPiece(index, group.scalar_add(good.value, group.scalar_from_int(delta)))
    assert not verify_piece(bad, d.commitment)
    pieces = {f"provider-{i}": d.pieces[i] for i in range(1, 5)}
    pieces[f"provider-{index}"] = bad
    with pytest.raises(CheaterDetected) as info:
        combine(pieces, d.commitment, 2)
    assert info.value.culprit == index
    assert f"provider-{index}" in str(info.value)
    # Without the bad one, the rest still open the key.
    good_ones = {n: p for n, p in pieces.items() if verify_piece(p, d.commitment)}
    assert combine(good_ones, d.commitment, 2).storage_key() == secret.storage_key()


def test_piece_moved_to_another_index_fails() -> None:
    d = deal(StorageSecret.generate(rng_of(5)), 2, 3, rng_of(6))
    moved = KeyPiece(2, d.pieces[1].value)
    assert not verify_piece(moved, d.commitment)


def test_redeal_keeps_the_key_and_old_pieces_do_not_mix() -> None:
    secret = StorageSecret.generate(rng_of(8))
    old = deal(secret, 2, 3, rng_of(9))
    new = deal(secret, 2, 3, rng_of(10))
    assert old.commitment[0] == new.commitment[0]
    assert old.commitment[1:] != new.commitment[1:]
    assert combine(dict(a=new.pieces[1], b=new.pieces[3]), new.commitment, 2) == secret
    # An old piece fails the new commitment, so it cannot be mixed in unnoticed.
    assert not verify_piece(old.pieces[2], new.commitment)


def test_two_pieces_for_one_index_refused() -> None:
    d = deal(StorageSecret.generate(rng_of(11)), 2, 3, rng_of(12))
    with pytest.raises(InvalidParameters, match="two pieces"):
        combine({"a": d.pieces[1], "b": d.pieces[1]}, d.commitment, 2)


@pytest.mark.parametrize(("k", "m"), [(1, 3), (0, 1), (4, 3), (2, 33), (True, 3)])
def test_bad_parameters_refused(k: int, m: int) -> None:
    with pytest.raises(InvalidParameters):
        check_split_parameters(k, m)


def test_bad_inputs_refused() -> None:
    with pytest.raises(InvalidEncoding):
        StorageSecret(group.ZERO)
    with pytest.raises(InvalidEncoding):
        StorageSecret(b"\xff" * 32)
    with pytest.raises(InvalidEncoding):
        KeyPiece(0, group.ONE)
    with pytest.raises(InvalidEncoding):
        KeyPiece(33, group.ONE)
    d = deal(StorageSecret.generate(rng_of(13)), 2, 2, rng_of(14))
    with pytest.raises(InvalidEncoding, match="2 elements"):
        check_commitment(list(d.commitment)[:1], 2)
    with pytest.raises(InvalidEncoding):
        check_commitment([d.commitment[0], group.IDENTITY], 2)
    assert check_commitment(list(d.commitment), 2) == d.commitment
