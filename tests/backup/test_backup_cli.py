"""`quorumkeep backup init|status|verify|run`: output, exit codes, refusals; never a secret."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest
from backup_helpers import (
    BACKUP_PASSPHRASE,
    LEDGER_PASSPHRASE,
    Network,
    backup_cli,
    start_network,
    store_node_shares,
)
from typer.testing import CliRunner

from quorumkeep.backup.config import load_config
from quorumkeep.backup.identity import read_public_identity
from quorumkeep.cli.backup import app
from quorumkeep.devnet import forkserver

ENV = {"QUORUMKEEP_BACKUP_PASSPHRASE": BACKUP_PASSPHRASE}
runner = CliRunner()


def invoke(*args: str, env: dict[str, str] | None = None) -> tuple[int, str, str]:
    result = runner.invoke(app, list(args), env=ENV if env is None else env)
    return result.exit_code, result.stdout, result.stderr


@pytest.fixture(scope="module")
def network(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Network]:
    net = start_network(tmp_path_factory.mktemp("cli"), domains=1)
    store_node_shares(net)
    try:
        yield net
    finally:
        net.close()


def test_init_prints_the_registration_and_writes_a_config(tmp_path: Path) -> None:
    directory = tmp_path / "svc"
    code, out, err = invoke(
        "init", "--account", "alice", "--dir", str(directory), "--kdf-cost", "minimum"
    )
    assert code == 0, err
    registration = json.loads(out)
    public = read_public_identity(directory)
    assert registration == public.registration()
    config = load_config(directory / "backup.toml")
    assert config.account == "alice" and config.dir == directory.resolve()
    assert config.passphrase.passphrase_env == "QUORUMKEEP_BACKUP_PASSPHRASE"
    assert config.max_backoff == 5.0
    assert BACKUP_PASSPHRASE not in out + err
    assert BACKUP_PASSPHRASE not in (directory / "backup.toml").read_text()
    # A second init refuses to replace the keys; nothing changes.
    before = (directory / "identity.json").read_bytes()
    code, _, err = invoke(
        "init", "--account", "alice", "--dir", str(directory), "--kdf-cost", "minimum"
    )
    assert code == 2 and err.startswith("error: ") and err.count("\n") == 1
    assert (directory / "identity.json").read_bytes() == before


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--kdf-cost", "tiny"], "--kdf-cost"),
        (["--register"], "--operator-key"),
        (["--passphrase-env", "A", "--passphrase-file", "f"], "at most one"),
        (["--listen", "nowhere"], "listen"),
    ],
)
def test_init_refusals(tmp_path: Path, args: list[str], message: str) -> None:
    directory = tmp_path / "svc"
    code, _, err = invoke("init", "--account", "alice", "--dir", str(directory), *args)
    assert code == 2 and message in err
    assert not (directory / "identity.json").exists()


def test_init_without_a_passphrase_is_one_line(tmp_path: Path) -> None:
    code, _, err = invoke(
        "init",
        "--account",
        "alice",
        "--dir",
        str(tmp_path / "svc"),
        env={"QUORUMKEEP_BACKUP_PASSPHRASE": ""},
    )
    assert code == 2
    assert err.strip() == (
        "error: environment variable QUORUMKEEP_BACKUP_PASSPHRASE is not set or empty"
    )


@pytest.mark.slow
def test_register_status_and_verify_against_the_contract(network: Network, tmp_path: Path) -> None:
    directory = tmp_path / "svc"
    passphrase_file = tmp_path / "operator-passphrase"
    passphrase_file.write_bytes(LEDGER_PASSPHRASE + b"\n")
    code, out, err = invoke(
        "init",
        "--account",
        "alice",
        "--dir",
        str(directory),
        "--ledger",
        network.ledger.url,
        "--kdf-cost",
        "minimum",
        "--register",
        "--operator-key",
        str(network.ledger.key_files["alice"]),
        "--operator-passphrase-file",
        str(passphrase_file),
    )
    assert code == 0, err
    assert "event backup_service_registered" in out
    public = read_public_identity(directory)
    assert network.ledger.view("backup_service_info", {"account": "alice"}) == (
        public.registration()
    )
    config = str(directory / "backup.toml")
    code, out, _ = invoke("status", "--config", config, "--json")
    assert code == 0
    status = json.loads(out)
    assert status["backups"] == [] and status["newest_epoch"] is None
    assert status["last_verify"] is None
    code, out, _ = invoke("status", "--config", config)
    assert code == 0 and "no backup held yet" in out and "last verify: never" in out
    # Nothing backed up yet while the contract has a key: invalid, exit 1, recorded.
    code, out, _ = invoke("verify", "--config", config)
    assert code == 1
    assert out.startswith("INVALID: no backup is held")
    code, out, _ = invoke("status", "--config", config, "--json")
    assert json.loads(out)["last_verify"]["valid"] is False
    # Another account's operator key cannot register for alice.
    code, _, err = invoke(
        "init",
        "--account",
        "alice",
        "--dir",
        str(tmp_path / "other"),
        "--ledger",
        network.ledger.url,
        "--kdf-cost",
        "minimum",
        "--register",
        "--operator-key",
        str(network.ledger.key_files["bob"]),
        "--operator-passphrase-file",
        str(passphrase_file),
    )
    assert code == 2 and "bob" in err


def test_verify_with_a_wrong_passphrase_or_no_ledger(tmp_path: Path) -> None:
    directory = tmp_path / "svc"
    code, _, err = invoke(
        "init",
        "--account",
        "alice",
        "--dir",
        str(directory),
        "--ledger",
        "http://127.0.0.1:9",
        "--kdf-cost",
        "minimum",
    )
    assert code == 0, err
    config = str(directory / "backup.toml")
    code, _, err = invoke(
        "verify", "--config", config, env={"QUORUMKEEP_BACKUP_PASSPHRASE": "wrong"}
    )
    assert code == 2
    assert err.strip() == "error: the passphrase does not open this backup service's keys"
    code, _, err = invoke("verify", "--config", config)
    assert code == 1 and "LedgerUnavailable" in err and err.count("\n") == 1
    code, _, err = invoke("status", "--config", str(tmp_path / "none.toml"))
    assert code == 2 and "no such file" in err


@pytest.mark.slow
def test_run_refuses_to_start_without_its_directory(tmp_path: Path) -> None:
    config = tmp_path / "backup.toml"
    config.write_text(
        'account = "alice"\ndir = "missing"\nledger_url = "http://127.0.0.1:9"\n'
        '[passphrase]\npassphrase_env = "QUORUMKEEP_BACKUP_PASSPHRASE"\n'
    )
    result = forkserver.run(
        backup_cli("run", "--config", str(config)),
        capture_output=True,
        text=True,
        timeout=60,
        env={**ENV, "PATH": "/usr/bin:/bin"},
    )
    assert result.returncode == 2
    assert "cannot start (identity_missing)" in result.stderr
    assert "Traceback" not in result.stderr
