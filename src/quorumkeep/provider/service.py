"""``quorumkeep provider run``: the key-provider daemon (docs/key-provider-protocol.md).

It answers four endpoints over HTTP — deposit, challenge, release, status — and, every
``poll_interval``, deletes the pieces the contract no longer names (a newer deal of the
account, or a deal of the same epoch that does not name this provider at that index).
Every decision is taken from the contract at the moment of the request: who the node is
(its signer key as listed), which deal is current, which release key may ask.

Its HTTP endpoints and the process around it are :mod:`quorumkeep.provider.process`. Log
lines name accounts, epochs and indices, never a piece, a key or the
passphrase; every release is logged (the audit trail of who got which piece when).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import time
from collections import OrderedDict, deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from quorumkeep.crypto.group import RandomBytes
from quorumkeep.daemon.logs import RefusalLog
from quorumkeep.daemon.service_identity import (
    ServiceIdentity,
)
from quorumkeep.ledger.client import AsyncLedgerClient
from quorumkeep.ledger.errors import LedgerError
from quorumkeep.provider.errors import ProviderError
from quorumkeep.provider.status import status_document
from quorumkeep.provider.store import MAX_UNCONFIRMED, HeldPiece, PieceStore
from quorumkeep.wire.key_provider import (
    CHALLENGE_LIFETIME_MS,
    NONCE_SIZE,
    TIMESTAMP_WINDOW_MS,
    Deposit,
    KeyProviderError,
    ReleaseRequest,
    check_deposit_signature,
    check_keys,
    check_release_attestation,
    check_release_signature,
    open_deposit,
    read_account,
    seal_release,
)

log = logging.getLogger("quorumkeep.provider")

MAX_BODY_BYTES = 16 * 1024
CHALLENGES_PER_ACCOUNT = 8
MAX_CHALLENGES = 4096
DEPOSITS_PER_MINUTE = 30


class RateLimit:
    """At most ``limit`` events per key in any sliding ``window`` seconds (bounded keys)."""

    def __init__(self, limit: int, window: float = 60.0, max_keys: int = 4096) -> None:
        self.limit = limit
        self.window = window
        self.max_keys = max_keys
        self._events: OrderedDict[str, deque[float]] = OrderedDict()

    def allow(self, key: str, now: float) -> bool:
        events = self._events.get(key)
        if events is None:
            if len(self._events) >= self.max_keys:
                self._events.popitem(last=False)
            events = self._events[key] = deque()
        while events and events[0] <= now - self.window:
            events.popleft()
        if len(events) >= self.limit:
            return False
        events.append(now)
        self._events.move_to_end(key)
        return True


@dataclass(frozen=True)
class ContractView:
    """The ``key_provider_deal`` view of one account, parsed."""

    deal: dict[str, Any] | None
    standing: str | None
    node_keys: dict[str, str]

    @property
    def epoch(self) -> int | None:
        return None if self.deal is None else int(self.deal["epoch"])

    def index_of(self, provider: str) -> int | None:
        if self.deal is None:
            return None
        for holder in self.deal["holders"]:
            if holder["provider"] == provider:
                return int(holder["index"])
        return None

    def matches(self, held: HeldPiece, provider: str) -> bool:
        """Whether the current deal is exactly the one ``held`` belongs to, at our index."""
        deal = self.deal
        return (
            deal is not None
            and int(deal["epoch"]) == held.epoch
            and int(deal["threshold"]) == held.threshold
            and [bytes.fromhex(c) for c in deal["commitment"]] == list(held.commitment)
            and bytes.fromhex(deal["signer_public_key"]) == held.signer_public_key
            and bytes.fromhex(deal["release_public_key"]) == held.release_public_key
            and self.index_of(provider) == held.index
        )


class ProviderService:
    def __init__(
        self,
        *,
        identity: ServiceIdentity,
        store: PieceStore,
        ledger: AsyncLedgerClient,
        releases_per_minute: int = 12,
        require_attestation: bool = False,
        clock: Callable[[], float] = time.time,
        random_bytes: RandomBytes = os.urandom,
    ) -> None:
        self.identity = identity
        self.account = identity.account
        self.store = store
        self.ledger = ledger
        self.clock = clock
        self.random_bytes = random_bytes
        self.require_attestation = require_attestation
        self._challenges: OrderedDict[bytes, tuple[str, int]] = OrderedDict()
        self._release_limit = RateLimit(releases_per_minute)
        self._deposit_limit = RateLimit(DEPOSITS_PER_MINUTE)
        self._challenge_limit = RateLimit(4 * releases_per_minute)
        self.refusals = RefusalLog(log)
        self.counts: dict[str, int] = {"deposits": 0, "releases": 0, "deletions": 0}
        self.refused: dict[str, int] = {}
        self.registered: bool | None = None

    @property
    def identity_key(self) -> bytes:
        return self.identity.signer.public_key

    def _now_ms(self) -> int:
        return int(self.clock() * 1000)

    async def _view(self, account: str) -> ContractView:
        try:
            body = await self.ledger.view("key_provider_deal", {"account": account})
        except LedgerError as exc:
            raise KeyProviderError(
                "contract_unavailable", f"the contract cannot be read ({exc.code})"
            ) from None
        return ContractView(body["deal"], body["standing"], dict(body["node_keys"]))

    def refuse(self, exc: KeyProviderError, what: str) -> None:
        self.refused[exc.code] = self.refused.get(exc.code, 0) + 1
        self.refusals.log(
            logging.WARNING, exc.code, "%s refused (%s): %s", what, exc.code, exc.message
        )

    # --- deposit ----------------------------------------------------------------------

    async def deposit(self, body: Any) -> dict[str, Any]:
        deposit = Deposit.from_json(body)
        now_ms = self._now_ms()
        if abs(deposit.timestamp_ms - now_ms) > TIMESTAMP_WINDOW_MS:
            raise KeyProviderError("stale_timestamp", "the deposit's timestamp is out of window")
        check_deposit_signature(deposit, self.identity_key)
        if not self._deposit_limit.allow(deposit.account, self.clock()):
            raise KeyProviderError("rate_limited", "too many deposits for this account")
        view = await self._view(deposit.account)
        held = HeldPiece(
            deposit.account,
            deposit.epoch,
            deposit.index,
            deposit.threshold,
            deposit.commitment,
            deposit.signer_public_key,
            deposit.release_public_key,
            now_ms,
        )
        current = view.epoch
        if current is not None and deposit.epoch < current:
            raise KeyProviderError(
                "stale_epoch", f"{deposit.account}'s deal is at epoch {current} already"
            )
        if (
            current is not None
            and deposit.epoch == current
            and not view.matches(held, self.account)
        ):
            raise KeyProviderError(
                "not_holder", "the recorded deal of this epoch does not name this piece here"
            )
        piece = open_deposit(deposit, self.identity.encryption, self.identity_key)
        try:
            stored = await asyncio.to_thread(self.store.put, held, piece)
        except ProviderError as exc:
            raise KeyProviderError(exc.code, exc.message) from None
        await asyncio.to_thread(self._trim_unconfirmed, deposit.account, view)
        if stored:
            self.counts["deposits"] += 1
            log.info(
                "deposit stored account=%s epoch=%d index=%d (%s)",
                deposit.account,
                deposit.epoch,
                deposit.index,
                "recorded" if current == deposit.epoch else "not yet recorded",
            )
        return {
            "account": deposit.account,
            "epoch": deposit.epoch,
            "index": deposit.index,
            "stored": stored,
        }

    def _trim_unconfirmed(self, account: str, view: ContractView) -> None:
        """Keep the newest MAX_UNCONFIRMED deposits of ``account`` no recorded deal names."""
        pending = [
            h
            for h in self.store.held()
            if h.account == account
            and not view.matches(h, self.account)
            and h.epoch > (view.epoch or 0)
        ]
        pending.sort(key=lambda h: h.stored_at_ms)
        for old in pending[:-MAX_UNCONFIRMED]:
            if self.store.delete(old):
                self.counts["deletions"] += 1

    # --- challenge and release -------------------------------------------------------

    def challenge(self, body: Any) -> dict[str, Any]:
        account = read_account(check_keys(body, ["account"]))
        now_ms = self._now_ms()
        for nonce, (_, expires) in list(self._challenges.items()):
            if expires < now_ms:
                del self._challenges[nonce]
        if not self._challenge_limit.allow(account, self.clock()):
            raise KeyProviderError("rate_limited", "too many challenges for this account")
        mine = [n for n, (a, _) in self._challenges.items() if a == account]
        for old in mine[: max(0, len(mine) - CHALLENGES_PER_ACCOUNT + 1)]:
            del self._challenges[old]
        if len(self._challenges) >= MAX_CHALLENGES:
            raise KeyProviderError("rate_limited", "too many open challenges; retry shortly")
        nonce = self.random_bytes(NONCE_SIZE)
        expires = now_ms + CHALLENGE_LIFETIME_MS
        self._challenges[nonce] = (account, expires)
        return {"account": account, "nonce": nonce.hex(), "expires_at_ms": expires}

    async def release(self, body: Any) -> dict[str, Any]:
        request = ReleaseRequest.from_json(body)
        issued = self._challenges.get(request.nonce)
        if issued is None or issued[0] != request.account or issued[1] < self._now_ms():
            raise KeyProviderError(
                "replay", "the nonce is not an open challenge of this provider for this account"
            )
        check_release_signature(request, self.identity_key)
        del self._challenges[request.nonce]  # single use, from here on whatever happens
        if not self._release_limit.allow(request.account, self.clock()):
            raise KeyProviderError("rate_limited", "too many releases for this account")
        if self.require_attestation and request.attestation is None:
            raise KeyProviderError(
                "attestation_required", "this provider releases only against an attestation"
            )
        measurement = None
        if request.attestation is not None:
            try:
                policy = await self.ledger.view("attestation_policy")
            except LedgerError as exc:
                raise KeyProviderError(
                    "contract_unavailable", f"the contract cannot be read ({exc.code})"
                ) from None
            measurement = check_release_attestation(request, policy, int(self.clock()))
        view = await self._view(request.account)
        if view.deal is None:
            raise KeyProviderError(
                "unknown_account", f"the contract records no key providers for {request.account}"
            )
        if view.standing is None:
            raise KeyProviderError(
                "not_participant",
                f"the contract lists no participant, candidate or migration destination of "
                f"{request.account} with the signer key that recorded its deal",
            )
        if bytes.fromhex(view.deal["release_public_key"]) != request.release_public_key:
            raise KeyProviderError(
                "wrong_release_key", "the recorded deal names another release key"
            )
        if view.epoch != request.epoch:
            raise KeyProviderError(
                "stale_epoch", f"{request.account}'s recorded deal is at epoch {view.epoch}"
            )
        if view.index_of(self.account) is None:
            raise KeyProviderError("not_holder", "the recorded deal does not name this provider")
        signer = bytes.fromhex(view.deal["signer_public_key"])
        try:
            found = await asyncio.to_thread(self.store.get, request.account, request.epoch, signer)
        except ProviderError as exc:
            raise KeyProviderError("unknown_account", exc.message) from None
        if found is None or not view.matches(found[0], self.account):
            raise KeyProviderError(
                "unknown_account",
                f"no piece of {request.account} epoch {request.epoch} is held here",
            )
        release = seal_release(request, found[1], self.identity.encryption, self.random_bytes)
        self.counts["releases"] += 1
        log.info(
            "released account=%s epoch=%d index=%d to requester key %s (%s, %s)",
            request.account,
            request.epoch,
            release.index,
            request.requester_public_key.hex()[:16],
            view.standing,
            "no attestation" if measurement is None else f"attested measurement {measurement}",
        )
        return release.to_json()

    # --- housekeeping ----------------------------------------------------------------

    async def collect(self) -> int:
        """Delete the pieces the contract no longer names; returns how many."""
        deleted = 0
        held = await asyncio.to_thread(self.store.held)
        views: dict[str, ContractView] = {}
        for piece in held:
            if piece.account not in views:
                views[piece.account] = await self._view(piece.account)
            view = views[piece.account]
            current = view.epoch
            if current is None or piece.epoch > current:
                continue  # not recorded yet: kept (bounded by _trim_unconfirmed)
            if piece.epoch == current and view.matches(piece, self.account):
                continue
            if await asyncio.to_thread(self.store.delete, piece):
                deleted += 1
                self.counts["deletions"] += 1
                log.info(
                    "deleted piece account=%s epoch=%d index=%d (contract deal: epoch %d%s)",
                    piece.account,
                    piece.epoch,
                    piece.index,
                    current,
                    "" if view.index_of(self.account) else " without this provider",
                )
        try:
            providers = await self.ledger.view("key_providers")
            mine = providers.get(self.account)
            self.registered = mine is not None and (
                bytes.fromhex(mine["identity_public_key"]) == self.identity_key
            )
        except LedgerError:
            pass
        return deleted

    def status(self) -> dict[str, Any]:
        return status_document(
            self.account, self.identity_key, self.store, self.registered, self.counts, self.refused
        )

    async def run(self, stop: asyncio.Event, poll_interval: float) -> None:
        while not stop.is_set():
            try:
                await self.collect()
            except KeyProviderError as exc:
                log.warning("contract check failed (%s): %s", exc.code, exc.message)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), poll_interval)
