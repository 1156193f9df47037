"""Reading what an operator hands the commands: node info and backup registrations, from
directories made by the real `node init` / `backup init`, JSON files and inline JSON; every
refusal is an OperatorError with one line and changes nothing."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from nacl.signing import SigningKey

from quorumkeep.contract.state import BackupServiceInfo
from quorumkeep.devnet import forkserver
from quorumkeep.ledger.client import AccountSigner, LedgerClient
from quorumkeep.operator.actions import register_backup_service, start_migration
from quorumkeep.operator.errors import OperatorError
from quorumkeep.operator.inputs import NodeInfo, read_backup_registration, read_node_info

PASSPHRASE = "operator input tests"
VALID_KEY = bytes(SigningKey(b"\x02" * 32).verify_key).hex()
LEDGER = "http://127.0.0.1:9"  # never contacted: these tests fail before any request


def quorumkeep(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return forkserver.run(
        [sys.executable, "-m", "quorumkeep.cli.main", *args],
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, **env},
    )


@pytest.fixture(scope="module")
def node(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, str]]:
    directory = tmp_path_factory.mktemp("node") / "alice-node"
    made = quorumkeep(
        "node", "init", "--account", "alice", "--dir", str(directory), "--ledger", LEDGER,
        "--p2p", "127.0.0.1:7301", "--web", "127.0.0.1:8301", "--kdf-cost", "minimum",
        env={"QUORUMKEEP_PASSPHRASE": PASSPHRASE},
    )  # fmt: skip
    assert made.returncode == 0, made.stderr
    return directory, json.loads(made.stdout)


@pytest.fixture(scope="module")
def backup(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, str]]:
    directory = tmp_path_factory.mktemp("backup") / "alice-backup"
    made = quorumkeep(
        "backup", "init", "--account", "alice", "--dir", str(directory), "--ledger", LEDGER,
        "--kdf-cost", "minimum",
        env={"QUORUMKEEP_BACKUP_PASSPHRASE": PASSPHRASE},
    )  # fmt: skip
    assert made.returncode == 0, made.stderr
    return directory, json.loads(made.stdout)


@pytest.mark.slow
def test_node_info_from_its_directory_file_or_json(
    node: tuple[Path, dict[str, str]], tmp_path: Path
) -> None:
    directory, printed = node
    from_dir = read_node_info(str(directory))
    assert from_dir.to_json() == printed
    assert from_dir.destination() == {
        "url": "127.0.0.1:7301",
        "web_url": "https://127.0.0.1:8301",
        "tls_public_key": printed["tls_public_key"],
    }
    path = tmp_path / "info.json"
    path.write_text(json.dumps(printed))
    assert read_node_info(str(path)) == from_dir
    assert read_node_info(json.dumps(printed)) == from_dir
    # a participant's info as the contract lists it (with its id) reads the same
    assert read_node_info(json.dumps({**printed, "participant_id": 3})) == from_dir
    assert read_node_info(json.dumps({"participant_info": printed})) == from_dir


@pytest.mark.parametrize(
    ("value", "words"),
    [
        ("/nonexistent/node", "neither a directory, a file nor JSON"),
        ('{"account": "alice"', "does not hold JSON"),
        ("[1, 2]", "node info"),
        ('{"account": "alice"}', "node info"),
        ("{}", "node info"),
    ],
)
def test_node_info_refusals(value: str, words: str) -> None:
    with pytest.raises(OperatorError) as refused:
        read_node_info(value)
    assert words in refused.value.message
    assert "\n" not in refused.value.message


@pytest.mark.slow
def test_node_info_bad_fields_and_keys(node: tuple[Path, dict[str, str]]) -> None:
    _, printed = node
    for field, bad in [
        ("tls_public_key", "00" * 32),  # the identity: small order
        ("signer_public_key", "zz" * 32),
        ("url", "no port"),
        ("web_url", "ftp://x"),
        ("account", "Alice!"),
    ]:
        with pytest.raises(OperatorError) as refused:
            read_node_info(json.dumps({**printed, field: bad}))
        assert refused.value.code == "input_invalid"
        assert field in refused.value.message


@pytest.mark.slow
def test_node_directory_whose_certificate_is_not_its_key(
    node: tuple[Path, dict[str, str]], tmp_path: Path
) -> None:
    directory, printed = node
    copy = tmp_path / "copy"
    copy.mkdir()
    for item in directory.iterdir():
        if item.is_file():
            (copy / item.name).write_bytes(item.read_bytes())
    identity = json.loads((copy / "identity.json").read_text())
    identity["tls_public_key"] = printed["signer_public_key"]  # any other valid key
    (copy / "identity.json").write_text(json.dumps(identity))
    with pytest.raises(OperatorError) as refused:
        read_node_info(str(copy))
    assert "certificate" in refused.value.message
    (copy / "identity.json").unlink()
    with pytest.raises(OperatorError) as missing:
        read_node_info(str(copy))
    assert "node init" in missing.value.message


@pytest.mark.slow
def test_backup_registration_from_directory_config_file_or_json(
    backup: tuple[Path, dict[str, str]], tmp_path: Path
) -> None:
    directory, printed = backup
    from_dir = read_backup_registration(str(directory))
    assert from_dir.to_json() == printed
    assert from_dir.account == "alice"
    assert read_backup_registration(str(directory / "backup.toml")) == from_dir
    path = tmp_path / "registration.json"
    path.write_text(json.dumps(printed))
    inline = read_backup_registration(str(path))
    assert inline.to_json() == printed and inline.account is None
    # `backup status --json` output (more fields, the account) works as well
    status = {**printed, "account": "alice", "backups": []}
    assert read_backup_registration(json.dumps(status)) == from_dir
    assert BackupServiceInfo.from_json(from_dir.to_json(), "x").to_json() == printed


@pytest.mark.parametrize(
    ("document", "words"),
    [
        ({"identity_public_key": VALID_KEY}, "encryption_public_key"),
        ({"identity_public_key": "00" * 32, "encryption_public_key": "11" * 32}, "identity"),
        ({"identity_public_key": VALID_KEY, "encryption_public_key": "00" * 32}, "encryption"),
        ([1], "JSON object"),
    ],
)
def test_backup_registration_refusals(document: object, words: str) -> None:
    with pytest.raises(OperatorError) as refused:
        read_backup_registration(json.dumps(document))
    assert words in refused.value.message


def test_backup_directory_without_keys_is_refused(tmp_path: Path) -> None:
    with pytest.raises(OperatorError) as refused:
        read_backup_registration(str(tmp_path))
    assert "backup init" in refused.value.message


@pytest.mark.slow
def test_actions_refuse_another_accounts_node_or_service_before_any_request(
    node: tuple[Path, dict[str, str]], backup: tuple[Path, dict[str, str]]
) -> None:
    bob = AccountSigner("bob", SigningKey(b"\x01" * 32))
    with LedgerClient(LEDGER, timeout=1.0) as client:
        with pytest.raises(OperatorError) as node_refused:
            start_migration(client, bob, read_node_info(str(node[0])))
        assert node_refused.value.code == "account_mismatch"
        with pytest.raises(OperatorError) as backup_refused:
            register_backup_service(client, bob, read_backup_registration(str(backup[0])))
        assert backup_refused.value.code == "account_mismatch"
    info: NodeInfo = read_node_info(str(node[0]))
    assert info.account == "alice"
