"""Onboarding: this node's standing in the contract, and what follows from it.

The role comes from :func:`~quorumkeep.node.decisions.onboarding_decision` (the onboarding
table, docs/node.md) on every state read. Two facts it needs survive restarts in the
keystore's metadata: the participant id this node took part as (:data:`META_PARTICIPATED`)
and whether a migration replaced it and it wiped itself (:data:`META_DECOMMISSIONED`, the
stand-by flag: set by :meth:`NodeStanding.decommission`, cleared when the node takes part
again — a migration back to it — or its account leaves the participants).

Decommissioning wipes every share and presignature (backward secrecy); the coordinator first
stops everything that could write one (protocol runs, the migration being concluded, the
presignature pool). A node that takes no part submits its participant info as a candidate
once per process (again only if the ledger could not take the call).
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Callable
from typing import Any

from quorumkeep.contract.state import ContractState
from quorumkeep.ledger.errors import ContractCallFailed, LedgerError
from quorumkeep.node.attestation import Evidence, no_evidence
from quorumkeep.node.calls import ContractCall
from quorumkeep.node.decisions import Onboarding, onboarding_decision
from quorumkeep.node.held_keys import HeldKeys
from quorumkeep.node.metrics import NodeMetrics
from quorumkeep.node.participants import Metadata

log = logging.getLogger("quorumkeep.node.coordinator")
node_log = logging.getLogger("quorumkeep.node")

META_PARTICIPATED = "participated_as"
META_DECOMMISSIONED = "decommissioned"
"""Set when a migration replaced this node and it wiped itself; cleared when it takes part
again (a migration back to it) or its account leaves the participants."""


class Decommissioned(Exception):
    """This node was replaced in the contract and wiped its shares; raised by ``run`` only
    with ``exit_on_decommission`` (otherwise the node stands by)."""


class NodeStanding:
    """The node's role, participant id and stand-by flag; decommissioning; candidacy."""

    def __init__(
        self,
        *,
        account: str,
        tls_public_key: bytes,
        participant_info: Callable[[], dict[str, str]],
        metadata: Metadata,
        held: HeldKeys,
        call: ContractCall,
        metrics: NodeMetrics,
        exit_on_decommission: bool,
        evidence: Evidence = no_evidence,
    ) -> None:
        self._account = account
        self._tls_public_key = tls_public_key
        self._evidence = evidence
        self._info = participant_info
        self._metadata = metadata
        self._held = held
        self._call = call
        self._metrics = metrics
        self._exit_on_decommission = exit_on_decommission
        self.decision: Onboarding | None = None
        """The last decision (None before the first state)."""
        self._participated: int | None = None
        self._standby: bool | None = None
        self._submitted_info: str | None = None

    # -- the persisted facts --------------------------------------------------------------------

    def participated_id(self) -> int | None:
        """The participant id we took part as (kept in the keystore: survives restarts)."""
        if self._participated is None:
            value = self._metadata.get_metadata(META_PARTICIPATED)
            self._participated = int(value) if value is not None and value.isdigit() else 0
        return self._participated or None

    def is_standby(self) -> bool:
        """Whether we were replaced by a migration and wiped (kept in the keystore)."""
        if self._standby is None:
            self._standby = self._metadata.get_metadata(META_DECOMMISSIONED) is not None
        return self._standby

    def _set_standby(self, value: bool) -> None:
        if value:
            self._metadata.set_metadata(META_DECOMMISSIONED, "1")
        elif self.is_standby():
            self._metadata.delete_metadata(META_DECOMMISSIONED)
        self._standby = value

    # -- decisions --------------------------------------------------------------------------

    def decide(self, state: ContractState) -> Onboarding:
        """The onboarding table's row for ``state`` (logged when the role changes)."""
        decision = self.peek(state)
        if self.decision is None or self.decision.role != decision.role:
            log.info(
                "role=%s participant_id=%s protocol_state=%s reason=%s",
                decision.role.value,
                decision.participant_id,
                state.protocol.name,
                decision.reason,
            )
        self.decision = decision
        return decision

    def peek(self, state: ContractState) -> Onboarding:
        """The decision for ``state`` without adopting it (a fresh read taken elsewhere)."""
        return onboarding_decision(
            state,
            self._account,
            self._tls_public_key,
            participated=self.participated_id() is not None,
            decommissioned=self.is_standby(),
        )

    def took_part(self, me: int) -> None:
        """We take part as ``me``: remember it, and we stand by no longer."""
        if self.participated_id() != me:
            self._metadata.set_metadata(META_PARTICIPATED, str(me))
            self._participated = me
        if self.is_standby():
            self._set_standby(False)

    def left(self) -> None:
        """Our account is no participant at all: nothing to stand by for."""
        if self.is_standby():
            self._set_standby(False)

    async def decommission(self, reason: str) -> None:
        """Wipe every share and presignature and stand by (or raise :class:`Decommissioned`).
        The caller has stopped everything that could still write one."""
        await asyncio.to_thread(self._held.wipe)
        self._metadata.delete_metadata(META_PARTICIPATED)
        self._participated = 0
        self._set_standby(True)
        self._metrics.decommissions.inc()
        if self._exit_on_decommission:
            raise Decommissioned(reason)
        node_log.warning(
            "decommissioned: %s; key shares and presignatures wiped, standing by for a "
            "migration back to this node",
            reason,
        )

    # -- candidacy --------------------------------------------------------------------------

    async def offer_info(self, state: ContractState) -> None:
        """Not a participant: log our info, and submit it as a candidate (once per process,
        unless the ledger could not take the call: then at the next change)."""
        info = self._info()
        text = json.dumps(info, sort_keys=True)
        if state.serving() is None or self._submitted_info == text:
            return
        candidate = state.candidates.get(self._account)
        if candidate is not None and candidate.tls_public_key == self._tls_public_key:
            self._submitted_info = text
            return
        log.info("not a participant; participant info to register: %s", text)
        try:
            attested = await self._evidence(state)
            await self._call("submit_participant_info", {**info, **attested})
        except ContractCallFailed as exc:
            self._submitted_info = text
            log.info("participant info not accepted as a candidate (%s: %s)", exc.code, exc.message)
        except LedgerError as exc:
            log.info("could not submit our participant info (%s: %s)", exc.code, exc.message)
        else:
            self._submitted_info = text
            log.info("submitted our participant info as a candidate")

    # -- status -----------------------------------------------------------------------------

    def status(self) -> dict[str, Any]:
        return {"role": self.decision.role.value if self.decision else "starting"}
