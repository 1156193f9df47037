"""quorumkeep.node.keystore: sealed records, durable takes, crash safety, no plaintext on disk."""

from __future__ import annotations

import base64
import hashlib
import os
import random
import signal
import sqlite3
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization
from node_helpers import FAST, fast_source, make_identity

from quorumkeep.crypto.seal import MIN_MEMLIMIT, MIN_OPSLIMIT
from quorumkeep.node import keystore as ks
from quorumkeep.node import keystore_errors as ks_errors
from quorumkeep.node import keystore_records as ks_records
from quorumkeep.node import storage_key
from quorumkeep.node.config import NodeConfig
from quorumkeep.node.identity import SIGNER_KEY_FILE_NAME, tls_key_password
from quorumkeep.node.keystore import Keystore
from quorumkeep.node.keystore_records import KeystoreOwner, Presignature
from quorumkeep.node.storage_key import PassphraseKeySource, StorageKey
from quorumkeep.wire.tls import load_encrypted_private_key

OWNER = KeystoreOwner("alice", bytes(range(32)))


def commitments(*ids: int) -> dict[int, tuple[bytes, bytes]]:
    return {i: (bytes([i]) * 32, bytes([i + 100]) * 32) for i in ids}


def presig(pid: str, ids: tuple[int, ...], domain: int = 0, epoch: int = 1) -> Presignature:
    return Presignature(pid, domain, epoch, commitments(*ids), os.urandom(64))


@pytest.fixture
def key() -> StorageKey:
    return StorageKey(os.urandom(32))


@pytest.fixture
def store(tmp_path: Path, key: StorageKey) -> Keystore:
    with Keystore.open(tmp_path, key, OWNER) as opened:
        yield opened  # type: ignore[misc]


# --- storage key sources ---------------------------------------------------------------


def test_passphrase_source_create_load_and_wrong_passphrase(tmp_path: Path) -> None:
    source = fast_source(tmp_path, b"secret words")
    assert not source.exists()
    created = source.create(os.urandom)
    assert source.exists()
    assert fast_source(tmp_path, b"secret words").load() == created
    with pytest.raises(ks_errors.WrongStorageKey) as info:
        fast_source(tmp_path, b"other words").load()
    assert info.value.code == "wrong_storage_key"
    with pytest.raises(ks_errors.RecordExists):
        source.create(os.urandom)  # never overwrite the parameters of an existing key
    text = (tmp_path / storage_key.STORAGE_KEY_FILE_NAME).read_text()
    assert "secret words" not in text and created.key.hex() not in text
    assert (tmp_path / storage_key.STORAGE_KEY_FILE_NAME).stat().st_mode & 0o077 == 0


