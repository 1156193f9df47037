"""The node's /backup endpoints mounted in the node's HTTPS web server (real TLS, real sockets)
and reading a real ledger process's contract: backups, recovery sessions and pushes, and every
refusal — each refusal leaving the node unchanged."""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import httpx
import pytest
from backup_helpers import (
    Network,
    NodeServer,
    ServiceKeys,
    make_node_identity,
    pinned_http,
    run,
    serving,
    start_network,
    store_node_shares,
)

from quorumkeep.backup.client import NodeClient, NodeEndpoint, NodeRefused
from quorumkeep.crypto.seal import KxKeyPair
from quorumkeep.ledger.client import AsyncLedgerClient
from quorumkeep.node.identity import NodeIdentity
from quorumkeep.node.keystore import Keystore
from quorumkeep.wire.backup import (
    MAX_BODY_BYTES,
    BackupProtocolError,
    DomainKey,
    Hello,
    Keyset,
    KeyShare,
    PublicKeyPackageInfo,
    RecoveryPush,
    RecoverySession,
    make_hello,
    seal_recovery,
    verify_shares,
)

pytestmark = pytest.mark.slow  # every test here uses a module-wide network of processes


@pytest.fixture(scope="module")
def network(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Network]:
    net = start_network(tmp_path_factory.mktemp("node-api"), domains=2)
    store_node_shares(net)
    try:
        yield net
    finally:
        net.close()


@pytest.fixture(scope="module")
def alice_service(network: Network) -> ServiceKeys:
    return ServiceKeys("alice")


def registered(network: Network, service: ServiceKeys) -> ServiceKeys:
    if network.ledger.view("backup_service_info", {"account": "alice"}) != service.registration():
        service.register(network.ledger)
    return service


def node_server(network: Network) -> NodeServer:
    return NodeServer(network.node, network.keystore, network.ledger.url, port=network.web_port)


def endpoint_of(server: NodeServer) -> NodeEndpoint:
    return NodeEndpoint(server.url, server.identity.tls_public_key)


def hello_headers(
    service: ServiceKeys, node_key: bytes, *, purpose: str = "backup", **changes: Any
) -> dict[str, str]:
    hello = make_hello(
        purpose,  # type: ignore[arg-type]
        account=service.account,
        node_tls_public_key=node_key,
        identity=service.signer,
        ephemeral=KxKeyPair.generate(os.urandom),
        now_ms=int(time.time() * 1000),
        random_bytes=os.urandom,
    )
    return replace(hello, **changes).to_headers()


def error_code(response: httpx.Response) -> str:
    body = response.json()
    assert set(body) == {"error"} and set(body["error"]) == {"code", "message"}
    return str(body["error"]["code"])


async def packages_of(network: Network, keyset: Keyset) -> dict[int, PublicKeyPackageInfo]:
    async with AsyncLedgerClient(network.ledger.url) as ledger:
        return {
            d: PublicKeyPackageInfo.from_json(
                await ledger.view("public_key_package", {"domain_id": d})
            )
            for d in keyset.domain_ids
        }


# --- backup ---------------------------------------------------------------------------------------


def test_backup_needs_the_registered_service_then_serves_verifiable_shares(
    network: Network, alice_service: ServiceKeys
) -> None:
    if network.ledger.view("backup_service_info", {"account": "alice"}) is None:

        async def refused() -> None:
            async with serving(node_server(network)) as server:
                client = NodeClient()
                try:
                    with pytest.raises(NodeRefused) as excinfo:
                        await client.fetch_backup(endpoint_of(server), alice_service.identity())
                finally:
                    await client.aclose()
                assert excinfo.value.remote_code == "unregistered_caller"
                assert excinfo.value.http_status == 403
                assert server.served == []

        run(refused())
    registered(network, alice_service)

    async def scenario() -> None:
        async with serving(node_server(network)) as server:
            client = NodeClient()
            try:
                fetched = await client.fetch_backup(endpoint_of(server), alice_service.identity())
            finally:
                await client.aclose()
            keyset = network.keyset()
            assert fetched.keyset == keyset
            verified = verify_shares(
                "alice", 1, keyset, fetched.shares, await packages_of(network, keyset)
            )
            assert [s.signing_share for s in verified.shares] == [
                d.packages[1].signing_share for d in network.domains
            ]
            assert [epoch for epoch, _ in server.served] == [keyset.epoch]
            assert abs(server.served[0][1] - time.time()) < 30

    run(scenario())


