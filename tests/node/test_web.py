"""The node's HTTPS web API: pinned TLS 1.3 with the node's certificate, /health, /status,
/metrics — in-process (two servers, two registries) and on a real node process."""

from __future__ import annotations

import asyncio
import contextlib
import json
import re
import socket
import ssl
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from node_helpers import make_identity, run

from process_helpers import Ledger, Node, wait_until
from quorumkeep.node.identity import NodeIdentity
from quorumkeep.node.metrics import MetricsSnapshot, NodeMetrics
from quorumkeep.node.web import WebServer, create_app
from quorumkeep.wire.tls import client_context


def status_document(identity: NodeIdentity, **changes: Any) -> dict[str, Any]:
    document: dict[str, Any] = {
        "account": identity.account,
        "tls_public_key": identity.tls_public_key.hex(),
        "signer_public_key": identity.signer_public_key.hex(),
        "incarnation": "00" * 16,
        "role": "participant",
        "participant_id": 2,
        "protocol_state": "Running",
        "epoch": 3,
        "resharing_epoch": None,
        "threshold": 2,
        "participants": [1, 2, 3],
        "peers": [
            {"participant_id": 1, "account": "a", "url": "127.0.0.1:1", "connected": True},
            {"participant_id": 3, "account": "c", "url": "127.0.0.1:3", "connected": False},
        ],
        "connected_peers": [1],
        "presignatures": {"0": 12},
        "owned_presignatures": {"0/3": 5},
        "keysets": {"3": [0]},
        "pending_requests": 0,
        "ledger_height": 99,
        "uptime_seconds": 1.5,
    }
    document.update(changes)
    return document


def pinned_client(certificate: bytes, base_url: str) -> httpx.AsyncClient:
    return httpx.AsyncClient(
        base_url=base_url, verify=client_context(None, None, None, [certificate]), timeout=5.0
    )


def server_for(
    identity: NodeIdentity,
    metrics: NodeMetrics,
    snapshot: MetricsSnapshot,
    status: Callable[[], dict[str, Any]] | None = None,
    port: int = 0,
) -> WebServer:
    app = create_app(
        status=status or (lambda: status_document(identity)),
        metrics=metrics,
        snapshot=lambda: snapshot,
    )
    return WebServer(identity.tls, "127.0.0.1", port, app)


def test_two_servers_in_one_process_keep_their_own_metrics(tmp_path: Path) -> None:
    alice, _ = make_identity(tmp_path / "alice", "alice")
    bob, _ = make_identity(tmp_path / "bob", "bob")
    alice_metrics, bob_metrics = NodeMetrics(), NodeMetrics()
    alice_metrics.signatures.labels(domain="0").inc(3)
    alice_metrics.sign_latency.observe(0.012)
    snapshot = MetricsSnapshot(
        protocol_state="Running",
        epoch=3,
        participant_id=2,
        participants=3,
        peers={1: True, 3: False},
        presignatures={0: 12},
        owned_presignatures={0: 5},
        signature_shares=7,
        key_shares=1,
        pending_requests=4,
    )

    async def scenario() -> tuple[str, str, dict[str, Any], dict[str, str]]:
        a = server_for(alice, alice_metrics, snapshot)
        b = server_for(bob, bob_metrics, MetricsSnapshot())
        await a.start()
        await b.start()
        try:
            async with pinned_client(alice.certificate, f"https://127.0.0.1:{a.address[1]}") as c:
                health = (await c.get("/health")).json()
                status = (await c.get("/status")).json()
                response = await c.get("/metrics")
                assert response.headers["content-type"].startswith("text/plain")
                text_a = response.text
            async with pinned_client(bob.certificate, f"https://127.0.0.1:{b.address[1]}") as c:
                text_b = (await c.get("/metrics")).text
        finally:
            await a.stop()
            await b.stop()
        return text_a, text_b, status, health

    text_a, text_b, status, health = run(scenario())
    assert health == {"status": "ok"}
    assert status == status_document(alice)
    assert 'quorumkeep_signatures_total{domain="0"} 3.0' in text_a
    assert "quorumkeep_sign_latency_seconds_count 1.0" in text_a
    assert 'quorumkeep_sign_latency_seconds_bucket{le="0.02"} 1.0' in text_a
    assert 'quorumkeep_presignatures{domain="0"} 12.0' in text_a
    assert 'quorumkeep_presignatures_owned{domain="0"} 5.0' in text_a
    assert 'quorumkeep_peer_connected{participant="1"} 1.0' in text_a
    assert 'quorumkeep_peer_connected{participant="3"} 0.0' in text_a
    assert "quorumkeep_peers_connected 1.0" in text_a
    assert "quorumkeep_signature_shares_total 7.0" in text_a
    assert 'quorumkeep_protocol_state{state="Running"} 1.0' in text_a
    assert "quorumkeep_epoch 3.0" in text_a
    assert "quorumkeep_pending_sign_requests 4.0" in text_a
    # bob's registry saw none of alice's numbers.
    assert 'quorumkeep_signatures_total{domain="0"}' not in text_b
    assert "quorumkeep_sign_latency_seconds_count 0.0" in text_b
    assert 'quorumkeep_protocol_state{state="Unknown"} 1.0' in text_b


