"""Checking the stored backups against the contract, and the store's status.

Used by the daemon (:mod:`quorumkeep.backup.service`, before each ``confirm_backup``) and by
``quorumkeep backup verify`` / ``backup status``, which import this module without the web
stack. An outcome names epochs, domains and reasons, never a share.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from quorumkeep.backup.errors import BackupServiceError
from quorumkeep.backup.monitor import read_packages, read_snapshot
from quorumkeep.backup.store import BackupStore
from quorumkeep.ledger.client import AsyncLedgerClient
from quorumkeep.wire.backup import BackupProtocolError, verify_shares


async def verify_backup(
    store: BackupStore,
    ledger: AsyncLedgerClient,
    account: str,
    *,
    clock: Callable[[], float] = time.time,
) -> dict[str, Any]:
    """Check the newest backup against the contract, record and return the outcome.

    Valid means: it covers the serving keyset (same epoch, every domain with its key), it
    opens under the store key, and every share reproduces this participant's verifying
    share in the contract's public key package. Older backups are checked to open. The
    outcome names epochs, domains and reasons — never a share.
    """
    now = clock()
    snapshot = await read_snapshot(ledger, account)
    outcome: dict[str, Any] = {"checked_at": now, "valid": False, "backups": []}
    keyset = snapshot.keyset
    outcome["contract_epoch"] = None if keyset is None else keyset.epoch
    outcome["contract_domains"] = [] if keyset is None else list(keyset.domain_ids)
    records = store.records()
    for record in records:
        entry: dict[str, Any] = {"epoch": record.epoch, "domains": list(record.keyset.domain_ids)}
        try:
            store.shares(record)
            entry["opens"] = True
        except BackupServiceError as exc:
            entry["opens"] = False
            entry["problem"] = exc.message
        entry["current"] = keyset is not None and record.covers(keyset)
        outcome["backups"].append(entry)
    latest = records[0] if records else None
    if keyset is None or not keyset.domains:
        outcome["reason"] = "the contract has no keys yet: nothing to back up"
        outcome["valid"] = latest is None
    elif latest is None:
        outcome["reason"] = "no backup is held"
    elif not latest.covers(keyset):
        outcome["reason"] = (
            f"the newest backup is of epoch {latest.epoch} with domains "
            f"{list(latest.keyset.domain_ids)}; the contract is at epoch {keyset.epoch} with "
            f"domains {list(keyset.domain_ids)}"
        )
    elif snapshot.me is None or snapshot.me.participant_id != latest.participant_id:
        outcome["reason"] = f"{account} is no longer participant {latest.participant_id}"
    else:
        try:
            shares = store.shares(latest)
            packages = await read_packages(ledger, keyset)
            verify_shares(account, latest.participant_id, keyset, shares, packages)
        except (BackupServiceError, BackupProtocolError) as exc:
            outcome["reason"] = exc.message
        else:
            outcome["valid"] = True
            outcome["reason"] = (
                f"epoch {keyset.epoch}: every share matches participant "
                f"{latest.participant_id}'s verifying share"
            )
            store.mark_verified(latest, now)
    store.record_verification(outcome)
    return outcome


def store_status(store: BackupStore, now: float) -> dict[str, Any]:
    """What `backup status` and ``/status`` show from the store alone (no passphrase)."""
    records = store.records()
    latest = records[0] if records else None
    return {
        "account": store.account,
        "backups": [r.to_json() for r in records],
        "newest_epoch": None if latest is None else latest.epoch,
        "age_seconds": None if latest is None else round(max(0.0, now - latest.stored_at), 3),
        "last_verify": store.last_verification(),
    }
