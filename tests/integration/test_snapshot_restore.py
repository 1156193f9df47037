"""Node snapshots on real processes: a snapshot taken while the node runs, signatures made
after it (some with the snapshot's presignatures), the node stopped and restored from the
snapshot into a new directory: it signs again and none of the snapshot's presignatures is
ever used — checked from the signatures themselves (each R recomputed from every snapshot
presignature's commitments). Then the restore refusals against the real contract."""

from __future__ import annotations

import subprocess
import tarfile
from pathlib import Path

import pytest
from devnet_helpers import cli, metric, node_dir, presignatures, sign_all

from process_helpers import wait_until
from quorumkeep.devnet import snapshots, watch
from quorumkeep.devnet.network import Devnet
from quorumkeep.ledger.signing import Signature
from quorumkeep.node.snapshot_keystore import presignature_commitments
from quorumkeep.node.snapshot_restore import read_snapshot

pytestmark = pytest.mark.slow


def one_line_error(result: subprocess.CompletedProcess[str], code: int) -> str:
    assert result.returncode == code, (result.returncode, result.stderr)
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), result.stderr
    return lines[0]


def test_a_restored_snapshot_never_uses_its_presignatures(tmp_path: Path) -> None:
    path = tmp_path / "net"
    up = cli(
        "devnet", "up", "--nodes", "3", "--threshold", "2", "--dir", str(path),
        "--no-backup", "--timeout", "120",
    )  # fmt: skip
    assert up.returncode == 0, up.stderr
    devnet = Devnet(path)
    try:
        name = devnet.node_names()[0]
        wait_until(lambda: len(presignatures(devnet, name)) >= 32, 90, "presignatures made")
        archive, manifest = snapshots.take(devnet, name)  # the node is running
        _, contents = read_snapshot(archive)
        in_snapshot = presignature_commitments(contents["keystore.sqlite3"])
        assert manifest["presignatures"] == len(in_snapshot) >= 32
        assert manifest["epoch"] == 0 and manifest["account"] == devnet.process(name).account

        # Signatures after the snapshot: some of them use the snapshot's presignatures (the
        # audit sees it, so it can fail).
        before: list[Signature] = []
        for round_ in range(5):
            before += sign_all(devnet, [f"snap/before/{round_}/{i}" for i in range(4)])
            if snapshots.used_presignatures(before, in_snapshot):
                break
        used_before = snapshots.used_presignatures(before, in_snapshot)
        assert used_before, "no signature after the snapshot used one of its presignatures"
        old_incarnation = devnet.node_get(name, "/status")["incarnation"]

        devnet.stop(name)
        # Restoring over a directory in use is refused, nothing written.
        busy = one_line_error(
            cli("node", "restore", str(archive), "--dir", str(node_dir(devnet, name))), 2
        )
        assert "directory_not_empty" in busy
        restored = snapshots.restore(devnet, name, archive)
        status = devnet.node_get(restored, "/status")
        assert status["incarnation"] != old_incarnation
        assert status["tls_public_key"] == manifest["tls_public_key"]
        log = devnet.log_path(restored).read_text()
        assert f"forgot {len(in_snapshot)} presignatures" in log
        assert not set(presignatures(devnet, restored)) & set(in_snapshot)

        # It signs again: sign until it took part (led or gave a share; its peers first make
        # new presignatures with it), then a few more.
        def took_part() -> float:
            text = devnet.node_metrics(restored)
            return metric(text, "quorumkeep_signatures_total") + metric(
                text, "quorumkeep_signature_shares_total"
            )

        def owned() -> int:
            return sum(devnet.node_get(restored, "/status")["owned_presignatures"].values())

        # Until the restored node owns presignatures it leads nothing, and its two peers
        # (threshold 2) can keep signing with the pairs they made without it.
        wait_until(lambda: owned() >= 8, 90, "presignatures owned by the restored node")
        after: list[Signature] = []
        for round_ in range(10):
            after += sign_all(devnet, [f"snap/after/{round_}/{i}" for i in range(3)])
            if took_part() > 0:
                break
        assert took_part() > 0, "the restored node took part in no signature"
        after += sign_all(devnet, [f"snap/after/more/{i}" for i in range(3)])
        assert snapshots.used_presignatures(after, in_snapshot) == {}
        r_values = [s.signature[:32] for s in before + after]
        assert len(set(r_values)) == len(r_values)

        # Refusals against the contract. Another node for the same account (a new TLS key,
        # not registered): its snapshot is not the node the contract lists.
        other = devnet.add_node(devnet.process(name).account or "", start=False)
        other_archive = tmp_path / "other.snapshot"
        made = cli("node", "snapshot", "--dir", str(node_dir(devnet, other)), "--out",
                   str(other_archive))  # fmt: skip
        assert made.returncode == 0, made.stderr
        superseded = one_line_error(
            cli(
                "node",
                "restore",
                str(other_archive),
                "--dir",
                str(tmp_path / "o"),
                "--ledger",
                devnet.ledger_url,
            ),
            1,
        )
        assert "snapshot_superseded" in superseded and "backup service" in superseded
        # A damaged archive.
        damaged = tmp_path / "damaged.snapshot"
        data = bytearray(archive.read_bytes())
        with tarfile.open(archive) as tar:  # a bit of the keystore's bytes flipped
            offset = tar.getmember("keystore.sqlite3").offset_data
        data[offset + 5000] ^= 0x01
        damaged.write_bytes(bytes(data))
        damage = one_line_error(
            cli("node", "restore", str(damaged), "--dir", str(tmp_path / "d")), 2
        )
        assert "checksum_mismatch" in damage
        # A resharing later, the snapshot's epoch is stale.
        accounts = [m["account"] for m in watch.participants(devnet.contract_state())]
        devnet.reshare(threshold=2, voters=accounts[:2], timeout=120)  # 2 votes start it
        stale = one_line_error(
            cli(
                "node",
                "restore",
                str(archive),
                "--dir",
                str(tmp_path / "s"),
                "--ledger",
                devnet.ledger_url,
            ),
            1,
        )
        assert "snapshot_stale" in stale and "start-migration" in stale
        for refused in ("o", "d", "s"):
            assert not (tmp_path / refused).exists()
    finally:
        devnet.down(grace=2.0)