def test_a_client_pinned_to_another_certificate_is_refused(tmp_path: Path) -> None:
    alice, _ = make_identity(tmp_path / "alice", "alice")
    mallory, _ = make_identity(tmp_path / "mallory", "mallory")

    async def scenario() -> None:
        server = server_for(alice, NodeMetrics(), MetricsSnapshot())
        await server.start()
        url = f"https://127.0.0.1:{server.address[1]}"
        try:
            # Expecting mallory's key at alice's address: the handshake fails.
            async with pinned_client(mallory.certificate, url) as client:
                with pytest.raises(httpx.ConnectError):
                    await client.get("/health")
            # TLS 1.2 is not offered.
            old = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
            old.check_hostname = False
            old.load_verify_locations(cadata=alice.certificate.decode())
            old.maximum_version = ssl.TLSVersion.TLSv1_2
            async with httpx.AsyncClient(base_url=url, verify=old, timeout=5.0) as client:
                with pytest.raises(httpx.ConnectError):
                    await client.get("/health")
            # Plain HTTP gets no answer from the TLS port.
            async with httpx.AsyncClient(timeout=5.0) as client:
                with pytest.raises(httpx.HTTPError):
                    await client.get(f"http://127.0.0.1:{server.address[1]}/health")
        finally:
            await server.stop()

    run(scenario())


def test_a_taken_port_is_an_oserror_and_stop_frees_the_port(tmp_path: Path) -> None:
    alice, _ = make_identity(tmp_path / "alice", "alice")

    async def scenario() -> None:
        with socket.socket() as taken:
            taken.bind(("127.0.0.1", 0))
            taken.listen()
            port = taken.getsockname()[1]
            with pytest.raises(OSError):
                await server_for(alice, NodeMetrics(), MetricsSnapshot(), port=port).start()
        server = server_for(alice, NodeMetrics(), MetricsSnapshot(), port=port)
        await server.start()
        await server.stop()
        again = server_for(alice, NodeMetrics(), MetricsSnapshot(), port=port)
        await again.start()
        await again.stop()
        await again.stop()  # stopping twice is harmless

    run(scenario())


