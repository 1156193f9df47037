"""Backup freshness for operators: who has confirmed a backup of the keyset in force, how
long ago, and which domains may sign (`quorumkeep operator backup-status`).

Everything comes from the contract's ``backup_status`` view (docs/contract.md §7); the
only other input is the current time, so an alert can be written on the rows: an operator
whose ``current`` is false has no confirmed backup of the epoch in force (its backup
service is behind, stopped, or not registered), and a domain whose ``signing_allowed`` is
false refuses `sign` with ``KeyNotBackedUp``. Each domain also carries the delay backup
before use puts on signing (``wait_seconds``, see :func:`wait_seconds`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from quorumkeep.ledger.client import LedgerClient
from quorumkeep.ledger.errors import LedgerError
from quorumkeep.operator.errors import OperatorError


@dataclass(frozen=True)
class OperatorFreshness:
    """One serving operator's latest backup confirmation, beside the epoch in force."""

    account: str
    participant_id: int
    backup_service: bool
    contract_epoch: int
    confirmed_epoch: int | None
    current: bool
    block_height: int | None
    age_seconds: float | None
    """Seconds from the block that recorded the confirmation to ``now``."""

    @property
    def epochs_behind(self) -> int | None:
        if self.confirmed_epoch is None:
            return None
        return self.contract_epoch - self.confirmed_epoch

    def to_json(self) -> dict[str, Any]:
        return {
            "account": self.account,
            "participant_id": self.participant_id,
            "backup_service": self.backup_service,
            "contract_epoch": self.contract_epoch,
            "confirmed_epoch": self.confirmed_epoch,
            "current": self.current,
            "block_height": self.block_height,
            "age_seconds": self.age_seconds,
        }


@dataclass(frozen=True)
class BackupFreshness:
    """The whole picture: the epoch in force, every operator, every domain's gate."""

    epoch: int
    protocol_state: str
    operators: list[OperatorFreshness]
    domains: list[dict[str, Any]]
    """The view's domain entries: ``domain_id``, ``policy``, ``required``, ``confirmed``,
    ``missing``, ``signing_allowed``, ``wait``, and ``wait_seconds`` (:func:`wait_seconds`)."""

    @property
    def healthy(self) -> bool:
        """Every operator confirmed the keyset in force and every domain signs."""
        return all(o.current for o in self.operators) and all(
            d["signing_allowed"] for d in self.domains
        )

    def to_json(self) -> dict[str, Any]:
        return {
            "epoch": self.epoch,
            "protocol_state": self.protocol_state,
            "operators": [o.to_json() for o in self.operators],
            "domains": self.domains,
            "healthy": self.healthy,
        }


def wait_seconds(domain: dict[str, Any], now: float) -> float | None:
    """The delay backup before use put on the domain's signing: for an open domain, how
    long its latest wait lasted (from the block its key, its epoch or a withdrawn
    confirmation began it to the block that met the policy); for a closed one, how long
    it has been waiting at ``now``. None if the view records no wait."""
    wait = domain.get("wait")
    if wait is None:
        return None
    if wait["opened_ms"] is not None:
        return round((int(wait["opened_ms"]) - int(wait["since_ms"])) / 1000, 3)
    return round(max(0.0, now - int(wait["since_ms"]) / 1000), 3)


def freshness(view: dict[str, Any], now: float) -> BackupFreshness:
    """The rows for the ``backup_status`` view ``view`` at Unix time ``now``."""
    epoch = int(view["epoch"])
    operators = []
    for account, entry in sorted(
        view["operators"].items(), key=lambda item: int(item[1]["participant_id"])
    ):
        confirmation = entry.get("confirmation")
        operators.append(
            OperatorFreshness(
                account=account,
                participant_id=int(entry["participant_id"]),
                backup_service=bool(entry["backup_service"]),
                contract_epoch=epoch,
                confirmed_epoch=None if confirmation is None else int(confirmation["epoch"]),
                current=bool(entry["current"]),
                block_height=None if confirmation is None else int(confirmation["block_height"]),
                age_seconds=None
                if confirmation is None
                else round(max(0.0, now - int(confirmation["timestamp_ms"]) / 1000), 3),
            )
        )
    domains = [{**d, "wait_seconds": wait_seconds(d, now)} for d in view["domains"]]
    return BackupFreshness(epoch, str(view["protocol_state"]), operators, domains)


def read_freshness(client: LedgerClient, now: float) -> BackupFreshness:
    try:
        view = client.view("backup_status")
    except LedgerError as exc:
        raise OperatorError(exc.code, f"reading backup_status: {exc.code}: {exc.message}") from None
    return freshness(view, now)
