"""quorumkeep.net.address.free_port: guesses of free ports never repeat within a process."""

from __future__ import annotations

import socket

import pytest

from quorumkeep.net import address


def test_ports_handed_out_are_distinct_bindable_and_avoid_taken() -> None:
    first = address.free_port()
    handed = [address.free_port(taken={first + 1}) for _ in range(200)]
    assert len(set(handed)) == len(handed) and first not in handed
    assert first + 1 not in handed
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", handed[-1]))  # free when handed out


def test_a_kernel_that_keeps_giving_one_port_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    port = address.free_port()

    class SamePort(socket.socket):
        def getsockname(self) -> tuple[str, int]:
            return ("127.0.0.1", port)

    monkeypatch.setattr(address.socket, "socket", SamePort)
    with pytest.raises(address.NoFreePort, match="after 64 attempts"):
        address.free_port()
