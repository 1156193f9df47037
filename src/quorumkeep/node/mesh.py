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
import socket
import ssl
from collections.abc import Awaitable, Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Protocol

from quorumkeep.daemon.logs import RefusalLog
from quorumkeep.net.address import parse_host_port
from quorumkeep.net.retry import Backoff, BackoffPolicy, Uniform
from quorumkeep.node.mesh_frames import (
    HELLO_BODY,
    INCARNATION_SIZE,
    MAX_FRAME_SIZE,
    FrameError,
    MeshError,
    decode_incarnation,
    decode_message,
    encode_hello,
    encode_incarnation,
    encode_message,
    read_frame,
)
from quorumkeep.wire.tls import (
    TLSCredentials,
    TLSError,
    certificate_public_key,
    close_writer,
    fetch_certificate,
    pinned,
)

log = logging.getLogger("quorumkeep.node.mesh")

MessageHandler = Callable[[int, str, bytes], Awaitable[None] | None]
"""Called with (sender participant id, channel, payload) for every message received."""
PeerHandler = Callable[[int, bytes], None]
"""Called with (participant id, incarnation) when a peer's connection to us is admitted,
before any message of that connection is delivered."""


# --- errors ------------------------------------------------------------------------------


class PeerNotConnected(MeshError):
    code = "peer_not_connected"


class InvalidParticipants(MeshError, ValueError):
    code = "invalid_participants"


# --- participants ------------------------------------------------------------------------


@dataclass(frozen=True)
class PeerInfo:
    """A participant as the contract lists it, as far as the mesh cares."""

    participant_id: int
    account: str
    url: str
    tls_public_key: bytes

    def __post_init__(self) -> None:
        pid = self.participant_id
        if isinstance(pid, bool) or not isinstance(pid, int) or pid < 0:
            raise InvalidParticipants("participant_id must be a non-negative integer")
        if not isinstance(self.account, str) or not self.account:
            raise InvalidParticipants(f"participant {pid}: account must be a non-empty string")
        if not isinstance(self.tls_public_key, bytes) or len(self.tls_public_key) != 32:
            raise InvalidParticipants(f"participant {pid}: tls_public_key must be 32 bytes")
        try:
            parse_host_port(self.url)
        except ValueError as exc:
            raise InvalidParticipants(f"participant {pid}: {exc}") from None

    @property
    def address(self) -> tuple[str, int]:
        return parse_host_port(self.url)

    def __repr__(self) -> str:
        return (
            f"PeerInfo({self.participant_id}, {self.account!r}, {self.url}, "
            f"{self.tls_public_key.hex()[:16]}…)"
        )


@dataclass(frozen=True)
class PeerState:
    """One peer's connections; ids change whenever a connection is replaced."""

    participant_id: int
    outbound_connection: int | None
    inbound_connection: int | None


@dataclass
class MeshStats:
    """Counters for metrics and tests (never payload contents)."""

    messages_sent: int = 0
    messages_received: int = 0
    connections_accepted: int = 0
    connections_rejected: int = 0
    certificate_fetches_served: int = 0
    frames_rejected: int = 0
    handshakes_in_progress: int = 0
    handshakes_refused: int = 0


# --- connections -------------------------------------------------------------------------


def _keepalive(transport: asyncio.BaseTransport) -> None:
    """TCP keepalive: notice a peer whose machine vanished without closing its sockets."""
    sock = transport.get_extra_info("socket")
    if sock is None:
        return
    with contextlib.suppress(OSError, AttributeError):
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE, 1)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPIDLE, 15)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPINTVL, 5)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPCNT, 3)


def _peer_certificate(writer: asyncio.StreamWriter) -> bytes | None:
    ssl_object = writer.get_extra_info("ssl_object")
    if ssl_object is None:
        return None
    der = ssl_object.getpeercert(binary_form=True)
    return bytes(der) if der else None


@dataclass(eq=False)
class _Outbound:
    info: PeerInfo
    task: asyncio.Task[None] | None = None
    writer: asyncio.StreamWriter | None = None
    connection_id: int | None = None
    connected: asyncio.Event = field(default_factory=asyncio.Event)
    client_context: tuple[bytes, ssl.SSLContext] | None = None


