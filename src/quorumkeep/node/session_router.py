"""Routing of protocol messages from the mesh to protocol sessions (sessions.py).

The :class:`SessionRouter` is the mesh's handler for the protocol channels:

- a message for an open session goes to that session's queue;
- a message for a session not open yet goes to the channel's *service* if one is registered
  (``serve``: the member side of presignatures and signing, where the other node starts the
  session), and otherwise into a buffer, delivered when the session is opened — a peer that is
  a few milliseconds ahead of us in a DKG must not lose its round-1 message;
- a message for a session closed recently is dropped;
- a payload that does not decode is dropped with one log line naming the sender.

The buffer is bounded by message count (in total and per sender), by bytes, and by age (a
session that is never opened has its messages dropped after ``buffer_ttl`` seconds), so a peer
cannot exhaust our memory by sending messages for sessions that will never exist. An open
session's queue is bounded per sender too.
"""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import logging
import time
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass, field

from quorumkeep.node.mesh import Mesh
from quorumkeep.node.mesh_frames import MeshError
from quorumkeep.node.messages import CHANNELS, Message, MessageError, Refusal, decode, encode
from quorumkeep.node.messages_fields import check_session_id
from quorumkeep.node.sessions import Session, SessionError

log = logging.getLogger("quorumkeep.node.sessions")

ServiceHandler = Callable[[int, Message], Awaitable[None] | None]
"""Called with (sender, message) for messages on a served channel that no open session takes."""

SessionKey = tuple[str, str]


@dataclass
class RouterStats:
    """Counters for metrics and tests."""

    delivered: int = 0
    buffered: int = 0
    served: int = 0
    malformed: int = 0
    dropped_full: int = 0
    dropped_expired: int = 0
    dropped_closed: int = 0
    dropped_outsider: int = 0


@dataclass
class _Buffered:
    created: float
    entries: list[tuple[int, Message, int]] = field(default_factory=list)


