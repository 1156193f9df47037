"""The backup service at rest: its keys and its SQLite store, sealed under the operator's
passphrase; epoch rules; what survives a restart; its configuration file."""

from __future__ import annotations

import os
import sqlite3
from dataclasses import replace
from pathlib import Path

import pytest
from backup_helpers import FAST, DealtDomain, deal

from quorumkeep.backup.config import (
    BackupConfig,
    PassphraseConfig,
    config_from_mapping,
    load_config,
    write_config,
)
from quorumkeep.backup.errors import BackupServiceError
from quorumkeep.backup.identity import (
    IDENTITY_FILE_NAME,
    BackupIdentity,
    StoreKey,
    create_identity,
    read_public_identity,
    unlock,
)
from quorumkeep.backup.store import STORE_FILE_NAME, BackupStore
from quorumkeep.wire.backup import (
    DomainKey,
    Keyset,
    PublicKeyPackageInfo,
    VerifiedShares,
    verify_shares,
)

PASSPHRASE = b"operator passphrase"
SOURCE = b"\x42" * 32  # the TLS key of the node a backup came from


def verified(domains: list[DealtDomain], epoch: int, pid: int = 1) -> VerifiedShares:
    keyset = Keyset(
        epoch, tuple(DomainKey(d.domain_id, "Ed25519", d.public.group_public_key) for d in domains)
    )
    packages = {d.domain_id: PublicKeyPackageInfo.from_json(d.package_json(epoch)) for d in domains}
    return verify_shares("alice", pid, keyset, [d.share(pid, epoch) for d in domains], packages)


@pytest.fixture
def keys(tmp_path: Path) -> tuple[BackupIdentity, StoreKey]:
    return create_identity(tmp_path, "alice", PASSPHRASE, **FAST)


def open_store(directory: Path, identity: BackupIdentity, key: StoreKey | None) -> BackupStore:
    return BackupStore.open(directory, "alice", identity.signer.public_key, key, create=True)


def test_identity_is_sealed_and_opens_only_with_the_passphrase(tmp_path: Path) -> None:
    identity, _ = create_identity(tmp_path, "alice", PASSPHRASE, **FAST)
    assert (tmp_path / IDENTITY_FILE_NAME).stat().st_mode & 0o777 == 0o600
    public = read_public_identity(tmp_path)
    assert public == identity.public
    assert set(public.registration()) == {"identity_public_key", "encryption_public_key"}
    again, _ = unlock(tmp_path, PASSPHRASE, "alice")
    assert again.public == identity.public
    with pytest.raises(BackupServiceError) as excinfo:
        unlock(tmp_path, b"wrong", "alice")
    assert excinfo.value.code == "wrong_passphrase"
    with pytest.raises(BackupServiceError) as excinfo:
        unlock(tmp_path, PASSPHRASE, "bob")
    assert excinfo.value.code == "identity_mismatch"
    with pytest.raises(BackupServiceError) as excinfo:
        create_identity(tmp_path, "alice", PASSPHRASE, **FAST)
    assert excinfo.value.code == "identity_exists"
    # Editing a public key beside the sealed secrets makes the file fail to open.
    path = tmp_path / IDENTITY_FILE_NAME
    text = path.read_text()
    path.write_text(text.replace(public.encryption_public_key.hex(), "11" * 32))
    with pytest.raises(BackupServiceError) as excinfo:
        unlock(tmp_path, PASSPHRASE, "alice")
    assert excinfo.value.code == "wrong_passphrase"


def test_backups_are_sealed_at_rest(tmp_path: Path, keys: tuple[BackupIdentity, StoreKey]) -> None:
    identity, key = keys
    domains = [deal(0, 2, [1, 2, 3]), deal(1, 2, [1, 2, 3])]
    backup = verified(domains, 4)
    store = open_store(tmp_path, identity, key)
    try:
        assert store.put(backup, SOURCE, 1000.0) is True
        record = store.latest()
        assert record is not None and record.epoch == 4 and record.covers(backup.keyset)
        assert store.shares(record) == list(backup.shares)
        files = [p for p in tmp_path.rglob("*") if p.is_file()]
        assert any(p.name.startswith(STORE_FILE_NAME) for p in files)
        secrets = [s.signing_share for s in backup.shares]
        secrets += [identity.encryption.secret_key]
        for path in files:
            data = path.read_bytes()
            for secret in secrets:
                assert secret not in data, path.name
                assert secret.hex().encode() not in data, path.name
                assert secret.hex().upper().encode() not in data, path.name
    finally:
        store.close()


