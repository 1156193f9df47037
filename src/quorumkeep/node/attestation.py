"""The node's attestation: quotes bound to its keys, re-attesting, and whom to refuse.

Pure rules (tested without processes) decide; ``NodeAttestation`` acts on them:

* ``reattest_reason`` — the contract knows our TLS key (as a participant, candidate or
  migration destination) but holds no attestation for it, or one with less than
  ``REFRESH_FRACTION`` of its validity left: submit a fresh quote. With the default 7-day
  validity a node re-attests every 42 hours, days before its attestation could lapse.
  A node also attests once after every start, so a restarted (upgraded) node's record
  shows the code it runs now.
* ``marked_peers`` — participants the contract marked (attestation lapsed, measurement
  removed): ``usable_peers`` leaves them out of the peer set the node's participant
  follower (node/participants.py) gives the mesh, so their connections are refused;
  ``marked_departing`` names those a resharing removes, left out of its sessions.
* ``verification_due`` — some participant's attestation has lapsed (by our clock) but is
  not marked yet, or a mark is stale: call ``verify_attestations`` (anyone may).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable, Mapping
from typing import Any

from quorumkeep.attest.binding import Role, report_data
from quorumkeep.contract.attestation import participant_problem, record_problem
from quorumkeep.contract.attestation_state import AttestationRecord
from quorumkeep.contract.state import ContractState, Participants, Resharing
from quorumkeep.daemon.attestation import AttestationUnavailable, QuoteSource
from quorumkeep.daemon.errors import error_code
from quorumkeep.node.mesh_peers import PeerInfo

log = logging.getLogger("quorumkeep.node.attestation")

REFRESH_FRACTION = 0.75
"""Re-attest once less than this fraction of the validity is left."""
VERIFY_INTERVAL = 60.0
"""Seconds between two ``verify_attestations`` calls of this node."""

Call = Callable[[str, dict[str, Any]], Awaitable[Any]]
Evidence = Callable[[ContractState | None], Awaitable[dict[str, Any]]]
"""``{"attestation": …}`` to merge into a call that carries one, or ``{}``."""


async def no_evidence(state: ContractState | None) -> dict[str, Any]:
    """The :data:`Evidence` of a node that does not attest."""
    return {}


def known_signer(state: ContractState, account: str, tls_key: bytes) -> bool:
    """The contract lists ``account`` with ``tls_key``: participant, candidate or
    migration destination (what ``submit_attestation`` accepts)."""
    infos = []
    serving = state.serving()
    if serving is not None:
        infos += list(serving.parameters.members)
    if isinstance(state.protocol, Resharing):
        infos += list(state.protocol.parameters.members)
    candidate = state.candidates.get(account)
    if candidate is not None:
        infos.append(candidate)
    if any(i.account == account and i.tls_public_key == tls_key for i in infos):
        return True
    migration = state.migrations.get(account)
    return migration is not None and migration.destination.tls_public_key == tls_key


def my_record(state: ContractState, tls_key: bytes) -> AttestationRecord | None:
    att = state.attestation
    return None if att is None else att.records.get(tls_key)


def reattest_reason(state: ContractState, account: str, tls_key: bytes, now: int) -> str | None:
    """Why this node should submit a fresh attestation now, or None."""
    att = state.attestation
    if att is None or not known_signer(state, account, tls_key):
        return None
    record = att.records.get(tls_key)
    if record is None:
        return "the contract holds no attestation of this node"
    if record.account != account:
        return "the contract's attestation of this TLS key names another account"
    left = record.expires_at - now
    if left < att.validity_seconds * REFRESH_FRACTION:
        return f"the attestation expires in {left} s"
    return None


def marked_peers(state: ContractState) -> frozenset[str]:
    att = state.attestation
    return frozenset() if att is None else frozenset(att.marked)


def marked_departing(state: ContractState, old: Participants, new: Participants) -> list[int]:
    """Ids of old holders the contract marked that leave in this resharing: the resharing
    goes on without them (their connections are refused)."""
    marked = marked_peers(state)
    return [
        m.participant_id for m in old.members if m.account in marked and new.get(m.account) is None
    ]


def usable_peers(
    state: ContractState, peers: Mapping[int, PeerInfo], me: int | None
) -> dict[int, PeerInfo]:
    """``peers`` without marked participants (our own entry stays)."""
    marked = marked_peers(state)
    return {pid: p for pid, p in peers.items() if pid == me or p.account not in marked}


def verification_due(state: ContractState, now: int) -> bool:
    att = state.attestation
    serving = state.serving()
    if att is None or serving is None:
        return False
    if set(att.marked) - serving.parameters.accounts:
        return True  # a mark outlived its participant (reshared out): clear it
    for m in serving.parameters.members:
        failing = participant_problem(att, m, now) is not None
        if failing != (m.account in att.marked):
            return True
    return False


def attestation_summary(state: ContractState | None, tls_key: bytes, now: int) -> dict[str, Any]:
    """This node's attestation as /status and the metrics show it."""
    if state is None or state.attestation is None:
        return {"enforced": False}
    att = state.attestation
    record = att.records.get(tls_key)
    return {
        "enforced": True,
        "insecure_dev_attestation": att.dev_allowed,
        "kind": None if record is None else record.kind,
        "tcb_status": None if record is None else record.tcb_status,
        "measurement_id": None if record is None else record.measurement.measurement_id,
        "expires_at": None if record is None else record.expires_at,
        "expires_in": None if record is None else record.expires_at - now,
        "problem": record_problem(att, record, "node", now),
        "marked": sorted(att.marked),
    }


