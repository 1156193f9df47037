"""The member's side of signing: other leaders' sign requests (protocols/sign.py).

``SignMember`` answers each sign_request (formats: docs/node-protocols.md) in a task of its
own (at most ``max_member_tasks``, past that ``busy``), refusing with a stable code at the
first failed check:

    the presignature id names the sender as its owner; we hold the key (domain, epoch) and
    the sender is one of its holders; we are in the commitment list;
    ``is_pending(request_id, payload, path, domain_id, caller)`` — the coordinator's check
    against the contract, so a leader cannot get anything signed that nobody asked for (at
    most ``max_checks_per_leader`` of one leader at once, past that ``busy``);
    take the presignature (deleted durably *before* anything else happens with it);
    the stored commitment list is exactly the request's (and the domain and epoch match);
    frost.sign under PK' → sign_share.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable

from quorumkeep.crypto import frost
from quorumkeep.crypto.errors import CryptoError
from quorumkeep.node.keystore import Keystore
from quorumkeep.node.keystore_errors import InvalidRecord, KeystoreError, RecordNotFound
from quorumkeep.node.messages import (
    CHANNEL_SIGN,
    Message,
    Refusal,
    SignShare,
    SignShareRequest,
)
from quorumkeep.node.protocols.nonces import PresignatureTaker
from quorumkeep.node.protocols.presign import PresignaturePool
from quorumkeep.node.protocols.presign_batches import presignature_owner
from quorumkeep.node.protocols.sign_shares import SigningStats, derived_key, presignature_nonces
from quorumkeep.node.session_router import SessionRouter

log = logging.getLogger("quorumkeep.node.protocols.sign")

IsPending = Callable[[int, bytes, str, int, str], Awaitable[bool]]
"""(request_id, payload, path, domain_id, caller) → whether the contract has exactly this
request pending. May wait (bounded) for the node's view of the contract to catch up."""


class SignMember:
    """Answers other leaders' sign requests with the pool's keys (module doc). The base of
    ``SigningService``, which serves the channel with ``_serve``; ``_taker`` takes the nonces
    of both sides (protocols/nonces.py)."""

    def __init__(
        self,
        router: SessionRouter,
        keystore: Keystore,
        pool: PresignaturePool,
        me: int | None,
        *,
        is_pending: IsPending,
        max_member_tasks: int,
        max_checks_per_leader: int,
    ) -> None:
        self.router = router
        self.keystore = keystore
        self.pool = pool
        self.me = me
        self.is_pending = is_pending
        self.max_member_tasks = max_member_tasks
        self.max_checks_per_leader = max_checks_per_leader
        self._checks: dict[int, int] = {}
        self._member_tasks: set[asyncio.Task[None]] = set()
        self._taker = PresignatureTaker(keystore)
        self.stats = SigningStats()

    def _serve(self, sender: int, message: Message) -> None:
        if not isinstance(message, SignShareRequest):
            return  # a late reply to a session we closed
        if len(self._member_tasks) >= self.max_member_tasks:
            self._spawn(self._reply(sender, Refusal(message.session, "busy", "too many requests")))
            return
        self._spawn(self._serve_request(sender, message))

    def _spawn(self, work: Awaitable[None]) -> None:
        async def run() -> None:
            await work

        task = asyncio.create_task(run())
        self._member_tasks.add(task)
        task.add_done_callback(self._member_tasks.discard)

    async def _reply(self, to: int, message: Message) -> None:
        if isinstance(message, Refusal):
            self.stats.refusals += 1
        await self.router.answer(to, CHANNEL_SIGN, message, "sign request for presignature")

    async def _serve_request(self, sender: int, request: SignShareRequest) -> None:
        started = time.monotonic()
        reply = await self.share_for(sender, request)
        if isinstance(reply, SignShare):
            self.stats.shares_served += 1
            log.debug(
                "share for request %s in %.1f ms",
                request.request_id,
                1e3 * (time.monotonic() - started),
            )
        await self._reply(sender, reply)

    async def share_for(self, sender: int, request: SignShareRequest) -> SignShare | Refusal:
        """The member's checks and share for one request (module doc); never raises."""
        sid = request.session

        def refuse(code: str, reason: str) -> Refusal:
            return Refusal(sid, code, reason)

        me = self.me
        if me is None:
            return refuse("not_participant", "this node is not a participant")
        if presignature_owner(sid) != sender:
            return refuse("not_owner", "the presignature is not the sender's")
        pair = self.pool.key(request.domain_id, request.epoch)
        if pair is None:
            return refuse(
                "unknown_key", f"no key for domain {request.domain_id} epoch {request.epoch}"
            )
        key, public = pair
        if sender not in public.verifying_shares:
            return refuse("not_participant", f"participant {sender} holds no share of this key")
        if all(entry[0] != me for entry in request.commitments):
            return refuse("invalid_request", "we are not in the commitment list")
        # A check of a request newer than our state waits for the event stream and may then
        # read the ledger: one leader may not hold more than max_checks_per_leader of them.
        if self._checks.get(sender, 0) >= self.max_checks_per_leader:
            return refuse("busy", "too many requests of this leader being checked")
        self._checks[sender] = self._checks.get(sender, 0) + 1
        try:
            pending = await self.is_pending(
                request.request_id, request.payload, request.path, request.domain_id, request.caller
            )
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            log.warning("is_pending failed for request %s: %s", request.request_id, exc)
            return refuse("pending_check_failed", "could not check the request on the contract")
        finally:
            left = self._checks[sender] - 1
            if left:
                self._checks[sender] = left
            else:
                del self._checks[sender]
        if not pending:
            return refuse("not_pending", f"request {request.request_id} is not pending as sent")
        try:
            record = await self._taker.take(sid)
        except RecordNotFound:
            return refuse("unknown_presignature", "no such presignature (used or purged)")
        except InvalidRecord:
            return refuse("invalid_request", "bad presignature id")
        except KeystoreError as exc:
            return refuse("presignature_unusable", exc.code)
        # the nonce is deleted for good now; from here on, any failure just burns it
        stored = {p: (h, b) for p, (h, b) in record.commitments.items()}
        if (
            record.domain_id != request.domain_id
            or record.epoch != request.epoch
            or stored != {p: (h, b) for p, h, b in request.commitments}
        ):
            return refuse("commitments_mismatch", "the commitment list is not the stored one")
        derived, _ = derived_key(public.group_public_key, request.caller, request.path)
        try:
            share = frost.sign(
                me,
                key.signing_share,
                derived,
                presignature_nonces(record, me),
                request.payload,
                request.commitments,
            )
        except CryptoError as exc:
            return refuse("invalid_request", str(exc)[:200])
        return SignShare(sid, share)