def test_older_epochs_are_refused_and_deleted_once_a_newer_epoch_is_stored(
    tmp_path: Path, keys: tuple[BackupIdentity, StoreKey]
) -> None:
    identity, key = keys
    domain = deal(0, 2, [1, 2, 3])
    store = open_store(tmp_path, identity, key)
    try:
        assert store.put(verified([domain], 2), SOURCE, 1.0)
        assert store.put(verified([domain], 2), SOURCE, 2.0) is False  # already held
        assert [r.epoch for r in store.records()] == [2]
        with pytest.raises(BackupServiceError) as excinfo:
            store.put(verified([domain], 1), SOURCE, 3.0)
        assert excinfo.value.code == "older_epoch"
        assert [r.epoch for r in store.records()] == [2]
        # A new domain in the same epoch: the previous backup of that epoch stays.
        second = deal(1, 2, [1, 2, 3])
        assert store.put(verified([domain, second], 2), SOURCE, 4.0)
        assert [(r.epoch, len(r.keyset.domains)) for r in store.records()] == [(2, 2), (2, 1)]
        old = store.records()
        # The next epoch, verified and stored: every backup of an older epoch is deleted
        # (a push uses the newest, nodes refuse other epochs, and the old shares must not
        # outlive the resharing that made them worthless).
        assert store.put(verified([domain, second], 3), SOURCE, 5.0)
        assert [(r.epoch, len(r.keyset.domains)) for r in store.records()] == [(3, 2)]
        for record in old:
            with pytest.raises(BackupServiceError) as excinfo:
                store.shares(record)
            assert excinfo.value.code == "not_found"
        for record in store.records():
            assert len(store.shares(record)) == len(record.keyset.domains)
    finally:
        store.close()


def test_unverified_shares_are_refused(
    tmp_path: Path, keys: tuple[BackupIdentity, StoreKey]
) -> None:
    identity, key = keys
    domain = deal(0, 2, [1, 2, 3])
    good = verified([domain], 5)
    forged = replace(
        good, shares=(replace(good.shares[0], signing_share=domain.share(2, 5).signing_share),)
    )
    store = open_store(tmp_path, identity, key)
    try:
        with pytest.raises(BackupServiceError) as excinfo:
            store.put(forged, SOURCE, 1.0)
        assert excinfo.value.code == "shares_mismatch"
        with pytest.raises(BackupServiceError) as excinfo:
            store.put(replace(good, account="bob"), SOURCE, 1.0)
        assert excinfo.value.code == "wrong_account"
        assert store.records() == []
    finally:
        store.close()


def test_restart_resumes_from_the_store(tmp_path: Path) -> None:
    identity, key = create_identity(tmp_path, "alice", PASSPHRASE, **FAST)
    domain = deal(0, 2, [1, 2, 3])
    backup = verified([domain], 7)
    store = open_store(tmp_path, identity, key)
    store.put(backup, SOURCE, 10.0)
    store.record_verification({"valid": True, "checked_at": 11.0})
    store.close()
    identity2, key2 = unlock(tmp_path, PASSPHRASE, "alice")
    store = BackupStore.open(tmp_path, "alice", identity2.signer.public_key, key2)
    try:
        record = store.latest()
        assert record is not None and record.covers(backup.keyset)
        assert record.stored_at == 10.0 and record.source_tls_public_key == SOURCE
        assert store.shares(record) == list(backup.shares)
        assert store.last_verification() == {"valid": True, "checked_at": 11.0}
    finally:
        store.close()
    # Without the key only public columns can be read.
    locked = BackupStore.open(tmp_path, "alice", identity.signer.public_key, None)
    try:
        record = locked.latest()
        assert record is not None and record.epoch == 7
        with pytest.raises(BackupServiceError) as excinfo:
            locked.shares(record)
        assert excinfo.value.code == "store_locked"
    finally:
        locked.close()
    with pytest.raises(BackupServiceError) as excinfo:
        BackupStore.open(tmp_path, "alice", os.urandom(32), None)
    assert excinfo.value.code == "store_mismatch"
    with pytest.raises(BackupServiceError) as excinfo:
        BackupStore.open(tmp_path / "nowhere", "alice", os.urandom(32), None)
    assert excinfo.value.code == "store_missing"


