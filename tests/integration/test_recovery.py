"""Backups, migrations and disaster recovery on real processes.

The first test runs `quorumkeep devnet demo --json` end to end on a devnet of its own and
checks its report: this is the one place in the suite where the demo's recovery scenarios
run (each checks itself and fails the demo otherwise). The operator guide runs as written on
another devnet. The rest share one 3-of-4 devnet (started without backup services, so the
first test can show a node refusing a backup to an account without one); they run in file
order: backup services, the operator commands, and the rejections. Every wait is bounded.
"""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from devnet_helpers import cli, metric, node_dir, sign_all

from process_helpers import ROOT, run_doc, sh_blocks, wait_until
from quorumkeep.backup.client import NodeClient, NodeEndpoint, NodeRefused
from quorumkeep.backup.identity import unlock
from quorumkeep.devnet import backups, forkserver, processes, watch
from quorumkeep.devnet.network import Devnet
from quorumkeep.ledger.client import LedgerClient
from quorumkeep.ledger.transaction import Permission

pytestmark = pytest.mark.slow

GUIDE_TIMEOUT = 600.0
"""A bound, not a goal: the guide runs every flow by hand, emergency recovery included (RSA
key generation, parts, Argon2id), on a shared 2-core machine."""
BACKUP_WAIT = 60.0


def one_line_error(result: subprocess.CompletedProcess[str]) -> str:
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("error: "), result.stderr
    return lines[0]


def test_operator_guide_runs_as_written(tmp_path: Path) -> None:
    """docs/operator-guide.md: every command, as written, against a devnet of its own."""
    guide = ROOT / "docs" / "operator-guide.md"
    assert len(sh_blocks(guide)) >= 10
    output = run_doc(
        guide, tmp_path, GUIDE_TIMEOUT, QK=str(tmp_path / "qk"), WORK=str(tmp_path / "work")
    )
    assert "recovery/full-loss" in output
    assert "recovery/rebooted" in output  # §8: every machine restarted, signing again
    assert "op2's migration cancelled at block" in output


# --- one devnet for the rest of the module ----------------------------------------------------


@pytest.fixture(scope="module")
def devnet(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Devnet]:
    path = tmp_path_factory.mktemp("recovery") / "net"
    try:
        up = cli(
            "devnet", "up", "--nodes", "4", "--threshold", "3", "--dir", str(path),
            "--spare-operators", "2", "--no-backup", "--timeout", "120",
        )  # fmt: skip
        assert up.returncode == 0, up.stderr
        yield Devnet(path)
    finally:
        if (path / "devnet.json").exists():
            left = Devnet(path)
            left.down(grace=2.0)
            running = [n for n, p in left.record.processes.items() if processes.is_running(p)]
            assert not running, f"devnet down left {running} running"


def operator_args(devnet: Devnet, account: str) -> list[str]:
    key, passphrase = devnet.key_file(account)
    return [
        "--account", account, "--key", str(key), "--passphrase-file", str(passphrase),
        "--ledger", devnet.ledger_url,
    ]  # fmt: skip


def endpoint(devnet: Devnet, node: str) -> NodeEndpoint:
    info = devnet.participant_info(node)
    return NodeEndpoint(info["web_url"], bytes.fromhex(info["tls_public_key"]))


def fetch(directory: Path, account: str, passphrase: bytes, node: NodeEndpoint) -> Any:
    async def run() -> Any:
        identity, _ = unlock(directory, passphrase, account)
        client = NodeClient(timeout=10.0)
        try:
            return await client.fetch_backup(node, identity)
        finally:
            await client.aclose()

    return asyncio.run(run())


def test_no_backup_service_registered_the_node_refuses(devnet: Devnet, tmp_path: Path) -> None:
    directory = tmp_path / "backup-op1"
    passphrase = b"a test passphrase for op1's backup service"
    env = {**os.environ, backups.BACKUP_PASSPHRASE_ENV: passphrase.decode()}
    init = forkserver.run(
        backups.backup_cli(
            "init",
            "--account",
            "op1",
            "--dir",
            str(directory),
            "--ledger",
            devnet.ledger_url,
            "--passphrase-env",
            backups.BACKUP_PASSPHRASE_ENV,
            "--kdf-cost",
            "minimum",
        ),
        capture_output=True,
        text=True,
        timeout=60,
        env=env,
    )
    assert init.returncode == 0, init.stderr
    with LedgerClient(devnet.ledger_url) as client:
        assert client.view("backup_service_info", {"account": "op1"}) is None
    with pytest.raises(NodeRefused) as refused:
        fetch(directory, "op1", passphrase, endpoint(devnet, "op1"))
    assert refused.value.remote_code == "unregistered_caller"
    assert refused.value.http_status == 403

    bad = cli("operator", "register-backup-service", *operator_args(devnet, "op1"),
              "--backup-dir", str(tmp_path / "nothing-here"))  # fmt: skip
    assert bad.returncode == 2
    assert "nothing-here" in one_line_error(bad)
    wrong = cli("operator", "register-backup-service", *operator_args(devnet, "op2"),
                "--backup-dir", str(directory))  # fmt: skip
    assert wrong.returncode == 2
    assert "op1" in one_line_error(wrong)

    ok = cli("operator", "register-backup-service", *operator_args(devnet, "op1"),
             "--backup-dir", str(directory), "--json")  # fmt: skip
    assert ok.returncode == 0, ok.stderr
    registered = json.loads(ok.stdout)
    with LedgerClient(devnet.ledger_url) as client:
        info = client.view("backup_service_info", {"account": "op1"})
    assert info["identity_public_key"] == registered["identity_public_key"]
    # Registered now: the same request is answered with epoch 0's shares.
    fetched = fetch(directory, "op1", passphrase, endpoint(devnet, "op1"))
    assert fetched.keyset.epoch == 0
    assert [s.domain_id for s in fetched.shares] == [0]


