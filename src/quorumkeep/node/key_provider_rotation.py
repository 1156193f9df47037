"""Rotation of a running node's key providers: when a holder leaves, re-deal to a new set.

A holder has *left* when its provider is no longer registered (``deregister_key_provider``)
or its operator is neither a participant nor a prospective one (it was reshared out). The
running node still holds the storage secret ``s`` in memory (it combined it at start), so
it deals fresh pieces of the **same** ``s`` — the storage key and everything sealed under it
stay as they are, nothing is re-encrypted — to a new holder set, deposits them, records the
new deal (epoch + 1) with its signer key, and the providers of the old deal delete their
pieces when they see it (provider/service.py).

:func:`rotation_plan` is the pure rule (tested without processes); :class:`Rotation` is the
loop that follows the contract and carries a plan out, with bounded backoff on failures.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from quorumkeep.crypto.group import RandomBytes
from quorumkeep.crypto.storage_split import MAX_HOLDERS, StorageSecret
from quorumkeep.ledger.client import AccountSigner, AsyncLedgerClient
from quorumkeep.ledger.errors import LedgerError
from quorumkeep.net.retry import Backoff, BackoffPolicy
from quorumkeep.node.key_provider_client import ProviderClient, ProviderEndpoint, read_providers
from quorumkeep.node.key_provider_deal import ProviderOutcome, deal_to_providers
from quorumkeep.wire.backup.statements import Signer
from quorumkeep.wire.key_provider import KeyProviderError

log = logging.getLogger("quorumkeep.node.key_providers")

POLL_INTERVAL = 2.0
BACKOFF = BackoffPolicy(initial=0.5, maximum=30.0, jitter=0.3)


@dataclass(frozen=True)
class RotationPlan:
    """Why the current deal must go, and the holders of the next one (in index order)."""

    epoch: int
    threshold: int
    left: tuple[str, ...]
    holders: tuple[str, ...]


def rotation_plan(
    deal: Mapping[str, Any] | None,
    registered: Sequence[str],
    eligible: set[str],
    own_account: str,
) -> RotationPlan | None:
    """The next deal if a holder of ``deal`` left, else None.

    ``registered``: provider accounts registered now; ``eligible``: accounts that are
    participants or prospective ones. The new set keeps the holders still there (in their
    order) and fills up to the old size with the other eligible registered providers, in
    account order, never the node's own operator's. None also when fewer than k providers
    would remain: the current deal is then the best there is (and the event is logged).
    """
    if deal is None:
        return None
    holders = [str(h["provider"]) for h in deal["holders"]]
    usable = {p for p in registered if p in eligible and p != own_account}
    left = tuple(p for p in holders if p not in usable)
    if not left:
        return None
    kept = [p for p in holders if p in usable]
    spare = sorted(usable - set(kept))
    size = min(max(len(holders), int(deal["threshold"])), MAX_HOLDERS)
    new = kept + spare[: max(0, size - len(kept))]
    threshold = int(deal["threshold"])
    if len(new) < threshold:
        return None
    return RotationPlan(int(deal["epoch"]) + 1, threshold, left, tuple(new))


async def eligible_accounts(ledger: AsyncLedgerClient) -> set[str]:
    """Participants (serving and next set) and prospective ones (candidates)."""
    participants = await ledger.view("participants")
    accounts = {p["account"] for p in participants.get("participants", [])}
    following = participants.get("next")
    if following:
        accounts |= {p["account"] for p in following.get("participants", [])}
    accounts |= set(await ledger.view("candidates"))
    return accounts


class Rotation:
    """Follows the contract; re-deals the storage secret when a holder has left."""

    def __init__(
        self,
        *,
        account: str,
        secret: StorageSecret,
        signer: Signer,
        account_signer: AccountSigner,
        release_public_key: bytes,
        ledger: AsyncLedgerClient,
        on_outcome: Callable[[list[ProviderOutcome]], None] | None = None,
        poll_interval: float = POLL_INTERVAL,
        random_bytes: RandomBytes = os.urandom,
    ) -> None:
        self.account = account
        self._secret = secret
        self.signer = signer
        self.account_signer = account_signer
        self.release_public_key = release_public_key
        self.ledger = ledger
        self.on_outcome = on_outcome
        self.poll_interval = poll_interval
        self.random_bytes = random_bytes
        self.rotations = 0
        self.last_problem: str | None = None

    def __repr__(self) -> str:
        return f"Rotation(account={self.account!r})"

    async def check_once(self) -> RotationPlan | None:
        """One look at the contract; carries out and returns a plan if one was due."""
        view = await self.ledger.view("key_provider_deal", {"account": self.account})
        deal = view["deal"]
        if deal is None or deal["signer_public_key"] != self.signer.public_key.hex():
            return None  # not this node's deal (e.g. the operator re-initialized it)
        registered = await read_providers(self.ledger)
        eligible = await eligible_accounts(self.ledger)
        plan = rotation_plan(deal, sorted(registered), eligible, self.account)
        if plan is None:
            return None
        await self.carry_out(plan, registered)
        return plan

    async def carry_out(
        self, plan: RotationPlan, registered: Mapping[str, ProviderEndpoint]
    ) -> None:
        log.warning(
            "key providers left (%s): re-dealing the storage key %d-of-%d to %s (epoch %d)",
            ", ".join(plan.left),
            plan.threshold,
            len(plan.holders),
            ", ".join(plan.holders),
            plan.epoch,
        )
        client = ProviderClient()
        try:
            document = await deal_to_providers(
                client,
                self._secret,
                account=self.account,
                epoch=plan.epoch,
                threshold=plan.threshold,
                holders=[registered[p] for p in plan.holders],
                signer=self.signer,
                release_public_key=self.release_public_key,
                random_bytes=self.random_bytes,
            )
        finally:
            await client.aclose()
        await self.ledger.call(self.account_signer, "record_key_providers", document)
        self.rotations += 1
        if self.on_outcome is not None:
            self.on_outcome([ProviderOutcome(p, i + 1, True) for i, p in enumerate(plan.holders)])
        log.info(
            "storage key re-dealt: epoch %d recorded with %s; the old holders delete theirs",
            plan.epoch,
            ", ".join(plan.holders),
        )

    async def run(self, stop: asyncio.Event) -> None:
        backoff = Backoff(BACKOFF)
        while not stop.is_set():
            wait = self.poll_interval
            try:
                await self.check_once()
                self.last_problem = None
                backoff.reset()
            except (LedgerError, KeyProviderError) as exc:
                self.last_problem = f"{exc.code}: {getattr(exc, 'message', exc)}"
                log.warning("key-provider rotation not done yet (%s); retrying", self.last_problem)
                wait = backoff.next_delay()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), wait)
