"""Fail-over to a warm standby: check it holds the keyset in force, then migrate to it.

The standby (docs/node.md, "Warm standby") already holds the account's shares of the
current epoch, pushed by its primary as wrapped exports, so the migration to it concludes
from them at once: no backup service takes part. Before ``start_node_migration`` the
standby's ``/status`` (its certificate pinned to its TLS key) must show it is a warm
standby holding the epoch in force; otherwise the migration would wait for the backup
service like any other (``--force`` starts it anyway).
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from typing import Any

from quorumkeep.ledger.client import AccountSigner, LedgerClient
from quorumkeep.operator.actions import StartedMigration, start_migration
from quorumkeep.operator.errors import OperatorError
from quorumkeep.operator.inputs import NodeInfo
from quorumkeep.operator.progress import DestinationProbe


def standby_problem(status: Mapping[str, Any]) -> tuple[str, str] | None:
    """Why a node's ``/status`` does not show a warm standby ready to take over, or None."""
    standby = status.get("warm_standby")
    if not isinstance(standby, Mapping):
        return "not_standby", "the node is not a warm standby (node.toml warm_standby = true)"
    if standby.get("active"):
        return "not_standby", "the standby already is the participant"
    if not standby.get("fresh"):
        return (
            "standby_stale",
            f"the standby holds epoch {standby.get('held_epoch')}, the contract is at "
            f"{standby.get('current_epoch')}: its primary has not pushed the keyset in force "
            "(the migration would wait for the backup service; --force starts it anyway)",
        )
    return None


def probe_standby(info: NodeInfo) -> dict[str, Any]:
    """The standby's ``/status``, pinned to its TLS key."""

    async def run() -> dict[str, Any]:
        probe = DestinationProbe(info.web_url, info.tls_public_key)
        try:
            return await probe.status()
        finally:
            await probe.aclose()

    return asyncio.run(run())


def failover(
    client: LedgerClient, signer: AccountSigner, info: NodeInfo, *, force: bool = False
) -> tuple[StartedMigration, dict[str, Any] | None]:
    """Check the standby (unless ``force``), then start the migration to it; the started
    migration and the standby's status before it."""
    status: dict[str, Any] | None = None
    if not force:
        status = probe_standby(info)
        problem = standby_problem(status)
        if problem is not None:
            raise OperatorError(*problem)
    return start_migration(client, signer, info), status
