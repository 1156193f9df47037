"""Wrapped export/import and the warm standby on real processes.

One 2-of-3 devnet without backup services (so nothing but the standby's own shares can
conclude the fail-over). In file order: the export refusals of the CLI (allow = false, a
key not whitelisted), an export imported by hand, a blob for another node refused, the
primary pushing by itself after a restart, and the fail-over: the primary's machine is
lost, `operator failover` migrates to the standby, which concludes from what it holds and
signs. Every wait is bounded.
"""

from __future__ import annotations

import json
import os
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from devnet_helpers import cli, metric, node_dir, sign_all

from process_helpers import wait_until
from quorumkeep.devnet import forkserver, processes
from quorumkeep.devnet.network import NODE_PASSPHRASE_ENV, Devnet
from quorumkeep.node.config import CONFIG_FILE_NAME, load_config, write_config

pytestmark = pytest.mark.slow

ACCOUNT = "op1"
PRIMARY = "op1"
OTHER = "op2"


def error_line(result: subprocess.CompletedProcess[str]) -> str:
    lines = result.stderr.strip().splitlines()
    assert result.returncode != 0 and lines and lines[-1].startswith("error: "), result.stderr
    return lines[-1]


@pytest.fixture(scope="module")
def devnet(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Devnet]:
    path = tmp_path_factory.mktemp("standby") / "net"
    try:
        up = cli(
            "devnet", "up", "--nodes", "3", "--threshold", "2", "--dir", str(path),
            "--no-backup", "--timeout", "120",
        )  # fmt: skip
        assert up.returncode == 0, up.stderr
        devnet = Devnet(path)
        (standby,) = devnet.add_nodes([ACCOUNT], names=["op1-standby"], start=False)
        config_path = node_dir(devnet, standby) / CONFIG_FILE_NAME
        config = load_config(config_path)
        write_config(config.model_copy(update={"warm_standby": True}), config_path)
        devnet.start(standby)
        yield devnet
    finally:
        if (path / "devnet.json").exists():
            left = Devnet(path)
            left.down(grace=2.0)
            running = [n for n, p in left.record.processes.items() if processes.is_running(p)]
            assert not running, f"devnet down left {running} running"


def node_cli(devnet: Devnet, node: str, *args: str) -> subprocess.CompletedProcess[str]:
    """`quorumkeep ARGS` with the node's passphrase in its environment variable."""
    record = devnet.process(node)
    secret = devnet.secrets.get(record.env_secrets[NODE_PASSPHRASE_ENV]).decode()
    return forkserver.run(
        [*processes.cli_argv(*args)],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
        env={**os.environ, NODE_PASSPHRASE_ENV: secret},
    )


def wrapping_info(devnet: Devnet, node: str) -> dict[str, Any]:
    done = node_cli(devnet, node, "node", "wrapping-key", "--dir", str(node_dir(devnet, node)),
                    "--json")  # fmt: skip
    assert done.returncode == 0, done.stderr
    info: dict[str, Any] = json.loads(done.stdout)
    assert set(info) == {"account", "web_url", "tls_public_key", "wrapping_public_key"}
    return info


def export(devnet: Devnet, to: str, out: Path) -> subprocess.CompletedProcess[str]:
    return node_cli(devnet, PRIMARY, "node", "export", "--dir", str(node_dir(devnet, PRIMARY)),
                    "--to", to, "--out", str(out))  # fmt: skip


def test_export_is_refused_while_not_allowed_or_not_whitelisted(
    devnet: Devnet, tmp_path: Path
) -> None:
    standby_key = wrapping_info(devnet, "op1-standby")["wrapping_public_key"]
    out = tmp_path / "refused.export"
    assert "export_disabled" in error_line(export(devnet, standby_key, out))
    primary_dir = str(node_dir(devnet, PRIMARY))
    # whitelisted but allow = false: still refused
    done = cli("node", "export-config", "--dir", primary_dir, "--whitelist", standby_key)
    assert done.returncode == 0, done.stderr
    assert "export_disabled" in error_line(export(devnet, standby_key, out))
    # allowed, but to a key that is not whitelisted
    done = cli("node", "export-config", "--dir", primary_dir, "--allow")
    assert done.returncode == 0, done.stderr
    stranger = wrapping_info(devnet, OTHER)["wrapping_public_key"]
    assert "not_whitelisted" in error_line(export(devnet, stranger, out))
    assert not out.exists()


