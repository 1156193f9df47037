"""The key provider's store (real SQLite files): sealed pieces, per signer key, checked on
reading, erased on deletion, public columns readable without the passphrase."""

from __future__ import annotations

import random
import sqlite3
from pathlib import Path

import pytest

from quorumkeep.crypto.seal import MIN_MEMLIMIT, MIN_OPSLIMIT
from quorumkeep.crypto.storage_split import KeyPiece, StorageSecret, deal
from quorumkeep.daemon.service_identity import KEY_PROVIDER_IDENTITY, create_identity
from quorumkeep.provider.errors import ProviderError
from quorumkeep.provider.store import STORE_FILE_NAME, HeldPiece, PieceStore

SPLIT = deal(StorageSecret.generate(random.Random(1).randbytes), 2, 3, random.Random(2).randbytes)


def held(epoch: int = 1, index: int = 1, signer: bytes = b"\x01" * 32) -> HeldPiece:
    return HeldPiece("alice", epoch, index, 2, SPLIT.commitment, signer, b"\x02" * 32, 1000)


def open_store(tmp_path: Path) -> PieceStore:
    identity, key = create_identity(
        tmp_path, "bob", b"pass", opslimit=MIN_OPSLIMIT, memlimit=MIN_MEMLIMIT,
        kind=KEY_PROVIDER_IDENTITY,
    )  # fmt: skip
    return PieceStore.open(tmp_path, "bob", identity.signer.public_key, key, create=True)


def test_round_trip_per_signer_key_and_erasure(tmp_path: Path) -> None:
    store = open_store(tmp_path)
    assert store.put(held(), SPLIT.pieces[1]) is True
    assert store.put(held(), SPLIT.pieces[1]) is False  # the same again: nothing written
    other = held(signer=b"\x03" * 32)
    assert store.put(other, SPLIT.pieces[1]) is True  # another key's row, apart
    found = store.get("alice", 1, b"\x01" * 32)
    assert found is not None and found[1] == SPLIT.pieces[1]
    assert store.get("alice", 1, b"\x09" * 32) is None
    assert [h.signer_public_key for h in store.held()] == [b"\x01" * 32, b"\x03" * 32]
    assert store.delete(held()) is True and store.delete(held()) is False
    store.close()
    for name in (STORE_FILE_NAME, STORE_FILE_NAME + "-wal"):
        path = tmp_path / name
        if path.exists():
            assert SPLIT.pieces[1].value not in path.read_bytes()


def test_a_piece_that_fails_its_commitment_is_refused(tmp_path: Path) -> None:
    store = open_store(tmp_path)
    with pytest.raises(ProviderError) as info:
        store.put(held(index=2), SPLIT.pieces[1])
    assert info.value.code == "piece_invalid"
    with pytest.raises(ProviderError):
        store.put(held(), KeyPiece(1, SPLIT.pieces[2].value))
    assert store.held() == []


def test_a_row_whose_public_columns_changed_does_not_open(tmp_path: Path) -> None:
    store = open_store(tmp_path)
    store.put(held(), SPLIT.pieces[1])
    store.close()
    with sqlite3.connect(tmp_path / STORE_FILE_NAME) as db:
        db.execute("UPDATE pieces SET release_public_key = ?", (b"\x04" * 32,))
    identity_store = open_store_again(tmp_path)
    with pytest.raises(ProviderError) as info:
        identity_store.get("alice", 1, b"\x01" * 32)
    assert info.value.code == "record_corrupted"


def open_store_again(tmp_path: Path) -> PieceStore:
    from quorumkeep.daemon.service_identity import unlock

    identity, key = unlock(tmp_path, b"pass", "bob", KEY_PROVIDER_IDENTITY)
    return PieceStore.open(tmp_path, "bob", identity.signer.public_key, key)


def test_status_without_the_passphrase_and_owner_checked(tmp_path: Path) -> None:
    store = open_store(tmp_path)
    store.put(held(), SPLIT.pieces[1])
    identity_key = store._read("SELECT identity_public_key FROM owner")[0][0]
    store.close()
    public = PieceStore.open(tmp_path, "bob", bytes(identity_key), None)
    assert [(h.account, h.epoch, h.index) for h in public.held()] == [("alice", 1, 1)]
    with pytest.raises(ProviderError) as info:
        public.get("alice", 1, b"\x01" * 32)
    assert info.value.code == "store_locked"
    public.close()
    with pytest.raises(ProviderError) as info:
        PieceStore.open(tmp_path, "carol", bytes(identity_key), None)
    assert info.value.code == "store_mismatch"
