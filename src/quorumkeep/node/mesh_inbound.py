"""The mesh's inbound side (node/mesh.py): the connections peers open to our listener, from
TCP accept through the TLS upgrade and admission to the messages received.

A fresh connection is held still until it is upgraded with the *current* server context; at
most ``max_handshakes`` handshakes are in progress at once. A client that presents no
certificate has fetched ours and is done. One whose certificate carries a participant's key is
admitted: we send HELLO, read the dialler's incarnation, hand (peer, incarnation) on, then
deliver its messages in order. A peer that connects again replaces its previous connection.
"""

from __future__ import annotations

import asyncio
import logging
import ssl
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass

from quorumkeep.daemon.logs import RefusalLog
from quorumkeep.node.mesh_frames import (
    FrameError,
    decode_incarnation,
    decode_message,
    encode_hello,
    read_frame,
)
from quorumkeep.node.mesh_links import keepalive, peer_certificate
from quorumkeep.node.mesh_peers import MeshStats, PeerCertificates, PeerInfo
from quorumkeep.wire.tls import TLSError, certificate_public_key, close_writer

log = logging.getLogger("quorumkeep.node.mesh")


@dataclass(eq=False)
class _Inbound:
    info: PeerInfo
    writer: asyncio.StreamWriter
    connection_id: int
    task: asyncio.Task[None] | None = None


class _PausedAccept(asyncio.Protocol):
    """Holds a fresh TCP connection still (reading paused) until it is upgraded to TLS.

    Pausing in ``connection_made`` guarantees no byte of the ClientHello is consumed by
    anything but the TLS layer, whatever the scheduling.
    """

    def __init__(self, acceptor: Acceptor) -> None:
        self._acceptor = acceptor

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        transport.pause_reading()
        self._acceptor._accepted(transport)


class _TLSStreamProtocol(asyncio.StreamReaderProtocol):
    """A StreamReaderProtocol for a connection upgraded by hand with ``loop.start_tls``.

    The peer may close before ``connection_made`` is called on us (a certificate fetcher does
    exactly that); the stock protocol would then ask to keep a half-closed TLS stream open,
    which TLS cannot do. We never want half-open connections.
    """

    def eof_received(self) -> bool:
        super().eof_received()
        return False


