"""Migration to this node: importing the shares the backup service delivers, and concluding.

Rules (docs/node.md, "Migration"):

- Import (:meth:`MigrationImports.import_shares`, called by the backup endpoint with shares it
  opened and checked): checked again against a fresh read of the contract — the migration to
  us is open and our signer key concludes it, the keyset is the one in force, every domain has
  a share that reproduces our participant's verifying share
  (:func:`~quorumkeep.node.decisions.recovered_shares_problem`) — nothing is stored otherwise;
  then stored, and concluded in the background.
- Conclude: ``conclude_node_migration`` until a fresh state shows the migration concluded (we
  take part) or gone (the imported shares are deleted). The outcome of a call is never trusted
  alone. Before each call the shares are checked again as still held and matching the
  contract; if they are not, no call is made and the coordinator's next state decides.
- Held shares of a node that takes no part (a restart between import and conclusion):
  concluded if they still fit the open migration, deleted otherwise — decided on a fresh read
  under the import lock (:meth:`MigrationImports.settle_held_shares`).
- A warm standby (:mod:`quorumkeep.node.standby`) keeps shares that fit the keyset in force
  for its account's participant (``keep_held``) instead of deleting them, and stores the
  shares its primary pushes under the same lock (:meth:`MigrationImports.hold`); a migration
  to it then concludes from them at once, through :meth:`MigrationImports.settle_held_shares`.
- Decommissioning runs inside :meth:`MigrationImports.paused`: no import is in progress and the
  conclusion is cancelled before anything is wiped.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from typing import Any, Protocol

from quorumkeep.contract.state import ContractState, Running
from quorumkeep.ledger.errors import ContractCallFailed, LedgerError
from quorumkeep.net.retry import Backoff, BackoffPolicy, Uniform
from quorumkeep.node.attestation import Evidence, no_evidence
from quorumkeep.node.calls import ContractCall, StateReader
from quorumkeep.node.decisions import (
    ConclusionProgress,
    Onboarding,
    RecoveredShare,
    Role,
    migration_progress,
    migration_to_me,
    recovered_shares_problem,
)
from quorumkeep.node.held_keys import HeldKeys
from quorumkeep.node.metrics import NodeMetrics
from quorumkeep.wire.backup import BackupProtocolError, VerifiedShares

log = logging.getLogger("quorumkeep.node.coordinator")

MIGRATION_RETRY_MAX_DELAY = 2.0


class Standing(Protocol):
    """What the migration needs to know of the node's standing."""

    def participated_id(self) -> int | None: ...

    def peek(self, state: ContractState) -> Onboarding: ...


@dataclass
class _Concluding:
    """Shares imported for the migration opened at ``started_height``, being concluded."""

    started_height: int
    keyset: dict[str, Any]
    task: asyncio.Task[None]
    imported_at: float


