"""What a node reports about itself: the ``GET /status`` document and the metrics snapshot.

Both are read-only views over the coordinator's components (each gives its own part: the
role from :class:`~quorumkeep.node.onboarding.NodeStanding`, connectivity from
:class:`~quorumkeep.node.participants.ParticipantFollower`, …) and the contract state the
coordinator last applied. The document's fields are specified in docs/node.md (web API).
"""

from __future__ import annotations

import time
from typing import Any

from quorumkeep.contract.state import ContractState, Resharing
from quorumkeep.node.held_keys import HeldKeys
from quorumkeep.node.identity import NodeIdentity
from quorumkeep.node.keystore import Keystore
from quorumkeep.node.mesh import Mesh
from quorumkeep.node.metrics import MetricsSnapshot
from quorumkeep.node.migration import MigrationImports
from quorumkeep.node.onboarding import NodeStanding
from quorumkeep.node.participants import ParticipantFollower
from quorumkeep.node.protocols.presign import PresignaturePool
from quorumkeep.node.protocols.sign import SigningService
from quorumkeep.node.sign_requests import SignRequests
from quorumkeep.node.standby import WarmStandby
from quorumkeep.node.standby_feed import StandbyFeed


class NodeReport:
    """The node's status and metrics from its components (which it only reads)."""

    def __init__(
        self,
        *,
        account: str,
        identity: NodeIdentity,
        mesh: Mesh,
        keystore: Keystore,
        standing: NodeStanding,
        participants: ParticipantFollower,
        held: HeldKeys,
        sign_requests: SignRequests,
        migration: MigrationImports,
        standby: WarmStandby,
        feed: StandbyFeed | None,
        pool: PresignaturePool,
        signing: SigningService,
    ) -> None:
        self._account = account
        self._identity = identity
        self._mesh = mesh
        self._keystore = keystore
        self._standing = standing
        self._participants = participants
        self._held = held
        self._sign_requests = sign_requests
        self._migration = migration
        self._standby = standby
        self._feed = feed
        self._pool = pool
        self._signing = signing
        self._started = time.monotonic()

    def status(
        self,
        state: ContractState | None,
        me: int | None,
        height: int,
    ) -> dict[str, Any]:
        """``GET /status``: the node's own part, then each component's."""
        serving = state.serving() if state is not None else None
        resharing_epoch = None
        if state is not None and isinstance(state.protocol, Resharing):
            resharing_epoch = state.protocol.epoch
        standing = self._standing.status()
        return {
            "migration": self._migration.status(state),
            "account": self._account,
            "tls_public_key": self._identity.tls_public_key.hex(),
            "signer_public_key": self._identity.signer_public_key.hex(),
            "incarnation": self._mesh.incarnation.hex(),
            **standing,
            "participant_id": me,
            "protocol_state": state.protocol.name if state is not None else "Unknown",
            "epoch": serving.epoch if serving is not None else None,
            "resharing_epoch": resharing_epoch,
            "threshold": serving.parameters.threshold if serving is not None else None,
            **self._participants.status(me),
            "presignatures": {
                str(d): n for d, n in sorted(self._keystore.presignature_counts().items())
            },
            "owned_presignatures": {f"{d}/{e}": n for (d, e), n in self._pool.sizes().items()},
            **self._held.status(),
            **self._sign_requests.status(),
            "ledger_height": height,
            "uptime_seconds": round(time.monotonic() - self._started, 3),
            "wrapping_public_key": self._standby.wrapping_public_key.hex(),
            "warm_standby": self._standby.status(state, standing["role"]),
            "standby_push": self._feed.status() if self._feed is not None else None,
        }

    def metrics_snapshot(self, state: ContractState | None, me: int | None) -> MetricsSnapshot:
        """The gauges the metrics endpoint sets from the node's state at each scrape."""
        serving = state.serving() if state is not None else None
        participants, peers = self._participants.connectivity(me)
        self._standby.status(state, self._standing.status()["role"])  # its freshness gauges
        return MetricsSnapshot(
            protocol_state=state.protocol.name if state is not None else "Unknown",
            epoch=serving.epoch if serving is not None else -1,
            participant_id=me,
            participants=participants,
            peers=peers,
            presignatures=self._keystore.presignature_counts(),
            owned_presignatures={d: n for (d, _), n in self._pool.sizes().items()},
            signature_shares=self._signing.stats.shares_served,
            key_shares=self._held.count(),
            pending_requests=self._sign_requests.pending_count,
        )
