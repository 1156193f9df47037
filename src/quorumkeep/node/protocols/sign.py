"""FROST round two with presignatures: the leader's side and the member's side.

Leader (``SigningService.lead``), for one pending request of the contract::

    claim one of our own presignatures whose members are all connected (and not excluded)
    → sign_request (request, commitment list) to each member      } at the same time
    → take our own nonces out of the keystore (durable delete)      }
    → our share; collect the members' sign_share (or refusal) with a timeout
    → frost.aggregate with the derived key PK' = PK + ε·G and tweak ε (the signature is
      checked first; the shares only when it fails, to name the culprit)

A share that fails verification names its sender (``CheaterDetected``): it is logged,
excluded for this request, and the leader retries with another presignature. A member that
refuses or stays silent is avoided for the rest of the request when another set exists.

Member (``SignMember`` in sign_member.py, the base of ``SigningService``), for each
sign_request: the checks in order, each refused with a stable code, are in its module doc; the
nonce is taken only after the contract's ``is_pending`` and before anything else. What both
sides share (the derived key PK', a presignature's nonces, the counters) is in sign_shares.py.

A nonce is used at most once: it leaves the keystore only through ``take_presignature``,
which commits the deletion first, so neither a retry nor a crash can use it again. The
leader's own nonce is taken while the members work; it is used only after its deletion
committed, and a presignature that failed anywhere is never tried again.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

from quorumkeep.crypto import frost
from quorumkeep.crypto.errors import CheaterDetected, CryptoError
from quorumkeep.crypto.group import Element
from quorumkeep.crypto.keys import KeyPackage, PublicKeyPackage
from quorumkeep.node.keystore import Keystore
from quorumkeep.node.keystore_records import PresignatureInfo
from quorumkeep.node.messages import CHANNEL_SIGN, Refusal, SignShare, SignShareRequest
from quorumkeep.node.protocols.errors import NoPresignature, SigningFailed
from quorumkeep.node.protocols.presign import PresignaturePool
from quorumkeep.node.protocols.sign_member import IsPending, SignMember
from quorumkeep.node.protocols.sign_shares import derived_key, presignature_nonces
from quorumkeep.node.session_router import SessionRouter

log = logging.getLogger("quorumkeep.node.protocols.sign")


@dataclass(frozen=True)
class SignJob:
    """One request to lead. ``key``/``public`` default to the pool's key for (domain, epoch)."""

    request_id: int
    domain_id: int
    epoch: int
    payload: bytes
    path: str
    caller: str
    key: KeyPackage | None = field(default=None, repr=False)
    public: PublicKeyPackage | None = None


class _AttemptFailed(Exception):
    """This presignature did not work out; ``members`` are to be avoided for the request."""

    def __init__(self, reason: str, members: frozenset[int] = frozenset()) -> None:
        super().__init__(reason)
        self.members = members


def _commitment_list(info: PresignatureInfo) -> tuple[frost.CommitmentListEntry, ...]:
    return tuple((p, h, b) for p, (h, b) in sorted(info.commitments.items()))


