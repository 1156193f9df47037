"""Pieces the session-based protocols (dkg, reshare) share: deadlines, collecting one message
per participant, and aborting a session so that the others stop waiting at once."""

from __future__ import annotations

import asyncio
import hashlib
import logging
from collections.abc import Awaitable, Callable, Iterable, Mapping
from typing import TypeVar

from quorumkeep.crypto.errors import CheaterDetected, CryptoError
from quorumkeep.node.messages import Message, SessionAbort
from quorumkeep.node.protocols.errors import (
    InvalidSessionParameters,
    ParticipantMisbehaved,
    ProtocolError,
    ProtocolTimeout,
    SessionAborted,
)
from quorumkeep.node.sessions import Session

log = logging.getLogger("quorumkeep.node.protocols")

M = TypeVar("M", bound=Message)
T = TypeVar("T")


class Deadline:
    """One time budget for a whole protocol run."""

    def __init__(self, timeout: float) -> None:
        if not timeout > 0:
            raise InvalidSessionParameters("timeout must be positive")
        self._loop = asyncio.get_running_loop()
        self.at = self._loop.time() + timeout

    def remaining(self) -> float:
        return max(0.0, self.at - self._loop.time())


def tagged_hash(tag: bytes, *parts: bytes) -> bytes:
    """SHA-256(tag ‖ 0x00 ‖ parts...): the hashes participants echo to each other."""
    return hashlib.sha256(tag + b"\x00" + b"".join(parts)).digest()


def id8(identifier: int) -> bytes:
    return identifier.to_bytes(8, "big")


def check_participants(ids: Iterable[int], what: str) -> list[int]:
    out = list(ids)
    for i in out:
        if isinstance(i, bool) or not isinstance(i, int) or not 1 <= i < 2**63:
            raise InvalidSessionParameters(f"{what}: participant ids are integers in [1, 2^63)")
    if len(set(out)) != len(out):
        raise InvalidSessionParameters(f"{what}: duplicate participant ids")
    return sorted(out)


def named(exc: CryptoError) -> ProtocolError:
    """A crypto error raised while handling peers' data, as a protocol error."""
    if isinstance(exc, CheaterDetected):
        return ParticipantMisbehaved(exc.culprit, exc.reason)
    return InvalidSessionParameters(str(exc))


def _from_abort(sender: int, message: SessionAbort) -> ProtocolError:
    if message.culprit is not None:
        error: ProtocolError = ParticipantMisbehaved(
            message.culprit, message.reason, reported_by=sender
        )
    else:
        error = SessionAborted(sender, message.reason)
    error.from_peer = True
    return error


async def collect(
    session: Session,
    senders: Iterable[int],
    expect: type[M],
    deadline: Deadline,
    stage: str,
    check: Callable[[int, M], None] | None = None,
) -> dict[int, M]:
    """One ``expect`` message from each of ``senders``; an abort from any participant of
    the session ends it. Further messages of that type (duplicates, or from participants not
    asked) are dropped. ``check`` runs on each message as it arrives, so a bad one ends the
    stage at once instead of after everyone else's."""
    wanted = set(senders)
    received: dict[int, M] = {}
    while wanted - set(received):
        missing = wanted - set(received)
        try:
            sender, message = await session.recv(
                None, deadline.remaining(), expect=(expect, SessionAbort)
            )
        except TimeoutError:
            raise ProtocolTimeout(stage, missing) from None
        if isinstance(message, SessionAbort):
            raise _from_abort(sender, message)
        if sender in missing:
            assert isinstance(message, expect)
            if check is not None:
                check(sender, message)
            received[sender] = message
        else:
            log.debug("%r: dropped an extra %s from participant %s", session, message.TYPE, sender)
    return received


async def receive_one(
    session: Session, sender: int, expect: type[M], deadline: Deadline, stage: str
) -> M:
    return (await collect(session, [sender], expect, deadline, stage))[sender]


async def broadcast(
    session: Session, to: Iterable[int], message: Message, deadline: Deadline, stage: str
) -> None:
    """Send to all of ``to``; waiting for connections up to the deadline; all must be reached."""
    targets = frozenset(to)
    reached = await session.broadcast(targets, message, wait=deadline.remaining())
    if reached != targets:
        raise ProtocolTimeout(f"{stage} (not connected)", targets - reached)


async def send_each(
    session: Session, messages: Mapping[int, Message], deadline: Deadline, stage: str
) -> None:
    """Send a different message to each participant; all must be reached."""

    async def one(to: int, message: Message) -> bool:
        try:
            await session.send(to, message, wait=deadline.remaining())
        except ProtocolError:
            raise
        except Exception:
            return False
        return True

    results = await asyncio.gather(*(one(to, m) for to, m in messages.items()))
    missing = [to for to, ok in zip(messages, results, strict=True) if not ok]
    if missing:
        raise ProtocolTimeout(f"{stage} (not connected)", missing)


async def with_abort(session: Session, others: Iterable[int], run: Awaitable[T]) -> T:
    """Await ``run``; if it fails here (not because of a peer's abort), tell the others."""
    try:
        return await run
    except ProtocolError as exc:
        if not exc.from_peer:
            culprit = exc.culprit if isinstance(exc, ParticipantMisbehaved) else None
            abort = SessionAbort(session.session_id, culprit, str(exc))
            try:
                await session.broadcast(others, abort)
            except Exception:  # best effort: they will time out instead
                log.debug("could not send the abort of %r", session)
        raise
