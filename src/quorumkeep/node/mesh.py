"""Persistent mutual-TLS 1.3 connections between the participants (frame format: docs/mesh.md).

Who talks to whom:

- Each node dials every other participant once and sends all its traffic to that peer over
  this *outbound* connection. What arrives on a connection a peer opened (*inbound*) is from
  that peer. One direction per connection means no race over which of two simultaneous
  connections survives.
- A connection belongs to a participant only if the certificate key seen in the handshake is
  that participant's ``tls_public_key`` in the current participant set (from the contract).
  Addresses are only where to knock.

How certificates are learned: the p2p port also answers TLS clients that present *no*
certificate — they learn the server's certificate and are disconnected at once. A node
fetches each peer's certificate that way, checks that it carries the key the contract names
(:func:`quorumkeep.wire.tls.pinned`), and only then uses it as a trust anchor, both to verify
the peer as a server and to accept it as a client. The listener accepts plain TCP and
upgrades each connection to TLS with the *current* server context, so the trust store follows
the participant set without restarting the listener.

Every node process has an *incarnation*: 16 random bytes chosen when it starts (a process
that starts has forgotten every presignature, node/incarnation.py). A dialler announces it in
the first frame of its connection; the acceptor hands (peer, incarnation) to its peer handlers
before any message of that connection, so a peer that restarted is known as such before
anything it sends is read.

A malformed or oversize frame closes the one connection it came on; nothing else changes.
"""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import itertools
import logging
import os
import random
from collections.abc import Awaitable, Callable, Iterable, Mapping
from typing import Protocol

from quorumkeep.net.retry import Uniform
from quorumkeep.node.mesh_frames import INCARNATION_SIZE, MAX_FRAME_SIZE, MeshError, encode_message
from quorumkeep.node.mesh_inbound import Acceptor
from quorumkeep.node.mesh_outbound import Dialler
from quorumkeep.node.mesh_peers import (
    MeshStats,
    PeerCertificates,
    PeerInfo,
    PeerState,
    validated_participants,
)
from quorumkeep.wire.tls import TLSCredentials

log = logging.getLogger("quorumkeep.node.mesh")

MessageHandler = Callable[[int, str, bytes], Awaitable[None] | None]
"""Called with (sender participant id, channel, payload) for every message received."""
PeerHandler = Callable[[int, bytes], None]
"""Called with (participant id, incarnation) when a peer's connection to us is admitted,
before any message of that connection is delivered."""


class _HasTLS(Protocol):
    @property
    def tls(self) -> TLSCredentials: ...