def test_a_sealed_backup_moved_to_another_row_does_not_open(
    tmp_path: Path, keys: tuple[BackupIdentity, StoreKey]
) -> None:
    identity, key = keys
    domain = deal(0, 2, [1, 2, 3])
    store = open_store(tmp_path, identity, key)
    try:
        store.put(verified([domain], 2), SOURCE, 1.0)
        store.put(verified([domain, deal(1, 2, [1, 2, 3])], 2), SOURCE, 2.0)
        newest, previous = store.records()
        with sqlite3.connect(tmp_path / STORE_FILE_NAME) as db:
            sealed = db.execute(
                "SELECT sealed FROM backups WHERE id = ?", (previous.id,)
            ).fetchone()
            db.execute("UPDATE backups SET sealed = ? WHERE id = ?", (sealed[0], newest.id))
        with pytest.raises(BackupServiceError) as excinfo:
            store.shares(newest)
        assert excinfo.value.code == "record_corrupted"
        assert len(store.shares(previous)) == 1
    finally:
        store.close()


def test_config_round_trip_and_refusals(tmp_path: Path) -> None:
    config = config_from_mapping(
        {
            "account": "alice",
            "dir": ".",
            "ledger_url": "http://127.0.0.1:8500/",
            "listen": "127.0.0.1:9401",
            "passphrase": {"passphrase_file": "secret.txt"},
        },
        base_dir=tmp_path,
    )
    assert config.dir == tmp_path.resolve()
    assert config.ledger_url == "http://127.0.0.1:8500"
    assert config.passphrase.passphrase_file == (tmp_path / "secret.txt").resolve()
    path = tmp_path / "backup.toml"
    write_config(config, path)
    assert load_config(path) == config
    assert "secret" not in path.read_text().replace("secret.txt", "")
    (tmp_path / "secret.txt").write_bytes(b"pass phrase\n")
    assert config.read_passphrase() == b"pass phrase"
    env_config = BackupConfig(
        account="alice",
        dir=tmp_path,
        ledger_url="http://x:1",
        passphrase=PassphraseConfig(passphrase_env="QK_TEST_NO_SUCH_VARIABLE"),
    )
    with pytest.raises(BackupServiceError) as excinfo:
        env_config.read_passphrase()
    assert excinfo.value.code == "passphrase_unavailable"
    for bad, where in (
        ({"account": "Alice"}, "account"),
        ({"ledger_url": "ftp://x"}, "ledger_url"),
        ({"listen": "nowhere"}, "listen"),
        ({"passphrase": {}}, "passphrase"),
        ({"surprise": 1}, "surprise"),
    ):
        document = {"account": "alice", "dir": ".", "ledger_url": "http://x:1", **bad}
        with pytest.raises(BackupServiceError) as excinfo:
            config_from_mapping(document, base_dir=tmp_path)
        assert excinfo.value.code == "invalid_config"
        assert where in excinfo.value.message
    path.write_text("account = [")
    with pytest.raises(BackupServiceError) as excinfo:
        load_config(path)
    assert excinfo.value.code == "config_syntax"
    with pytest.raises(BackupServiceError) as excinfo:
        load_config(tmp_path / "missing.toml")
    assert excinfo.value.code == "config_not_found"


def test_the_key_provider_setting(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    """``key_provider``: a provider.toml, relative to backup.toml, kept through a round trip;
    a service whose provider.toml is missing does not start (and names the setting)."""
    import asyncio

    from quorumkeep.backup.process import run_backup_service
    from quorumkeep.daemon.startup import EXIT_STARTUP

    document = {
        "account": "alice",
        "dir": ".",
        "ledger_url": "http://127.0.0.1:1",
        "key_provider": "provider/provider.toml",
    }
    config = config_from_mapping(document, base_dir=tmp_path)
    assert config.key_provider == (tmp_path / "provider" / "provider.toml").resolve()
    path = tmp_path / "backup.toml"
    write_config(config, path)
    assert 'key_provider = "provider/provider.toml"' in path.read_text()
    assert load_config(path) == config
    assert (
        config_from_mapping({**document, "key_provider": None}, base_dir=tmp_path).key_provider
        is None
    )
    code = asyncio.run(run_backup_service(config, ledger_wait=0.1, install_signal_handlers=False))
    assert code == EXIT_STARTUP
    assert "cannot start (config_not_found): key_provider:" in caplog.text