def test_backup_services_take_their_first_backups(devnet: Devnet) -> None:
    names = [devnet.add_backup_service(account) for account in ("op1", "op2", "op3", "op4")]
    backups.wait_for_backups(
        devnet, names, backups.covers_epoch(0), timeout=BACKUP_WAIT, what="first backup"
    )
    for node in ("op1", "op2", "op3", "op4"):
        served = metric(devnet.node_metrics(node), "quorumkeep_last_backup_served_epoch")
        assert served == 0
    status = cli("devnet", "status", "--dir", str(devnet.path), "--json")
    assert status.returncode == 0, status.stderr
    services = json.loads(status.stdout)["backups"]
    assert sorted(services) == sorted(names)
    for entry in services.values():
        assert entry["registered"] is True
        assert entry["newest_epoch"] == 0 and entry["covers_current_keyset"] is True
    table = cli("devnet", "status", "--dir", str(devnet.path))
    assert "backup services" in table.stdout


def test_backup_service_restarted_resumes_from_its_store(devnet: Devnet) -> None:
    name = backups.backup_name("op3")
    before = devnet.backup_status(name)
    assert before["covers_current_keyset"] is True
    assert devnet.kill(name)
    assert devnet.start(name)
    after = wait_until(
        lambda: (s := devnet.backup_status(name)).get("covers_current_keyset") and s,
        timeout=30,
        what=f"{name} to read the contract after its restart",
    )
    # The same backup, from its sealed store: nothing fetched again.
    assert [b["stored_at"] for b in after["backups"]] == [b["stored_at"] for b in before["backups"]]
    text = backups.metrics(devnet, name)
    assert metric(text, "quorumkeep_backup_fetches_total") == 0
    record = devnet.process(name)
    assert record.directory is not None
    env = {
        **os.environ,
        backups.BACKUP_PASSPHRASE_ENV: devnet.secrets.get("backup-op3").decode(),
    }
    config = str(devnet.dir.resolve(record.directory) / "backup.toml")
    verify = forkserver.run(
        backups.backup_cli("verify", "--config", config, "--json"),
        capture_output=True,
        text=True,
        timeout=60,
        env=env,
    )
    assert verify.returncode == 0, verify.stderr
    assert json.loads(verify.stdout)["valid"] is True


def test_operator_cli_moves_a_live_node_and_back(devnet: Devnet) -> None:
    """A → B by the command line (its node key added by start-migration), the old node
    wiped and standing by, then B → A without restarting A."""
    (new,) = devnet.add_nodes(["op1"])
    devnet.wait_node_healthy(new)
    info = devnet.participant_info(new)
    with LedgerClient(devnet.ledger_url) as client:
        removed = client.delete_key(devnet.signer("op1"), bytes.fromhex(info["signer_public_key"]))
        assert removed.ok
    moved = cli("operator", "start-migration", *operator_args(devnet, "op1"),
                "--new-node", str(node_dir(devnet, new)), "--wait", "--json")  # fmt: skip
    assert moved.returncode == 0, moved.stderr
    body = json.loads(moved.stdout)
    assert body["node_key"] == "added"
    assert body["status"]["state"] == "concluded"
    assert body["status"]["seconds"] is not None
    started = body["migration"]["started_height"]
    assert devnet.node_of("op1") == new
    old = wait_until(
        lambda: (s := devnet.node_get("op1", "/status"))["role"] == "decommissioned" and s,
        timeout=30,
        what="op1's old node to wipe itself",
    )
    assert old["keysets"] == {}
    assert devnet.alive("op1")  # stands by for a migration back
    status = cli("operator", "migration-status", "--account", "op1", "--ledger",
                 devnet.ledger_url, "--since", str(started), "--json")  # fmt: skip
    assert status.returncode == 0, status.stderr
    replayed = json.loads(status.stdout)
    assert replayed["state"] == "concluded" and replayed["seconds"] == body["status"]["seconds"]
    assert all(step["reached"] for step in replayed["steps"].values())

    back = cli("operator", "start-migration", *operator_args(devnet, "op1"),
               "--new-node", json.dumps(devnet.participant_info("op1")), "--wait")  # fmt: skip
    assert back.returncode == 0, back.stderr
    assert "already authorized" in back.stdout
    assert devnet.node_of("op1") == "op1"
    # waiting on a migration that already concluded says so (not "no migration open")
    after = cli("operator", "migration-status", "--account", "op1", "--ledger",
                devnet.ledger_url, "--wait")  # fmt: skip
    assert after.returncode == 0, after.stderr
    assert after.stdout.startswith("concluded: op1's node is now"), after.stdout
    wait_until(
        lambda: devnet.node_get(new, "/status")["role"] == "decommissioned",
        timeout=30,
        what=f"{new} to wipe itself",
    )
    devnet.retire(new, grace=2.0)
    sign_all(devnet, ["back-on-a/0", "back-on-a/1"])