class Mesh:
    """The node's p2p endpoint: a listener plus one outbound connection per peer.

    Lifecycle: ``await start()``, then ``await update_participants(...)`` on every
    participant-set change, ``await close()`` at the end. All methods run on one event loop.
    The inbound side is node/mesh_inbound.py, the outbound side node/mesh_outbound.py.
    """

    def __init__(
        self,
        identity: TLSCredentials | _HasTLS,
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        max_frame_size: int = MAX_FRAME_SIZE,
        handshake_timeout: float = 5.0,
        send_timeout: float = 10.0,
        backoff_initial: float = 0.05,
        backoff_max: float = 5.0,
        uniform: Uniform = random.random,
        max_handshakes: int = 64,
        incarnation: bytes | None = None,
    ) -> None:
        """``incarnation`` (16 bytes) is announced to every peer; random by default."""
        self._incarnation = os.urandom(INCARNATION_SIZE) if incarnation is None else incarnation
        if not isinstance(self._incarnation, bytes) or len(self._incarnation) != INCARNATION_SIZE:
            raise MeshError(f"an incarnation is {INCARNATION_SIZE} bytes")
        self._credentials = identity if isinstance(identity, TLSCredentials) else identity.tls
        self._host = host
        self._port = port
        if not 16 <= max_frame_size <= 2**32 - 1:
            raise MeshError("max_frame_size must be in [16, 2^32)")
        self._max_frame_size = max_frame_size
        self._server: asyncio.Server | None = None
        self._participants: dict[int, PeerInfo] = {}
        self._by_key: dict[bytes, int] = {}
        self._my_id: int | None = None
        self._certificates = PeerCertificates(self._credentials)
        self._handlers: list[MessageHandler] = []
        self._peer_handlers: list[PeerHandler] = []
        self._local: asyncio.Queue[tuple[str, bytes]] = asyncio.Queue(maxsize=1024)
        self._local_task: asyncio.Task[None] | None = None
        self._update_lock = asyncio.Lock()
        self._closed = False
        self.stats = MeshStats()
        connection_ids = itertools.count(1)  # one sequence for both directions
        self._acceptor = Acceptor(
            certificates=self._certificates,
            peer_with_key=self._peer_with_key,
            admitted=self._peer_admitted,
            dispatch=self._dispatch,
            stats=self.stats,
            connection_ids=connection_ids,
            max_frame_size=max_frame_size,
            handshake_timeout=handshake_timeout,
            send_timeout=send_timeout,
            max_handshakes=max_handshakes,
        )
        self._dialler = Dialler(
            credentials=self._credentials,
            certificates=self._certificates,
            participant=self._participant,
            incarnation=self._incarnation,
            connection_ids=connection_ids,
            max_frame_size=max_frame_size,
            handshake_timeout=handshake_timeout,
            send_timeout=send_timeout,
            backoff_initial=backoff_initial,
            backoff_max=backoff_max,
            uniform=uniform,
        )

    # -- lifecycle

    async def start(self) -> None:
        """Start listening (``port=0`` picks a free port; see :attr:`address`)."""
        if self._server is not None:
            raise MeshError("mesh already started")
        loop = asyncio.get_running_loop()
        self._server = await loop.create_server(
            self._acceptor.protocol, self._host, self._port, reuse_address=True
        )
        self._port = self._server.sockets[0].getsockname()[1]
        self._local_task = asyncio.create_task(self._deliver_local(), name="mesh-local")

    @property
    def address(self) -> tuple[str, int]:
        return self._host, self._port

    @property
    def public_key(self) -> bytes:
        return self._credentials.public_key

    @property
    def my_id(self) -> int | None:
        return self._my_id

    @property
    def incarnation(self) -> bytes:
        """What this mesh announces to its peers (not secret)."""
        return self._incarnation

    async def close(self) -> None:
        """Stop listening and close every connection (bounded)."""
        self._closed = True
        if self._server is not None:
            self._server.close()
        tasks = self._dialler.close()
        tasks.extend(self._acceptor.close())
        if self._local_task is not None:
            tasks.append(self._local_task)
        for task in tasks:
            task.cancel()
        if tasks:
            await asyncio.wait(tasks, timeout=5)
        if self._server is not None:
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(5):
                    await self._server.wait_closed()

    # -- handlers and introspection

    def add_handler(self, handler: MessageHandler) -> None:
        """Receive every message. Handlers run in order, per connection, one message at a
        time (an async handler that waits slows down that peer only); an exception in a
        handler is logged and the connection stays up."""
        self._handlers.append(handler)

    def remove_handler(self, handler: MessageHandler) -> None:
        self._handlers.remove(handler)

    def add_peer_handler(self, handler: PeerHandler) -> None:
        """Called (synchronously) with (participant id, incarnation) each time a peer's
        connection to us is admitted, before any message of that connection is delivered;
        an exception is logged and the connection stays up."""
        self._peer_handlers.append(handler)

    def connected_peers(self) -> frozenset[int]:
        """Peers we can send to now (outbound connection established)."""
        return self._dialler.connected()

    def inbound_peers(self) -> frozenset[int]:
        """Peers whose connection to us is established (we receive from them)."""
        return self._acceptor.peers()

    def peer_states(self) -> dict[int, PeerState]:
        """Every peer's connections (empty while this node is not a participant)."""
        out: dict[int, PeerState] = {}
        if self._my_id is None:
            return out
        for pid in sorted(self._participants):
            if pid == self._my_id:
                continue
            out[pid] = PeerState(
                pid, self._dialler.connection_id(pid), self._acceptor.connection_id(pid)
            )
        return out

    async def wait_connected(self, participant_ids: Iterable[int] | None, timeout: float) -> None:
        """Until outbound connections to ``participant_ids`` (default: all peers) are up."""
        wanted = (
            set(participant_ids)
            if participant_ids is not None
            else {pid for pid in self._participants if pid != self._my_id}
        )
        await self._dialler.wait_connected(wanted, timeout)

    # -- participant set

    async def update_participants(
        self, participants: Mapping[int, PeerInfo], my_id: int | None
    ) -> frozenset[int]:
        """Adopt a new participant set; return the ids whose connections were dropped or rebuilt.

        Peers whose entry is unchanged keep their connections untouched. A peer whose url,
        account or TLS key changed gets new connections; one no longer listed is dropped.
        ``my_id=None`` (this node is not a participant) drops everything: the node then only
        serves its certificate. Invalid input raises :class:`InvalidParticipants` and changes
        nothing.
        """
        new = validated_participants(participants, my_id, self._credentials.public_key)
        async with self._update_lock:
            if self._closed:
                raise MeshError("mesh is closed")
            old, old_my_id = self._participants, self._my_id
            if my_id != old_my_id:
                changed = set(old) | set(new)
            else:
                changed = {pid for pid in set(old) | set(new) if old.get(pid) != new.get(pid)}
            self._participants = new
            self._my_id = my_id
            self._by_key = {info.tls_public_key: pid for pid, info in new.items()}
            self._certificates.retain(set(self._by_key))
            stopping: list[asyncio.Task[None]] = []
            for pid in changed:
                stopping.extend(self._dialler.drop(pid))
                stopping.extend(self._acceptor.drop(pid))
            if my_id is None:
                stopping.extend(self._dialler.drop_all())
                stopping.extend(self._acceptor.drop_all())
            else:
                for pid, info in new.items():
                    if pid != my_id and pid not in self._dialler:
                        self._dialler.start(info)
            if stopping:
                await asyncio.wait(stopping, timeout=5)
            if changed:
                log.info("participant set updated; rebuilt or dropped %s", sorted(changed))
            return frozenset(changed)

    def _participant(self, pid: int) -> PeerInfo | None:
        return self._participants.get(pid)

    def _peer_with_key(self, key: bytes) -> PeerInfo | None:
        """The peer whose TLS key this is, while this node is a participant (never itself)."""
        pid = self._by_key.get(key)
        if pid is None or self._my_id is None or pid == self._my_id:
            return None
        return self._participants[pid]

    # -- sending

    async def send(
        self, participant_id: int, channel: str, payload: bytes, *, wait: float = 0.0
    ) -> None:
        """Send one message to a participant over our outbound connection to it.

        Sending to ourselves (``my_id``) delivers to our own handlers. If the peer is not
        connected, wait up to ``wait`` seconds for it, then raise :class:`PeerNotConnected`.
        Returns once the frame is handed to the kernel (delivery is not acknowledged).
        """
        frame = encode_message(channel, payload, self._max_frame_size)
        if self._my_id is not None and participant_id == self._my_id:
            await self._local.put((channel, bytes(payload)))
            self.stats.messages_sent += 1
            return
        await self._dialler.send(participant_id, frame, wait)
        self.stats.messages_sent += 1

    async def broadcast(
        self, channel: str, payload: bytes, *, include_self: bool = False
    ) -> frozenset[int]:
        """Send to every connected peer (and to ourselves if asked); return who got it."""
        targets = sorted(self.connected_peers())
        if include_self and self._my_id is not None:
            targets.append(self._my_id)
        results = await asyncio.gather(
            *(self.send(pid, channel, payload) for pid in targets), return_exceptions=True
        )
        for result in results:
            if isinstance(result, BaseException) and not isinstance(result, MeshError):
                raise result
        return frozenset(pid for pid, r in zip(targets, results, strict=True) if r is None)

    # -- receiving

    async def _dispatch(self, sender: int, channel: str, payload: bytes) -> None:
        self.stats.messages_received += 1
        for handler in list(self._handlers):
            try:
                result = handler(sender, channel, payload)
                if inspect.isawaitable(result):
                    await result
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("message handler failed (from %s on %r)", sender, channel)

    async def _deliver_local(self) -> None:
        while True:
            channel, payload = await self._local.get()
            if self._my_id is not None:
                await self._dispatch(self._my_id, channel, payload)

    def _peer_admitted(self, pid: int, incarnation: bytes) -> None:
        for handler in list(self._peer_handlers):
            try:
                handler(pid, incarnation)
            except Exception:
                log.exception("peer handler failed (participant %s)", pid)
