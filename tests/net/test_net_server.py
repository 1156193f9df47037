"""Listen addresses and bound sockets (quorumkeep.net.server): IPv6 and IPv4 alike, for
every process that serves HTTP. Binds sockets on loopback only; starts no process."""

from __future__ import annotations

import socket
from pathlib import Path

import pytest

from quorumkeep.backup.config import config_from_mapping
from quorumkeep.backup.errors import BackupServiceError
from quorumkeep.net.address import bind_socket, format_address, parse_host_port


def _has_ipv6_loopback() -> bool:
    if not socket.has_ipv6:
        return False
    try:
        with socket.socket(socket.AF_INET6, socket.SOCK_STREAM) as sock:
            sock.bind(("::1", 0))
    except OSError:
        return False
    return True


def test_parse_host_port() -> None:
    assert parse_host_port("127.0.0.1:8080") == ("127.0.0.1", 8080)
    assert parse_host_port("[::1]:65535") == ("::1", 65535)
    assert parse_host_port("[::1]:0", allow_zero=True) == ("::1", 0)
    assert parse_host_port("localhost:0", allow_zero=True) == ("localhost", 0)
    for bad in ["localhost", "::1:80", "[::1]80", "[nope]:80", "h:0", "h:65536", "h:²", "h:-1"]:
        with pytest.raises(ValueError):
            parse_host_port(bad)


@pytest.mark.parametrize("address", ["127.0.0.1:1", "[::1]:443", "example.org:80"])
def test_format_address_is_the_inverse(address: str) -> None:
    assert format_address(*parse_host_port(address)) == address


@pytest.mark.parametrize("host", ["127.0.0.1", "::1", "localhost"])
def test_bind_socket_binds_ipv4_and_ipv6(host: str) -> None:
    if host == "::1" and not _has_ipv6_loopback():
        pytest.skip("no IPv6 loopback on this machine")
    sock = bind_socket(host, 0, backlog=8)
    try:
        assert sock.getsockname()[1] > 0
        assert sock.family == (socket.AF_INET6 if ":" in host else sock.family)
        with pytest.raises(OSError):
            bind_socket(host, sock.getsockname()[1], backlog=8).close()
    finally:
        sock.close()


def test_backup_service_listens_on_ipv6_and_ipv4(tmp_path: Path) -> None:
    def listen(value: str) -> tuple[str, int] | None:
        document = {"account": "alice", "dir": "d", "ledger_url": "http://l", "listen": value}
        return config_from_mapping(document, base_dir=tmp_path).listen_address

    assert listen("127.0.0.1:0") == ("127.0.0.1", 0)
    assert listen("[::1]:9100") == ("::1", 9100)
    with pytest.raises(BackupServiceError):
        listen("::1:9100")
