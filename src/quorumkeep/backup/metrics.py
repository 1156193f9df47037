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
        # Backup before use and backup freshness (docs/backup-protocol.md §10).
        self.contract_epoch = Gauge(
            "quorumkeep_backup_contract_epoch",
            "The contract's epoch in force (-1: not initialized or unknown).",
            registry=r,
        )
        self.confirmed_epoch = Gauge(
            "quorumkeep_backup_confirmed_epoch",
            "Epoch of this service's latest backup confirmation in the contract (-1: none).",
            registry=r,
        )
        self.confirmed_current = Gauge(
            "quorumkeep_backup_confirmed_current",
            "1 if this service's confirmation names the keyset in force, else 0.",
            registry=r,
        )
        self.confirmations = Counter(
            "quorumkeep_backup_confirmations",
            "confirm_backup submissions, by result (confirmed, already_confirmed or a code).",
            ["result"],
            registry=r,
        )
        self.operator_confirmed_epoch = Gauge(
            "quorumkeep_backup_operator_confirmed_epoch",
            "Per serving operator: epoch of its latest backup confirmation (-1: none).",
            ["account"],
            registry=r,
        )
        self.operator_confirmed_current = Gauge(
            "quorumkeep_backup_operator_confirmed_current",
            "Per serving operator: 1 if its confirmation names the keyset in force.",
            ["account"],
            registry=r,
        )
        self.operator_confirmation_age = Gauge(
            "quorumkeep_backup_operator_confirmation_age_seconds",
            "Per serving operator: seconds since the block that recorded its latest "
            "confirmation (absent: none).",
            ["account"],
            registry=r,
        )
        self.domain_signing_allowed = Gauge(
            "quorumkeep_backup_domain_signing_allowed",
            "Per domain: 1 if its backup policy is met (the domain signs), else 0.",
            ["domain_id"],
            registry=r,
        )
        self.backup_epoch.set(-1)
        self.contract_epoch.set(-1)
        self.confirmed_epoch.set(-1)
