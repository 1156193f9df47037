"""What the backup service reads from the contract, and how it learns that something changed.

The service never polls on a timer: :func:`watch_events` follows the ledger's long-poll
event stream and signals a change for every event except sign-request traffic (which the
ledger filters out, ``exclude_kinds``, so it is neither sent nor woken for); after each
signal the service re-reads the views it needs (:func:`read_snapshot`) and acts on them —
never on an event alone, so a missed or reordered event cannot mislead it.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from quorumkeep.backup.client import NodeEndpoint
from quorumkeep.encoding.fields import decode_hex
from quorumkeep.ledger.client import AsyncLedgerClient
from quorumkeep.ledger.errors import LedgerError
from quorumkeep.wire.backup import BackupProtocolError, Keyset, PublicKeyPackageInfo, read_keyset

log = logging.getLogger("quorumkeep.backup.monitor")

IGNORED_EVENTS = frozenset({"sign_requested", "sign_responded", "sign_failed"})
"""Events that cannot change what the service must do (and come by the thousand)."""


@dataclass(frozen=True)
class Member:
    """This account's node as the serving participant set lists it."""

    participant_id: int
    endpoint: NodeEndpoint


@dataclass(frozen=True)
class OpenMigration:
    participant_id: int
    started_height: int
    destination: NodeEndpoint

    @property
    def goal(self) -> tuple[int, bytes]:
        """Identifies one migration: the same account can migrate again (A → B → A)."""
        return self.started_height, self.destination.tls_public_key


@dataclass(frozen=True)
class Registration:
    identity_public_key: bytes
    encryption_public_key: bytes


@dataclass(frozen=True)
class Confirmation:
    """This account's latest backup confirmation in the contract (`confirm_backup`)."""

    epoch: int
    keyset_hash: bytes
    block_height: int
    timestamp_ms: int


@dataclass(frozen=True)
class ContractSnapshot:
    protocol_state: str
    keyset: Keyset | None
    """None before the contract is initialized."""
    me: Member | None
    migration: OpenMigration | None
    registration: Registration | None
    confirmation: Confirmation | None = None
    backup_status: Mapping[str, Any] | None = None
    """The contract's ``backup_status`` view (every operator's confirmation; None before
    init)."""

    @property
    def confirmed_current(self) -> bool:
        """This account's confirmation names the keyset in force."""
        return (
            self.keyset is not None
            and self.confirmation is not None
            and self.confirmation.epoch == self.keyset.epoch
            and self.confirmation.keyset_hash == self.keyset.hash
        )


def _bytes32(value: object, what: str) -> bytes:
    try:
        return decode_hex(value, 32, 32)
    except ValueError:
        raise BackupProtocolError(
            "malformed_response", f"contract view: {what} is malformed"
        ) from None


def _endpoint(info: Mapping[str, Any], what: str) -> NodeEndpoint:
    web_url = info.get("web_url")
    if not isinstance(web_url, str):
        raise BackupProtocolError("malformed_response", f"contract view: {what}.web_url")
    return NodeEndpoint(web_url, _bytes32(info.get("tls_public_key"), f"{what}.tls_public_key"))


async def read_snapshot(ledger: AsyncLedgerClient, account: str) -> ContractSnapshot:
    """The views the service decides from. LedgerError if the ledger cannot answer."""
    try:
        participants = await ledger.view("participants", {})
    except LedgerError as exc:
        if exc.code == "NotInitialized":
            return ContractSnapshot("NotInitialized", None, None, None, None)
        raise
    keyset = read_keyset(await ledger.view("keyset", {}), "contract keyset")
    me = None
    for member in participants.get("participants", []):
        if member.get("account") == account:
            me = Member(int(member["participant_id"]), _endpoint(member, "participant"))
    migration = None
    value = await ledger.view("migration_info", {"account": account})
    if isinstance(value, Mapping):
        migration = OpenMigration(
            int(value["participant_id"]),
            int(value["started_height"]),
            _endpoint(value["destination"], "destination"),
        )
    registration = None
    info = await ledger.view("backup_service_info", {"account": account})
    if isinstance(info, Mapping):
        registration = Registration(
            _bytes32(info.get("identity_public_key"), "identity_public_key"),
            _bytes32(info.get("encryption_public_key"), "encryption_public_key"),
        )
    gate = await ledger.view("backup_status", {})
    confirmation = None
    entry = gate.get("operators", {}).get(account) if isinstance(gate, Mapping) else None
    if isinstance(entry, Mapping) and isinstance(entry.get("confirmation"), Mapping):
        c = entry["confirmation"]
        confirmation = Confirmation(
            int(c["epoch"]),
            _bytes32(c.get("keyset_hash"), "confirmation.keyset_hash"),
            int(c["block_height"]),
            int(c["timestamp_ms"]),
        )
    return ContractSnapshot(
        str(participants.get("protocol_state")),
        keyset,
        me,
        migration,
        registration,
        confirmation,
        gate if isinstance(gate, Mapping) else None,
    )


async def read_packages(
    ledger: AsyncLedgerClient, keyset: Keyset
) -> dict[int, PublicKeyPackageInfo]:
    """The contract's public key package of every domain of ``keyset``."""
    packages = {}
    for domain_id in keyset.domain_ids:
        value = await ledger.view("public_key_package", {"domain_id": domain_id})
        packages[domain_id] = PublicKeyPackageInfo.from_json(value)
    return packages


async def watch_events(ledger: AsyncLedgerClient, since: int, changed: asyncio.Event) -> None:
    """Set ``changed`` for every relevant contract event above height ``since``, forever.

    ``follow_events`` long-polls and reconnects with bounded backoff by itself; an error
    it does not retry (the ledger refusing the cursor, say) restarts the follow from the
    newest height after a short pause, after signalling a change so nothing is missed.
    """
    cursor = since
    while True:
        try:
            async for event in ledger.follow_events(cursor, exclude_kinds=IGNORED_EVENTS):
                cursor = max(cursor, event.height)
                if event.kind not in IGNORED_EVENTS:  # a guard: the ledger filtered them out
                    log.debug("contract event %s at height %d", event.kind, event.height)
                    changed.set()
        except LedgerError as exc:
            log.warning("event stream failed (%s: %s); resuming", exc.code, exc.message)
            changed.set()
            await asyncio.sleep(1.0)
