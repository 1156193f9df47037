"""Snapshots of a devnet's nodes, restored the way an operator would (`quorumkeep node
snapshot` / `node restore` as separate processes), and the audit that a restored node used
none of the snapshot's presignatures.

A restored node keeps its identity, its ports and its passphrase (the devnet secret of the
node it was snapshotted from): it is the same participant, back from an older copy of its
directory. The node it replaces is retired (its record and log stay).
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from quorumkeep.crypto import frost
from quorumkeep.devnet import processes
from quorumkeep.devnet.errors import DevnetError
from quorumkeep.devnet.layout import NODES_DIR
from quorumkeep.ledger.signing import Signature
from quorumkeep.node.keystore import KEYSTORE_FILE_NAME

if TYPE_CHECKING:
    from quorumkeep.devnet.network import Devnet

SNAPSHOTS_DIR = "snapshots"
CLI_TIMEOUT = 120.0

Commitments = Mapping[int, tuple[bytes, bytes]]
"""participant id → (hiding, binding): one presignature's public commitment list."""


def take(devnet: Devnet, name: str) -> tuple[Path, dict[str, Any]]:
    """``node snapshot`` of a (running) node into DIR/snapshots/NAME.snapshot; the archive
    and its manifest."""
    record = devnet.process(name)
    if record.kind != "node" or record.directory is None:
        raise DevnetError("not_a_node", f"{name} is not a node")
    out = devnet.dir.resolve(SNAPSHOTS_DIR) / f"{name}.snapshot"
    argv = processes.cli_argv(
        "node", "snapshot", "--dir", str(devnet.dir.resolve(record.directory)),
        "--out", str(out), "--json",
    )  # fmt: skip
    child = processes.start_setup(argv, devnet.path, {})
    stdout = processes.finish_setup(
        child,
        devnet.log_path(name),
        command="node snapshot",
        subject=name,
        code="snapshot_failed",
        timeout=CLI_TIMEOUT,
    )
    return out, json.loads(stdout)


def restore(devnet: Devnet, name: str, archive: Path, *, start: bool = True) -> str:
    """Retire node ``name`` (it must be stopped), ``node restore`` ``archive`` into a new
    directory and record (and start) the restored node with ``name``'s ports and
    passphrase; returns its name."""
    old = devnet.process(name)
    if old.kind != "node" or old.account is None:
        raise DevnetError("not_a_node", f"{name} is not a node")
    if devnet.alive(old):
        raise DevnetError("node_running", f"{name} is running; stop it first")
    devnet.retire(name)
    suffix = 2
    while f"{name}-restored{'' if suffix == 2 else suffix}" in devnet.record.processes:
        suffix += 1
    new = f"{name}-restored{'' if suffix == 2 else suffix}"
    directory = f"{NODES_DIR}/{new}"
    argv = processes.cli_argv(
        "node", "restore", str(archive), "--dir", str(devnet.dir.resolve(directory)),
        "--ledger", devnet.ledger_url, "--json",
    )  # fmt: skip
    child = processes.start_setup(argv, devnet.path, {})
    processes.finish_setup(
        child,
        devnet.dir.resolve(f"logs/{new}.log"),
        command="node restore",
        subject=new,
        code="restore_failed",
        timeout=CLI_TIMEOUT,
    )
    node_dir = devnet.dir.resolve(directory)
    devnet.add_process(
        new,
        "node",
        ["node", "run", "--config", str(node_dir / "node.toml")],
        account=old.account,
        directory=directory,
        ports=dict(old.ports),
        env_secrets=dict(old.env_secrets),
        start=start,
    )
    if start:
        devnet.wait_node_healthy(new)
    return new


def used_presignatures(
    signatures: Iterable[Signature], presignatures: Mapping[str, Commitments]
) -> dict[int, str]:
    """Which of ``presignatures`` made which signature (request id → presignature id).

    A FROST signature's R is the group commitment of its presignature's commitment list
    under the signed message and key (RFC 9591 §4.5): recomputed for every pair, a match
    names the presignature the signature was made with.
    """
    found: dict[int, str] = {}
    for signature in signatures:
        r = signature.signature[:32]
        for presignature_id, commitments in presignatures.items():
            entries = [(p, h, b) for p, (h, b) in sorted(commitments.items())]
            if frost.group_commitment(signature.public_key, entries, signature.payload) == r:
                found[signature.request_id] = presignature_id
    return found


def held_presignatures(devnet: Devnet, name: str) -> list[str]:
    """The presignature ids in a node's keystore now (public column, read-only)."""
    record = devnet.process(name)
    if record.directory is None:
        raise DevnetError("not_a_node", f"{name} is not a node")
    path = devnet.dir.resolve(record.directory) / KEYSTORE_FILE_NAME
    db = sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=10)
    try:
        return [str(row[0]) for row in db.execute("SELECT id FROM presignatures")]
    except sqlite3.DatabaseError as exc:
        raise DevnetError("keystore_unreadable", f"{path}: {exc}") from None
    finally:
        db.close()
