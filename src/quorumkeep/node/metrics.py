"""The node's Prometheus metrics, in a registry of its own.

A per-node ``CollectorRegistry`` (never the process-global one) lets several nodes live in
one test process without their series colliding. Counters and the latency histogram are
updated where things happen; gauges that mirror state held elsewhere (pool sizes, peer
connectivity, epoch) are set from a :class:`MetricsSnapshot` just before each scrape, so
they can never drift from what ``/status`` reports. Names and labels: docs/node.md.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from prometheus_client import Counter, Gauge, Histogram

from quorumkeep.daemon.metrics import CONTENT_TYPE_LATEST, AttestationGauges, MetricsRegistry

__all__ = ["CONTENT_TYPE_LATEST", "PROTOCOL_STATES", "MetricsSnapshot", "NodeMetrics"]

PROTOCOL_STATES = ("NotInitialized", "Initializing", "Running", "Resharing", "Unknown")

# From a sign request seen on the ledger to its `respond` included in a block: a few ms on
# one machine, seconds when a leader fails over.
LATENCY_BUCKETS = (
    0.005,
    0.01,
    0.02,
    0.03,
    0.05,
    0.075,
    0.1,
    0.25,
    0.5,
    1.0,
    2.5,
    5.0,
    10.0,
    30.0,
)


@dataclass(frozen=True)
class MetricsSnapshot:
    """State-derived values for the gauges, taken at scrape time."""

    protocol_state: str = "Unknown"
    epoch: int = -1
    participant_id: int | None = None
    participants: int = 0
    peers: Mapping[int, bool] = field(default_factory=dict)
    presignatures: Mapping[int, int] = field(default_factory=dict)
    owned_presignatures: Mapping[int, int] = field(default_factory=dict)
    signature_shares: int = 0
    key_shares: int = 0
    pending_requests: int = 0


class NodeMetrics(MetricsRegistry):
    """Every metric a node exports. One instance per node."""

    def __init__(self) -> None:
        super().__init__()
        self._shares_seen = 0
        self.key_source: dict[str, Any] | None = None
        r = self.registry
        self.attestation = AttestationGauges(r)
        self.signatures = Counter(
            "quorumkeep_signatures",
            "Signatures this node produced as leader and got accepted by `respond`.",
            ["domain"],
            registry=r,
        )
        self.signature_shares = Counter(
            "quorumkeep_signature_shares",
            "Signature shares this node gave to a leader.",
            registry=r,
        )
        self.sign_failures = Counter(
            "quorumkeep_sign_failures",
            "Sign attempts led by this node that failed, by reason.",
            ["reason"],
            registry=r,
        )
        self.sign_latency = Histogram(
            "quorumkeep_sign_latency_seconds",
            "Seconds from seeing a sign request to this node's accepted `respond`.",
            buckets=LATENCY_BUCKETS,
            registry=r,
        )
        self.key_events = Counter(
            "quorumkeep_key_events",
            "Key generation and resharing runs, by kind (dkg, reshare) and outcome.",
            ["kind", "outcome"],
            registry=r,
        )
        self.presignatures_purged = Counter(
            "quorumkeep_presignatures_purged",
            "Presignatures deleted because a participant in them changed, left or restarted.",
            registry=r,
        )
        self.ledger_errors = Counter(
            "quorumkeep_ledger_errors",
            "Failed ledger requests (transient errors are retried), by operation.",
            ["operation"],
            registry=r,
        )
        self.presignatures = Gauge(
            "quorumkeep_presignatures",
            "Presignatures held, by domain.",
            ["domain"],
            registry=r,
        )
        self.owned_presignatures = Gauge(
            "quorumkeep_presignatures_owned",
            "Usable presignatures this node owns (leads signatures with), by domain.",
            ["domain"],
            registry=r,
        )
        self.peer_connected = Gauge(
            "quorumkeep_peer_connected",
            "1 if the outbound mesh connection to the participant is up, else 0.",
            ["participant"],
            registry=r,
        )
        self.peers_connected = Gauge(
            "quorumkeep_peers_connected", "Participants this node is connected to.", registry=r
        )
        self.participants = Gauge(
            "quorumkeep_participants", "Size of the participant set this node follows.", registry=r
        )
        self.participant_id = Gauge(
            "quorumkeep_participant_id",
            "This node's participant id (0 while it is not a participant).",
            registry=r,
        )
        self.epoch = Gauge("quorumkeep_epoch", "Epoch of the keyset in force.", registry=r)
        self.key_provider_ok = Gauge(
            "quorumkeep_key_provider_ok",
            "peers key source: 1 if the provider gave a good piece at the last attempt of "
            "this start (or of the last re-deal), else 0.",
            ["provider"],
            registry=r,
        )
        self.key_provider_attempts = Gauge(
            "quorumkeep_key_provider_attempts",
            "peers key source: rounds this start needed to get k good pieces.",
            registry=r,
        )
        self.protocol_state = Gauge(
            "quorumkeep_protocol_state",
            "1 for the contract's current protocol state, 0 for the others.",
            ["state"],
            registry=r,
        )
        self.key_shares = Gauge(
            "quorumkeep_key_shares", "Key shares held (all domains and epochs).", registry=r
        )
        self.pending_requests = Gauge(
            "quorumkeep_pending_sign_requests",
            "Sign requests pending on the contract.",
            registry=r,
        )
        # Set where it happens, not from the snapshot: a backup served is an event.
        self.last_backup_served_epoch = Gauge(
            "quorumkeep_last_backup_served_epoch",
            "Epoch of the last backup served to this node's backup service (-1: none yet).",
            registry=r,
        )
        self.last_backup_served_epoch.set(-1)
        self.last_backup_served_timestamp = Gauge(
            "quorumkeep_last_backup_served_timestamp_seconds",
            "Unix time of the last backup served to this node's backup service (0: none yet).",
            registry=r,
        )
        self.migration_imports = Counter(
            "quorumkeep_migration_imports",
            "Migration shares verified against the contract and stored by this node.",
            registry=r,
        )
        self.migrations_concluded = Counter(
            "quorumkeep_migrations_concluded",
            "Migrations to this node that the contract shows concluded.",
            registry=r,
        )
        self.decommissions = Counter(
            "quorumkeep_decommissions",
            "Times this node found itself replaced by a migration and wiped its secrets.",
            registry=r,
        )

    def backup_served(self, epoch: int, timestamp: float) -> None:
        """The backup endpoint's hook: a backup of ``epoch`` was served at Unix ``timestamp``."""
        self.last_backup_served_epoch.set(epoch)
        self.last_backup_served_timestamp.set(timestamp)

    def apply(self, snapshot: MetricsSnapshot) -> None:
        """Set the state-mirroring gauges from ``snapshot``."""
        self.presignatures.clear()
        for domain, count in sorted(snapshot.presignatures.items()):
            self.presignatures.labels(domain=str(domain)).set(count)
        self.owned_presignatures.clear()
        for domain, count in sorted(snapshot.owned_presignatures.items()):
            self.owned_presignatures.labels(domain=str(domain)).set(count)
        # The signing service counts shares itself; the counter follows its total.
        if snapshot.signature_shares > self._shares_seen:
            self.signature_shares.inc(snapshot.signature_shares - self._shares_seen)
            self._shares_seen = snapshot.signature_shares
        self.peer_connected.clear()
        for pid, up in sorted(snapshot.peers.items()):
            self.peer_connected.labels(participant=str(pid)).set(1 if up else 0)
        self.peers_connected.set(sum(1 for up in snapshot.peers.values() if up))
        self.participants.set(snapshot.participants)
        self.participant_id.set(snapshot.participant_id or 0)
        self.epoch.set(snapshot.epoch)
        for state in PROTOCOL_STATES:
            value = 1 if state == snapshot.protocol_state else 0
            self.protocol_state.labels(state=state).set(value)
        self.key_shares.set(snapshot.key_shares)
        self.pending_requests.set(snapshot.pending_requests)


def record_key_source(metrics: NodeMetrics, report: dict[str, Any]) -> None:
    """Set the key-provider gauges from a start report (``PeersKeySource.report``)."""
    metrics.key_source = report
    metrics.key_provider_attempts.set(report.get("attempts", 0))
    for outcome in report.get("providers", []):
        metrics.key_provider_ok.labels(provider=outcome["provider"]).set(1 if outcome["ok"] else 0)
