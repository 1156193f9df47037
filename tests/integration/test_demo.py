"""`quorumkeep devnet demo --json` end to end: the one place in the suite where the demo's
recovery scenarios run (each checks itself and fails the demo otherwise); these tests check the
report, that nothing is left running and that no secret the devnet holds is in any of its files.

Two runs on two pytest workers: every scenario but ``company-gone``, then the secret scan (which
needs the nodes' and backup services' data to read their secrets back); and ``company-gone``
alone, which deletes every directory of the network before the offline recovery."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from devnet_helpers import cli
from nacl.signing import VerifyKey
from secret_scan import devnet_secrets, scan

from quorumkeep.crypto.derive import derive_public_key
from quorumkeep.devnet import processes
from quorumkeep.devnet.demo import ETCD_SCENARIOS, SCENARIOS
from quorumkeep.devnet.network import USER, Devnet

pytestmark = pytest.mark.slow

DEMO_TIMEOUT = 600.0
REPORT_KEYS = {
    "group_public_key",
    "scenarios",
    "signatures",
    "migrations",
    "backup_gates",
    "restores",
}
SIGNATURE_KEYS = {"scenario", "payload", "path", "public_key", "signature"}
NOT_MIGRATING = {"attestation-upgrade", "restored-from-snapshot", "company-gone", *ETCD_SCENARIOS}
"""Scenarios that migrate no node: an attestation upgrade reshares the laggard out, a node
restored from its snapshot is the same node; losing a ledger server or the whole company
moves no node."""
MIGRATING = [s for s in SCENARIOS if s not in NOT_MIGRATING]
MIGRATIONS = {
    "single-node-loss": 1,
    "quorum-loss": 2,
    "full-cluster-loss": 4,
    "cancelled-by-resharing": 1,
    "failover-to-standby": 1,
    "every-machine-rebooted": 4,
}
"""How many nodes each migrating scenario moves (every-machine-rebooted: the four
participants left after attestation-upgrade)."""
RESTORE_KEYS = {
    "node",
    "restored",
    "epoch",
    "snapshot_presignatures",
    "used_before_restore",
    "signatures_after_restore",
    "used_after_restore",
}
MIGRATION_KEYS = {
    "account",
    "scenario",
    "started_height",
    "concluded_height",
    "seconds",
    "concluded",
}


LAST = "company-gone"
BEFORE_LAST = [s for s in SCENARIOS if s != LAST]


def check_report(report: dict[str, Any], scenarios: list[str]) -> None:
    """The demo's report of ``scenarios``: each passed, every signature verifies, every
    migration concluded except the one a resharing cancelled."""
    assert set(report) == REPORT_KEYS
    assert [s["name"] for s in report["scenarios"]] == scenarios
    assert all(s["passed"] is True and s["seconds"] > 0 for s in report["scenarios"])
    signed_in = {entry["scenario"] for entry in report["signatures"]}
    assert signed_in == {"setup", *scenarios}, signed_in
    group_key = bytes.fromhex(report["group_public_key"])
    assert len(group_key) == 32
    assert report["signatures"]
    for entry in report["signatures"]:
        assert set(entry) == SIGNATURE_KEYS
        expected = derive_public_key(group_key, USER, entry["path"])
        assert entry["public_key"] == expected.hex()
        VerifyKey(expected).verify(
            bytes.fromhex(entry["payload"]), bytes.fromhex(entry["signature"])
        )  # raises if invalid
    if LAST in scenarios:
        # the company-gone signature was made offline by `ers recover` after every process of
        # the network was stopped and its data deleted; it verifies under the same derived key
        assert report["signatures"][-1]["scenario"] == LAST
    migrating = [s for s in MIGRATING if s in scenarios]
    assert {m["scenario"] for m in report["migrations"]} == set(migrating)
    for m in report["migrations"]:
        assert set(m) == MIGRATION_KEYS
        if m["scenario"] == "cancelled-by-resharing":
            assert m["concluded"] is False
            assert m["concluded_height"] is None and m["seconds"] is None
        else:
            assert m["concluded"] is True, m
            assert m["concluded_height"] > m["started_height"]
            assert m["seconds"] >= 0
    # backup before use: the first signature waited for the confirmations after the DKG,
    # and the resharing's new epoch waited for its own
    gates = {(g["scenario"], g["epoch"]) for g in report["backup_gates"]}
    expected = {("setup", 0)}
    if "cancelled-by-resharing" in scenarios:
        expected.add(("cancelled-by-resharing", 1))
    assert expected <= gates, gates
    assert all(g["seconds"] >= 0 for g in report["backup_gates"])
    counts = {s: sum(m["scenario"] == s for m in report["migrations"]) for s in migrating}
    assert counts == {s: n for s, n in MIGRATIONS.items() if s in scenarios}
    if "restored-from-snapshot" in scenarios:
        # the restored node signed again with none of the snapshot's presignatures (each
        # signature's R recomputed from every one of them)
        (restore,) = report["restores"]
        assert set(restore) == RESTORE_KEYS
        assert restore["snapshot_presignatures"] > 0
        assert restore["signatures_after_restore"] > 0 and restore["used_after_restore"] == 0
        assert restore["restored"] != restore["node"]
    if "failover-to-standby" in scenarios:
        (failover,) = [m for m in report["migrations"] if m["scenario"] == "failover-to-standby"]
        assert failover["concluded"] is True


def check_no_secret_outside_its_seal(path: Path, canary: Path) -> None:
    """Every share, nonce and private key the demo's devnet holds, read back with the
    project's code and the devnet's passphrases, is found in no file under it (logs, the
    databases and their WAL, records) in any raw, hex or base64 form."""
    secrets = devnet_secrets(path)
    kinds = " ".join(s.what for s in secrets)
    for kind in (
        "share",
        "nonce",
        "storage key",
        "TLS private key",
        "signer seed",
        "backup share",
        "identity seed",
        "encryption key",
        "store key",
        "account",
    ):
        assert kind in kinds, f"no {kind} was read back: the scan would prove nothing"
    assert scan(path, secrets) == []
    # the scan finds what is there: a secret planted in hex is found
    canary.mkdir()
    (canary / "leak.log").write_text(f"oops {secrets[0].value.hex()}\n")
    assert scan(canary, secrets) == [("leak.log", secrets[0].what)]


def run_demo(tmp_path: Path, scenarios: list[str]) -> Path:
    """Run ``devnet demo --only SCENARIOS``, check its report; the devnet's directory."""
    path = tmp_path / "demo"
    report_path = tmp_path / "report.json"
    result = cli(
        "devnet", "demo", "--only", ",".join(scenarios), "--dir", str(path),
        "--json", str(report_path),
        timeout=DEMO_TIMEOUT,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-3000:] + result.stdout[-3000:]
    check_report(json.loads(report_path.read_text()), scenarios)
    for scenario in scenarios:
        assert scenario in result.stdout
    return path


def check_nothing_left_running(path: Path) -> None:
    if (path / "devnet.json").exists():
        left = Devnet(path)
        running = [n for n, p in left.record.processes.items() if processes.is_running(p)]
        left.down(grace=1.0)
        assert not running, f"the demo left {running} running"


def test_devnet_demo_end_to_end(tmp_path: Path) -> None:
    try:
        path = run_demo(tmp_path, BEFORE_LAST)
        check_no_secret_outside_its_seal(path, tmp_path / "canary")
    finally:
        check_nothing_left_running(tmp_path / "demo")