def test_backup_refusals(network: Network, alice_service: ServiceKeys, tmp_path: Path) -> None:
    registered(network, alice_service)
    bob_service = ServiceKeys("bob")
    bob_service.register(network.ledger)
    stranger = ServiceKeys("alice")
    node_key = network.node.tls_public_key

    async def scenario() -> None:
        async with (
            serving(node_server(network)) as server,
            pinned_http(network.node, server.url) as http,
        ):

            async def get(headers: dict[str, str]) -> str:
                response = await http.get("/backup/keyshares", headers=headers)
                assert response.status_code >= 400
                return error_code(response)

            # another account's backup service, speaking for alice or for bob
            assert await get(hello_headers(replace(bob_service, account="alice"), node_key)) == (
                "unregistered_caller"
            )
            assert await get(hello_headers(bob_service, node_key)) == "wrong_node"
            # a key registered nowhere
            assert await get(hello_headers(stranger, node_key)) == "unregistered_caller"
            # the registered key, but the signature does not cover what was sent
            headers = hello_headers(alice_service, node_key)
            headers["quorumkeep-timestamp"] = str(int(headers["quorumkeep-timestamp"]) + 1)
            assert await get(headers) == "bad_signature"
            # replayed
            headers = hello_headers(alice_service, node_key)
            assert (await http.get("/backup/keyshares", headers=headers)).status_code == 200
            assert await get(headers) == "replay"
            # stale
            stale = int(time.time() * 1000) - 120_000
            old = make_hello(
                "backup",
                account="alice",
                node_tls_public_key=node_key,
                identity=alice_service.signer,
                ephemeral=KxKeyPair.generate(os.urandom),
                now_ms=stale,
                random_bytes=os.urandom,
            )
            assert await get(old.to_headers()) == "stale_timestamp"
            # addressed to another node: cannot be relayed
            other = make_node_identity(tmp_path / "other", "alice")[0].tls_public_key
            assert await get(hello_headers(alice_service, other)) == "wrong_node"
            # a recovery hello is not a backup hello
            assert await get(hello_headers(alice_service, node_key, purpose="recovery")) == (
                "malformed_request"
            )
            assert await get({"quorumkeep-account": "alice"}) == "malformed_request"
            # a timestamp of digits that int() does not read (b"\xb2" is "²" in Latin-1)
            raw: dict[str, str | bytes] = dict(hello_headers(alice_service, node_key))
            raw["quorumkeep-timestamp"] = b"\xb2"
            response = await http.get("/backup/keyshares", headers=raw)
            assert (response.status_code, error_code(response)) == (400, "malformed_request")
            # the node does not hold the keyset's shares
            server.shares_override = lambda keyset: []
            assert await get(hello_headers(alice_service, node_key)) == "no_shares"

            def unreadable(keyset: Keyset) -> list[KeyShare]:
                raise RuntimeError("damaged keystore")

            server.shares_override = unreadable
            assert await get(hello_headers(alice_service, node_key)) == "no_shares"
            response = await http.get(
                "/backup/keyshares", headers=hello_headers(alice_service, node_key)
            )
            assert response.status_code == 404
            assert len(server.served) == 1  # only the one valid request was served

    try:
        run(scenario())
    finally:
        alice_service.register(network.ledger)