class Acceptor:
    """The listener's side of the mesh: at most one admitted connection per peer.

    ``peer_with_key`` names the peer (never ourselves) a TLS key belongs to while this node is
    a participant, ``participant`` a participant's current entry; ``admitted`` is told
    (participant id, incarnation) and ``dispatch`` every message, in order.
    """

    def __init__(
        self,
        *,
        certificates: PeerCertificates,
        peer_with_key: Callable[[bytes], PeerInfo | None],
        admitted: Callable[[int, bytes], None],
        dispatch: Callable[[int, str, bytes], Awaitable[None]],
        stats: MeshStats,
        connection_ids: Iterator[int],
        max_frame_size: int,
        handshake_timeout: float,
        send_timeout: float,
        max_handshakes: int,
    ) -> None:
        self._certificates = certificates
        self._peer_with_key = peer_with_key
        self._admitted = admitted
        self._dispatch = dispatch
        self._stats = stats
        self._connection_ids = connection_ids
        self._max_frame_size = max_frame_size
        self._handshake_timeout = handshake_timeout
        self._send_timeout = send_timeout
        self._max_handshakes = max_handshakes
        self._refusals = RefusalLog(log)
        self._inbound: dict[int, _Inbound] = {}
        # Accepted connections still being served, with their raw transports: a task cancelled
        # before its first step never runs its own cleanup, so close() aborts these itself.
        self._pending: dict[asyncio.Task[None], asyncio.Transport] = {}
        self._closed = False

    def protocol(self) -> asyncio.Protocol:
        """The protocol for one fresh connection to the listener (its protocol factory)."""
        return _PausedAccept(self)

    def peers(self) -> frozenset[int]:
        """Peers whose connection to us is established."""
        return frozenset(self._inbound)

    def connection_id(self, pid: int) -> int | None:
        conn = self._inbound.get(pid)
        return conn.connection_id if conn is not None else None

    def drop(self, pid: int) -> list[asyncio.Task[None]]:
        """Close ``pid``'s connection to us; the tasks to wait for."""
        conn = self._inbound.pop(pid, None)
        if conn is None:
            return []
        conn.writer.transport.abort()
        if conn.task is not None:
            conn.task.cancel()
            return [conn.task]
        return []

    def drop_all(self) -> list[asyncio.Task[None]]:
        tasks: list[asyncio.Task[None]] = []
        for pid in list(self._inbound):
            tasks.extend(self.drop(pid))
        return tasks

    def close(self) -> list[asyncio.Task[None]]:
        """Accept nothing more and close every connection; the tasks to cancel and wait for."""
        self._closed = True
        tasks = self.drop_all()
        tasks.extend(self._pending)
        for transport in self._pending.values():
            transport.abort()
        return list(dict.fromkeys(tasks))  # an admitted connection's task is also pending

    def _accepted(self, transport: asyncio.Transport) -> None:
        if self._closed:
            transport.abort()
            return
        if self._stats.handshakes_in_progress >= self._max_handshakes:
            # Each handshake in progress costs memory and, when the bytes arrive, CPU: an
            # unauthenticated client may not hold more than max_handshakes of them. Refused
            # at once and counted, not logged (a flood would otherwise fill the log).
            self._stats.handshakes_refused += 1
            transport.abort()
            return
        self._stats.handshakes_in_progress += 1
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
                self._certificates.server_context,
                server_side=True,
                ssl_handshake_timeout=self._handshake_timeout,
            )
        except asyncio.CancelledError:
            self._stats.handshakes_in_progress -= 1
            transport.abort()
            raise
        except Exception as exc:
            self._stats.handshakes_in_progress -= 1
            transport.abort()
            self._stats.connections_rejected += 1
            self._refusals.log(
                logging.INFO,
                "handshake",
                "TLS handshake from %s failed: %s",
                peer_address,
                type(exc).__name__,
            )
            return
        self._stats.handshakes_in_progress -= 1
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
        der = peer_certificate(writer)
        if der is None:
            # A certificate fetch: the handshake gave them our certificate, and that is all.
            self._stats.certificate_fetches_served += 1
            return
        try:
            key = certificate_public_key(der)
        except TLSError:
            self._stats.connections_rejected += 1
            return
        info = self._peer_with_key(key)
        if info is None:
            self._stats.connections_rejected += 1
            self._refusals.log(
                logging.WARNING,
                "not_a_peer",
                "refused %s: key %s… is not a peer",
                peer_address,
                key.hex()[:16],
            )
            return
        pid = info.participant_id
        keepalive(writer.transport)
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
            self._stats.frames_rejected += 1
            log.warning("closing connection from participant %s: %s", pid, exc)
            return
        except (TimeoutError, asyncio.IncompleteReadError, ConnectionError, OSError, ssl.SSLError):
            return
        # The set may have changed while we said hello: the peer's entry, or this node may
        # have left the set (then it serves no participant at all).
        if self._peer_with_key(key) != info:
            return
        conn = _Inbound(info, writer, next(self._connection_ids))
        conn.task = asyncio.current_task()
        self.drop(pid)  # the peer reconnected: its previous connection is stale
        self._inbound[pid] = conn
        self._stats.connections_accepted += 1
        log.info("participant %s connected from %s", pid, peer_address)
        self._admitted(pid, incarnation)
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
            self._stats.frames_rejected += 1
            log.warning("closing connection from participant %s: %s", pid, exc)
        except (asyncio.IncompleteReadError, ConnectionError, OSError, ssl.SSLError):
            log.info("participant %s disconnected", pid)