def test_passphrase_source_errors(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    with pytest.raises(ks_errors.StorageKeyUnavailable) as info:
        fast_source(tmp_path).load()
    assert "node init" in str(info.value)
    monkeypatch.delenv("QK_TEST_PASSPHRASE", raising=False)
    env_source = PassphraseKeySource(
        tmp_path, storage_key.passphrase_from_env("QK_TEST_PASSPHRASE"), **FAST
    )
    with pytest.raises(ks_errors.StorageKeyUnavailable) as info:
        env_source.create(os.urandom)
    assert info.value.code == "storage_key_unavailable"
    assert not env_source.exists()
    monkeypatch.setenv("QK_TEST_PASSPHRASE", "from the environment")
    key = env_source.create(os.urandom)
    passfile = tmp_path / "pass.txt"
    passfile.write_bytes(b"from the environment\n")  # the trailing newline is not the secret
    file_source = PassphraseKeySource(tmp_path, storage_key.passphrase_from_file(passfile))
    assert file_source.load() == key
    passfile.write_bytes(b"\n")
    with pytest.raises(ks_errors.StorageKeyUnavailable):
        file_source.load()
    (tmp_path / storage_key.STORAGE_KEY_FILE_NAME).write_text("{not json")
    with pytest.raises(ks_errors.StorageKeyUnavailable):
        env_source.load()
    (tmp_path / storage_key.STORAGE_KEY_FILE_NAME).write_text('{"format": "something else"}')
    with pytest.raises(ks_errors.StorageKeyUnavailable):
        env_source.load()
    with pytest.raises(ks_errors.InvalidRecord):
        PassphraseKeySource(tmp_path / "x", lambda: b"p", opslimit=0).create(os.urandom)


def test_key_source_from_config(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("QK_PP", "pp")
    config = NodeConfig.model_validate(
        {
            "account": "a",
            "data_dir": tmp_path,
            "ledger_url": "http://127.0.0.1:1",
            "p2p_listen": "127.0.0.1:2",
            "web_listen": "127.0.0.1:3",
            "storage_key": {"source": "passphrase", "passphrase_env": "QK_PP"},
        }
    )
    source = storage_key.passphrase_source_from_config(
        config, opslimit=MIN_OPSLIMIT, memlimit=MIN_MEMLIMIT
    )
    key = source.create(os.urandom)
    assert fast_source(tmp_path, b"pp").load() == key


def test_storage_key_subkeys_are_separate_and_hidden() -> None:
    key = StorageKey(bytes(32))
    assert key.subkey("a") != key.subkey("b")
    assert len(key.subkey("a")) == 32
    assert StorageKey(bytes([1]) * 32).subkey("a") != key.subkey("a")
    assert "00" * 8 not in repr(key)
    with pytest.raises(ks_errors.InvalidRecord):
        StorageKey(b"short")


# --- key shares --------------------------------------------------------------------------


def test_key_share_round_trip_and_listing(store: Keystore) -> None:
    store.put_key_share(0, 1, b"share-0-1", b"pub")
    store.put_key_share(1, 1, b"share-1-1")
    store.put_key_share(0, 2, b"share-0-2")
    got = store.get_key_share(0, 1)
    assert (got.share, got.public) == (b"share-0-1", b"pub")
    assert "share-0-1" not in repr(got)
    assert store.key_shares() == [
        ks_records.KeyShareRef(0, 1),
        ks_records.KeyShareRef(1, 1),
        ks_records.KeyShareRef(0, 2),
    ]
    assert store.keysets() == {1: (0, 1), 2: (0,)}
    assert store.has_key_share(1, 1) and not store.has_key_share(1, 2)
    assert store.delete_key_shares_before(2) == 2
    assert store.keysets() == {2: (0,)}
    assert store.delete_key_share(0, 2) is True
    assert store.delete_key_share(0, 2) is False
    with pytest.raises(ks_errors.RecordNotFound) as info:
        store.get_key_share(0, 2)
    assert info.value.code == "not_found"


def test_key_share_is_never_silently_overwritten(store: Keystore) -> None:
    store.put_key_share(0, 1, b"original")
    store.put_key_share(0, 1, b"original")  # same value: idempotent
    with pytest.raises(ks_errors.RecordExists) as info:
        store.put_key_share(0, 1, b"different")
    assert info.value.code == "already_exists"
    assert store.get_key_share(0, 1).share == b"original"
    store.put_key_share(0, 1, b"different", replace=True)
    assert store.get_key_share(0, 1).share == b"different"


@pytest.mark.parametrize(
    ("domain", "epoch", "share", "public"),
    [
        (-1, 0, b"s", b""),
        (0, -1, b"s", b""),
        (True, 0, b"s", b""),
        (0, 2**63, b"s", b""),
        (0, 0, b"", b""),
        (0, 0, "text", b""),
        (0, 0, b"s", "text"),
    ],
)
def test_bad_key_share_input_changes_nothing(
    store: Keystore, domain: object, epoch: object, share: object, public: object
) -> None:
    with pytest.raises(ks_errors.InvalidRecord) as info:
        store.put_key_share(domain, epoch, share, public)  # type: ignore[arg-type]
    assert info.value.code == "invalid_record"
    assert store.key_shares() == []


def test_swapped_or_tampered_records_fail_to_open(tmp_path: Path, key: StorageKey) -> None:
    with Keystore.open(tmp_path, key, OWNER) as store:
        store.put_key_share(0, 1, b"share-a")
        store.put_key_share(0, 2, b"share-b", b"pub")
        store.add_presignatures([presig("p1", (1, 2)), presig("p2", (1, 3))])
    db = sqlite3.connect(tmp_path / ks.KEYSTORE_FILE_NAME)
    # Move share (0, 1)'s ciphertext into slot (0, 2): its associated data names (0, 1).
    sealed_a = db.execute("SELECT sealed_share FROM key_shares WHERE epoch = 1").fetchone()[0]
    db.execute("UPDATE key_shares SET sealed_share = ? WHERE epoch = 2", (sealed_a,))
    # Change the public data bound to share (0, 1) — no longer matches its seal either.
    db.execute("UPDATE key_shares SET public = ? WHERE epoch = 1", (b"forged",))
    # Swap presignature commitments: the nonces are bound to their commitment list.
    rows = dict(db.execute("SELECT id, commitments FROM presignatures").fetchall())
    db.execute("UPDATE presignatures SET commitments = ? WHERE id = 'p1'", (rows["p2"],))
    db.commit()
    db.close()
    with Keystore.open(tmp_path, key, OWNER) as store:
        for epoch in (1, 2):
            with pytest.raises(ks_errors.RecordCorrupted) as info:
                store.get_key_share(0, epoch)
            assert info.value.code == "record_corrupted"
        with pytest.raises(ks_errors.RecordCorrupted):
            store.take_presignature("p1")
        assert store.presignature_count(0) == 2  # a failed take removes nothing
        assert store.take_presignature("p2").participants == (1, 3)


def test_records_are_bound_to_the_node(tmp_path: Path, key: StorageKey) -> None:
    a, b = tmp_path / "a", tmp_path / "b"
    a.mkdir()
    b.mkdir()
    other = KeystoreOwner("bob", bytes(range(1, 33)))
    with Keystore.open(a, key, OWNER) as store:
        store.put_key_share(0, 1, b"alice's share")
    with Keystore.open(b, key, other) as store:
        store.put_key_share(0, 1, b"bob's share")
    # Copy Alice's sealed share into Bob's store (same storage key!): it does not open there.
    src = sqlite3.connect(a / ks.KEYSTORE_FILE_NAME)
    sealed = src.execute("SELECT sealed_share FROM key_shares").fetchone()[0]
    src.close()
    dst = sqlite3.connect(b / ks.KEYSTORE_FILE_NAME)
    dst.execute("UPDATE key_shares SET sealed_share = ?", (sealed,))
    dst.commit()
    dst.close()
    with Keystore.open(b, key, other) as store, pytest.raises(ks_errors.RecordCorrupted):
        store.get_key_share(0, 1)
    # Opening a store as another node, or with another key, is refused up front.
    with pytest.raises(ks_errors.IdentityMismatch) as info:
        Keystore.open(a, key, other)
    assert info.value.code == "identity_mismatch"
    with pytest.raises(ks_errors.IdentityMismatch):
        Keystore.open(a, key, KeystoreOwner("alice", bytes(range(1, 33))))
    with pytest.raises(ks_errors.WrongStorageKey):
        Keystore.open(a, StorageKey(os.urandom(32)), OWNER)


# --- presignatures -----------------------------------------------------------------------


def test_presignature_take_is_once_only_and_durable(tmp_path: Path, key: StorageKey) -> None:
    item = presig("abc", (1, 2, 3))
    with Keystore.open(tmp_path, key, OWNER) as store:
        store.add_presignatures([item, presig("def", (1, 2))])
        taken = store.take_presignature("abc")
        assert taken.nonces == item.nonces
        assert taken.commitments == item.commitments
        assert taken.participants == (1, 2, 3)
        assert abs(taken.created_at - item.created_at) < 0.001
        assert item.nonces.hex() not in repr(taken)
        with pytest.raises(ks_errors.RecordNotFound):
            store.take_presignature("abc")
    # Reopened (a new process would see the same): gone for good.
    with Keystore.open(tmp_path, key, OWNER) as store:
        with pytest.raises(ks_errors.RecordNotFound):
            store.take_presignature("abc")
        assert [p.id for p in store.presignatures(0)] == ["def"]


def test_presignature_batches_counts_and_purges(store: Keystore) -> None:
    store.add_presignatures(
        [
            presig("a", (1, 2, 3)),
            presig("b", (2, 3, 4)),
            presig("c", (1, 3, 4), domain=1),
            presig("d", (3, 4, 5), domain=1, epoch=2),
        ]
    )
    assert store.presignature_counts() == {0: 2, 1: 2}
    assert store.presignature_count(1) == 2
    assert store.presignature_count(1, epoch=2) == 1
    assert [p.id for p in store.presignatures(1, 1)] == ["c"]
    assert len(store.presignatures(0, limit=1)) == 1
    assert store.purge_presignatures_involving([1]) == 2
    assert sorted(p.id for p in store.presignatures(0) + store.presignatures(1)) == ["b", "d"]
    assert store.purge_presignatures_involving([]) == 0
    assert store.purge_presignatures_involving([9]) == 0
    assert store.purge_presignatures_involving([4, 5]) == 2
    store.add_presignatures([presig("e", (1, 2)), presig("f", (2, 3))])
    assert store.purge_all_presignatures() == 2
    assert store.presignature_counts() == {}


def test_presignatures_of_a_key_or_of_older_epochs_go_in_one_call(store: Keystore) -> None:
    store.add_presignatures(
        [
            presig("a", (1, 2), epoch=1),
            presig("b", (1, 2), epoch=2),
            presig("c", (1, 2), epoch=3),
            presig("d", (1, 2), domain=1, epoch=1),
        ]
    )
    assert store.delete_presignatures(0, before_epoch=3) == 2
    assert [p.id for p in store.presignatures(0)] == ["c"]
    assert store.delete_presignatures(0, epoch=2) == 0
    assert store.delete_presignatures(1, epoch=1) == 1
    assert store.presignature_counts() == {0: 1}
    for bad in ({}, {"epoch": 1, "before_epoch": 2}):
        with pytest.raises(ks_errors.InvalidRecord):
            store.delete_presignatures(0, **bad)


def test_presignature_batch_is_all_or_nothing(store: Keystore) -> None:
    store.add_presignatures([presig("x", (1, 2))])
    with pytest.raises(ks_errors.RecordExists):
        store.add_presignatures([presig("y", (1, 2)), presig("x", (2, 3))])
    assert [p.id for p in store.presignatures(0)] == ["x"]
    with pytest.raises(ks_errors.InvalidRecord):
        store.add_presignatures([presig("z", (1, 2)), presig("z", (1, 3))])
    assert store.presignature_count(0) == 1


@pytest.mark.parametrize(
    "kwargs",
    [
        {"id": ""},
        {"id": "has space"},
        {"id": "x" * 129},
        {"domain_id": -1},
        {"epoch": "1"},
        {"commitments": {}},
        {"commitments": {0: (b"\x01" * 32, b"\x02" * 32)}},
        {"commitments": {1: (b"\x01" * 31, b"\x02" * 32)}},
        {"commitments": {1: b"\x01" * 64}},
        {"nonces": b""},
        {"created_at": float("nan")},
        {"created_at": -5.0},
    ],
)
def test_bad_presignatures_are_rejected(kwargs: dict[str, object]) -> None:
    fields: dict[str, object] = {
        "id": "ok",
        "domain_id": 0,
        "epoch": 1,
        "commitments": commitments(1, 2),
        "nonces": b"n" * 64,
    }
    fields.update(kwargs)
    with pytest.raises(ks_errors.InvalidRecord):
        Presignature(**fields)  # type: ignore[arg-type]


def test_take_rejects_bad_ids(store: Keystore) -> None:
    with pytest.raises(ks_errors.InvalidRecord):
        store.take_presignature("")
    with pytest.raises(ks_errors.InvalidRecord):
        store.add_presignatures(["not a presignature"])  # type: ignore[list-item]


def test_metadata_and_wipe(tmp_path: Path, key: StorageKey) -> None:
    with Keystore.open(tmp_path, key, OWNER) as store:
        store.set_metadata("last_height", "42")
        assert store.get_metadata("last_height") == "42"
        assert store.get_metadata("missing") is None
        store.put_key_share(0, 1, b"s")
        store.add_presignatures([presig("a", (1, 2))])
        store.wipe()
        assert (tmp_path / (ks.KEYSTORE_FILE_NAME + "-wal")).stat().st_size == 0
        assert store.key_shares() == [] and store.presignature_counts() == {}
        assert store.get_metadata("last_height") == "42"
        assert store.delete_metadata("last_height") is True
        with pytest.raises(ks_errors.InvalidRecord):
            store.set_metadata("", "x")


# --- no secret on disk -------------------------------------------------------------------


def _encodings(secret: bytes) -> list[bytes]:
    return [
        secret,
        secret.hex().encode(),
        secret.hex().upper().encode(),
        base64.b64encode(secret),
        base64.urlsafe_b64encode(secret),
    ]


def test_no_secret_reaches_the_node_directory(tmp_path: Path) -> None:
    directory = tmp_path / "node"
    identity, storage_key = make_identity(directory, "alice")
    secrets: list[bytes] = [storage_key.key, identity.signer_seed, tls_key_password(storage_key)]
    tls_key = load_encrypted_private_key(
        identity.tls.private_key_path.read_bytes(), identity.tls.password
    )
    secrets.append(
        tls_key.private_bytes(
            serialization.Encoding.Raw,
            serialization.PrivateFormat.Raw,
            serialization.NoEncryption(),
        )
    )
    secrets.append(
        tls_key.private_bytes(
            serialization.Encoding.DER,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    secrets.append(b"correct horse")  # the test passphrase
    with Keystore.open(directory, storage_key, identity.owner) as store:
        for domain in range(3):
            share = os.urandom(32)
            secrets.append(share)
            store.put_key_share(domain, 1, share, b"public part")
        batch = [presig(f"p{i}", (1, 2, 3)) for i in range(20)]
        secrets.extend(p.nonces for p in batch)
        secrets.extend(p.nonces[:32] for p in batch)  # each nonce of a pair, alone
        secrets.extend(p.nonces[32:] for p in batch)
        store.add_presignatures(batch)
        store.take_presignature("p0")
        files = sorted(p for p in directory.rglob("*") if p.is_file())
        names = {p.name for p in files}
        assert ks.KEYSTORE_FILE_NAME + "-wal" in names  # scanned while the WAL is live
        assert SIGNER_KEY_FILE_NAME in names
        contents = {p: p.read_bytes() for p in files}
        modes = {p.name: p.stat().st_mode & 0o777 for p in files}
    assert all(mode == 0o600 for mode in modes.values()), modes
    for path, data in contents.items():
        for secret in secrets:
            for encoded in _encodings(secret):
                assert encoded not in data, f"a secret is in {path.name}"


# --- crash safety ------------------------------------------------------------------------

_WRITER = textwrap.dedent(
    """
    import hashlib, os, sys
    from quorumkeep.node.keystore import Keystore
    from quorumkeep.node.keystore_records import KeystoreOwner, Presignature
    from quorumkeep.node.storage_key import StorageKey
    directory, start = sys.argv[1], int(sys.argv[2])
    key = StorageKey(bytes.fromhex(os.environ["QK_TEST_STORAGE_KEY"]))
    owner = KeystoreOwner("crash", bytes(32))
    store = Keystore.open(directory, key, owner)
    print("ready", flush=True)
    i = start
    while True:
        share = hashlib.sha256(b"share %d" % i).digest() * 4
        store.put_key_share(i, 7, share, public=b"pub %d" % i)
        store.add_presignatures(
            [Presignature("p%d-%d" % (i, j), i, 7, {1: (b"a" * 32, b"b" * 32)}, share)
             for j in range(3)]
        )
        print(i, flush=True)
        i += 1
    """
)


@pytest.mark.slow
def test_sigkill_never_loses_or_corrupts_a_committed_share(tmp_path: Path) -> None:
    key = StorageKey(os.urandom(32))
    env = {**os.environ, "QK_TEST_STORAGE_KEY": key.key.hex()}
    rng = random.Random(1234)
    durable: set[int] = set()  # shares seen committed: reported by the child or found stored
    all_reported: set[int] = set()
    next_index = 0
    for _round in range(8):
        child = subprocess.Popen(
            [sys.executable, "-c", _WRITER, str(tmp_path), str(next_index)],
            stdout=subprocess.PIPE,
            env=env,
        )
        try:
            assert child.stdout is not None
            assert child.stdout.readline().strip() == b"ready"
            time.sleep(rng.uniform(0.01, 0.25))  # a random moment, mid-write or between
            child.send_signal(signal.SIGKILL)
            output = child.stdout.read()
        finally:
            child.kill()
            child.wait(timeout=10)
            if child.stdout is not None:
                child.stdout.close()
        assert child.returncode == -signal.SIGKILL
        reported = {int(line) for line in output.split()}
        with Keystore.open(tmp_path, key, KeystoreOwner("crash", bytes(32))) as store:
            held = {ref.domain_id for ref in store.key_shares()}
            # Every share committed before is still there, every share the child reported is
            # there, and at most the one it was writing when killed may also have landed.
            assert durable | reported <= held
            assert len(held - durable - reported) <= 1
            for i in held:
                stored = store.get_key_share(i, 7)  # opens: not torn, not corrupted
                assert stored.share == hashlib.sha256(b"share %d" % i).digest() * 4
                assert stored.public == b"pub %d" % i
            counts = store.presignature_counts()
            all_reported |= reported
            for i in held:  # a batch is all or nothing, and there once reported
                assert counts.get(i, 0) == 3 if i in all_reported else counts.get(i, 0) in (0, 3)
            durable = held
            next_index = max(held, default=-1) + 1
    assert len(durable) > 8  # the writer did make progress between kills


def test_documented_vectors() -> None:
    """The sub-key and associated-data vectors printed in docs/storage.md."""
    key = StorageKey(bytes(32))
    assert key.subkey("keystore records").hex() == (
        "9e970f00612696f9a5900133ad45753dc9c23f421180779e855e20c87e241de5"
    )
    assert key.subkey("tls key password").hex() == (
        "3f880797d33a3953508e3f15e90464c0e255e7c19579e801c5617563c5f5a22c"
    )
    record = ks_records.encode_commitments({2: (b"\x02" * 32, b"\x03" * 32)})
    assert record == bytes(7) + b"\x02" + b"\x02" * 32 + b"\x03" * 32
    ad = ks_records.record_associated_data(
        "key_share", (0).to_bytes(8, "big") + (1).to_bytes(8, "big") + b"\0\0\0\3pub", OWNER
    )
    assert ad.hex() == (
        "71756f72756d6b656570206b657973746f726520763100"
        "00000009"
        "6b65795f7368617265"
        "00000017"
        "0000000000000000"
        "0000000000000001"
        "00000003"
        "707562"
        "00000005"
        "616c696365"
        "00000020"
        "000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f"
    )


def test_take_presignatures_takes_many_in_one_call_and_reports_missing_ids(
    store: Keystore,
) -> None:
    store.add_presignatures([presig("p1", (1, 2)), presig("p2", (1, 3)), presig("p3", (2, 3))])
    taken = store.take_presignatures(["p1", "missing", "p2"])
    assert [type(r).__name__ for r in taken] == ["Presignature", "RecordNotFound", "Presignature"]
    assert store.presignature_count(0) == 1
    again = store.take_presignatures(["p1"])
    assert isinstance(again[0], ks_errors.RecordNotFound)  # a nonce is handed out once only


def _sealed_columns(path: Path) -> list[bytes]:
    db = sqlite3.connect(path)
    try:
        rows = db.execute("SELECT sealed_share FROM key_shares").fetchall()
        rows += db.execute("SELECT sealed_nonces FROM presignatures").fetchall()
    finally:
        db.close()
    return [bytes(r[0]) for r in rows]


def test_deleted_secrets_leave_no_page_image_in_the_wal_or_the_database(
    tmp_path: Path, key: StorageKey
) -> None:
    """secure_delete zeroes the database's pages, but the WAL keeps old page images until it
    is truncated: every deletion of a secret truncates it."""
    path = tmp_path / ks.KEYSTORE_FILE_NAME
    deletions = [
        lambda s: s.delete_key_share(0, 1),
        lambda s: s.delete_key_shares_before(3),
        lambda s: s.take_presignature("a"),
        lambda s: s.take_presignatures(["b"]),
        lambda s: s.purge_presignatures_involving([5]),
        lambda s: s.delete_presignatures(0, epoch=1),
        lambda s: s.purge_all_presignatures(),
    ]
    with Keystore.open(tmp_path, key, OWNER) as store:
        store.put_key_share(0, 1, os.urandom(32))
        store.put_key_share(0, 2, os.urandom(32))
        store.add_presignatures(
            [presig("a", (1, 2)), presig("b", (1, 2)), presig("c", (1, 5)), presig("d", (1, 2))]
        )
        gone: list[bytes] = []
        for delete in deletions:
            before = set(_sealed_columns(path))
            delete(store)
            gone += before - set(_sealed_columns(path))
            files = [p.read_bytes() for p in tmp_path.iterdir() if p.name.startswith(path.name)]
            for blob in gone:
                assert not any(blob[-48:] in data for data in files), delete
        assert len(gone) == 6