def test_a_stop_does_not_wait_on_idle_keep_alive_clients(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """An idle TLS client never answers the server's close: the stop aborts that connection
    once its responses are written, instead of waiting out the graceful timeout."""
    alice, _ = make_identity(tmp_path / "alice", "alice")

    async def scenario() -> None:
        server = server_for(alice, NodeMetrics(), MetricsSnapshot())
        await server.start()
        client = pinned_client(alice.certificate, f"https://127.0.0.1:{server.address[1]}")
        try:
            assert (await client.get("/health")).status_code == 200  # kept alive, then idle
            await server.stop()
        finally:
            await client.aclose()

    with caplog.at_level("INFO", logger="uvicorn.error"):
        run(scenario())
    assert "timeout graceful shutdown exceeded" not in caplog.text


def test_an_invalid_status_is_a_server_error_not_a_leak(tmp_path: Path) -> None:
    alice, _ = make_identity(tmp_path / "alice", "alice")

    async def scenario() -> int:
        bad = lambda: status_document(alice, extra_field="x")  # noqa: E731
        server = server_for(alice, NodeMetrics(), MetricsSnapshot(), status=bad)
        await server.start()
        try:
            url = f"https://127.0.0.1:{server.address[1]}"
            async with pinned_client(alice.certificate, url) as client:
                response = await client.get("/status")
                assert "extra_field" not in response.text
                return response.status_code
        finally:
            await server.stop()

    assert asyncio.run(asyncio.wait_for(scenario(), 30)) == 500


def test_a_stray_slash_is_a_404_with_its_code_not_a_redirect(tmp_path: Path) -> None:
    alice, _ = make_identity(tmp_path / "alice", "alice")
    app = create_app(
        status=lambda: status_document(alice), metrics=NodeMetrics(), snapshot=MetricsSnapshot
    )

    async def replies() -> list[tuple[int, str]]:
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://node") as client:
            answers = [await client.get(path) for path in ("/status/", "/health/", "/metrics/")]
        return [(r.status_code, r.json()["error"]["code"]) for r in answers]

    assert asyncio.run(replies()) == [(404, "not_found")] * 3


# --- a real node process -----------------------------------------------------------------


@pytest.fixture(scope="module")
def ledger(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Ledger]:
    base = tmp_path_factory.mktemp("web-ledger")
    served = Ledger(base / "data", ("alice",)).create()
    try:
        yield served.start()
    finally:
        served.close()


def wrapping_public_key(directory: Path) -> str:
    """The wrapping key the node's storage key derives (docs/storage.md), computed apart."""
    from process_helpers import NODE_PASSPHRASE
    from quorumkeep.node.identity import wrapping_key_pair
    from quorumkeep.node.storage_key import PassphraseKeySource

    source = PassphraseKeySource(directory, NODE_PASSPHRASE.encode)
    return wrapping_key_pair(source.load()).public_key.hex()


@pytest.mark.slow
def test_a_node_process_serves_status_and_metrics_over_pinned_https(
    ledger: Ledger, tmp_path: Path
) -> None:
    node = Node("alice", tmp_path / "alice", ledger.url).init()
    try:
        node.start()
        node.wait_healthy()
        status: dict[str, Any] = {}

        def settled() -> bool:
            status.update(node.status())
            return bool(status["role"] == "not_participant")

        wait_until(settled, 10, "the node's first state read")
        identity = json.loads((node.directory / "identity.json").read_text())
        assert status["account"] == "alice"
        assert status["tls_public_key"] == identity["tls_public_key"]
        assert status["signer_public_key"] == identity["signer_public_key"]
        assert status["participant_id"] is None
        assert status["protocol_state"] == "NotInitialized"
        assert status["keysets"] == {} and status["presignatures"] == {}
        assert status["ledger_height"] >= 0
        # Public keys are the only 32-byte hex values in it: nothing secret rides along.
        hex_values = set(re.findall(r"[0-9a-f]{64}", json.dumps(status)))
        wrapping = wrapping_public_key(node.directory)
        assert status["wrapping_public_key"] == wrapping
        assert hex_values == {identity["tls_public_key"], identity["signer_public_key"], wrapping}

        text = node.get("/metrics").text
        assert 'quorumkeep_protocol_state{state="NotInitialized"} 1.0' in text
        assert "quorumkeep_participant_id 0.0" in text
        assert "quorumkeep_peers_connected 0.0" in text

        # Anyone expecting another key at this address is refused.
        other, _ = make_identity(tmp_path / "other", "alice")
        with (
            httpx.Client(
                verify=client_context(None, None, None, [other.certificate]), timeout=5.0
            ) as client,
            pytest.raises(httpx.ConnectError),
        ):
            client.get(f"{node.web_url}/health")
    finally:
        node.close()


def test_connections_that_never_complete_a_request_are_closed(tmp_path: Path) -> None:
    """The web port closes a connection that sends nothing, or dribbles its request head,
    once the header timeout passed; a normal request on another connection is served."""
    alice, _ = make_identity(tmp_path / "alice", "alice")

    async def closed(port: int, send: bytes, dribble: bytes) -> bool:
        context = client_context(None, None, None, [alice.certificate])
        reader, writer = await asyncio.open_connection("127.0.0.1", port, ssl=context)
        try:
            writer.write(send)
            rest = dribble
            async with asyncio.timeout(30):
                while True:
                    try:
                        async with asyncio.timeout(0.3):
                            if await reader.read(4096) == b"":
                                return True
                    except TimeoutError:
                        pass
                    if rest:
                        writer.write(rest[:1])
                        rest = rest[1:]
        except (ConnectionError, ssl.SSLError):
            return True
        finally:
            writer.close()
            with contextlib.suppress(Exception):
                await writer.wait_closed()

    async def scenario() -> None:
        app = create_app(
            status=lambda: status_document(alice),
            metrics=NodeMetrics(),
            snapshot=lambda: MetricsSnapshot(),
        )
        server = WebServer(alice.tls, "127.0.0.1", 0, app, header_timeout=1.0)
        await server.start()
        port = server.address[1]
        head = b"GET /health HTTP/1.1\r\nHost: x\r\nX-Slow: " + b"a" * 200 + b"\r\n\r\n"
        try:
            silent, dribbled = await asyncio.gather(
                closed(port, b"", b""), closed(port, head[:10], head[10:])
            )
            assert silent and dribbled
            async with pinned_client(alice.certificate, f"https://127.0.0.1:{port}") as client:
                assert (await client.get("/health")).status_code == 200
        finally:
            await server.stop()

    run(scenario())