class NodeAttestation:
    """Produces this node's evidence and keeps its attestation fresh in the contract."""

    def __init__(
        self,
        source: QuoteSource | None,
        *,
        account: str,
        tls_public_key: bytes,
        signer_public_key: bytes,
        call: Call,
        on_status: Callable[[dict[str, Any]], None] = lambda _: None,
        clock: Callable[[], float] = time.time,
        interval: float = 15.0,
    ) -> None:
        self.source = source
        self.account = account
        self.tls_public_key = tls_public_key
        self.signer_public_key = signer_public_key
        self._call = call
        self._on_status = on_status
        self._clock = clock
        self.interval = interval
        self._state: ContractState | None = None
        self._wake = asyncio.Event()
        self._last_verify = float("-inf")
        self._warned = False
        self._attested = False

    def now(self) -> int:
        return int(self._clock())

    async def evidence(self) -> dict[str, Any] | None:
        if self.source is None:
            return None
        rd = report_data(Role.NODE, self.tls_public_key, self.signer_public_key)
        return await self.source.evidence(rd)

    async def call_fields(self, state: ContractState | None) -> dict[str, Any]:
        """``{"attestation": …}`` for a call that carries one, when the contract wants it."""
        if state is None or state.attestation is None or self.source is None:
            return {}
        try:
            evidence = await self.evidence()
        except AttestationUnavailable as exc:
            log.error("no attestation for the call: %s", exc)
            return {}
        return {} if evidence is None else {"attestation": evidence}

    def observe(self, state: ContractState) -> None:
        insecure = state.attestation is not None and state.attestation.dev_allowed
        if insecure and not self._warned:
            self._warned = True
            log.warning(
                "INSECURE: the contract accepts development attestation (quotes signed by a "
                "development platform key, no TEE); never hold real keys in this network"
            )
        self._state = state
        self._on_status(self.status())
        self._wake.set()

    def status(self) -> dict[str, Any]:
        return attestation_summary(self._state, self.tls_public_key, self.now())

    async def run(self) -> None:
        """Re-attest and trigger verification as the rules say, until cancelled."""
        if self.source is None:
            return
        while True:
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(self.interval):
                    await self._wake.wait()
            self._wake.clear()
            state = self._state
            if state is None:
                continue
            await self._step(state)
            self._on_status(self.status())

    async def _step(self, state: ContractState) -> None:
        now = self.now()
        reason = reattest_reason(state, self.account, self.tls_public_key, now)
        if (
            reason is None
            and not self._attested
            and state.attestation is not None
            and known_signer(state, self.account, self.tls_public_key)
        ):
            # Once per process start: the code running now may not be what was attested.
            reason = "first attestation of this process"
        if reason is not None:
            try:
                evidence = await self.evidence()
                args = {
                    "role": "node",
                    "tls_public_key": self.tls_public_key.hex(),
                    "attestation": evidence,
                }
                await self._call("submit_attestation", args)
                self._attested = True
                log.info("attested (%s)", reason)
            except AttestationUnavailable as exc:
                log.error("cannot attest: %s", exc)
            except Exception as exc:  # a refusal or an unreachable ledger: retry later
                log.warning(
                    "submit_attestation failed: %s: %s",
                    error_code(exc),
                    getattr(exc, "message", ""),
                )
        if verification_due(state, now) and time.monotonic() - self._last_verify > VERIFY_INTERVAL:
            self._last_verify = time.monotonic()
            try:
                outcome = await self._call("verify_attestations", {})
                log.info("verify_attestations: %s", getattr(outcome, "value", outcome))
            except Exception as exc:
                log.warning("verify_attestations failed: %s", error_code(exc))
