"""Prometheus metrics of one process part (a node, a backup service), in a registry of its own
(never the process-global one), so several can live in one test process without their
series colliding."""

from __future__ import annotations

from prometheus_client import CollectorRegistry
from prometheus_client.exposition import CONTENT_TYPE_LATEST, generate_latest

__all__ = ["CONTENT_TYPE_LATEST", "MetricsRegistry"]


class MetricsRegistry:
    """Owns the registry that subclasses declare their metrics in, and renders it."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)

    def render(self) -> bytes:
        """The Prometheus text exposition of this registry (``CONTENT_TYPE_LATEST``)."""
        return generate_latest(self.registry)