def test_operator_cli_cancels_a_migration(devnet: Devnet) -> None:
    (target,) = devnet.add_nodes(["op3"], start=False)
    signer_key = bytes.fromhex(devnet.participant_info(target)["signer_public_key"])
    with LedgerClient(devnet.ledger_url) as client:
        assert client.delete_key(devnet.signer("op3"), signer_key).ok
        assert client.add_key(devnet.signer("op3"), signer_key, Permission(("respond",))).ok
    refused = cli("operator", "start-migration", *operator_args(devnet, "op3"),
                  "--new-node", str(node_dir(devnet, target)))  # fmt: skip
    assert refused.returncode == 1
    assert "another permission" in one_line_error(refused)
    with LedgerClient(devnet.ledger_url) as client:
        assert client.view("migration_info", {"account": "op3"}) is None
        assert client.delete_key(devnet.signer("op3"), signer_key).ok

    started = cli("operator", "start-migration", *operator_args(devnet, "op3"),
                  "--new-node", str(node_dir(devnet, target)), "--json")  # fmt: skip
    assert started.returncode == 0, started.stderr
    assert json.loads(started.stdout)["node_key"] == "added"
    height = json.loads(started.stdout)["migration"]["started_height"]
    open_now = cli("operator", "migration-status", "--account", "op3", "--ledger",
                   devnet.ledger_url, "--json")  # fmt: skip
    assert open_now.returncode == 0, open_now.stderr
    opened = json.loads(open_now.stdout)
    assert opened["state"] == "open" and opened["node_role"] is None  # never started
    stuck = cli("operator", "migration-status", "--account", "op3", "--ledger",
                devnet.ledger_url, "--wait", "--timeout", "1")  # fmt: skip
    assert stuck.returncode == 1
    assert "still open" in one_line_error(stuck) and "log" in stuck.stderr
    cancelled = cli("operator", "cancel-migration", *operator_args(devnet, "op3"))
    assert cancelled.returncode == 0, cancelled.stderr
    replay = cli("operator", "migration-status", "--account", "op3", "--ledger",
                 devnet.ledger_url, "--since", str(height), "--json")  # fmt: skip
    outcome = json.loads(replay.stdout)
    assert outcome["state"] == "cancelled"
    assert outcome["cancel_reason"] == "cancelled by the operator"
    again = cli("operator", "cancel-migration", *operator_args(devnet, "op3"))
    assert again.returncode == 1
    assert "MigrationNotFound" in one_line_error(again)
    nothing = cli("operator", "migration-status", "--account", "op3", "--ledger",
                  devnet.ledger_url)  # fmt: skip
    assert nothing.returncode == 0 and "no migration open for op3" in nothing.stdout
    devnet.retire(target)
    bad = cli("operator", "start-migration", *operator_args(devnet, "op3"),
              "--new-node", '{"account": "op3"}')  # fmt: skip
    assert bad.returncode == 2
    one_line_error(bad)
    other = cli("operator", "start-migration", *operator_args(devnet, "op2"),
                "--new-node", str(node_dir(devnet, target)))  # fmt: skip
    assert other.returncode == 2
    assert "op3" in one_line_error(other)


def test_start_migration_during_resharing_is_rejected(devnet: Devnet) -> None:
    (joiner,) = devnet.add_nodes(["op6"], start=False)  # never started: the resharing stalls
    participants = watch.participants(devnet.contract_state())
    epoch = devnet.reshare(threshold=4, add=[joiner], wait=False)
    assert watch.protocol_name(devnet.contract_state()) == "Resharing"
    (target,) = devnet.add_nodes(["op2"], start=False)
    refused = cli("operator", "start-migration", *operator_args(devnet, "op2"),
                  "--new-node", str(node_dir(devnet, target)))  # fmt: skip
    assert refused.returncode == 1
    assert "ProtocolStateNotRunning" in one_line_error(refused)
    with LedgerClient(devnet.ledger_url) as client:
        assert client.view("migration_info", {"account": "op2"}) is None
        for member in participants[:3]:
            client.call(devnet.signer(member["account"]), "vote_cancel_resharing", {})
        state = client.view("state")
    assert watch.protocol_name(state) == "Running"
    assert watch.epoch(state) == epoch - 1
    devnet.retire(joiner)
    devnet.retire(target)
    sign_all(devnet, ["after-cancelled-resharing/0"])
