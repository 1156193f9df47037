"""Protocol sessions: one run of one protocol, its mailbox and its way out.

A *session* is one run of one protocol (a DKG for one domain and attempt, one resharing, one
presignature batch, one signature), named by ``(channel, session id)``; the channel is the
protocol (messages.CHANNELS) and the session id travels inside every message. A
:class:`Session` is opened by the router (session_router.py), which delivers it the messages
of its id: its queue takes them only from its participants (when it names them) and at most
``max_session_queue`` per sender. ``recv`` hands them out by sender and type; ``send`` and
``broadcast`` refuse a message of another session or channel.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterable
from types import TracebackType
from typing import TYPE_CHECKING

from quorumkeep.node.mesh_peers import PeerNotConnected
from quorumkeep.node.messages import Message, encode

if TYPE_CHECKING:
    from quorumkeep.node.session_router import SessionRouter


class SessionError(Exception):
    """Misuse of the router (a session opened twice, a message for another session)."""

    code = "session_error"


class Session:
    """One protocol run's mailbox and its way out to the other participants."""

    def __init__(
        self,
        router: SessionRouter,
        channel: str,
        session_id: str,
        participants: frozenset[int] | None = None,
    ) -> None:
        self.router = router
        self.channel = channel
        self.session_id = session_id
        self.participants = participants
        self._queue: list[tuple[int, Message]] = []
        self._per_sender: dict[int, int] = {}
        self._waiter: asyncio.Future[None] | None = None
        self.closed = False

    def __repr__(self) -> str:
        return f"Session({self.channel}/{self.session_id})"

    def __enter__(self) -> Session:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.close()

    # -- receiving

    def put(self, sender: int, message: Message) -> bool:
        """Queue a message the router delivers; False if refused (an outsider, queue full)."""
        if self.participants is not None and sender not in self.participants:
            return False
        count = self._per_sender.get(sender, 0)
        if count >= self.router.max_session_queue:
            return False
        self._per_sender[sender] = count + 1
        self._queue.append((sender, message))
        waiter = self._waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)
        return True

    def _take(
        self,
        from_participant: int | Iterable[int] | None,
        expect: tuple[type[Message], ...] | None,
    ) -> tuple[int, Message] | None:
        senders: set[int] | None
        if from_participant is None:
            senders = None
        elif isinstance(from_participant, int):
            senders = {from_participant}
        else:
            senders = set(from_participant)
        for index, (sender, message) in enumerate(self._queue):
            if senders is not None and sender not in senders:
                continue
            if expect is not None and not isinstance(message, expect):
                continue
            del self._queue[index]
            self._per_sender[sender] -= 1
            return sender, message
        return None

    async def recv(
        self,
        from_participant: int | Iterable[int] | None = None,
        timeout: float = 10.0,
        *,
        expect: tuple[type[Message], ...] | type[Message] | None = None,
    ) -> tuple[int, Message]:
        """The oldest queued message from ``from_participant`` (one id, a set, or anyone) of
        a type in ``expect`` (default: any); waits up to ``timeout`` seconds, then raises
        ``TimeoutError``. Messages that do not match stay queued, in order."""
        if isinstance(expect, type):
            expect = (expect,)
        loop = asyncio.get_running_loop()
        deadline = loop.time() + max(0.0, timeout)
        while True:
            if self.closed:
                raise SessionError(f"{self!r} is closed")
            found = self._take(from_participant, expect)
            if found is not None:
                return found
            remaining = deadline - loop.time()
            if remaining <= 0:
                raise TimeoutError(f"{self!r}: nothing received within {timeout:.3g}s")
            waiter = loop.create_future()
            self._waiter = waiter
            try:
                async with asyncio.timeout(remaining):
                    await waiter
            except TimeoutError:
                pass
            finally:
                self._waiter = None

    # -- sending

    def _payload(self, message: Message) -> bytes:
        if message.session != self.session_id:
            raise SessionError(f"message for session {message.session!r} sent on {self!r}")
        if self.channel not in message.CHANNELS:
            raise SessionError(f"{message.TYPE} does not belong on channel {self.channel}")
        return encode(message)

    async def send(self, to: int, message: Message, *, wait: float = 0.0) -> None:
        """Send to one participant; ``PeerNotConnected`` if it is not reachable in ``wait`` s."""
        await self.router.mesh.send(to, self.channel, self._payload(message), wait=wait)

    async def broadcast(
        self, to: Iterable[int], message: Message, *, wait: float = 0.0
    ) -> frozenset[int]:
        """Send the same message to each of ``to`` (encoded once); return who it reached."""
        return await self.router.send_many(self.channel, to, self._payload(message), wait=wait)

    def close(self) -> None:
        """Stop receiving: queued messages are dropped, later ones too."""
        if not self.closed:
            self.closed = True
            self._queue.clear()
            self._per_sender.clear()
            self.router.session_closed(self)
            waiter = self._waiter
            if waiter is not None and not waiter.done():
                waiter.set_result(None)


__all__ = [
    "PeerNotConnected",
    "Session",
    "SessionError",
]