def test_unauthenticated_requests_read_nothing_through_the_nodes_ledger_client(
    network: Network, alice_service: ServiceKeys, caplog: pytest.LogCaptureFixture
) -> None:
    """The headers an attacker needs are public: a flood of garbage-signed requests must not
    queue behind the node's own contract calls. The signature is checked against the
    registered key cached from the contract's events before any read; a key the cache does
    not know costs at most one read per second, on the separate, bounded client."""
    registered(network, alice_service)
    stranger = ServiceKeys("alice")
    node_key = network.node.tls_public_key

    caplog.set_level(logging.INFO, "quorumkeep.node.backup")

    async def scenario() -> None:
        async with (
            serving(node_server(network)) as server,
            pinned_http(network.node, server.url) as http,
        ):
            ok = await http.get("/backup/keyshares", headers=hello_headers(alice_service, node_key))
            assert ok.status_code == 200
            shared, separate = len(server.views), len(server.registration_views)
            started = time.monotonic()
            for _ in range(20):
                headers = hello_headers(alice_service, node_key)
                headers["quorumkeep-timestamp"] = str(int(headers["quorumkeep-timestamp"]) + 1)
                response = await http.get("/backup/keyshares", headers=headers)
                assert error_code(response) == "bad_signature"
                response = await http.get(
                    "/backup/keyshares", headers=hello_headers(stranger, node_key)
                )
                assert error_code(response) == "unregistered_caller"
                body = b'{"not": "a push"}'
                response = await http.put("/backup/keyshares", content=body)
                assert error_code(response) == "malformed_request"
            elapsed = time.monotonic() - started
            # Refusal lines are bounded: at most 10 per kind and minute, the rest counted.
            refusals = [r for r in caplog.records if "refused" in r.getMessage()]
            assert len(refusals) <= 3 * 10, len(refusals)
            assert server.views[shared:] == []
            assert len(server.registration_views) - separate <= 1 + elapsed
            assert len(server.served) == 1

    run(scenario())


def test_service_refuses_shares_that_do_not_match_the_contract(
    network: Network, alice_service: ServiceKeys
) -> None:
    """A node answering with another participant's shares passes the transfer but not the
    verification against the contract's public key packages."""
    registered(network, alice_service)

    async def scenario() -> None:
        server = node_server(network)
        server.shares_override = lambda keyset: [
            KeyShare(d.domain_id, keyset.epoch, 1, d.packages[2].signing_share)
            for d in network.domains
        ]
        async with serving(server):
            client = NodeClient()
            try:
                fetched = await client.fetch_backup(endpoint_of(server), alice_service.identity())
            finally:
                await client.aclose()
        keyset = network.keyset()
        with pytest.raises(BackupProtocolError) as excinfo:
            verify_shares("alice", 1, keyset, fetched.shares, await packages_of(network, keyset))
        assert excinfo.value.code == "shares_mismatch"

    run(scenario())


# --- recovery ------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def destination(
    network: Network, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[NodeIdentity, Keystore]]:
    identity, keystore = make_node_identity(tmp_path_factory.mktemp("dest"), "alice")
    try:
        yield identity, keystore
    finally:
        keystore.close()


def start_migration(network: Network, identity: NodeIdentity, web_url: str) -> int:
    value = network.ledger.call(
        "alice",
        "start_node_migration",
        {
            "destination": {
                "url": "127.0.0.1:39999",
                "web_url": web_url,
                "tls_public_key": identity.tls_public_key.hex(),
            },
            "destination_signer_public_key": identity.signer_public_key.hex(),
        },
    )
    return int(value["started_height"])


async def open_session(
    http: httpx.AsyncClient, service: ServiceKeys, node_key: bytes
) -> tuple[RecoverySession, KxKeyPair]:
    ephemeral = KxKeyPair.generate(os.urandom)
    hello = make_hello(
        "recovery",
        account=service.account,
        node_tls_public_key=node_key,
        identity=service.signer,
        ephemeral=ephemeral,
        now_ms=int(time.time() * 1000),
        random_bytes=os.urandom,
    )
    response = await http.post("/backup/recovery-session", headers=hello.to_headers())
    assert response.status_code == 200, response.text
    return RecoverySession.from_json(response.json()), ephemeral