class MigrationImports:
    """Imports migrated shares and concludes the migration to this node."""

    def __init__(
        self,
        *,
        account: str,
        tls_public_key: bytes,
        signer_public_key: bytes,
        read_state: StateReader,
        call: ContractCall,
        held: HeldKeys,
        standing: Standing,
        metrics: NodeMetrics,
        backoff: float,
        on_settled: Callable[[], None],
        uniform: Uniform = random.random,
        keep_held: Callable[[ContractState], bool] | None = None,
        evidence: Evidence = no_evidence,
    ) -> None:
        """``keep_held(state)`` (run in a thread: it reads the keystore) says whether the
        shares held are a warm standby's that still fit ``state``: they are then kept when
        no migration to us can use them."""
        self._account = account
        self._evidence = evidence
        self._tls = tls_public_key
        self._signer = signer_public_key
        self._read_state = read_state
        self._call = call
        self._held = held
        self._standing = standing
        self._metrics = metrics
        self._policy = BackoffPolicy(backoff, max(backoff, MIGRATION_RETRY_MAX_DELAY))
        self._on_settled = on_settled
        self._uniform = uniform
        self._keep_held = keep_held
        self._current: _Concluding | None = None
        self._import_lock = asyncio.Lock()
        self._contract_moved = asyncio.Event()

    def busy(self) -> bool:
        """Shares are being imported or an imported migration is being concluded."""
        return self._concluding() or self._import_lock.locked()

    def _concluding(self) -> bool:
        return self._current is not None and not self._current.task.done()

    def contract_moved(self) -> None:
        """A new contract state was applied: a conclusion waiting out its backoff re-reads."""
        self._contract_moved.set()

    def tasks(self) -> list[asyncio.Task[None]]:
        return [self._current.task] if self._current is not None else []

    # -- import -------------------------------------------------------------------------------

    async def import_verified(self, verified: VerifiedShares) -> None:
        """The backup endpoint's import of ``verified`` shares (see :meth:`import_shares`)."""
        await self.import_shares(
            [
                RecoveredShare(s.domain_id, s.epoch, s.participant_id, s.signing_share)
                for s in verified.shares
            ]
        )

    async def import_shares(self, shares: list[RecoveredShare]) -> None:
        """Check ``shares`` against a fresh state, store them, start concluding;
        ``BackupProtocolError`` (nothing stored) if they do not fit."""
        async with self._import_lock:
            state = await self._read_state()
            problem = recovered_shares_problem(
                state, self._account, self._tls, self._signer, shares
            )
            if problem is not None:
                code, message = problem
                log.warning("migration shares refused: %s [%s]", message, code)
                raise BackupProtocolError(code, message)
            migration = migration_to_me(state, self._account, self._tls)
            assert migration is not None and isinstance(state.protocol, Running)
            running = state.protocol
            await asyncio.to_thread(
                self._held.store_recovered, running, migration.participant_id, shares
            )
            self._metrics.migration_imports.inc()
            log.info(
                "migration shares imported account=%s participant_id=%d epoch=%d domains=%s "
                "started_height=%d",
                self._account,
                migration.participant_id,
                running.epoch,
                [d.domain_id for d in running.keyset.domains],
                migration.started_height,
            )
            self._start_conclude(migration.started_height, running.keyset.to_json())

    def _start_conclude(self, started_height: int, keyset: dict[str, Any]) -> None:
        current = self._current
        if current is not None and not current.task.done():
            if current.started_height == started_height and current.keyset == keyset:
                return
            current.task.cancel()
        task = asyncio.create_task(self._conclude(keyset), name="migration-conclude")
        self._current = _Concluding(started_height, keyset, task, time.monotonic())

    # -- conclude -----------------------------------------------------------------------------

    async def _conclude(self, keyset: dict[str, Any]) -> None:
        """Call ``conclude_node_migration`` until a fresh state shows it concluded or gone.

        An included call can still fail (a newer migration replaced ours, a resharing
        started), and a refused one may have been beaten by our own earlier call. Backoff is
        bounded; the loop ends with the migration, not with a count."""
        backoff = Backoff(self._policy, uniform=self._uniform)
        started = time.monotonic()
        attempt = 0
        while True:
            try:
                state = await self._read_state()
            except LedgerError as exc:
                log.warning("cannot read the contract state to conclude (%s); retrying", exc.code)
                await self._pause(backoff.next_delay())
                continue
            progress = migration_progress(state, self._account, self._tls, self._signer, keyset)
            if progress is ConclusionProgress.CONCLUDED:
                self._metrics.migrations_concluded.inc()
                log.info(
                    "migration concluded account=%s calls=%d seconds=%.3f (since the import)",
                    self._account,
                    attempt,
                    time.monotonic() - started,
                )
                self._on_settled()
                return
            if progress is ConclusionProgress.GONE:
                async with self._import_lock:
                    # A newer import waiting for the lock cancels us before it stores.
                    if not await self._kept(state):
                        await asyncio.to_thread(
                            self._discard,
                            "the migration to this node was cancelled or replaced, or the "
                            "keyset moved on",
                        )
                self._on_settled()
                return
            problem = await self._held_shares_problem(state)
            if problem is not None:
                # Never conclude without the shares: the contract would list a participant
                # that holds nothing. The coordinator's next state decides what they are.
                log.error("not concluding the migration: %s", problem)
                self._on_settled()
                return
            attempt += 1
            try:
                attested = await self._evidence(state)
                await self._call("conclude_node_migration", {"keyset": keyset, **attested})
            except ContractCallFailed as exc:
                log.info(
                    "conclude_node_migration not applied (call %d): %s: %s; re-reading",
                    attempt,
                    exc.code,
                    exc.message,
                )
            except LedgerError as exc:
                level = logging.WARNING if attempt % 10 == 1 else logging.DEBUG
                log.log(
                    level,
                    "conclude_node_migration failed (call %d): %s: %s; retrying",
                    attempt,
                    exc.code,
                    exc.message,
                )
            else:
                continue  # included: the next read shows the outcome
            await self._pause(backoff.next_delay())

    async def _held_shares_problem(self, state: ContractState) -> str | None:
        """Why the shares we hold cannot conclude the open migration in ``state``, or None."""
        running = state.protocol
        if not isinstance(running, Running):
            return f"the contract is {running.name}, not Running"
        shares = await asyncio.to_thread(self._held.recovered, running)
        problem = recovered_shares_problem(state, self._account, self._tls, self._signer, shares)
        return None if problem is None else f"the stored shares do not fit: {problem[1]}"

    async def _pause(self, delay: float) -> None:
        """Sleep ``delay`` seconds, or less if the contract state changed meanwhile (a
        cancelled migration's shares then go at once, not after the backoff)."""
        self._contract_moved.clear()
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(delay):
                await self._contract_moved.wait()

    def _discard(self, reason: str) -> None:
        """Delete shares imported for a migration that can no longer conclude (never those
        of a node that took part: decommissioning handles that)."""
        if self._standing.participated_id() is not None:
            return
        self._held.discard_imported(reason)

    # -- after a restart, and before a wipe ---------------------------------------------------

    async def settle_held_shares(self) -> None:
        """Not a participant, yet holding shares: they were imported for a migration to us.

        If that migration is still open for the keyset in force (we restarted between the
        import and the conclusion), conclude with them; otherwise delete them. Decided on a
        fresh read under the import lock, never on the state being applied: that one may
        predate an import that just happened."""
        if self.busy():
            return
        if not await asyncio.to_thread(self._held.holds_anything):
            return
        async with self._import_lock:
            if self._concluding():
                return
            try:
                state = await self._read_state()
            except LedgerError as exc:
                log.info("cannot read the contract state (%s); held shares kept for now", exc.code)
                return
            decision = self._standing.peek(state)
            if decision.role is Role.PARTICIPANT or decision.wipe:
                return  # the next refresh applies that state
            running = state.protocol
            migration = migration_to_me(state, self._account, self._tls)
            reason = "no migration to this node is open any more"
            if migration is not None and isinstance(running, Running):
                shares = await asyncio.to_thread(self._held.recovered, running)
                problem = recovered_shares_problem(
                    state, self._account, self._tls, self._signer, shares
                )
                if problem is None:
                    log.info("stored shares match the open migration to this node; concluding it")
                    self._start_conclude(migration.started_height, running.keyset.to_json())
                    return
                reason = f"stored shares unusable for the open migration: {problem[1]}"
            if await self._kept(state):
                return
            await asyncio.to_thread(self._discard, reason)

    async def _kept(self, state: ContractState) -> bool:
        """Whether a warm standby keeps the shares it holds (they fit ``state``)."""
        if self._keep_held is None:
            return False
        return await asyncio.to_thread(self._keep_held, state)

    async def hold(
        self, running: Running, participant_id: int, shares: list[RecoveredShare]
    ) -> None:
        """A warm standby's import (checked by the caller against a fresh state): store the
        shares under the import lock, so no settling or wipe runs meanwhile."""
        async with self._import_lock:
            await asyncio.to_thread(self._held.store_recovered, running, participant_id, shares)
            await asyncio.to_thread(self._held.delete_obsolete, running)

    @contextlib.asynccontextmanager
    async def paused(self) -> AsyncIterator[None]:
        """No import in progress and no conclusion running while the body runs (a wipe):
        the conclusion is cancelled, and waited for, first."""
        async with self._import_lock:
            current = self._current
            if current is not None and not current.task.done():
                current.task.cancel()
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await current.task
            yield

    # -- status -------------------------------------------------------------------------------

    def status(self, state: ContractState | None) -> dict[str, Any] | None:
        """The migration to this node, while one is open or being concluded."""
        migration = migration_to_me(state, self._account, self._tls) if state is not None else None
        current = self._current
        if current is not None and not current.task.done():
            return {
                "started_height": current.started_height,
                "phase": "concluding",
                "epoch": int(current.keyset["epoch"]),
            }
        if migration is None:
            return None
        return {
            "started_height": migration.started_height,
            "phase": "waiting_for_shares",
            "epoch": None,
        }
