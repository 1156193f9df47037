"""quorumkeep.node.identity: key creation, sealed loading, cross-checks, participant info."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
from nacl.signing import VerifyKey
from node_helpers import FAST, fast_source, make_identity

from quorumkeep.node import identity as ident
from quorumkeep.node.config import NodeConfig, load_config
from quorumkeep.node.keystore import Keystore
from quorumkeep.node.storage_key import PassphraseKeySource, StorageKey
from quorumkeep.wire.tls import certificate_public_key


def test_create_and_load(tmp_path: Path) -> None:
    created, key = make_identity(tmp_path, "alice")
    loaded = ident.NodeIdentity.load(tmp_path, "alice", key)
    assert loaded == created
    assert certificate_public_key(loaded.certificate) == loaded.tls_public_key
    signature = loaded.sign(b"tx bytes")
    VerifyKey(loaded.signer_public_key).verify(b"tx bytes", signature)
    text = repr(loaded)
    assert loaded.signer_seed.hex() not in text
    assert loaded.tls.password.decode() not in text and "password" not in repr(loaded.tls)


def test_refuses_to_overwrite_and_checks_account(tmp_path: Path) -> None:
    _, key = make_identity(tmp_path, "alice")
    with pytest.raises(ident.IdentityError) as info:
        ident.NodeIdentity.create(tmp_path, "alice", key)
    assert info.value.code == "identity_exists"
    with pytest.raises(ident.IdentityError) as info:
        ident.NodeIdentity.load(tmp_path, "bob", key)
    assert info.value.code == "identity_mismatch"


def test_wrong_storage_key_and_tampering_are_detected(tmp_path: Path) -> None:
    identity, key = make_identity(tmp_path, "alice")
    with pytest.raises(ident.IdentityError) as info:
        ident.NodeIdentity.load(tmp_path, "alice", StorageKey(os.urandom(32)))
    assert info.value.code == "tls_key_unreadable"
    # Someone swaps in their own certificate: the recorded key no longer matches.
    other_dir = tmp_path / "other"
    other, _ = make_identity(other_dir, "mallory")
    cert = (tmp_path / ident.TLS_CERT_FILE_NAME).read_bytes()
    (tmp_path / ident.TLS_CERT_FILE_NAME).write_bytes(other.certificate)
    with pytest.raises(ident.IdentityError, match="does not carry the recorded TLS key"):
        ident.NodeIdentity.load(tmp_path, "alice", key)
    (tmp_path / ident.TLS_CERT_FILE_NAME).write_bytes(cert)
    # Swap in another signer public key: the sealed seed's associated data no longer matches.
    document = json.loads((tmp_path / ident.IDENTITY_FILE_NAME).read_text())
    document["signer_public_key"] = other.signer_public_key.hex()
    (tmp_path / ident.IDENTITY_FILE_NAME).write_text(json.dumps(document))
    with pytest.raises(ident.IdentityError) as info:
        ident.NodeIdentity.load(tmp_path, "alice", key)
    assert info.value.code == "identity_unreadable"
    document["signer_public_key"] = identity.signer_public_key.hex()
    (tmp_path / ident.IDENTITY_FILE_NAME).write_text(json.dumps(document))
    (tmp_path / ident.SIGNER_KEY_FILE_NAME).unlink()
    with pytest.raises(ident.IdentityError) as info:
        ident.NodeIdentity.load(tmp_path, "alice", key)
    assert info.value.code == "identity_missing"


def test_initialize_node_and_participant_info(tmp_path: Path) -> None:
    directory = tmp_path / "node"
    config = NodeConfig.model_validate(
        {
            "account": "alice",
            "data_dir": directory,
            "ledger_url": "http://127.0.0.1:8500",
            "p2p_listen": "127.0.0.1:7001",
            "web_listen": "127.0.0.1:8001",
            "storage_key": {"passphrase_file": tmp_path / "pass"},
        }
    )
    (tmp_path / "pass").write_text("pw\n")
    source = PassphraseKeySource(directory, lambda: b"pw", **FAST)
    identity = ident.initialize_node(config, source)
    assert load_config(directory / "node.toml") == config
    info = identity.participant_info(config)
    assert info == {
        "account": "alice",
        "url": "127.0.0.1:7001",
        "web_url": "https://127.0.0.1:8001",
        "tls_public_key": identity.tls_public_key.hex(),
        "signer_public_key": identity.signer_public_key.hex(),
    }
    loaded, store = ident.load_node(config, fast_source(directory, b"pw"))
    with store:
        assert loaded == identity
        assert isinstance(store, Keystore)
    with pytest.raises(ident.IdentityError):
        ident.initialize_node(config, source)
    with pytest.raises(ident.IdentityError) as info_err:
        identity.participant_info(config.model_copy(update={"account": "bob"}))
    assert info_err.value.code == "identity_mismatch"