def sealed_push(
    service: ServiceKeys,
    session: RecoverySession,
    ephemeral: KxKeyPair,
    keyset: Keyset,
    shares: list[KeyShare],
) -> RecoveryPush:
    return seal_recovery(
        session,
        identity=service.signer,
        service_ephemeral=ephemeral,
        service_encryption=service.encryption,
        keyset=keyset,
        shares=shares,
        now_ms=int(time.time() * 1000),
        random_bytes=os.urandom,
    )


def resigned(service: ServiceKeys, push: RecoveryPush, **changes: Any) -> RecoveryPush:
    changed = replace(push, **changes)
    return replace(changed, signature=service.signer.sign(changed.statement()))


def test_recovery_session_needs_a_migration_to_this_node(
    network: Network, alice_service: ServiceKeys, destination: tuple[NodeIdentity, Keystore]
) -> None:
    registered(network, alice_service)
    identity, keystore = destination
    assert network.ledger.view("migration_info", {"account": "alice"}) is None

    async def scenario() -> None:
        dest = NodeServer(identity, keystore, network.ledger.url)
        async with serving(dest), pinned_http(identity, dest.url) as http:
            headers = hello_headers(alice_service, identity.tls_public_key, purpose="recovery")
            response = await http.post("/backup/recovery-session", headers=headers)
            assert response.status_code == 409
            assert error_code(response) == "no_open_migration"

    run(scenario())


def test_recovery_push_refusals_leave_the_node_unchanged(
    network: Network, alice_service: ServiceKeys, destination: tuple[NodeIdentity, Keystore]
) -> None:
    registered(network, alice_service)
    identity, keystore = destination
    keyset = network.keyset()
    good = [d.share(1, keyset.epoch) for d in network.domains]

    async def scenario() -> None:
        dest = NodeServer(identity, keystore, network.ledger.url)
        async with serving(dest), pinned_http(identity, dest.url) as http:
            start_migration(network, identity, dest.url)
            node_key = identity.tls_public_key

            async def put(push: RecoveryPush | bytes) -> tuple[int, str]:
                if isinstance(push, RecoveryPush):
                    response = await http.put("/backup/keyshares", json=push.to_json())
                else:
                    response = await http.put("/backup/keyshares", content=push)
                return response.status_code, error_code(response)

            async def fresh(shares: list[KeyShare] = good, ks: Keyset = keyset) -> RecoveryPush:
                session, ephemeral = await open_session(http, alice_service, node_key)
                return sealed_push(alice_service, session, ephemeral, ks, shares)

            # shares not matching the public keys: bob's shares passed off as alice's
            swapped = [replace(d.share(2, keyset.epoch), participant_id=1) for d in network.domains]
            assert await put(await fresh(swapped)) == (422, "shares_mismatch")
            # shares of another epoch
            other_epoch = Keyset(keyset.epoch + 1, keyset.domains)
            bumped = [replace(s, epoch=keyset.epoch + 1) for s in good]
            assert await put(await fresh(bumped, other_epoch)) == (409, "wrong_epoch")
            # another keyset of the same epoch
            other_keys = Keyset(
                keyset.epoch,
                tuple(
                    DomainKey(d.domain_id, d.scheme, keyset.domains[0].public_key)
                    for d in keyset.domains
                ),
            )
            assert await put(await fresh(good, other_keys)) == (409, "wrong_keyset")
            # tampered ciphertext: the service's signature no longer covers it
            push = await fresh()
            flipped = bytearray(push.ciphertext)
            flipped[40] ^= 1
            assert await put(replace(push, ciphertext=bytes(flipped))) == (401, "bad_signature")
            # validly signed, but the ciphertext was sealed for another session
            other = await fresh()
            target = await fresh()
            assert await put(resigned(alice_service, target, ciphertext=other.ciphertext)) == (
                400,
                "decryption_failed",
            )
            # a session is single-use: replaying the body, or re-using the session
            push = await fresh(swapped)
            assert (await put(push))[1] == "shares_mismatch"
            assert await put(push) == (409, "replay")
            assert await put(resigned(alice_service, push, nonce=os.urandom(16))) == (
                409,
                "replay",
            )
            assert await put(
                resigned(alice_service, push, session_id=os.urandom(16), nonce=os.urandom(16))
            ) == (404, "unknown_session")
            # addressed to another node, from an unregistered key, stale, malformed, too big
            push = await fresh()
            assert await put(
                resigned(alice_service, push, node_tls_public_key=network.node.tls_public_key)
            ) == (
                421,
                "wrong_node",
            )
            stranger = ServiceKeys("alice")
            assert await put(
                resigned(stranger, push, service_identity_public_key=stranger.signer.public_key)
            ) == (
                403,
                "unregistered_caller",
            )
            old = int(time.time() * 1000) - 120_000
            assert await put(resigned(alice_service, push, timestamp_ms=old)) == (
                400,
                "stale_timestamp",
            )
            assert await put(b"{not json") == (400, "malformed_request")
            assert await put(b"[" * 200_000) == (400, "malformed_request")
            assert await put(b"[" * 1_000 + b"]" * 1_000) == (400, "malformed_request")
            assert await put(b" " * (MAX_BODY_BYTES + 1)) == (413, "body_too_large")
            assert dest.imported == []
            assert keystore.key_shares() == []

    run(scenario())
    network.ledger.call("alice", "cancel_node_migration", {})


