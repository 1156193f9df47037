"""Backup freshness rows from the contract's real ``backup_status`` view (no process)."""

from __future__ import annotations

from rich.console import Console

from contract.contract_helpers import Driver  # tests/ is on the path (pyproject)
from quorumkeep.operator.backup_status import freshness
from quorumkeep.operator.display import backup_freshness_tables

ACCOUNTS = ["alice", "bob", "carol"]


def test_freshness_names_who_is_behind_and_how_long_ago() -> None:
    d = Driver(ACCOUNTS, 2)
    d.add_domain(2, confirm=False)
    d.confirm_backups(["alice"])  # at block 10, time 10 s
    found = freshness(d.view("backup_status"), now=70.0)
    rows = {o.account: o for o in found.operators}
    assert rows["alice"].current and rows["alice"].confirmed_epoch == 0
    assert rows["alice"].age_seconds == 60.0 and rows["alice"].block_height == 10
    assert rows["alice"].epochs_behind == 0
    assert not rows["bob"].current and rows["bob"].confirmed_epoch is None
    assert rows["bob"].age_seconds is None and rows["bob"].epochs_behind is None
    assert found.domains[0]["missing"] == ["bob", "carol"]
    assert not found.domains[0]["signing_allowed"] and not found.healthy
    assert found.to_json()["healthy"] is False

    d.confirm_backups(["bob"])  # the policy (2) is met: domain 0 signs, carol is still behind
    found = freshness(d.view("backup_status"), now=70.0)
    assert found.domains[0]["signing_allowed"] and not found.healthy
    assert found.domains[0]["wait_seconds"] == 0.0  # key and confirmations in one block
    d.confirm_backups(["carol"])
    assert freshness(d.view("backup_status"), now=70.0).healthy

    d.reshare(ACCOUNTS, 2)  # a new epoch: every confirmation is one epoch behind
    found = freshness(d.view("backup_status"), now=70.0)
    assert found.epoch == 1
    assert [o.epochs_behind for o in found.operators] == [1, 1, 1]
    assert not any(o.current for o in found.operators) and not found.healthy
    assert found.domains[0]["wait"]["epoch"] == 1 and found.domains[0]["wait_seconds"] == 60.0

    out = Console(record=True, width=200)
    for table in backup_freshness_tables(found):
        out.print(table)
    text = out.export_text()
    assert "epoch in force: 1" in text and "alice, bob, carol" in text and "closed" in text
    assert "waiting 60.0s (since block 10, epoch 1)" in text
