"""The mesh's outbound side (node/mesh.py): one connection we dial to each peer, kept up by a
loop that reconnects with jittered backoff, and everything we send to that peer.

Before its first connection to a peer the dialler fetches the peer's certificate and pins it to
the key the contract names; a certificate that no longer verifies is fetched again. The peer's
HELLO is its acceptance of our certificate; we answer with our incarnation. Nothing more is
read on the connection: any frame is a protocol error, EOF or an error means it is gone.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import ssl
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

from quorumkeep.net.retry import Backoff, BackoffPolicy, Uniform
from quorumkeep.node.mesh_frames import HELLO_BODY, FrameError, encode_incarnation, read_frame
from quorumkeep.node.mesh_links import keepalive, peer_certificate
from quorumkeep.node.mesh_peers import PeerCertificates, PeerInfo, PeerNotConnected
from quorumkeep.wire.tls import (
    TLSCredentials,
    TLSError,
    certificate_public_key,
    close_writer,
    fetch_certificate,
    pinned,
)

log = logging.getLogger("quorumkeep.node.mesh")


@dataclass(eq=False)
class _Outbound:
    info: PeerInfo
    task: asyncio.Task[None] | None = None
    writer: asyncio.StreamWriter | None = None
    connection_id: int | None = None
    connected: asyncio.Event = field(default_factory=asyncio.Event)
    client_context: tuple[bytes, ssl.SSLContext] | None = None


class Dialler:
    """Our connections to the peers: one dialling loop per peer while it is a peer.

    ``participant`` gives a participant's current entry (a certificate fetched for an entry
    that changed meanwhile is not learned).
    """

    def __init__(
        self,
        *,
        credentials: TLSCredentials,
        certificates: PeerCertificates,
        participant: Callable[[int], PeerInfo | None],
        incarnation: bytes,
        connection_ids: Iterator[int],
        max_frame_size: int,
        handshake_timeout: float,
        send_timeout: float,
        backoff_initial: float,
        backoff_max: float,
        uniform: Uniform,
    ) -> None:
        self._credentials = credentials
        self._certificates = certificates
        self._participant = participant
        self._incarnation = incarnation
        self._connection_ids = connection_ids
        self._max_frame_size = max_frame_size
        self._handshake_timeout = handshake_timeout
        self._send_timeout = send_timeout
        self._backoff_initial = backoff_initial
        self._backoff_max = backoff_max
        self._uniform = uniform
        self._outbound: dict[int, _Outbound] = {}
        self._closed = False

    def __contains__(self, pid: object) -> bool:
        """Whether we dial ``pid`` (connected or not)."""
        return pid in self._outbound

    def connected(self) -> frozenset[int]:
        """Peers we can send to now (outbound connection established)."""
        return frozenset(pid for pid, link in self._outbound.items() if link.writer is not None)

    def connection_id(self, pid: int) -> int | None:
        link = self._outbound.get(pid)
        return link.connection_id if link is not None and link.writer is not None else None

    async def wait_connected(self, wanted: set[int], timeout: float) -> None:
        """Until outbound connections to ``wanted`` are up."""
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
            missing = sorted(wanted - self.connected())
            raise PeerNotConnected(f"not connected within {timeout}s to {missing}") from None

    async def send(self, participant_id: int, frame: bytes, wait: float) -> None:
        """Write ``frame`` on our connection to the peer (waiting up to ``wait`` seconds for
        it) and drain it, or raise :class:`PeerNotConnected`."""
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

    def start(self, info: PeerInfo) -> None:
        """Start dialling a peer."""
        link = _Outbound(info)
        link.task = asyncio.create_task(
            self._run_outbound(link), name=f"mesh-peer-{info.participant_id}"
        )
        self._outbound[info.participant_id] = link

    def drop(self, pid: int) -> list[asyncio.Task[None]]:
        """Stop dialling ``pid`` and close our connection to it; the tasks to wait for."""
        link = self._outbound.pop(pid, None)
        if link is None:
            return []
        if link.writer is not None:
            link.writer.transport.abort()
        if link.task is not None:
            link.task.cancel()
            return [link.task]
        return []

    def drop_all(self) -> list[asyncio.Task[None]]:
        tasks: list[asyncio.Task[None]] = []
        for pid in list(self._outbound):
            tasks.extend(self.drop(pid))
        return tasks

    def close(self) -> list[asyncio.Task[None]]:
        """Dial no more and close every connection; the tasks to wait for."""
        self._closed = True
        return self.drop_all()

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
            self._certificates.forget(info.tls_public_key)
            raise
        try:
            der = peer_certificate(writer)
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
            keepalive(writer.transport)
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

    def _learn_certificate(self, info: PeerInfo, der: bytes) -> None:
        current = self._participant(info.participant_id)
        if current != info:
            return  # the participant changed while we were fetching; its link is going away
        self._certificates.learn(info.tls_public_key, der)
