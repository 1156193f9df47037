"""``quorumkeep backup run``: the backup service daemon.

It follows the contract's events (:mod:`quorumkeep.backup.monitor`) and, after each change,
re-reads the contract and pursues three goals, each in a task of its own with bounded backoff:

- **backup** — whenever the newest stored backup does not cover the serving keyset (its
  epoch and every domain's key), fetch the node's shares (``GET /backup/keyshares`` at the
  participant's ``web_url``, pinned to its ``tls_public_key``), verify them against the
  contract's public key packages, and store them sealed (older epochs' backups are then
  deleted);
- **confirm** — whenever the newest backup covers the serving keyset but the contract has
  no confirmation of it from this service, verify the backup against the contract again
  (:mod:`quorumkeep.backup.verify`) and submit ``confirm_backup(epoch, keyset_hash)`` signed
  by the service's identity key (a function-call key of the account limited to that method):
  the contract's backup gate lets a domain sign only once enough operators' backups of
  the epoch in force are confirmed (docs/contract.md §6.9);
- **recovery** — whenever a migration of this account is open, push the stored shares to
  the destination (``POST /backup/recovery-session`` + ``PUT /backup/keyshares``) until the
  node acknowledges them, and again for any later migration; the task ends when the
  migration is concluded, cancelled or replaced.

The process around it (start-up, status server, exit codes) is :mod:`quorumkeep.backup.process`.
Log lines never hold a share, a key or the passphrase.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import time
from collections.abc import Callable, Coroutine, Hashable
from dataclasses import dataclass
from typing import Any

from quorumkeep.backup.attestation import BackupAttester, summary_from_view
from quorumkeep.backup.client import NodeClient, NodeEndpoint
from quorumkeep.backup.errors import BackupServiceError
from quorumkeep.backup.identity import BackupIdentity
from quorumkeep.backup.metrics import BackupMetrics
from quorumkeep.backup.monitor import (
    ContractSnapshot,
    OpenMigration,
    read_packages,
    read_snapshot,
    watch_events,
)
from quorumkeep.backup.store import BackupRecord, BackupStore
from quorumkeep.backup.verify import store_status, verify_backup
from quorumkeep.crypto.group import RandomBytes
from quorumkeep.daemon.errors import error_code, error_message
from quorumkeep.ledger.client import AccountSigner, AsyncLedgerClient
from quorumkeep.ledger.errors import ContractCallFailed, LedgerError
from quorumkeep.net.retry import Backoff, BackoffPolicy
from quorumkeep.wire.backup import BackupProtocolError, Keyset, verify_shares

log = logging.getLogger("quorumkeep.backup")

_ERRORS = (BackupProtocolError, BackupServiceError, LedgerError)


ATTEST_CHECK_SECONDS = 60.0
"""How often the service checks whether its attestation needs renewing."""
ATTEST_RETRY_SECONDS = 30.0


@dataclass(frozen=True)
class ServiceSettings:
    initial_backoff: float = 0.1
    max_backoff: float = 5.0
    request_timeout: float = 10.0


# --- the daemon ---------------------------------------------------------------------------------


_CONFIRM_HINTS = {
    "UnknownAccessKey": "the identity key is not an access key of the account: the operator "
    "gives it one with `quorumkeep operator register-backup-service`",
    "KeyMethodNotAllowed": "the identity key may not call confirm_backup: the operator gives "
    "it that access key with `quorumkeep operator register-backup-service`",
    "SignerKeyMismatch": "this service is not the account's registered backup service",
}
"""What an operator does about a refused confirmation, by error code."""


class BackupService:
    """The three goals (backup, confirm, recovery) pursued after every contract change."""

    def __init__(
        self,
        *,
        identity: BackupIdentity,
        store: BackupStore,
        ledger: AsyncLedgerClient,
        metrics: BackupMetrics | None = None,
        settings: ServiceSettings | None = None,
        clock: Callable[[], float] = time.time,
        random_bytes: RandomBytes = os.urandom,
        attester: BackupAttester | None = None,
    ) -> None:
        self.identity = identity
        self.account = identity.account
        self.store = store
        self.ledger = ledger
        self.metrics = metrics or BackupMetrics()
        self.settings = settings or ServiceSettings()
        self.clock = clock
        self.client = NodeClient(
            timeout=self.settings.request_timeout, clock=clock, random_bytes=random_bytes
        )
        self.changed = asyncio.Event()
        self.snapshot: ContractSnapshot | None = None
        self.pushed: dict[tuple[int, bytes], float] = {}
        self.last_fetch: dict[str, Any] | None = None
        self.last_push: dict[str, Any] | None = None
        self.last_confirm: dict[str, Any] | None = None
        self.ledger_signer = AccountSigner(self.account, identity.signer.signing_key)
        """The identity key as a ledger access key: it submits ``confirm_backup``."""
        self._tasks: dict[Hashable, asyncio.Task[None]] = {}
        self._registered_logged: bool | None = None
        self.attestation: dict[str, Any] = {"enforced": False}
        self.attester = attester
        self._attest_after = 0.0
        self._update_backup_metrics()

    # -- status

    def status(self) -> dict[str, Any]:
        document = store_status(self.store, self.clock())
        snapshot = self.snapshot
        keyset = snapshot.keyset if snapshot is not None else None
        latest = self.store.latest()
        document.update(
            {
                **self.identity.public.registration(),
                "registered": None
                if snapshot is None
                else snapshot.registration is not None
                and snapshot.registration.identity_public_key == self.identity.signer.public_key,
                "contract_epoch": None if keyset is None else keyset.epoch,
                "covers_current_keyset": None
                if keyset is None
                else latest is not None and latest.covers(keyset),
                "migration": None
                if snapshot is None or snapshot.migration is None
                else {
                    "started_height": snapshot.migration.started_height,
                    "destination_web_url": snapshot.migration.destination.web_url,
                    "pushed": snapshot.migration.goal in self.pushed,
                },
                "last_fetch": self.last_fetch,
                "last_push": self.last_push,
                "confirmation": None
                if snapshot is None or snapshot.confirmation is None
                else {
                    "epoch": snapshot.confirmation.epoch,
                    "keyset_hash": snapshot.confirmation.keyset_hash.hex(),
                    "block_height": snapshot.confirmation.block_height,
                    "timestamp_ms": snapshot.confirmation.timestamp_ms,
                },
                "confirmed_current": None if snapshot is None else snapshot.confirmed_current,
                "last_confirm": self.last_confirm,
                "attestation": self.attestation,
            }
        )
        return document

    def _update_backup_metrics(self) -> None:
        latest = self.store.latest()
        m = self.metrics
        if latest is None:
            m.backup_epoch.set(-1)
            m.backup_domains.set(0)
        else:
            m.backup_epoch.set(latest.epoch)
            m.backup_domains.set(len(latest.keyset.domains))
            m.backup_stored_timestamp.set(latest.stored_at)
        keyset = self.snapshot.keyset if self.snapshot is not None else None
        covered = keyset is not None and latest is not None and latest.covers(keyset)
        m.covers_current_keyset.set(1 if covered else 0)
        verification = self.store.last_verification()
        if verification is not None and isinstance(verification.get("checked_at"), int | float):
            m.last_verify_timestamp.set(verification["checked_at"])
            m.last_verify_ok.set(1 if verification.get("valid") else 0)
        self.update_freshness_metrics()

    def update_freshness_metrics(self) -> None:
        """Backup freshness from the last contract snapshot: this service's confirmation
        and every serving operator's (epoch, whether current, age at ``clock()``)."""
        m = self.metrics
        snapshot = self.snapshot
        keyset = None if snapshot is None else snapshot.keyset
        m.contract_epoch.set(-1 if keyset is None else keyset.epoch)
        confirmation = None if snapshot is None else snapshot.confirmation
        m.confirmed_epoch.set(-1 if confirmation is None else confirmation.epoch)
        m.confirmed_current.set(1 if snapshot is not None and snapshot.confirmed_current else 0)
        gate = None if snapshot is None else snapshot.backup_status
        m.operator_confirmed_epoch.clear()
        m.operator_confirmed_current.clear()
        m.operator_confirmation_age.clear()
        m.domain_signing_allowed.clear()
        if gate is None:
            return
        now = self.clock()
        for account, entry in gate.get("operators", {}).items():
            confirmed = entry.get("confirmation")
            m.operator_confirmed_epoch.labels(account=account).set(
                -1 if confirmed is None else confirmed["epoch"]
            )
            m.operator_confirmed_current.labels(account=account).set(
                1 if entry.get("current") else 0
            )
            if confirmed is not None:
                age = max(0.0, now - confirmed["timestamp_ms"] / 1000)
                m.operator_confirmation_age.labels(account=account).set(round(age, 3))
        for domain in gate.get("domains", []):
            m.domain_signing_allowed.labels(domain_id=str(domain["domain_id"])).set(
                1 if domain.get("signing_allowed") else 0
            )

    # -- main loop

    async def run(self, stop: asyncio.Event, since: int) -> None:
        """Until ``stop`` is set: follow events above ``since`` and reconcile after each."""
        self.changed.set()
        watcher = asyncio.create_task(watch_events(self.ledger, since, self.changed))
        stopper = asyncio.create_task(stop.wait())
        attesting = asyncio.create_task(self._attest_periodically(stop))
        backoff = Backoff(self._backoff_policy())
        try:
            while not stop.is_set():
                waiter = asyncio.create_task(self.changed.wait())
                await asyncio.wait({waiter, stopper, watcher}, return_when=asyncio.FIRST_COMPLETED)
                waiter.cancel()
                if watcher.done():
                    watcher.result()  # re-raise what killed the event stream
                if stop.is_set():
                    break
                self.changed.clear()
                try:
                    await self.reconcile()
                    backoff.reset()
                except _ERRORS as exc:
                    retry_delay = backoff.next_delay()
                    log.warning(
                        "cannot read the contract (%s: %s); retrying in %.1fs",
                        error_code(exc),
                        error_message(exc),
                        retry_delay,
                    )
                    self._poke_later(retry_delay)
        finally:
            for task in (watcher, stopper, attesting):
                task.cancel()
            await self.close()

    async def close(self) -> None:
        tasks = list(self._tasks.values())
        self._tasks.clear()
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        await self.client.aclose()

    def _backoff_policy(self) -> BackoffPolicy:
        maximum = self.settings.max_backoff
        return BackoffPolicy(min(self.settings.initial_backoff, maximum), maximum, jitter=0.5)

    def _poke_later(self, delay: float) -> None:
        asyncio.get_running_loop().call_later(delay, self.changed.set)

    def _ensure(self, key: Hashable, make: Callable[[], Coroutine[Any, Any, None]]) -> None:
        task = self._tasks.get(key)
        if task is not None and not task.done():
            return
        task = asyncio.create_task(make(), name=f"backup-{key}")
        self._tasks[key] = task

    def _cancel_except(self, kind: str, keep: Hashable | None) -> None:
        for key, task in list(self._tasks.items()):
            if isinstance(key, tuple) and key[0] == kind and key != keep:
                task.cancel()
                del self._tasks[key]

    async def _attestation_step(self) -> None:
        """Read this service's attestation (status, metrics) and re-attest when due."""
        view = await self.ledger.view("attestations", {"at": int(self.clock())})
        self.attestation = summary_from_view(view, self.identity.signer.public_key)
        self.metrics.attestation.update(self.attestation)
        if self.attester is None or time.monotonic() < self._attest_after:
            return
        try:
            reason = await self.attester.step(self.ledger, view)
        except Exception as exc:  # refused, no access key, ledger down: retry later
            self._attest_after = time.monotonic() + ATTEST_RETRY_SECONDS
            log.warning(
                "cannot attest: %s: %s (the operator must grant this service's identity key "
                "submit_attestation, or submit `quorumkeep backup attest` output)",
                error_code(exc),
                error_message(exc),
            )
            return
        if reason is not None:
            log.info("attested (%s)", reason)
            view = await self.ledger.view("attestations", {"at": int(self.clock())})
            self.attestation = summary_from_view(view, self.identity.signer.public_key)
            self.metrics.attestation.update(self.attestation)

    async def _attest_periodically(self, stop: asyncio.Event) -> None:
        while not stop.is_set():
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), ATTEST_CHECK_SECONDS)
            if stop.is_set():
                return
            with contextlib.suppress(*_ERRORS):
                await self._attestation_step()

    async def reconcile(self) -> None:
        snapshot = await read_snapshot(self.ledger, self.account)
        self.snapshot = snapshot
        self._update_backup_metrics()
        await self._attestation_step()
        registered = (
            snapshot.registration is not None
            and snapshot.registration.identity_public_key == self.identity.signer.public_key
            and snapshot.registration.encryption_public_key == self.identity.encryption.public_key
        )
        if registered != self._registered_logged:
            self._registered_logged = registered
            if registered:
                log.info("registered in the contract as %s's backup service", self.account)
            else:
                log.warning(
                    "not registered in the contract for %s (register %s); waiting",
                    self.account,
                    self.identity.public.registration(),
                )
        if not registered or snapshot.keyset is None:
            self._cancel_except("fetch", None)
            self._cancel_except("push", None)
            return
        keyset = snapshot.keyset
        latest = self.store.latest()
        fetch_key: Hashable | None = None
        if keyset.domains and snapshot.me is not None and not (latest and latest.covers(keyset)):
            fetch_key = ("fetch", keyset.hash, snapshot.me.endpoint)
            endpoint = snapshot.me.endpoint
            self._ensure(fetch_key, lambda: self._fetch_until_stored(endpoint))
        self._cancel_except("fetch", fetch_key)
        confirm_key: Hashable | None = None
        if (
            keyset.domains
            and snapshot.me is not None
            and latest is not None
            and latest.covers(keyset)
            and not snapshot.confirmed_current
        ):
            confirm_key = ("confirm", keyset.hash)
            self._ensure(confirm_key, lambda: self._confirm_until_recorded(keyset))
        self._cancel_except("confirm", confirm_key)
        push_key: Hashable | None = None
        migration = snapshot.migration
        if migration is not None and migration.goal not in self.pushed:
            push_key = ("push", *migration.goal)
            self._ensure(push_key, lambda: self._push_until_imported(migration))
        self._cancel_except("push", push_key)

    # -- backup

    async def _fetch_until_stored(self, endpoint: NodeEndpoint) -> None:
        backoff = Backoff(self._backoff_policy())
        while True:
            try:
                await self.fetch_once(endpoint)
                self.changed.set()
                return
            except _ERRORS as exc:
                delay = backoff.next_delay()
                code = error_code(exc)
                self.metrics.fetches.labels(result=code).inc()
                self.last_fetch = {"at": self.clock(), "result": code, "reason": error_message(exc)}
                log.warning(
                    "backup from %s failed (%s: %s); retrying in %.1fs",
                    endpoint.web_url,
                    code,
                    error_message(exc),
                    delay,
                )
            await asyncio.sleep(delay)

    async def fetch_once(self, endpoint: NodeEndpoint) -> bool:
        """Fetch, verify against the contract, store. True if a new backup was stored."""
        fetched = await self.client.fetch_backup(endpoint, self.identity)
        snapshot = await read_snapshot(self.ledger, self.account)
        if snapshot.keyset != fetched.keyset:
            raise BackupProtocolError(
                "wrong_keyset", "the node answered for another keyset than the contract's"
            )
        if snapshot.me is None or snapshot.me.endpoint != endpoint:
            raise BackupProtocolError(
                "not_participant", "the node that answered is no longer this account's node"
            )
        packages = await read_packages(self.ledger, fetched.keyset)
        verified = verify_shares(
            self.account, snapshot.me.participant_id, fetched.keyset, fetched.shares, packages
        )
        now = self.clock()
        stored = await asyncio.to_thread(self.store.put, verified, endpoint.tls_public_key, now)
        result = "stored" if stored else "unchanged"
        self.metrics.fetches.labels(result=result).inc()
        keyset = fetched.keyset
        await asyncio.to_thread(
            self.store.record_verification,
            {
                "checked_at": now,
                "valid": True,
                "reason": f"epoch {keyset.epoch}: every share matched participant "
                f"{snapshot.me.participant_id}'s verifying share when it was stored",
                "contract_epoch": keyset.epoch,
                "contract_domains": list(keyset.domain_ids),
            },
        )
        self.last_fetch = {"at": now, "result": result, "epoch": fetched.keyset.epoch}
        self.snapshot = snapshot
        self._update_backup_metrics()
        log.info(
            "backup %s account=%s epoch=%d domains=%s from=%s",
            result,
            self.account,
            fetched.keyset.epoch,
            list(fetched.keyset.domain_ids),
            endpoint.web_url,
        )
        return stored

    # -- confirm

    async def _confirm_until_recorded(self, keyset: Keyset) -> None:
        backoff = Backoff(self._backoff_policy())
        while True:
            try:
                await self.confirm_once(keyset)
                self.changed.set()
                return
            except _ERRORS as exc:
                delay = backoff.next_delay()
                code = error_code(exc)
                self.metrics.confirmations.labels(result=code).inc()
                hint = _CONFIRM_HINTS.get(code)
                self.last_confirm = {
                    "at": self.clock(),
                    "result": code,
                    "epoch": keyset.epoch,
                    "reason": error_message(exc) + (f" ({hint})" if hint else ""),
                }
                log.warning(
                    "backup confirmation of epoch %d failed (%s: %s)%s; retrying in %.1fs",
                    keyset.epoch,
                    code,
                    error_message(exc),
                    f"; {hint}" if hint else "",
                    delay,
                )
            await asyncio.sleep(delay)

    async def confirm_once(self, keyset: Keyset) -> str:
        """Verify the newest backup against the contract, then ``confirm_backup`` it.

        Returns ``"confirmed"``, or ``"already_confirmed"`` if the contract holds this
        confirmation already (a retry whose first answer was lost)."""
        outcome = await verify_backup(self.store, self.ledger, self.account, clock=self.clock)
        if not outcome["valid"] or outcome.get("contract_epoch") != keyset.epoch:
            raise BackupServiceError(
                "backup_not_verified", str(outcome.get("reason", "the backup did not verify"))
            )
        args = {"epoch": keyset.epoch, "keyset_hash": keyset.hash.hex()}
        try:
            tx = await self.ledger.call(self.ledger_signer, "confirm_backup", args)
            result, height = "confirmed", tx.block_height
        except ContractCallFailed as exc:
            if exc.code != "DuplicateVote":
                raise
            result, height = "already_confirmed", exc.block_height
        self.metrics.confirmations.labels(result=result).inc()
        self.last_confirm = {
            "at": self.clock(),
            "result": result,
            "epoch": keyset.epoch,
            "block_height": height,
        }
        log.info(
            "backup %s in the contract account=%s epoch=%d domains=%s block=%d",
            result,
            self.account,
            keyset.epoch,
            list(keyset.domain_ids),
            height,
        )
        return result

    # -- recovery

    async def _push_until_imported(self, migration: OpenMigration) -> None:
        backoff = Backoff(self._backoff_policy())
        while True:
            try:
                await self.push_once(migration)
                self.changed.set()
                return
            except _ERRORS as exc:
                delay = backoff.next_delay()
                code = getattr(exc, "remote_code", None) or error_code(exc)
                self.metrics.pushes.labels(result=code).inc()
                self.last_push = {"at": self.clock(), "result": code, "reason": error_message(exc)}
                log.warning(
                    "recovery push to %s failed (%s: %s); retrying in %.1fs",
                    migration.destination.web_url,
                    code,
                    error_message(exc),
                    delay,
                )
            await asyncio.sleep(delay)

    def _backup_for(self, snapshot: ContractSnapshot) -> BackupRecord:
        latest = self.store.latest()
        if snapshot.keyset is None or latest is None or not latest.covers(snapshot.keyset):
            raise BackupServiceError(
                "no_backup", "no stored backup covers the contract's current keyset"
            )
        return latest

    async def push_once(self, migration: OpenMigration) -> None:
        snapshot = await read_snapshot(self.ledger, self.account)
        if snapshot.migration is None or snapshot.migration.goal != migration.goal:
            return  # concluded, cancelled or replaced: reconcile takes it from here
        record = self._backup_for(snapshot)
        shares = await asyncio.to_thread(self.store.shares, record)
        start = time.monotonic()
        ack = await self.client.push_recovery(
            migration.destination, self.identity, record.keyset, shares
        )
        self.pushed[migration.goal] = self.clock()
        self.metrics.pushes.labels(result="imported").inc()
        self.last_push = {
            "at": self.clock(),
            "result": "imported",
            "epoch": ack.epoch,
            "started_height": migration.started_height,
            "seconds": round(time.monotonic() - start, 3),
        }
        log.info(
            "recovery pushed account=%s epoch=%d to=%s (migration started at height %d)",
            self.account,
            ack.epoch,
            migration.destination.web_url,
            migration.started_height,
        )