def test_recovery_round_trip_imports_verified_shares(
    network: Network, alice_service: ServiceKeys, destination: tuple[NodeIdentity, Keystore]
) -> None:
    registered(network, alice_service)
    identity, keystore = destination
    keyset = network.keyset()

    async def scenario() -> None:
        old = node_server(network)
        dest = NodeServer(identity, keystore, network.ledger.url)
        async with serving(old), serving(dest):
            start_migration(network, identity, dest.url)
            client = NodeClient()
            try:
                # The node being replaced is not the destination: it refuses a recovery.
                with pytest.raises(NodeRefused) as excinfo:
                    await client.push_recovery(
                        endpoint_of(old), alice_service.identity(), keyset, []
                    )
                assert excinfo.value.remote_code == "no_open_migration"
                fetched = await client.fetch_backup(endpoint_of(old), alice_service.identity())
                ack = await client.push_recovery(
                    endpoint_of(dest), alice_service.identity(), keyset, fetched.shares
                )
            finally:
                await client.aclose()
            assert ack.epoch == keyset.epoch and ack.keyset_hash == keyset.hash
            assert len(dest.imported) == 1
            assert dest.imported[0].keyset == keyset
        held = {(r.domain_id, r.epoch) for r in keystore.key_shares()}
        assert held == {(d, keyset.epoch) for d in keyset.domain_ids}

    try:
        run(scenario())
    finally:
        network.ledger.call("alice", "cancel_node_migration", {})


def test_import_failure_is_reported(
    network: Network, alice_service: ServiceKeys, tmp_path: Path
) -> None:
    registered(network, alice_service)
    identity, keystore = make_node_identity(tmp_path / "broken", "alice")
    keyset = network.keyset()

    async def scenario() -> None:
        dest = NodeServer(identity, keystore, network.ledger.url)
        dest.import_error = OSError("disk full")
        async with serving(dest):
            start_migration(network, identity, dest.url)
            client = NodeClient()
            try:
                with pytest.raises(NodeRefused) as excinfo:
                    await client.push_recovery(
                        endpoint_of(dest),
                        alice_service.identity(),
                        keyset,
                        [d.share(1, keyset.epoch) for d in network.domains],
                    )
            finally:
                await client.aclose()
            assert excinfo.value.remote_code == "import_failed"
            assert excinfo.value.http_status == 500

    try:
        run(scenario())
    finally:
        keystore.close()
        network.ledger.call("alice", "cancel_node_migration", {})


def test_hello_headers_round_trip_over_http(network: Network, alice_service: ServiceKeys) -> None:
    """What a client sends is what the node parses (header names are case-insensitive)."""
    headers = hello_headers(alice_service, network.node.tls_public_key)
    assert Hello.from_headers(httpx.Headers(headers)).to_headers() == headers
