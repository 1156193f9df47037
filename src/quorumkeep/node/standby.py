"""Warm standby: a node that holds its primary's shares without taking part.

A node with ``warm_standby = true`` (node.toml) for an account whose participant runs on
another node (the *primary*) keeps the shares the primary pushes as wrapped exports
(docs/wrapped-export.md), so that a fail-over migration to it concludes from what it holds,
without a round trip to the backup service. Rules (docs/node.md, "Warm standby"):

- An export is taken (:meth:`WarmStandby.import_export`) when it is sealed to our wrapping
  key for our account, signed by the TLS key the contract lists for the account's
  participant, of the keyset in force (epoch and hash), and every share reproduces that
  participant's verifying share; all checked against a fresh read of the contract before
  anything is stored (:func:`standby_import_problem`,
  :func:`~quorumkeep.node.decisions.keyset_shares_problem`).
- A node that is no warm standby takes an export only while a migration to it is open: the
  shares then go through :meth:`MigrationImports.import_shares` and conclude it.
- The standby keeps its shares while they fit the keyset in force (``keep``); shares of a
  keyset that moved on are deleted (a fresh export replaces them).
- Freshness: the epoch held beside the epoch in force, in ``/status`` and the metrics.

The pure rule comes first; the component below it owns the standby's import record.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import Any

from prometheus_client import Counter, Gauge

from quorumkeep.contract.state import ContractState, Running
from quorumkeep.crypto.seal import KxKeyPair
from quorumkeep.ledger.errors import LedgerError
from quorumkeep.node.calls import StateReader
from quorumkeep.node.decisions import RecoveredShare, keyset_shares_problem, migration_to_me
from quorumkeep.node.held_keys import HeldKeys
from quorumkeep.node.metrics import NodeMetrics
from quorumkeep.node.migration import MigrationImports
from quorumkeep.wire.backup import BackupProtocolError
from quorumkeep.wire.wrapped import WrappedExport, WrappedExportError, open_export

log = logging.getLogger("quorumkeep.node.standby")


def standby_import_problem(
    state: ContractState,
    account: str,
    tls_public_key: bytes,
    export: WrappedExport,
    *,
    warm_standby: bool,
) -> tuple[str, str] | None:
    """Why this node may not take ``export`` in ``state`` (code, message), or None.

    The shares themselves are checked after opening (``keyset_shares_problem``)."""
    running = state.protocol
    if not isinstance(running, Running):
        return "wrong_keyset", f"the contract is {running.name}: exports are taken while Running"
    info = running.parameters.get(account)
    if info is None:
        return "unknown_source", f"{account} is not a participant"
    if info.tls_public_key == tls_public_key:
        return "is_participant", f"this node is {account}'s participant and holds its own shares"
    if export.source_tls_public_key != info.tls_public_key:
        return (
            "unknown_source",
            f"the export is signed by {export.source_tls_public_key.hex()[:16]}…, not by the "
            f"TLS key the contract lists for {account}",
        )
    if export.participant_id != info.participant_id:
        return (
            "shares_mismatch",
            f"the export is participant {export.participant_id}'s, {account} is participant "
            f"{info.participant_id}",
        )
    if not warm_standby and migration_to_me(state, account, tls_public_key) is None:
        return (
            "not_standby",
            "this node is no warm standby and no migration to it is open: it would not keep "
            "the shares",
        )
    if export.keyset.epoch != running.epoch:
        return (
            "wrong_epoch",
            f"the export is of epoch {export.keyset.epoch}, the contract is at {running.epoch}",
        )
    if export.keyset.hash != running.keyset.hash:
        return "wrong_keyset", "the export is of another keyset than the contract's"
    return None


def held_fits(
    state: ContractState, account: str, tls_public_key: bytes, shares: list[RecoveredShare]
) -> bool:
    """Whether ``shares`` are the serving keyset's, of the participant another node of our
    account runs (a warm standby keeps exactly those)."""
    serving = state.serving()
    if serving is None:
        return False
    info = serving.parameters.get(account)
    if info is None or info.tls_public_key == tls_public_key:
        return False
    return keyset_shares_problem(serving.keyset, info.participant_id, shares) is None


class WarmStandby:
    """Takes wrapped exports for this node; a warm standby keeps them and reports freshness."""

    def __init__(
        self,
        *,
        account: str,
        tls_public_key: bytes,
        wrapping_key: KxKeyPair,
        enabled: bool,
        read_state: StateReader,
        held: HeldKeys,
        migration: MigrationImports,
        metrics: NodeMetrics,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._account = account
        self._tls = tls_public_key
        self._wrapping = wrapping_key
        self.enabled = enabled
        self._read_state = read_state
        self._held = held
        self._migration = migration
        self._clock = clock
        self._last_import: tuple[int, float] | None = None
        r = metrics.registry
        self._imports = Counter(
            "quorumkeep_standby_imports",
            "Wrapped exports this node verified against the contract and stored.",
            registry=r,
        )
        self._held_epoch = Gauge(
            "quorumkeep_standby_held_epoch",
            "Warm standby: epoch of the complete keyset of shares held (-1: none).",
            registry=r,
        )
        self._fresh = Gauge(
            "quorumkeep_standby_fresh",
            "Warm standby: 1 if it holds every share of the epoch in force, else 0.",
            registry=r,
        )
        self._held_epoch.set(-1)

    @property
    def wrapping_public_key(self) -> bytes:
        return self._wrapping.public_key

    # -- import -------------------------------------------------------------------------------

    async def import_export(self, export: WrappedExport) -> dict[str, Any]:
        """Open, check against a fresh state, store (or hand to the open migration).
        ``WrappedExportError`` with nothing stored if anything does not fit."""
        shares = open_export(export, self._wrapping, self._account)
        try:
            state = await self._read_state()
        except LedgerError as exc:
            raise WrappedExportError(
                "contract_unavailable", f"cannot read the contract ({exc.code})"
            ) from None
        problem = standby_import_problem(
            state, self._account, self._tls, export, warm_standby=self.enabled
        )
        recovered = [
            RecoveredShare(s.domain_id, s.epoch, s.participant_id, s.signing_share) for s in shares
        ]
        running = state.protocol
        if problem is None and isinstance(running, Running):
            problem = keyset_shares_problem(running.keyset, export.participant_id, recovered)
        if problem is not None:
            raise WrappedExportError(*problem)  # logged (rate-limited) by the endpoint
        assert isinstance(running, Running)
        concluding = migration_to_me(state, self._account, self._tls) is not None
        if concluding:
            try:
                await self._migration.import_shares(recovered)
            except BackupProtocolError as exc:
                code = exc.code if exc.code in ("wrong_epoch", "shares_mismatch") else "not_standby"
                raise WrappedExportError(code, exc.message) from None
        else:
            await self._migration.hold(running, export.participant_id, recovered)
        self._imports.inc()
        self._last_import = (running.epoch, self._clock())
        log.info(
            "wrapped export imported account=%s participant_id=%d epoch=%d domains=%s "
            "source=%s concluding=%s",
            self._account,
            export.participant_id,
            running.epoch,
            list(running.keyset.domain_ids),
            export.source_tls_public_key.hex()[:16],
            concluding,
        )
        return {
            "account": self._account,
            "participant_id": export.participant_id,
            "epoch": running.epoch,
            "domains": list(running.keyset.domain_ids),
            "migration": "concluding" if concluding else None,
        }

    # -- keeping ------------------------------------------------------------------------------

    def keep(self, state: ContractState) -> bool:
        """``MigrationImports``' ``keep_held``: a warm standby keeps shares that fit."""
        if not self.enabled:
            return False
        serving = state.serving()
        if serving is None:
            return False
        return held_fits(state, self._account, self._tls, self._held.recovered(serving))

    # -- freshness ----------------------------------------------------------------------------

    def _held_epoch_of(self, state: ContractState | None) -> int | None:
        """The newest epoch of which every domain of the serving keyset has a share held."""
        keysets = self._held.keysets()
        serving = state.serving() if state is not None else None
        wanted = set(serving.keyset.domain_ids) if serving is not None else set()
        complete = [e for e, domains in keysets.items() if wanted and wanted <= set(domains)]
        if complete:
            return max(complete)
        return max(keysets) if keysets else None

    def status(self, state: ContractState | None, role: str) -> dict[str, Any] | None:
        """``/status``'s ``warm_standby`` (None unless this node is one)."""
        if not self.enabled:
            return None
        serving = state.serving() if state is not None else None
        current = serving.epoch if serving is not None else None
        held = self._held_epoch_of(state)
        fresh = held is not None and held == current
        self._held_epoch.set(-1 if held is None else held)
        self._fresh.set(1 if fresh else 0)
        last = self._last_import
        return {
            "active": role == "participant",
            "held_epoch": held,
            "current_epoch": current,
            "fresh": fresh,
            "last_import_epoch": last[0] if last else None,
            "last_import_age_seconds": round(self._clock() - last[1], 3) if last else None,
        }
