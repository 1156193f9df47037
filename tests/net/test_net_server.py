"""Listen addresses, bound sockets and served apps (quorumkeep.net.address, net.server,
daemon.startup's serve and ledger wait): IPv6 and IPv4 alike, for every process that serves
HTTP. Binds sockets on loopback only; starts no process."""

from __future__ import annotations

import asyncio
import socket
from pathlib import Path

import httpx
import pytest
from fastapi import FastAPI

from quorumkeep.backup.config import config_from_mapping
from quorumkeep.backup.errors import BackupServiceError
from quorumkeep.daemon import startup
from quorumkeep.ledger.client import AsyncLedgerClient
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


def test_a_served_app_answers_until_stopped_and_then_frees_its_port() -> None:
    async def scenario() -> None:
        app = FastAPI()

        @app.get("/health")
        async def health() -> dict[str, str]:
            return {"status": "ok"}

        served = startup.serve(app, "127.0.0.1:0", ("127.0.0.1", 0))
        port = served.socket.getsockname()[1]
        try:
            async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}") as client:
                for _ in range(200):  # bounded: uvicorn starts serving within a few loop turns
                    if served.server.started:
                        break
                    await asyncio.sleep(0.01)
                assert (await client.get("/health")).json() == {"status": "ok"}
                missing = await client.get("/nope")
                assert missing.status_code == 404
        finally:
            await served.stop()
        assert served.socket.fileno() == -1
        bind_socket("127.0.0.1", port).close()  # the port is free again

    asyncio.run(scenario())


def test_an_address_in_use_is_a_startup_error_with_its_code() -> None:
    taken = bind_socket("127.0.0.1", 0, backlog=8)  # listening, as a server holds it
    try:
        port = taken.getsockname()[1]

        async def scenario() -> None:
            with pytest.raises(startup.StartupError) as refused:
                startup.serve(FastAPI(), f"127.0.0.1:{port}", ("127.0.0.1", port))
            assert refused.value.code == "address_in_use"
            assert str(refused.value).startswith(f"cannot listen on 127.0.0.1:{port}: ")

        asyncio.run(scenario())
    finally:
        taken.close()


def test_a_ledger_that_never_answers_is_a_startup_error_naming_url_wait_and_cause() -> None:
    closed = bind_socket("127.0.0.1", 0)
    port = closed.getsockname()[1]
    closed.close()  # nothing listens there now: every attempt is refused at once

    async def scenario() -> None:
        retries: list[str] = []
        async with AsyncLedgerClient(f"http://127.0.0.1:{port}", timeout=1.0) as ledger:
            with pytest.raises(startup.StartupError) as refused:
                await startup.ledger_status(ledger, 0.3, lambda exc: retries.append(exc.code))
        assert refused.value.code == "ledger_unreachable"
        message = str(refused.value)
        assert message.startswith(f"ledger at http://127.0.0.1:{port} unreachable for 0.3s (")
        assert retries and all(code == retries[0] for code in retries)

    asyncio.run(scenario())
