"""Free ports on 127.0.0.1 for processes started locally (devnets, benchmarks, tests).

A port is free when a bind to it succeeds now; the process that will listen on it binds
later, so the answer is a good guess, not a reservation. Two guesses must at least not
collide with each other: the kernel may hand a port it just released out again, so
:func:`free_port` never returns a port it returned before in this process (nor one in
``taken``), which keeps the ports of one devnet, benchmark or test distinct.
"""

from __future__ import annotations

import socket
from collections.abc import Iterable

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