class SigningService(SignMember):
    """Leads signatures with the pool's presignatures and serves other leaders' requests."""

    def __init__(
        self,
        router: SessionRouter,
        keystore: Keystore,
        pool: PresignaturePool,
        me: int | None,
        *,
        is_pending: IsPending,
        share_timeout: float = 3.0,
        max_attempts: int = 5,
        presignature_wait: float = 2.0,
        max_member_tasks: int = 1024,
        max_checks_per_leader: int = 32,
    ) -> None:
        super().__init__(
            router,
            keystore,
            pool,
            me,
            is_pending=is_pending,
            max_member_tasks=max_member_tasks,
            max_checks_per_leader=max_checks_per_leader,
        )
        self.share_timeout = share_timeout
        self.max_attempts = max_attempts
        self.presignature_wait = presignature_wait
        self._keys: dict[tuple[int, int], tuple[KeyPackage, PublicKeyPackage]] = {}
        router.serve(CHANNEL_SIGN, self._serve)

    def configure(
        self,
        *,
        me: int | None,
        epoch: int,
        keys: Mapping[int, tuple[KeyPackage, PublicKeyPackage]],
    ) -> None:
        """The keys (domain id → key material) of the epoch in force, for jobs without
        their own; the member side uses the pool's keys."""
        self.me = me
        self._keys = {(domain_id, epoch): pair for domain_id, pair in keys.items()}

    async def close(self) -> None:
        """Stop serving other leaders (bounded); leads in progress are the caller's tasks."""
        self.router.unserve(CHANNEL_SIGN, self._serve)
        tasks = list(self._member_tasks)
        for task in tasks:
            task.cancel()
        if tasks:
            await asyncio.wait(tasks, timeout=5)

    # -- leader

    def _key_for(self, job: SignJob) -> tuple[KeyPackage, PublicKeyPackage]:
        if job.key is not None and job.public is not None:
            return job.key, job.public
        pair = self._keys.get((job.domain_id, job.epoch)) or self.pool.key(job.domain_id, job.epoch)
        if pair is None:
            raise SigningFailed(f"no key share for domain {job.domain_id} epoch {job.epoch}")
        return pair

    async def lead(self, job: SignJob, *, timeout: float = 10.0) -> bytes:
        """Produce the signature for ``job`` (64 bytes, valid under the derived key).

        Raises ``NoPresignature`` when no usable presignature turns up in time and
        ``SigningFailed`` when every attempt failed (cheaters, if any, are listed).
        """
        me = self.me
        if me is None:
            raise SigningFailed("this node is not a participant")
        key, public = self._key_for(job)
        derived, tweak = derived_key(public.group_public_key, job.caller, job.path)
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        cheaters: set[int] = set()
        avoid: set[int] = set()
        last = "no attempt made"
        for _ in range(self.max_attempts):
            remaining = deadline - loop.time()
            if remaining <= 0:
                break
            info = await self._claim(job, me, cheaters, avoid, remaining)
            if info is None:
                if cheaters or avoid:
                    break
                raise NoPresignature(
                    f"no presignature for domain {job.domain_id} epoch {job.epoch} "
                    "with all members connected"
                )
            self.stats.attempts += 1
            try:
                signature = await self._attempt(
                    job, me, info, key, public, derived, tweak, deadline
                )
            except CheaterDetected as exc:
                cheaters.add(exc.culprit)
                self.stats.cheaters_named += 1
                last = f"participant {exc.culprit}: {exc.reason}"
                log.warning(
                    "request %s: participant %s sent a bad signature share (%s); excluded, "
                    "retrying without it",
                    job.request_id,
                    exc.culprit,
                    exc.reason,
                )
                continue
            except _AttemptFailed as exc:
                avoid |= exc.members
                last = str(exc)
                log.info("request %s: presignature %s failed: %s", job.request_id, info.id, exc)
                continue
            self.stats.led += 1
            return signature
        self.stats.failed += 1
        raise SigningFailed(f"request {job.request_id}: {last}", cheaters=cheaters)

    async def _claim(
        self, job: SignJob, me: int, cheaters: set[int], avoid: set[int], remaining: float
    ) -> PresignatureInfo | None:
        connected = self.router.connected_peers()

        def usable(excluded: set[int]) -> Callable[[tuple[int, ...]], bool]:
            def check(participants: tuple[int, ...]) -> bool:
                return all(p == me or (p in connected and p not in excluded) for p in participants)

            return check

        info = self.pool.claim(job.domain_id, job.epoch, usable(cheaters | avoid))
        if info is None and avoid:  # a refusal may have been passing: never a cheater, though
            info = self.pool.claim(job.domain_id, job.epoch, usable(cheaters))
            if info is not None:
                avoid.clear()
        if info is None:
            wait = min(remaining, self.presignature_wait)
            info = await self.pool.claim_wait(job.domain_id, job.epoch, usable(cheaters), wait)
        return info

    async def _attempt(
        self,
        job: SignJob,
        me: int,
        info: PresignatureInfo,
        key: KeyPackage,
        public: PublicKeyPackage,
        derived: Element,
        tweak: bytes,
        deadline: float,
    ) -> bytes:
        members = frozenset(p for p in info.participants if p != me)
        commitment_list = _commitment_list(info)
        with self.router.open(CHANNEL_SIGN, info.id, members) as session:
            request = SignShareRequest(
                info.id,
                job.request_id,
                job.domain_id,
                job.epoch,
                job.payload,
                job.path,
                job.caller,
                commitment_list,
            )
            sent, taken = await asyncio.gather(
                session.broadcast(members, request),
                self._taker.take(info.id),
                return_exceptions=True,
            )
            if isinstance(taken, BaseException):
                if isinstance(taken, asyncio.CancelledError):
                    raise taken
                raise _AttemptFailed(f"own nonces unavailable: {type(taken).__name__}")
            if isinstance(sent, BaseException):
                raise sent
            if sent != members:
                raise _AttemptFailed("members not reachable", members - sent)
            try:
                own = frost.sign(
                    me,
                    key.signing_share,
                    derived,
                    presignature_nonces(taken, me),
                    job.payload,
                    commitment_list,
                )
            except CryptoError as exc:
                raise _AttemptFailed(f"own share: {exc}") from None
            del taken
            shares = {me: own}
            loop = asyncio.get_running_loop()
            share_deadline = min(deadline, loop.time() + self.share_timeout)
            while len(shares) <= len(members):
                missing = members - set(shares)
                try:
                    sender, message = await session.recv(
                        missing, share_deadline - loop.time(), expect=(SignShare, Refusal)
                    )
                except TimeoutError:
                    raise _AttemptFailed(f"no share from {sorted(missing)}", missing) from None
                if isinstance(message, Refusal):
                    raise _AttemptFailed(
                        f"participant {sender} refused: {message.code} ({message.reason})",
                        frozenset({sender}),
                    )
                assert isinstance(message, SignShare)
                shares[sender] = message.share
        try:
            return frost.aggregate(
                commitment_list,
                job.payload,
                derived,
                shares,
                verifying_shares=public.verifying_shares,
                tweak=tweak,
                verify_shares_first=False,  # shares are checked only to name a culprit
            )
        except CheaterDetected:
            raise
        except CryptoError as exc:
            raise _AttemptFailed(f"aggregation: {exc}") from None