class SessionRouter:
    """The mesh handler for the protocol channels (module doc)."""

    def __init__(
        self,
        mesh: Mesh,
        *,
        max_buffered: int = 2048,
        max_buffered_per_sender: int = 512,
        max_buffered_bytes: int = 32 * 1024 * 1024,
        buffer_ttl: float = 60.0,
        max_session_queue: int = 64,
        closed_memory: int = 8192,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.mesh = mesh
        self.max_buffered = max_buffered
        self.max_buffered_per_sender = max_buffered_per_sender
        self.max_buffered_bytes = max_buffered_bytes
        self.buffer_ttl = buffer_ttl
        self.max_session_queue = max_session_queue
        self._closed_memory = closed_memory
        self._clock = clock
        self._sessions: dict[SessionKey, Session] = {}
        self._services: dict[str, ServiceHandler] = {}
        self._buffer: OrderedDict[SessionKey, _Buffered] = OrderedDict()
        self._buffered_count = 0
        self._buffered_bytes = 0
        self._buffered_by_sender: dict[int, int] = {}
        self._recently_closed: OrderedDict[SessionKey, None] = OrderedDict()
        self._last_warning: dict[tuple[str, int], float] = {}
        self.stats = RouterStats()
        mesh.add_handler(self._on_message)

    @property
    def me(self) -> int | None:
        """This node's participant id in the mesh's current participant set."""
        return self.mesh.my_id

    def connected_peers(self) -> frozenset[int]:
        return self.mesh.connected_peers()

    def close(self) -> None:
        """Detach from the mesh and close every session."""
        with contextlib.suppress(ValueError):
            self.mesh.remove_handler(self._on_message)
        for session in list(self._sessions.values()):
            session.close()
        self._buffer.clear()
        self._buffered_count = self._buffered_bytes = 0
        self._buffered_by_sender.clear()

    # -- sessions and services

    def open(
        self, channel: str, session_id: str, participants: Iterable[int] | None = None
    ) -> Session:
        """Open a session and hand it whatever was buffered for it (in arrival order).

        With ``participants``, messages from anyone else are dropped (buffered ones too).
        """
        if channel not in CHANNELS:
            raise SessionError(f"unknown channel {channel!r}")
        try:
            check_session_id(session_id)
        except MessageError as exc:
            raise SessionError(str(exc)) from None
        key = (channel, session_id)
        if key in self._sessions:
            raise SessionError(f"session {channel}/{session_id} is already open")
        if key in self._recently_closed:
            raise SessionError(f"session {channel}/{session_id} was closed: ids are single-use")
        members = None if participants is None else frozenset(participants)
        session = Session(self, channel, session_id, members)
        self._sessions[key] = session
        self._expire()
        pending = self._buffer.pop(key, None)
        if pending is not None:
            for sender, message, size in pending.entries:
                self._unbuffer(sender, size)
                if session.put(sender, message):
                    self.stats.delivered += 1
        return session

    def serve(self, channel: str, handler: ServiceHandler) -> None:
        """Route messages on ``channel`` that no open session takes to ``handler``.

        The handler runs in the mesh's receive path (in order per peer; an async handler that
        waits delays only that peer); an exception in it is logged and dropped.
        """
        if channel not in CHANNELS:
            raise SessionError(f"unknown channel {channel!r}")
        if channel in self._services:
            raise SessionError(f"channel {channel} already has a service")
        self._services[channel] = handler

    def unserve(self, channel: str, handler: ServiceHandler) -> None:
        """Stop routing ``channel`` to ``handler`` (no-op if another handler serves it)."""
        if self._services.get(channel) == handler:
            del self._services[channel]

    def session_closed(self, session: Session) -> None:
        """Forget a session that closed; its id stays refused (``closed_memory`` ids kept)."""
        key = (session.channel, session.session_id)
        if self._sessions.get(key) is session:
            del self._sessions[key]
            self._recently_closed[key] = None
            while len(self._recently_closed) > self._closed_memory:
                self._recently_closed.popitem(last=False)

    async def send_many(
        self, channel: str, to: Iterable[int], payload: bytes, *, wait: float = 0.0
    ) -> frozenset[int]:
        targets = sorted(set(to))
        if not targets:
            return frozenset()
        if len(targets) == 1:
            try:
                await self.mesh.send(targets[0], channel, payload, wait=wait)
            except MeshError:
                return frozenset()
            return frozenset(targets)
        results = await asyncio.gather(
            *(self.mesh.send(pid, channel, payload, wait=wait) for pid in targets),
            return_exceptions=True,
        )
        for result in results:
            if isinstance(result, BaseException) and not isinstance(result, MeshError):
                raise result
        return frozenset(pid for pid, r in zip(targets, results, strict=True) if r is None)

    # -- receiving

    async def answer(self, to: int, channel: str, message: Message, request: str) -> None:
        """A member's answer ``message`` to participant ``to`` on ``channel``, never raising:
        a refusal is logged naming the ``request`` it refuses (its session follows), and a
        send that fails is logged (the leader's own timeout takes it from there)."""
        if isinstance(message, Refusal):
            log.info(
                "refused %s %s of participant %s: %s (%s)",
                request,
                message.session,
                to,
                message.code,
                message.reason,
            )
        try:
            await self.mesh.send(to, channel, encode(message))
        except Exception as exc:
            log.info("could not answer participant %s: %s", to, type(exc).__name__)

    def _warn(self, kind: str, sender: int, text: str, *args: object) -> None:
        """One warning per (kind, sender) per 10 s: a flooding peer cannot flood the log."""
        now = self._clock()
        key = (kind, sender)
        if now - self._last_warning.get(key, -1e9) >= 10.0:
            self._last_warning[key] = now
            if len(self._last_warning) > 4096:
                self._last_warning.clear()
            log.warning(text, *args)

    def _on_message(self, sender: int, channel: str, payload: bytes) -> Awaitable[None] | None:
        if channel not in CHANNELS:
            return None  # another subsystem's channel
        try:
            message = decode(channel, payload)
        except MessageError as exc:
            self.stats.malformed += 1
            self._warn(
                "malformed",
                sender,
                "dropped a malformed %s message from participant %s: %s",
                channel,
                sender,
                exc,
            )
            return None
        key = (channel, message.session)
        session = self._sessions.get(key)
        if session is not None:
            if session.put(sender, message):
                self.stats.delivered += 1
            elif session.participants is not None and sender not in session.participants:
                self.stats.dropped_outsider += 1
            else:
                self.stats.dropped_full += 1
                self._warn(
                    "queue",
                    sender,
                    "session %s/%s: too many queued messages from participant %s; dropped",
                    channel,
                    message.session,
                    sender,
                )
            return None
        if key in self._recently_closed:  # a late reply, or a duplicate
            self.stats.dropped_closed += 1
            return None
        service = self._services.get(channel)
        if service is not None:
            self.stats.served += 1
            return self._run_service(service, sender, message)
        self._buffer_message(key, sender, message, len(payload))
        return None

    def _run_service(
        self, service: ServiceHandler, sender: int, message: Message
    ) -> Awaitable[None] | None:
        try:
            result = service(sender, message)
        except Exception:
            log.exception(
                "%s service failed on a message from participant %s", message.TYPE, sender
            )
            return None
        if inspect.isawaitable(result):
            return self._await_service(result, sender, message.TYPE)
        return None

    @staticmethod
    async def _await_service(result: Awaitable[None], sender: int, kind: str) -> None:
        try:
            await result
        except asyncio.CancelledError:
            raise
        except Exception:
            log.exception("%s service failed on a message from participant %s", kind, sender)

    # -- buffer

    def _expire(self) -> None:
        now = self._clock()
        while self._buffer:
            key, pending = next(iter(self._buffer.items()))
            if now - pending.created < self.buffer_ttl:
                break
            del self._buffer[key]
            for sender, _, size in pending.entries:
                self._unbuffer(sender, size)
                self.stats.dropped_expired += 1

    def _unbuffer(self, sender: int, size: int) -> None:
        self._buffered_count -= 1
        self._buffered_bytes -= size
        left = self._buffered_by_sender[sender] - 1
        if left:
            self._buffered_by_sender[sender] = left
        else:
            del self._buffered_by_sender[sender]

    def _buffer_message(self, key: SessionKey, sender: int, message: Message, size: int) -> None:
        self._expire()
        if (
            self._buffered_count >= self.max_buffered
            or self._buffered_bytes + size > self.max_buffered_bytes
            or self._buffered_by_sender.get(sender, 0) >= self.max_buffered_per_sender
        ):
            self.stats.dropped_full += 1
            self._warn(
                "buffer",
                sender,
                "buffer for unopened sessions is full; dropped a %s message from participant %s",
                message.TYPE,
                sender,
            )
            return
        pending = self._buffer.get(key)
        if pending is None:
            pending = self._buffer[key] = _Buffered(self._clock())
        pending.entries.append((sender, message, size))
        self._buffered_count += 1
        self._buffered_bytes += size
        self._buffered_by_sender[sender] = self._buffered_by_sender.get(sender, 0) + 1
        self.stats.buffered += 1

    def buffered(self) -> int:
        """Messages waiting for sessions not opened yet."""
        self._expire()
        return self._buffered_count


__all__ = [
    "RouterStats",
    "ServiceHandler",
    "SessionRouter",
]
