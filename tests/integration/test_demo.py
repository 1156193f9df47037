"""`quorumkeep devnet demo --json` end to end: the one place in the suite where the demo's
recovery scenarios run (each checks itself and fails the demo otherwise); this test checks the
report and that nothing is left running."""

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

DEMO_TIMEOUT = 540.0
REPORT_KEYS = {"group_public_key", "scenarios", "signatures", "migrations"}
SIGNATURE_KEYS = {"scenario", "payload", "path", "public_key", "signature"}
NOT_MIGRATING = {"attestation-upgrade", "company-gone", *ETCD_SCENARIOS}
"""Scenarios that migrate no node: an attestation upgrade reshares the laggard out; losing a
ledger server or the whole company moves no node."""
MIGRATING = [s for s in SCENARIOS if s not in NOT_MIGRATING]
MIGRATION_KEYS = {
    "account",
    "scenario",
    "started_height",
    "concluded_height",
    "seconds",
    "concluded",
}


def check_report(report: dict[str, Any]) -> None:
    """The demo's report: every scenario passed, every signature verifies, every migration
    concluded except the one a resharing cancelled."""
    assert set(report) == REPORT_KEYS
    assert [s["name"] for s in report["scenarios"]] == list(SCENARIOS)
    assert all(s["passed"] is True and s["seconds"] > 0 for s in report["scenarios"])
    signed_in = {entry["scenario"] for entry in report["signatures"]}
    assert signed_in == {"setup", *SCENARIOS}, signed_in
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
    # the company-gone signature was made offline by `ers recover` after every process of the
    # network was stopped and its data deleted; it verifies under the same derived key (above)
    assert report["signatures"][-1]["scenario"] == "company-gone"
    scenarios = {m["scenario"] for m in report["migrations"]}
    assert scenarios == set(MIGRATING)
    for m in report["migrations"]:
        assert set(m) == MIGRATION_KEYS
        if m["scenario"] == "cancelled-by-resharing":
            assert m["concluded"] is False
            assert m["concluded_height"] is None and m["seconds"] is None
        else:
            assert m["concluded"] is True, m
            assert m["concluded_height"] > m["started_height"]
            assert m["seconds"] >= 0
    counts = {s: sum(m["scenario"] == s for m in report["migrations"]) for s in MIGRATING}
    assert counts == {
        "single-node-loss": 1,
        "quorum-loss": 2,
        "full-cluster-loss": 4,
        "cancelled-by-resharing": 1,
        "every-machine-rebooted": 4,
    }


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


def test_devnet_demo_end_to_end(tmp_path: Path) -> None:
    path = tmp_path / "demo"
    report_path = tmp_path / "report.json"
    try:
        result = cli(
            "devnet", "demo", "--dir", str(path), "--json", str(report_path),
            timeout=DEMO_TIMEOUT,
        )  # fmt: skip
        assert result.returncode == 0, result.stderr[-3000:] + result.stdout[-3000:]
        check_report(json.loads(report_path.read_text()))
        for scenario in SCENARIOS:
            assert scenario in result.stdout
        check_no_secret_outside_its_seal(path, tmp_path / "canary")
    finally:
        if (path / "devnet.json").exists():
            left = Devnet(path)
            running = [n for n, p in left.record.processes.items() if processes.is_running(p)]
            left.down(grace=1.0)
            assert not running, f"the demo left {running} running"
