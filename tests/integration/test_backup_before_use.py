"""Backup before use on a real network: a 2-of-3 devnet with a backup service per operator.

Domain 0 signs only once every operator's backup service confirmed its backup; after a
resharing the new epoch waits for its own confirmations, so with one backup service down
`sign` is refused with KeyNotBackedUp naming that operator, `operator backup-status --check`
fails naming it and the other services' metrics show it behind — until it is started again,
fetches, verifies and confirms the new epoch by itself.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest
from devnet_helpers import cli, sign_all

from process_helpers import wait_until
from quorumkeep.devnet import backups
from quorumkeep.devnet.network import USER, Devnet
from quorumkeep.ledger.errors import ContractCallFailed

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def devnet(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Devnet]:
    path = tmp_path_factory.mktemp("gate") / "net"
    net: Devnet | None = None
    try:
        net = Devnet.up(path, nodes=3, threshold=2, spare_operators=0, timeout=120)
        yield net
    finally:
        if net is not None:
            net.down(grace=2.0)


def backup_status(devnet: Devnet) -> dict[str, object]:
    code = cli("operator", "backup-status", "--ledger", devnet.ledger_url, "--json", "--check")
    body: dict[str, object] = json.loads(code.stdout)
    body["exit"] = code.returncode
    body["stderr"] = code.stderr
    return body


def test_the_first_signature_waits_for_every_backup_confirmation(devnet: Devnet) -> None:
    assert devnet.timings["backup_gate"] >= 0  # `up` waited for the gate after the DKG
    with devnet.client() as client:
        view = client.view("backup_status")
        domain = view["domains"][0]
        assert domain["policy"] == "all" and domain["required"] == 3
        assert domain["missing"] == [] and domain["signing_allowed"]
        events = client.events(
            0, timeout=0, kinds=["key_generated", "backup_confirmed", "backup_policy_met"]
        )[0]
    kinds = [e.kind for e in events]
    # every confirmation came after the key, and the last one opened the gate
    assert kinds.index("key_generated") < kinds.index("backup_confirmed")
    assert kinds.count("backup_confirmed") == 3 and kinds.count("backup_policy_met") == 1
    assert kinds.index("backup_policy_met") > max(
        i for i, k in enumerate(kinds) if k == "backup_confirmed"
    )
    status = backup_status(devnet)
    assert status["exit"] == 0 and status["healthy"] is True, status["stderr"]
    sign_all(devnet, ["gate/0"])


def test_a_new_epoch_waits_for_its_own_confirmations(devnet: Devnet) -> None:
    assert devnet.kill(backups.backup_name("op3"))
    # the same set, new shares (two votes of the old threshold start it)
    epoch = devnet.reshare(threshold=2, voters=["op1", "op2"], timeout=120)
    assert epoch == 1
    # op1's and op2's services confirm epoch 1 by themselves; op3's is down.
    with devnet.client() as client:
        devnet.wait_contract(
            client,
            lambda _: client.view("backup_status")["domains"][0]["missing"] == ["op3"],
            timeout=60,
            what="op1's and op2's confirmations of epoch 1",
        )
        with pytest.raises(ContractCallFailed) as refused:
            client.call(
                devnet.signer(USER),
                "sign",
                {"payload": "11" * 32, "path": "gate/refused", "domain_id": 0},
            )
    assert refused.value.code == "KeyNotBackedUp"
    assert "epoch 1: 2 of 3" in refused.value.message and "missing: op3" in refused.value.message

    status = backup_status(devnet)
    assert status["exit"] == 1 and "op3" in str(status["stderr"])
    rows = {row["account"]: row for row in status["operators"]}  # type: ignore[attr-defined]
    assert rows["op3"]["confirmed_epoch"] == 0 and rows["op3"]["current"] is False
    assert rows["op1"]["confirmed_epoch"] == 1 and rows["op1"]["current"] is True
    metrics = backups.metrics(devnet, backups.backup_name("op1"))
    assert "quorumkeep_backup_contract_epoch 1.0" in metrics
    assert 'quorumkeep_backup_operator_confirmed_epoch{account="op3"} 0.0' in metrics
    assert 'quorumkeep_backup_operator_confirmed_current{account="op3"} 0.0' in metrics
    assert 'quorumkeep_backup_domain_signing_allowed{domain_id="0"} 0.0' in metrics

    # op3's service comes back: it backs up epoch 1, confirms it, and the domain signs.
    devnet.start(backups.backup_name("op3"))
    with devnet.client() as client:
        devnet.wait_backup_gate(client, 0, timeout=60)
    wait_until(lambda: backup_status(devnet)["exit"] == 0, timeout=30, what="backup-status --check")
    sign_all(devnet, ["gate/1"])


def test_devnet_status_shows_the_gate(devnet: Devnet) -> None:
    out = cli("devnet", "status", "--dir", str(devnet.path))
    assert out.returncode == 0, out.stderr
    text = " ".join(out.stdout.split())  # Rich may wrap the line
    assert "domain 0 backup gate: open (3 of 3 backups confirmed; opened after" in text
    assert "at epoch 1)" in text


def test_without_backup_services_the_devnet_signs_at_once(tmp_path: Path) -> None:
    net = Devnet.up(tmp_path / "bare", nodes=2, threshold=2, spare_operators=0, backup=False)
    try:
        assert "backup_gate" not in net.timings
        with net.client() as client:
            domain = client.view("backup_status")["domains"][0]
        assert domain["policy"] == 0 and domain["signing_allowed"]
        sign_all(net, ["bare/0"], keys=1)
    finally:
        net.down(grace=2.0)
