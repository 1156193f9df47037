"""Prometheus metrics of one process part (a node, a backup service), in a registry of its own
(never the process-global one), so several can live in one test process without their
series colliding."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Gauge
from prometheus_client.exposition import CONTENT_TYPE_LATEST, generate_latest

__all__ = ["CONTENT_TYPE_LATEST", "AttestationGauges", "MetricsRegistry"]


class MetricsRegistry:
    """Owns the registry that subclasses declare their metrics in, and renders it."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)

    def render(self) -> bytes:
        """The Prometheus text exposition of this registry (``CONTENT_TYPE_LATEST``)."""
        return generate_latest(self.registry)


TCB_STATUS_LABELS = (
    "UpToDate",
    "SWHardeningNeeded",
    "ConfigurationNeeded",
    "ConfigurationAndSWHardeningNeeded",
    "OutOfDate",
    "OutOfDateConfigurationNeeded",
    "Revoked",
    "Development",
    "None",
)


class AttestationGauges:
    """``quorumkeep_attestation_expires_seconds`` (seconds until this process's attestation
    in the contract expires; -1 without one) and ``quorumkeep_attestation_tcb_status``
    (1 for the recorded TCB status, 0 for the others; ``None`` without a record)."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self.expires = Gauge(
            "quorumkeep_attestation_expires_seconds",
            "Seconds until this process's attestation in the contract expires (-1: none).",
            registry=registry,
        )
        self.tcb_status = Gauge(
            "quorumkeep_attestation_tcb_status",
            "1 for the TCB status of this process's attestation in the contract.",
            ["status"],
            registry=registry,
        )
        self.update({})

    def update(self, summary: dict[str, object]) -> None:
        """From an attestation summary (``expires_in``, ``tcb_status``)."""
        expires_in = summary.get("expires_in")
        self.expires.set(expires_in if isinstance(expires_in, int) else -1)
        status = summary.get("tcb_status")
        current = status if isinstance(status, str) and status in TCB_STATUS_LABELS else "None"
        for label in TCB_STATUS_LABELS:
            self.tcb_status.labels(status=label).set(1 if label == current else 0)
