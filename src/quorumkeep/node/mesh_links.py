"""What both directions of the mesh do to a connection once its TLS handshake is over
(node/mesh_inbound.py, node/mesh_outbound.py): read the certificate the peer presented, and
turn on TCP keepalive.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket


def keepalive(transport: asyncio.BaseTransport) -> None:
    """TCP keepalive: notice a peer whose machine vanished without closing its sockets."""
    sock = transport.get_extra_info("socket")
    if sock is None:
        return
    with contextlib.suppress(OSError, AttributeError):
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE, 1)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPIDLE, 15)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPINTVL, 5)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPCNT, 3)


def peer_certificate(writer: asyncio.StreamWriter) -> bytes | None:
    """The certificate (DER) the peer presented in the handshake; None if it presented none."""
    ssl_object = writer.get_extra_info("ssl_object")
    if ssl_object is None:
        return None
    der = ssl_object.getpeercert(binary_form=True)
    return bytes(der) if der else None
