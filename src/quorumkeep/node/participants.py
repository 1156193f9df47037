"""Participants: the mesh follows the contract's participant set; presignatures follow it too.

The mesh connects to the serving set, and during a resharing to the new set as well
(:func:`~quorumkeep.node.decisions.peer_map`). Presignatures made with a participant whose
TLS key changed (a migration) or who left are purged; the rest are kept. The set seen last is
kept in the keystore's metadata (:data:`META_PEER_KEYS`), so a participant replaced while
this node was down still has its presignatures purged after the restart.

Presignatures made with a peer that restarted (restored, copied or merely restarted: its
connection announces a new incarnation, :func:`~quorumkeep.node.decisions.peer_restarted`)
are purged too: that peer forgot its nonces of them when it started.
"""

from __future__ import annotations

import contextlib
import json
import logging
from collections.abc import Callable, Collection, Mapping
from typing import Any, Protocol

from quorumkeep.contract.state import ContractState
from quorumkeep.node.attestation import marked_peers, usable_peers
from quorumkeep.node.decisions import changed_participants, peer_map, peer_restarted
from quorumkeep.node.mesh_peers import PeerInfo
from quorumkeep.node.metrics import NodeMetrics

log = logging.getLogger("quorumkeep.node.coordinator")

META_PEER_KEYS = "peer_tls_keys"
"""Keystore metadata: participant id → TLS public key (hex), as last seen, JSON."""


class Metadata(Protocol):
    """The keystore's public (unsealed) metadata."""

    def get_metadata(self, name: str) -> str | None: ...

    def set_metadata(self, name: str, value: str) -> None: ...

    def delete_metadata(self, name: str) -> bool: ...


class MeshMembers(Protocol):
    """What following the participants needs of the mesh."""

    @property
    def my_id(self) -> int | None: ...

    def connected_peers(self) -> frozenset[int]: ...

    async def update_participants(
        self, participants: Mapping[int, PeerInfo], my_id: int | None
    ) -> frozenset[int]: ...


Purge = Callable[[frozenset[int]], int]
"""Delete the presignatures involving these participants; how many went."""


class ParticipantFollower:
    """Keeps the mesh and the presignatures in line with the contract's participants."""

    def __init__(
        self, *, mesh: MeshMembers, metadata: Metadata, purge: Purge, metrics: NodeMetrics
    ) -> None:
        self._mesh = mesh
        self._metadata = metadata
        self._purge = purge
        self._metrics = metrics
        self._peers: dict[int, PeerInfo] = {}
        self._peer_keys: dict[int, bytes] | None = None
        self._incarnations: dict[int, bytes] = {}

    @property
    def peers(self) -> dict[int, PeerInfo]:
        """The participants the mesh follows now (ours included)."""
        return dict(self._peers)

    async def follow(self, state: ContractState, me: int | None) -> None:
        """Participants the contract marked (attestation lapsed, measurement removed) are
        dropped from the peer set, so the mesh refuses their connections."""
        all_peers = peer_map(state)
        peers = usable_peers(state, all_peers, me)
        refused = {p.account for pid, p in all_peers.items() if pid != me} & marked_peers(state)
        if refused and peers != self._peers:
            log.info("refusing mesh connections from marked participants %s", sorted(refused))
        before = self._last_seen()
        after = {pid: info.tls_public_key for pid, info in peers.items()}
        # The mesh first: once it follows the new set, no batch can start with a participant
        # that left or changed its key. A purge before that would leave a window in which
        # the old machine (still connected) starts a batch that is stored after the purge;
        # batches already running are discarded by the purge when they finish.
        if peers != self._peers or me != self._mesh.my_id:
            await self._mesh.update_participants(peers, me)
            self._peers = peers
        if state.serving() is not None:
            gone = changed_participants(before, after)
            if gone:
                purged = self._purge(gone)
                self._metrics.presignatures_purged.inc(purged)
                log.info(
                    "participants changed or left: %s; purged %d presignatures involving them",
                    sorted(gone),
                    purged,
                )
            if after != before:
                document = {str(p): k.hex() for p, k in sorted(after.items())}
                self._metadata.set_metadata(META_PEER_KEYS, json.dumps(document))
                self._peer_keys = after

    def peer_connected(self, participant_id: int, incarnation: bytes) -> None:
        """The mesh admitted a connection of ``participant_id`` announcing ``incarnation``
        (called before any of its messages is read): purge what a restarted peer forgot."""
        last_seen = self._incarnations.get(participant_id)
        self._incarnations[participant_id] = incarnation
        if not peer_restarted(last_seen, incarnation):
            return
        purged = self._purge(frozenset({participant_id}))
        self._metrics.presignatures_purged.inc(purged)
        log.info(
            "participant %s restarted (incarnation %s); purged %d presignatures involving it",
            participant_id,
            incarnation.hex(),
            purged,
        )

    def _last_seen(self) -> dict[int, bytes]:
        if self._peer_keys is None:
            # What the participant set was when we last looked, even before a restart: a
            # participant replaced while we were down still gets its presignatures purged.
            self._peer_keys = {}
            stored = self._metadata.get_metadata(META_PEER_KEYS)
            if stored:
                with contextlib.suppress(ValueError, TypeError, AttributeError):
                    self._peer_keys = {
                        int(p): bytes.fromhex(k) for p, k in json.loads(stored).items()
                    }
        return self._peer_keys

    def status(self, me: int | None) -> dict[str, Any]:
        connected = self._mesh.connected_peers()
        return {
            "participants": sorted(self._peers),
            "peers": [
                {
                    "participant_id": pid,
                    "account": info.account,
                    "url": info.url,
                    "connected": pid in connected,
                }
                for pid, info in sorted(self._peers.items())
                if pid != me
            ],
            "connected_peers": sorted(connected),
        }

    def connectivity(self, me: int | None) -> tuple[int, dict[int, bool]]:
        """How many participants, and for each peer whether it is connected (metrics)."""
        connected: Collection[int] = self._mesh.connected_peers()
        return len(self._peers), {pid: pid in connected for pid in self._peers if pid != me}
