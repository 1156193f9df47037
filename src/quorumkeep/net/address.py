"""Listen addresses: parsing, binding, and free ports for locally started processes.

- :func:`parse_host_port` reads ``host:port`` or ``[v6-address]:port`` (an IPv6 address is
  always bracketed, so the last colon is never ambiguous); :func:`format_address` writes it.
- :func:`bind_socket` binds through ``getaddrinfo``, so an IPv6 address, an IPv4 address
  and a name bind alike. Binding ourselves makes "address in use" an :class:`OSError` the
  caller reports (uvicorn would call ``sys.exit``) and lets port 0 pick a free port whose
  number the caller can read and announce.
- :func:`free_port` guesses a free port on 127.0.0.1 for a process started later (devnets,
  benchmarks, tests): a bind to it succeeds now, which is a good guess, not a reservation.
  The kernel may hand a port it just released out again, so it never returns a port it
  returned before in this process (nor one in ``taken``): the ports of one devnet,
  benchmark or test stay distinct.

No web framework is imported here: configuration checks use this module without paying for
the server's imports.
"""

from __future__ import annotations

import ipaddress
import socket
from collections.abc import Iterable

from quorumkeep.encoding.fields import parse_decimal

MAX_PORT = 65535

_ATTEMPTS = 64
_handed_out: set[int] = set()


class NoFreePort(OSError):
    """No port could be found that is free, not in ``taken`` and not handed out before."""


def free_port(taken: Iterable[int] = ()) -> int:
    """A port nobody listens on at 127.0.0.1 right now, not in ``taken``, and never returned
    before by this process."""
    avoid = _handed_out.union(taken)
    for _ in range(_ATTEMPTS):
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
            sock.bind(("127.0.0.1", 0))
            port = int(sock.getsockname()[1])
        if port not in avoid:
            _handed_out.add(port)
            return port
    raise NoFreePort(f"no free port on 127.0.0.1 after {_ATTEMPTS} attempts")


def parse_host_port(value: str, *, allow_zero: bool = False) -> tuple[str, int]:
    """``host:port`` or ``[v6]:port`` → (host, port); port 1..65535 (0 too with
    ``allow_zero``: any free port). ``ValueError`` with a one-line reason otherwise."""
    if not isinstance(value, str) or not value:
        raise ValueError("address must be a non-empty 'host:port' string")
    if value.startswith("["):
        host, sep, rest = value[1:].partition("]")
        if not sep or not rest.startswith(":"):
            raise ValueError(f"bad address {value!r}: expected '[v6-address]:port'")
        port_text = rest[1:]
        try:
            ipaddress.IPv6Address(host)
        except ValueError:
            raise ValueError(f"bad address {value!r}: {host!r} is not an IPv6 address") from None
    else:
        host, sep, port_text = value.rpartition(":")
        if not sep or not host:
            raise ValueError(f"bad address {value!r}: expected 'host:port'")
        if ":" in host:
            raise ValueError(f"bad address {value!r}: write IPv6 addresses as '[addr]:port'")
    lowest = 0 if allow_zero else 1
    try:
        port = parse_decimal(port_text, 5, leading_zeros=True)
    except ValueError:
        port = -1
    if not lowest <= port <= MAX_PORT:
        raise ValueError(f"bad address {value!r}: port must be {lowest}..{MAX_PORT}")
    if any(c.isspace() for c in host):
        raise ValueError(f"bad address {value!r}: host contains whitespace")
    return host, port


def format_address(host: str, port: int) -> str:
    """The inverse of :func:`parse_host_port` (brackets around an IPv6 host)."""
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def bind_socket(host: str, port: int, *, backlog: int | None = None) -> socket.socket:
    """A bound, non-blocking TCP socket (listening if ``backlog`` is given); ``OSError`` if
    the address cannot be resolved or bound. IPv6 and IPv4 hosts alike."""
    infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
    family, kind, proto, _, address = infos[0]
    sock = socket.socket(family, kind, proto)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(address)
        if backlog is not None:
            sock.listen(backlog)
        sock.setblocking(False)
    except BaseException:
        sock.close()
        raise
    return sock