def test_a_node_that_is_not_a_participant_exports_nothing(devnet: Devnet, tmp_path: Path) -> None:
    """The standby holds no shares: allowed and whitelisted, its export is refused with
    ``not_participant`` (the contract lists another TLS key for the account) and writes nothing."""
    standby = "op1-standby"
    directory = str(node_dir(devnet, standby))
    config_path = node_dir(devnet, standby) / CONFIG_FILE_NAME
    original = config_path.read_bytes()
    to = wrapping_info(devnet, OTHER)["wrapping_public_key"]
    out = tmp_path / "standby.export"
    try:
        done = cli("node", "export-config", "--dir", directory, "--allow", "--whitelist", to)
        assert done.returncode == 0, done.stderr
        refused = node_cli(devnet, standby, "node", "export", "--dir", directory, "--to", to,
                           "--out", str(out))  # fmt: skip
        assert "not_participant" in error_line(refused)
        assert refused.returncode == 2  # docs/wrapped-export.md §8
        assert not out.exists()
    finally:
        config_path.write_bytes(original)  # the fail-over below starts it with its own config


def test_an_export_is_imported_by_hand_and_a_blob_for_another_node_is_refused(
    devnet: Devnet, tmp_path: Path
) -> None:
    standby = "op1-standby"
    standby_key = wrapping_info(devnet, standby)["wrapping_public_key"]
    good = tmp_path / "op1.export"
    done = export(devnet, standby_key, good)
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["epoch"] == 0
    text = good.read_text()
    # a blob sealed to another node: whitelist op2's node, export to it, import on the standby
    other_key = wrapping_info(devnet, OTHER)["wrapping_public_key"]
    cli("node", "export-config", "--dir", str(node_dir(devnet, PRIMARY)), "--whitelist", other_key)
    foreign = tmp_path / "op2.export"
    assert export(devnet, other_key, foreign).returncode == 0
    refused = cli("node", "import", str(foreign), "--dir", str(node_dir(devnet, standby)))
    assert "wrong_destination" in error_line(refused)
    assert devnet.node_get(standby, "/status")["keysets"] == {}
    # a tampered one
    tampered = tmp_path / "tampered.export"
    document = json.loads(text)
    document["created_at_ms"] += 1
    tampered.write_text(json.dumps(document))
    refused = cli("node", "import", str(tampered), "--dir", str(node_dir(devnet, standby)))
    assert "bad_signature" in error_line(refused)
    # the good one
    done = cli("node", "import", str(good), "--dir", str(node_dir(devnet, standby)))
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["epoch"] == 0
    status = devnet.node_get(standby, "/status")
    assert status["role"] == "waiting"
    assert status["warm_standby"]["fresh"] is True and status["warm_standby"]["held_epoch"] == 0
    assert metric(devnet.node_metrics(standby), "quorumkeep_standby_fresh") == 1


def test_the_primary_pushes_by_itself_after_a_restart(devnet: Devnet) -> None:
    standby = "op1-standby"
    info = wrapping_info(devnet, standby)
    done = cli("node", "export-config", "--dir", str(node_dir(devnet, PRIMARY)), "--allow",
               "--standby", json.dumps(info))  # fmt: skip
    assert done.returncode == 0, done.stderr
    devnet.stop(PRIMARY)
    devnet.start(PRIMARY)

    def pushed() -> Any:
        status = devnet.node_get(PRIMARY, "/status")
        return status["standby_push"] if status["standby_push"]["pushed_epoch"] == 0 else None

    push = wait_until(pushed, 60, "the primary's push to the standby")
    assert push["error"] is None and push["wrapping_key"] == info["wrapping_public_key"]
    assert metric(devnet.node_metrics(PRIMARY), "quorumkeep_standby_pushed_epoch") == 0
    assert metric(devnet.node_metrics(standby), "quorumkeep_standby_imports_total") >= 2


def test_failover_concludes_from_the_standby_shares_and_signs(devnet: Devnet) -> None:
    standby = "op1-standby"
    devnet.kill(PRIMARY)
    devnet.wipe(PRIMARY)
    key, passphrase = devnet.key_file(ACCOUNT)
    done = cli(
        "operator", "failover", "--account", ACCOUNT, "--key", str(key), "--passphrase-file",
        str(passphrase), "--ledger", devnet.ledger_url, "--standby",
        str(node_dir(devnet, standby)), "--json", "--timeout", "60",
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    status = json.loads(done.stdout)["status"]
    assert status["state"] == "concluded"
    assert status["seconds"] is not None and status["seconds"] >= 0
    node = devnet.node_get(standby, "/status")
    assert node["role"] == "participant" and node["warm_standby"]["active"] is True
    # nothing but its own shares could have concluded it: the devnet has no backup service
    assert metric(devnet.node_metrics(standby), "quorumkeep_migration_imports_total") == 0
    sign_all(devnet, ["standby/after-failover"], keys=1)