@dataclass(eq=False)
class _Inbound:
    info: PeerInfo
    writer: asyncio.StreamWriter
    connection_id: int
    task: asyncio.Task[None] | None = None


class _HasTLS(Protocol):
    @property
    def tls(self) -> TLSCredentials: ...


class _PausedAccept(asyncio.Protocol):
    """Holds a fresh TCP connection still (reading paused) until it is upgraded to TLS.

    Pausing in ``connection_made`` guarantees no byte of the ClientHello is consumed by
    anything but the TLS layer, whatever the scheduling.
    """

    def __init__(self, mesh: Mesh) -> None:
        self._mesh = mesh

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        transport.pause_reading()
        self._mesh._accepted(transport)


class _TLSStreamProtocol(asyncio.StreamReaderProtocol):
    """A StreamReaderProtocol for a connection upgraded by hand with ``loop.start_tls``.

    The peer may close before ``connection_made`` is called on us (a certificate fetcher does
    exactly that); the stock protocol would then ask to keep a half-closed TLS stream open,
    which TLS cannot do. We never want half-open connections.
    """

    def eof_received(self) -> bool:
        super().eof_received()
        return False


class Mesh:
    """The node's p2p endpoint: a listener plus one outbound connection per peer.

    Lifecycle: ``await start()``, then ``await update_participants(...)`` on every
    participant-set change, ``await close()`` at the end. All methods run on one event loop.
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
        self._handshake_timeout = handshake_timeout
        self._max_handshakes = max_handshakes
        self._refusals = RefusalLog(log)
        self._send_timeout = send_timeout
        self._backoff_initial = backoff_initial
        self._backoff_max = backoff_max
        self._uniform = uniform
        self._server: asyncio.Server | None = None
        self._participants: dict[int, PeerInfo] = {}
        self._by_key: dict[bytes, int] = {}
        self._my_id: int | None = None
        self._certificates: dict[bytes, bytes] = {}
        self._trusted: tuple[bytes, ...] = ()
        self._server_context = self._credentials.server_context([], require_client_cert=False)
        self._outbound: dict[int, _Outbound] = {}
        self._inbound: dict[int, _Inbound] = {}
        # Accepted connections still being served, with their raw transports: a task cancelled
        # before its first step never runs its own cleanup, so close() aborts these itself.
        self._pending: dict[asyncio.Task[None], asyncio.Transport] = {}
        self._handlers: list[MessageHandler] = []
        self._peer_handlers: list[PeerHandler] = []
        self._local: asyncio.Queue[tuple[str, bytes]] = asyncio.Queue(maxsize=1024)
        self._local_task: asyncio.Task[None] | None = None
        self._update_lock = asyncio.Lock()
        self._connection_ids = itertools.count(1)
        self._closed = False
        self.stats = MeshStats()

    # -- lifecycle

    async def start(self) -> None:
        """Start listening (``port=0`` picks a free port; see :attr:`address`)."""
        if self._server is not None:
            raise MeshError("mesh already started")
        loop = asyncio.get_running_loop()
        self._server = await loop.create_server(
            lambda: _PausedAccept(self), self._host, self._port, reuse_address=True
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
        tasks: list[asyncio.Task[None]] = []
        for pid in list(self._outbound):
            tasks.extend(self._drop_outbound(pid))
        for pid in list(self._inbound):
            tasks.extend(self._drop_inbound(pid))
        tasks.extend(self._pending)
        for transport in self._pending.values():
            transport.abort()
        if self._local_task is not None:
            tasks.append(self._local_task)
        tasks = list(dict.fromkeys(tasks))  # an inbound task is listed twice
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
        return frozenset(pid for pid, link in self._outbound.items() if link.writer is not None)

    def inbound_peers(self) -> frozenset[int]:
        """Peers whose connection to us is established (we receive from them)."""
        return frozenset(self._inbound)

    def peer_states(self) -> dict[int, PeerState]:
        """Every peer's connections (empty while this node is not a participant)."""
        out: dict[int, PeerState] = {}
        if self._my_id is None:
            return out
        for pid in sorted(self._participants):
            if pid == self._my_id:
                continue
            link = self._outbound.get(pid)
            inbound = self._inbound.get(pid)
            out[pid] = PeerState(
                pid,
                link.connection_id if link is not None and link.writer is not None else None,
                inbound.connection_id if inbound is not None else None,
            )
        return out

    async def wait_connected(self, participant_ids: Iterable[int] | None, timeout: float) -> None:
        """Until outbound connections to ``participant_ids`` (default: all peers) are up."""
        wanted = (
            set(participant_ids)
            if participant_ids is not None
            else {pid for pid in self._participants if pid != self._my_id}
        )
        try:
            async with asyncio.timeout(timeout):
                for pid in sorted(wanted):
                    while True:
                        link = self._outbound.get(pid)
                        if link is None:
                            raise PeerNotConnected(f"participant {pid} is not a peer")
                        if link.writer is not None:
                            break
                        await link.connected.wait()
        except TimeoutError:
            missing = sorted(wanted - self.connected_peers())
            raise PeerNotConnected(f"not connected within {timeout}s to {missing}") from None

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
        new = self._validated(participants, my_id)
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
            keys = set(self._by_key)
            self._certificates = {k: v for k, v in self._certificates.items() if k in keys}
            self._refresh_server_context()
            stopping: list[asyncio.Task[None]] = []
            for pid in changed:
                stopping.extend(self._drop_outbound(pid))
                stopping.extend(self._drop_inbound(pid))
            if my_id is None:
                for pid in list(self._outbound):
                    stopping.extend(self._drop_outbound(pid))
                for pid in list(self._inbound):
                    stopping.extend(self._drop_inbound(pid))
            else:
                for pid, info in new.items():
                    if pid != my_id and pid not in self._outbound:
                        self._start_outbound(info)
            if stopping:
                await asyncio.wait(stopping, timeout=5)
            if changed:
                log.info("participant set updated; rebuilt or dropped %s", sorted(changed))
            return frozenset(changed)

    def _validated(
        self, participants: Mapping[int, PeerInfo], my_id: int | None
    ) -> dict[int, PeerInfo]:
        if not isinstance(participants, Mapping):
            raise InvalidParticipants("participants must be a mapping id → PeerInfo")
        new: dict[int, PeerInfo] = {}
        seen_keys: dict[bytes, int] = {}
        for pid, info in participants.items():
            if not isinstance(info, PeerInfo):
                raise InvalidParticipants(f"participant {pid}: expected a PeerInfo")
            if pid != info.participant_id:
                raise InvalidParticipants(f"participant {pid}: entry says {info.participant_id}")
            if info.tls_public_key in seen_keys:
                raise InvalidParticipants(
                    f"participants {seen_keys[info.tls_public_key]} and {pid} share a TLS key"
                )
            seen_keys[info.tls_public_key] = pid
            new[pid] = info
        if my_id is not None:
            mine = new.get(my_id)
            if mine is None:
                raise InvalidParticipants(f"my_id {my_id} is not in the participant set")
            if mine.tls_public_key != self._credentials.public_key:
                raise InvalidParticipants(
                    f"participant {my_id}'s TLS key is not this node's: not a participant"
                )
        return new

    def _refresh_server_context(self) -> None:
        trusted = tuple(self._certificates[k] for k in sorted(self._certificates))
        if trusted != self._trusted:
            self._server_context = self._credentials.server_context(
                list(trusted), require_client_cert=False
            )
            self._trusted = trusted

    def _learn_certificate(self, info: PeerInfo, der: bytes) -> None:
        current = self._participants.get(info.participant_id)
        if current != info:
            return  # the participant changed while we were fetching; its link is going away
        if self._certificates.get(info.tls_public_key) != der:
            self._certificates[info.tls_public_key] = der
            self._refresh_server_context()

    def _drop_outbound(self, pid: int) -> list[asyncio.Task[None]]:
        link = self._outbound.pop(pid, None)
        if link is None:
            return []
        if link.writer is not None:
            link.writer.transport.abort()
        if link.task is not None:
            link.task.cancel()
            return [link.task]
        return []

    def _drop_inbound(self, pid: int) -> list[asyncio.Task[None]]:
        conn = self._inbound.pop(pid, None)
        if conn is None:
            return []
        conn.writer.transport.abort()
        if conn.task is not None:
            conn.task.cancel()
            return [conn.task]
        return []

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
        link = self._outbound.get(participant_id)
        if link is None:
            raise PeerNotConnected(f"participant {participant_id} is not a peer")
        if link.writer is None and wait > 0:
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(wait):
                    await link.connected.wait()
        writer = link.writer
        if writer is None or writer.transport.is_closing():
            raise PeerNotConnected(f"participant {participant_id} is not connected")
        writer.write(frame)
        try:
            async with asyncio.timeout(self._send_timeout):
                await writer.drain()
        except (TimeoutError, ConnectionError, OSError, ssl.SSLError):
            writer.transport.abort()  # the link task notices and reconnects
            raise PeerNotConnected(f"sending to participant {participant_id} failed") from None
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

    # -- inbound

    def _accepted(self, transport: asyncio.Transport) -> None:
        if self._closed:
            transport.abort()
            return
        if self.stats.handshakes_in_progress >= self._max_handshakes:
            # Each handshake in progress costs memory and, when the bytes arrive, CPU: an
            # unauthenticated client may not hold more than max_handshakes of them. Refused
            # at once and counted, not logged (a flood would otherwise fill the log).
            self.stats.handshakes_refused += 1
            transport.abort()
            return
        self.stats.handshakes_in_progress += 1
        task = asyncio.get_running_loop().create_task(self._serve_inbound(transport))
        self._pending[task] = transport
        task.add_done_callback(lambda done: self._pending.pop(done, None))

    async def _serve_inbound(self, transport: asyncio.Transport) -> None:
        peer_address = transport.get_extra_info("peername")
        loop = asyncio.get_running_loop()
        reader = asyncio.StreamReader(limit=2**16)
        protocol = _TLSStreamProtocol(reader)
        try:
            ssl_transport = await loop.start_tls(
                transport,
                protocol,
                self._server_context,
                server_side=True,
                ssl_handshake_timeout=self._handshake_timeout,
            )
        except asyncio.CancelledError:
            self.stats.handshakes_in_progress -= 1
            transport.abort()
            raise
        except Exception as exc:
            self.stats.handshakes_in_progress -= 1
            transport.abort()
            self.stats.connections_rejected += 1
            self._refusals.log(
                logging.INFO,
                "handshake",
                "TLS handshake from %s failed: %s",
                peer_address,
                type(exc).__name__,
            )
            return
        self.stats.handshakes_in_progress -= 1
        if ssl_transport is None:  # the connection went away during the handshake
            transport.abort()
            return
        protocol.connection_made(ssl_transport)
        writer = asyncio.StreamWriter(ssl_transport, protocol, reader, loop)
        try:
            await self._admit(writer, reader, peer_address)
        finally:
            await close_writer(writer)

    async def _admit(
        self, writer: asyncio.StreamWriter, reader: asyncio.StreamReader, peer_address: object
    ) -> None:
        der = _peer_certificate(writer)
        if der is None:
            # A certificate fetch: the handshake gave them our certificate, and that is all.
            self.stats.certificate_fetches_served += 1
            return
        try:
            key = certificate_public_key(der)
        except TLSError:
            self.stats.connections_rejected += 1
            return
        pid = self._by_key.get(key)
        if pid is None or self._my_id is None or pid == self._my_id:
            self.stats.connections_rejected += 1
            self._refusals.log(
                logging.WARNING,
                "not_a_peer",
                "refused %s: key %s… is not a peer",
                peer_address,
                key.hex()[:16],
            )
            return
        info = self._participants[pid]
        _keepalive(writer.transport)
        writer.write(encode_hello())
        try:
            async with asyncio.timeout(self._send_timeout):
                await writer.drain()
        except (TimeoutError, ConnectionError, OSError, ssl.SSLError):
            return
        # The dialler's first frame: its incarnation (a peer that restarted says so before
        # anything else it sends is read).
        try:
            async with asyncio.timeout(self._handshake_timeout):
                incarnation = decode_incarnation(await read_frame(reader, self._max_frame_size))
        except FrameError as exc:
            self.stats.frames_rejected += 1
            log.warning("closing connection from participant %s: %s", pid, exc)
            return
        except (TimeoutError, asyncio.IncompleteReadError, ConnectionError, OSError, ssl.SSLError):
            return
        if self._participants.get(pid) != info:  # changed while we said hello
            return
        conn = _Inbound(info, writer, next(self._connection_ids))
        conn.task = asyncio.current_task()
        self._drop_inbound(pid)  # the peer reconnected: its previous connection is stale
        self._inbound[pid] = conn
        self.stats.connections_accepted += 1
        log.info("participant %s connected from %s", pid, peer_address)
        for handler in list(self._peer_handlers):
            try:
                handler(pid, incarnation)
            except Exception:
                log.exception("peer handler failed (participant %s)", pid)
        try:
            await self._receive(conn, reader)
        finally:
            if self._inbound.get(pid) is conn:
                del self._inbound[pid]

    async def _receive(self, conn: _Inbound, reader: asyncio.StreamReader) -> None:
        pid = conn.info.participant_id
        try:
            while True:
                body = await read_frame(reader, self._max_frame_size)
                channel, payload = decode_message(body)
                if self._inbound.get(pid) is not conn:
                    return
                await self._dispatch(pid, channel, payload)
        except FrameError as exc:
            self.stats.frames_rejected += 1
            log.warning("closing connection from participant %s: %s", pid, exc)
        except (asyncio.IncompleteReadError, ConnectionError, OSError, ssl.SSLError):
            log.info("participant %s disconnected", pid)

    # -- outbound

    def _start_outbound(self, info: PeerInfo) -> None:
        link = _Outbound(info)
        link.task = asyncio.create_task(
            self._run_outbound(link), name=f"mesh-peer-{info.participant_id}"
        )
        self._outbound[info.participant_id] = link

    async def _run_outbound(self, link: _Outbound) -> None:
        # Jitter keeps n nodes restarted together from retrying in lockstep.
        backoff = Backoff(
            BackoffPolicy(self._backoff_initial, self._backoff_max, jitter=0.5),
            uniform=self._uniform,
        )
        while not self._closed and self._outbound.get(link.info.participant_id) is link:
            try:
                await self._connect_once(link)
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                log.debug(
                    "connection to participant %s failed: %s: %s",
                    link.info.participant_id,
                    type(exc).__name__,
                    exc,
                )
            finally:
                established = link.connection_id is not None
                link.writer = None
                link.connection_id = None
                link.connected.clear()
            if established:
                backoff.reset()
            await backoff.wait()

    async def _connect_once(self, link: _Outbound) -> None:
        info = link.info
        host, port = info.address
        certificate = self._certificates.get(info.tls_public_key)
        if certificate is None:
            fetched = await fetch_certificate(host, port, self._handshake_timeout)
            certificate = pinned(info.tls_public_key, fetched)
            self._learn_certificate(info, certificate)
        if link.client_context is None or link.client_context[0] != certificate:
            link.client_context = (certificate, self._credentials.client_context([certificate]))
        try:
            async with asyncio.timeout(self._handshake_timeout * 2):
                reader, writer = await asyncio.open_connection(
                    host,
                    port,
                    ssl=link.client_context[1],
                    server_hostname="",
                    ssl_handshake_timeout=self._handshake_timeout,
                )
        except ssl.SSLCertVerificationError:
            # Not the certificate we pinned (same key, other certificate): fetch it again.
            self._certificates.pop(info.tls_public_key, None)
            raise
        try:
            der = _peer_certificate(writer)
            if der is None or certificate_public_key(der) != info.tls_public_key:
                raise TLSError("peer presented an unexpected certificate")
            # The server's verdict on *our* certificate arrives after our handshake completes
            # (TLS 1.3): its HELLO is the acceptance, an alert or EOF the refusal.
            async with asyncio.timeout(self._handshake_timeout):
                body = await read_frame(reader, self._max_frame_size)
            if body != HELLO_BODY:
                raise FrameError("expected HELLO")
            writer.write(encode_incarnation(self._incarnation))
            async with asyncio.timeout(self._send_timeout):
                await writer.drain()
            _keepalive(writer.transport)
            link.writer = writer
            link.connection_id = next(self._connection_ids)
            link.connected.set()
            log.info("connected to participant %s at %s", info.participant_id, info.url)
            try:
                # Nothing more is expected on this connection: any frame is a protocol error,
                # EOF or an error means it is gone.
                await read_frame(reader, self._max_frame_size)
                raise FrameError("unexpected frame from the acceptor")
            except (asyncio.IncompleteReadError, ConnectionError, OSError, ssl.SSLError):
                log.info("connection to participant %s lost", info.participant_id)
        finally:
            await close_writer(writer)
