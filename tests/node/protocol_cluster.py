"""A cluster of real nodes in one event loop for the protocol tests: one Mesh (mutual TLS on
127.0.0.1), one SessionRouter and one Keystore (SQLite in a temp dir) per participant.

Imported by module name (pytest puts this directory on sys.path).
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path

from node_helpers import make_identity

from quorumkeep.crypto import frost
from quorumkeep.crypto.keys import KeyPackage, PublicKeyPackage
from quorumkeep.node.identity import NodeIdentity
from quorumkeep.node.keystore import Keystore
from quorumkeep.node.mesh import Mesh
from quorumkeep.node.mesh_peers import PeerInfo
from quorumkeep.node.protocols.dkg import run_dkg
from quorumkeep.node.session_router import SessionRouter
from quorumkeep.node.storage_key import StorageKey

FAST_MESH = {"handshake_timeout": 2.0, "backoff_initial": 0.02, "backoff_max": 0.25}


@dataclass
class NodeKeys:
    identity: NodeIdentity
    storage_key: StorageKey


def make_node_keys(base: Path, count: int) -> dict[int, NodeKeys]:
    """Identities for participants 1..count (Argon2id at its minimum cost)."""
    out: dict[int, NodeKeys] = {}
    for pid in range(1, count + 1):
        identity, key = make_identity(base / f"node{pid}", f"node{pid}.test")
        out[pid] = NodeKeys(identity, key)
    return out


@dataclass
class Node:
    pid: int
    identity: NodeIdentity
    mesh: Mesh
    router: SessionRouter
    keystore: Keystore

    def info(self) -> PeerInfo:
        host, port = self.mesh.address
        return PeerInfo(
            self.pid, self.identity.account, f"{host}:{port}", self.identity.tls_public_key
        )


async def start_cluster(
    keys: Mapping[int, NodeKeys], store_dir: Path, pids: Iterable[int] | None = None
) -> dict[int, Node]:
    """Nodes for ``pids`` (default: all), fully connected, each with a fresh keystore."""
    nodes: dict[int, Node] = {}
    for pid in sorted(keys if pids is None else pids):
        k = keys[pid]
        mesh = Mesh(k.identity, **FAST_MESH)
        await mesh.start()
        directory = store_dir / f"store{pid}"
        directory.mkdir(parents=True, exist_ok=True)
        keystore = Keystore.open(directory, k.storage_key, k.identity.owner)
        nodes[pid] = Node(pid, k.identity, mesh, SessionRouter(mesh), keystore)
    participants = {pid: node.info() for pid, node in nodes.items()}
    for pid, node in nodes.items():
        await node.mesh.update_participants(participants, pid)
    for node in nodes.values():
        await node.mesh.wait_connected(None, timeout=10)
    return nodes


async def stop_cluster(nodes: Mapping[int, Node]) -> None:
    for node in nodes.values():
        node.router.close()
    await asyncio.gather(*(node.mesh.close() for node in nodes.values()))
    for node in nodes.values():
        node.keystore.close()


def frost_sign(packages: Mapping[int, KeyPackage], signers: list[int], msg: bytes) -> bytes:
    """Sign with FROST among ``signers`` (all local): proves the shares form one key."""
    nonces, commitments = {}, {}
    for i in signers:
        nonces[i], commitments[i] = frost.commit(packages[i].signing_share, os.urandom)
    commitment_list = frost.commitment_list_from(commitments)
    group_key = packages[signers[0]].group_public_key
    shares = {
        i: frost.sign(i, packages[i].signing_share, group_key, nonces[i], msg, commitment_list)
        for i in signers
    }
    verifying = {i: packages[i].verifying_share for i in signers}
    return frost.aggregate(commitment_list, msg, group_key, shares, verifying_shares=verifying)


async def dkg_all(
    nodes: Mapping[int, Node],
    session_id: str,
    threshold: int,
    pids: Iterable[int] | None = None,
    timeout: float = 10.0,
) -> dict[int, tuple[KeyPackage, PublicKeyPackage]]:
    members = sorted(nodes if pids is None else pids)
    results = await asyncio.gather(
        *(
            run_dkg(
                nodes[pid].router,
                session_id=session_id,
                me=pid,
                participants=members,
                threshold=threshold,
                random_bytes=os.urandom,
                timeout=timeout,
            )
            for pid in members
        )
    )
    return dict(zip(members, results, strict=True))
