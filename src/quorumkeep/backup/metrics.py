"""The backup service's Prometheus metrics, in a registry of its own (never the global one),
so several services can live in one test process. Names: docs/backup-protocol.md §10."""

from __future__ import annotations

from prometheus_client import Counter, Gauge

from quorumkeep.daemon.metrics import CONTENT_TYPE_LATEST, AttestationGauges, MetricsRegistry

__all__ = ["CONTENT_TYPE_LATEST", "BackupMetrics"]


class BackupMetrics(MetricsRegistry):
    def __init__(self) -> None:
        super().__init__()
        r = self.registry
        self.attestation = AttestationGauges(r)
        self.backup_epoch = Gauge(
            "quorumkeep_backup_epoch", "Epoch of the newest backup held (-1: none).", registry=r
        )
        self.backup_domains = Gauge(
            "quorumkeep_backup_domains", "Domains in the newest backup held.", registry=r
        )
        self.backup_stored_timestamp = Gauge(
            "quorumkeep_backup_stored_timestamp_seconds",
            "When the newest backup was stored (Unix time).",
            registry=r,
        )
        self.covers_current_keyset = Gauge(
            "quorumkeep_backup_covers_current_keyset",
            "1 if the newest backup covers the contract's current keyset, else 0.",
            registry=r,
        )
        self.fetches = Counter(
            "quorumkeep_backup_fetches",
            "Backups requested from the node, by result (stored, unchanged or an error code).",
            ["result"],
            registry=r,
        )
        self.pushes = Counter(
            "quorumkeep_backup_pushes",
            "Recovery pushes to a migration's destination, by result (imported or a code).",
            ["result"],
            registry=r,
        )
        self.last_verify_timestamp = Gauge(
            "quorumkeep_backup_last_verify_timestamp_seconds",
            "When the newest backup was last verified against the contract.",
            registry=r,
        )
        self.last_verify_ok = Gauge(
            "quorumkeep_backup_last_verify_ok",
            "1 if the last verification found a valid backup of the current keyset.",
            registry=r,
        )
        self.backup_epoch.set(-1)
