"""The CLI round trip against a real ledger: init → serve → contract call/view, keys."""

from __future__ import annotations

import json
import os
import subprocess
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from ledger_helpers import LedgerProcess, cli_command, init_args

from quorumkeep.devnet import forkserver

pytestmark = pytest.mark.slow

PASSPHRASE = "cli test passphrase"


def run(*args: str, env_pass: bool = True) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ)
    env.pop("QUORUMKEEP_PASSPHRASE", None)
    if env_pass:
        env["QUORUMKEEP_PASSPHRASE"] = PASSPHRASE
    return forkserver.run(cli_command(*args), capture_output=True, text=True, timeout=120, env=env)


def one_line_error(result: subprocess.CompletedProcess[str], exit_code: int) -> str:
    assert result.returncode == exit_code, (result.stdout, result.stderr)
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("error: ")
    assert "Traceback" not in result.stderr
    return lines[0]


@pytest.fixture(scope="module")
def ledger(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Path, str]]:
    data = tmp_path_factory.mktemp("cli") / "data"
    result = run("ledger", "init", "--data", str(data), "--accounts", "alice,bob", "--json")
    assert result.returncode == 0, result.stderr
    created = json.loads(result.stdout)
    assert set(created["accounts"]) == {"alice", "bob"}
    server = LedgerProcess(data).start()
    try:
        yield data, server.url
    finally:
        server.terminate()


def test_init_refuses_an_existing_ledger(ledger: tuple[Path, str]) -> None:
    data, _ = ledger
    line = one_line_error(run("ledger", "init", "--data", str(data), "--accounts", "x1"), 2)
    assert "already" in line


def test_init_refuses_a_non_empty_directory(tmp_path: Path) -> None:
    """Not only a ledger's: any directory with something in it (a devnet's, a home) is left
    alone; an empty or missing one is fine."""
    data = tmp_path / "busy"
    data.mkdir()
    (data / "devnet.json").write_text("{}")
    line = one_line_error(run("ledger", "init", "--data", str(data), "--accounts", "a1"), 2)
    assert "not empty" in line
    assert sorted(p.name for p in data.iterdir()) == ["devnet.json"]
    empty = tmp_path / "empty"
    empty.mkdir()
    assert run("ledger", "init", "--data", str(empty), "--accounts", "a1").returncode == 0


def test_init_needs_a_passphrase(tmp_path: Path) -> None:
    result = run(
        "ledger", "init", "--data", str(tmp_path / "d"), "--accounts", "a1", env_pass=False
    )
    assert "QUORUMKEEP_PASSPHRASE" in one_line_error(result, 2)
    assert not (tmp_path / "d").exists()


def test_contract_call_and_view(ledger: tuple[Path, str]) -> None:
    data, url = ledger
    key = str(data / "keys" / "alice.json")
    args = json.dumps(init_args(["alice", "bob"]))
    result = run(
        "contract", "call", "init", "--args", args, "--signer", "alice", "--key", key,
        "--ledger", url, "--json",
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    outcome = json.loads(result.stdout)
    assert outcome["status"] == "success"
    assert [e["kind"] for e in outcome["events"]] == [
        "protocol_state_changed",
        "participants_changed",
    ]

    view = run("contract", "view", "state", "--ledger", url, "--json")
    assert view.returncode == 0, view.stderr
    assert json.loads(view.stdout)["protocol_state"]["state"] == "Running"

    # The same call again: the contract refuses it → one line, exit 1.
    again = run(
        "contract", "call", "init", "--args", args, "--signer", "alice", "--key", key,
        "--ledger", url,
    )  # fmt: skip
    assert "AlreadyInitialized" in one_line_error(again, 1)


def test_contract_call_input_errors(ledger: tuple[Path, str]) -> None:
    data, url = ledger
    key = str(data / "keys" / "bob.json")
    common = ["--key", key, "--ledger", url]
    bad_json = run("contract", "call", "sign", "--args", "{not json", "--signer", "bob", *common)
    assert "--args" in one_line_error(bad_json, 2)
    wrong_signer = run("contract", "call", "sign", "--args", "{}", "--signer", "alice", *common)
    assert "not 'alice'" in one_line_error(wrong_signer, 2)
    no_pass = run("contract", "call", "sign", "--signer", "bob", *common, env_pass=False)
    one_line_error(no_pass, 2)
    missing = run("contract", "call", "sign", "--signer", "bob", "--key", "/nonexistent.json",
                  "--ledger", url)  # fmt: skip
    assert "cannot read key file" in one_line_error(missing, 2)


def test_view_errors(ledger: tuple[Path, str]) -> None:
    _, url = ledger
    assert "UnknownMethod" in one_line_error(run("contract", "view", "nope", "--ledger", url), 1)
    down = run("contract", "view", "state", "--ledger", "http://127.0.0.1:1")
    assert "LedgerUnavailable" in one_line_error(down, 1)


def test_keys_new_and_add_a_function_call_key(ledger: tuple[Path, str], tmp_path: Path) -> None:
    data, url = ledger
    out = tmp_path / "node-signer.json"
    created = run("keys", "new", "--out", str(out), "--json")
    assert created.returncode == 0, created.stderr
    public_key = json.loads(created.stdout)["public_key"]
    assert "already exists" in one_line_error(run("keys", "new", "--out", str(out)), 2)

    added = run(
        "keys", "add", str(out), "--methods", "respond,vote_pk", "--signer", "bob",
        "--key", str(data / "keys" / "bob.json"), "--ledger", url,
    )  # fmt: skip
    assert added.returncode == 0, added.stderr
    keys = {k["public_key"]: k for k in httpx.get(f"{url}/v1/accounts/bob").json()["keys"]}
    assert keys[public_key]["permission"] == {"function_call": ["respond", "vote_pk"]}
    # The new key, used for an operator method: refused by the ledger, one line, exit 1.
    refused = run(
        "contract", "call", "register_backup_service", "--args", "{}", "--signer", "bob",
        "--key", str(out), "--ledger", url,
    )  # fmt: skip
    assert "FullAccessRequired" in one_line_error(refused, 1)


def test_serve_refuses_bad_input(tmp_path: Path) -> None:
    empty = run("ledger", "serve", "--data", str(tmp_path), "--listen", "127.0.0.1:0")
    assert "holds no ledger" in one_line_error(empty, 1)
    bad_listen = run("ledger", "serve", "--data", str(tmp_path), "--listen", "localhost")
    assert "HOST:PORT" in one_line_error(bad_listen, 2)


def test_keys_show_needs_no_passphrase(ledger: tuple[Path, str]) -> None:
    data, _ = ledger
    shown = run("keys", "show", str(data / "keys" / "alice.json"), "--json", env_pass=False)
    assert shown.returncode == 0, shown.stderr
    assert json.loads(shown.stdout)["account"] == "alice"
    raw = (data / "keys" / "alice.json").read_text()
    assert json.loads(shown.stdout)["public_key"] in raw
