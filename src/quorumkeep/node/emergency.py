"""Emergency recovery parts: this node's share, verifiably encrypted to the recovery key.

After every key generation and resharing (the contract Running at a new epoch), and
whenever operators vote a new recovery key for a domain, each participant encrypts its
share of every domain that has a recovery key (``crypto.pve``) and records the part with
`submit_recovery_part`. The contract checks the proof before recording it, so a node can
only add a part that decrypts to its own share.

``parts_due`` is the pure rule (tested without processes); :class:`EmergencyParts` runs the
due jobs in the background, one at a time per (domain, epoch, key), and remembers which
ones are done or refused so a state refresh does not repeat them.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from quorumkeep.contract.recovery import keyset_hash
from quorumkeep.contract.state import ContractState, Running
from quorumkeep.crypto import pve
from quorumkeep.crypto.group import RandomBytes
from quorumkeep.crypto.keys import KeyPackage, PublicKeyPackage
from quorumkeep.ledger.errors import ContractCallFailed, LedgerError
from quorumkeep.node.keystore_errors import KeystoreError
from quorumkeep.node.shares import ShareFormatError

log = logging.getLogger("quorumkeep.node.emergency")

SUBMIT_METHOD = "submit_recovery_part"
DONE_CODES = frozenset({"DuplicateVote"})
"""The contract already holds our part: nothing left to do."""
RETRY_CODES = frozenset({"KeysetMismatch", "ProtocolStateNotRunning"})
"""The contract moved on: the next state decides again."""


@dataclass(frozen=True)
class PartJob:
    """One part to make: this participant's share of ``domain_id`` at ``epoch``."""

    domain_id: int
    epoch: int
    account: str
    participant_id: int
    recovery_key: bytes
    fingerprint: bytes
    verifying_share: bytes
    label: bytes

    @property
    def key(self) -> tuple[str, int, int, str]:
        return ("ers", self.domain_id, self.epoch, self.fingerprint.hex())


def parts_due(state: ContractState, account: str) -> list[PartJob]:
    """Parts the contract lacks from ``account``: Running, a participant, and for each
    domain with a recovery key no part of this epoch recorded under that key."""
    running = state.protocol
    if not isinstance(running, Running):
        return []
    me = running.parameters.get(account)
    if me is None:
        return []
    jobs = []
    for domain in running.keyset.domains:
        key = state.recovery.keys.get(domain.domain_id)
        if key is None:
            continue
        record = state.recovery.epochs.get((domain.domain_id, running.epoch))
        existing = None if record is None else record.parts.get(account)
        if existing is not None and existing.fingerprint == key.fingerprint:
            continue
        digest = keyset_hash(domain, running.epoch, running.parameters.threshold)
        label = pve.Label(domain.domain_id, running.epoch, account, me.participant_id, digest)
        jobs.append(
            PartJob(
                domain.domain_id,
                running.epoch,
                account,
                me.participant_id,
                key.public_key,
                key.fingerprint,
                dict(domain.verifying_shares)[me.participant_id],
                label.encode(),
            )
        )
    return jobs


def make_part(job: PartJob, share: KeyPackage, random_bytes: RandomBytes) -> bytes:
    """The encoded part for ``job`` from our key package (which must be the job's share)."""
    if share.identifier != job.participant_id or share.verifying_share != job.verifying_share:
        raise ValueError("the stored share is not the one the contract names for us")
    key = pve.RecoveryPublicKey.from_der(job.recovery_key)
    if key.fingerprint != job.fingerprint:
        raise ValueError("the recovery key does not match its fingerprint")
    return pve.encrypt(key, share.signing_share, job.label, random_bytes).encode()


LoadShare = Callable[[int, int], tuple[KeyPackage, PublicKeyPackage]]
Call = Callable[[str, dict[str, Any]], Awaitable[Any]]


class EmergencyParts:
    """Makes and submits the due parts in the background (see the module docstring)."""

    def __init__(self, account: str, load_share: LoadShare, call: Call, random_bytes: RandomBytes):
        self._account = account
        self._load_share = load_share
        self._call = call
        self._random_bytes = random_bytes
        self._tasks: dict[tuple[str, int, int, str], asyncio.Task[None]] = {}
        self._finished: set[tuple[str, int, int, str]] = set()

    def update(self, state: ContractState) -> None:
        """Start a job for every due part not running or finished already."""
        for job in parts_due(state, self._account):
            if job.key in self._tasks or job.key in self._finished:
                continue
            self._tasks[job.key] = asyncio.create_task(self._run(job), name=f"ers-{job.key}")

    async def close(self) -> None:
        tasks = list(self._tasks.values())
        for task in tasks:
            task.cancel()
        if tasks:
            await asyncio.wait(tasks, timeout=5)

    async def _run(self, job: PartJob) -> None:
        try:
            finished = await self._submit(job)
            if finished:
                self._finished.add(job.key)
        finally:
            self._tasks.pop(job.key, None)

    async def _submit(self, job: PartJob) -> bool:
        """True once the job needs no retry (recorded, or refused for good)."""
        try:
            share, _ = self._load_share(job.domain_id, job.epoch)
        except (KeystoreError, ShareFormatError) as exc:
            log.info(
                "no share for domain=%d epoch=%d yet (%s)",
                job.domain_id,
                job.epoch,
                type(exc).__name__,
            )
            return False
        try:
            part = await asyncio.to_thread(make_part, job, share, self._random_bytes)
        except ValueError as exc:
            log.error("cannot make recovery part domain=%d: %s", job.domain_id, exc)
            return True
        args = {"domain_id": job.domain_id, "epoch": job.epoch, "part": part.hex()}
        try:
            await self._call(SUBMIT_METHOD, args)
        except ContractCallFailed as exc:
            if exc.code in DONE_CODES:
                return True
            if exc.code in RETRY_CODES:
                return False
            log.error("recovery part refused domain=%d: %s %s", job.domain_id, exc.code, exc)
            return True
        except LedgerError as exc:
            log.warning("recovery part not submitted domain=%d: %s", job.domain_id, exc.code)
            return False
        log.info(
            "recorded recovery part domain=%d epoch=%d (%d bytes)",
            job.domain_id,
            job.epoch,
            len(part),
        )
        return True
