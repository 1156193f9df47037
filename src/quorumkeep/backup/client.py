"""The backup service's HTTP side of the backup protocol (httpx, TLS pinned per node).

A node is reached at the ``web_url`` the contract lists and trusted only through the
``tls_public_key`` listed beside it: the certificate presented at that address is fetched,
checked to carry exactly that key (:func:`quorumkeep.wire.tls.pinned`), and then used as
the only trust anchor of the connection. On top of TLS, every answer is signed by the same
key (docs/backup-protocol.md), so even a TLS-terminating proxy could not forge one.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

import httpx

from quorumkeep.backup.identity import BackupIdentity
from quorumkeep.crypto.group import RandomBytes
from quorumkeep.crypto.seal import KxKeyPair
from quorumkeep.wire.backup import (
    PATH_KEYSHARES,
    PATH_RECOVERY_SESSION,
    BackupProtocolError,
    BackupResponse,
    Keyset,
    KeyShare,
    RecoveryAck,
    RecoverySession,
    check_recovery_ack,
    check_recovery_session,
    make_hello,
    open_backup,
    seal_recovery,
)
from quorumkeep.wire.tls import TLSError, client_context, fetch_certificate, pinned


@dataclass(frozen=True)
class NodeEndpoint:
    """A node as the contract lists it: where to reach it and the key that proves it."""

    web_url: str
    tls_public_key: bytes

    @property
    def address(self) -> tuple[str, int]:
        parts = urlsplit(self.web_url)
        if parts.scheme != "https" or not parts.hostname:
            raise BackupProtocolError(
                "node_unreachable", f"{self.web_url} is not an https:// URL with a host"
            )
        try:
            port = parts.port or 443
        except ValueError:
            raise BackupProtocolError("node_unreachable", f"{self.web_url}: bad port") from None
        return parts.hostname, port


class NodeRefused(BackupProtocolError):
    """The node answered with one of the protocol's error codes (``remote_code``)."""

    def __init__(self, remote_code: str, message: str, status: int) -> None:
        super().__init__("node_error", f"node refused ({status} {remote_code}): {message}")
        self.remote_code = remote_code
        self.http_status = status


@dataclass(frozen=True)
class FetchedBackup:
    """A node's answer, authenticated and opened; not yet checked against the contract."""

    response: BackupResponse
    shares: list[KeyShare]

    @property
    def keyset(self) -> Keyset:
        return self.response.keyset


class NodeClient:
    """HTTPS client of the node endpoints; one per backup service process."""

    def __init__(
        self,
        *,
        timeout: float = 10.0,
        clock: Callable[[], float] = time.time,
        random_bytes: RandomBytes = os.urandom,
    ) -> None:
        self.timeout = timeout
        self._clock = clock
        self._random_bytes = random_bytes
        self._clients: dict[tuple[str, bytes], httpx.AsyncClient] = {}

    async def aclose(self) -> None:
        clients, self._clients = self._clients, {}
        for client in clients.values():
            await client.aclose()

    def _now_ms(self) -> int:
        return int(self._clock() * 1000)

    async def _client(self, endpoint: NodeEndpoint) -> httpx.AsyncClient:
        slot = (endpoint.web_url, endpoint.tls_public_key)
        client = self._clients.get(slot)
        if client is not None:
            return client
        host, port = endpoint.address
        try:
            certificate = await fetch_certificate(host, port, self.timeout)
            trusted = pinned(endpoint.tls_public_key, certificate)
            context = client_context(None, None, None, [trusted])
        except TLSError as exc:
            raise BackupProtocolError(
                "node_unreachable", f"{endpoint.web_url}: {exc.code}: {exc}"
            ) from None
        client = httpx.AsyncClient(
            base_url=endpoint.web_url.rstrip("/"), verify=context, timeout=self.timeout
        )
        self._clients[slot] = client
        return client

    async def _forget(self, endpoint: NodeEndpoint) -> None:
        client = self._clients.pop((endpoint.web_url, endpoint.tls_public_key), None)
        if client is not None:
            await client.aclose()

    async def _request(
        self,
        endpoint: NodeEndpoint,
        method: str,
        path: str,
        *,
        headers: dict[str, str] | None = None,
        json: Any = None,
    ) -> Any:
        client = await self._client(endpoint)
        try:
            response = await client.request(method, path, headers=headers, json=json)
        except httpx.HTTPError as exc:
            # The node may have restarted with another certificate: fetch it afresh next time.
            await self._forget(endpoint)
            raise BackupProtocolError(
                "node_unreachable", f"{endpoint.web_url}: {type(exc).__name__}"
            ) from None
        try:
            body = response.json()
        except ValueError:
            body = None
        if response.status_code != 200:
            error = body.get("error") if isinstance(body, dict) else None
            if isinstance(error, dict):
                raise NodeRefused(
                    str(error.get("code")), str(error.get("message")), response.status_code
                )
            raise NodeRefused("http_error", "no protocol error body", response.status_code)
        if body is None:
            raise BackupProtocolError("malformed_response", "the node's answer is not JSON")
        return body

    async def fetch_backup(self, endpoint: NodeEndpoint, identity: BackupIdentity) -> FetchedBackup:
        """``GET /backup/keyshares``: the node's current shares, authenticated and opened."""
        ephemeral = KxKeyPair.generate(self._random_bytes)
        hello = make_hello(
            "backup",
            account=identity.account,
            node_tls_public_key=endpoint.tls_public_key,
            identity=identity.signer,
            ephemeral=ephemeral,
            now_ms=self._now_ms(),
            random_bytes=self._random_bytes,
        )
        body = await self._request(endpoint, "GET", PATH_KEYSHARES, headers=hello.to_headers())
        try:
            response = BackupResponse.from_json(body)
        except BackupProtocolError as exc:
            raise BackupProtocolError("malformed_response", exc.message) from None
        shares = open_backup(
            response,
            hello=hello,
            node_tls_public_key=endpoint.tls_public_key,
            service_ephemeral=ephemeral,
            service_encryption=identity.encryption,
            now_ms=self._now_ms(),
        )
        return FetchedBackup(response, shares)

    async def push_recovery(
        self,
        endpoint: NodeEndpoint,
        identity: BackupIdentity,
        keyset: Keyset,
        shares: Sequence[KeyShare],
    ) -> RecoveryAck:
        """``POST /backup/recovery-session`` then ``PUT /backup/keyshares``; the node's
        signed receipt once it verified and imported the shares."""
        ephemeral = KxKeyPair.generate(self._random_bytes)
        hello = make_hello(
            "recovery",
            account=identity.account,
            node_tls_public_key=endpoint.tls_public_key,
            identity=identity.signer,
            ephemeral=ephemeral,
            now_ms=self._now_ms(),
            random_bytes=self._random_bytes,
        )
        body = await self._request(
            endpoint, "POST", PATH_RECOVERY_SESSION, headers=hello.to_headers()
        )
        try:
            session = RecoverySession.from_json(body)
        except BackupProtocolError as exc:
            raise BackupProtocolError("malformed_response", exc.message) from None
        check_recovery_session(
            session, hello=hello, node_tls_public_key=endpoint.tls_public_key, now_ms=self._now_ms()
        )
        push = seal_recovery(
            session,
            identity=identity.signer,
            service_ephemeral=ephemeral,
            service_encryption=identity.encryption,
            keyset=keyset,
            shares=shares,
            now_ms=self._now_ms(),
            random_bytes=self._random_bytes,
        )
        body = await self._request(endpoint, "PUT", PATH_KEYSHARES, json=push.to_json())
        try:
            ack = RecoveryAck.from_json(body)
        except BackupProtocolError as exc:
            raise BackupProtocolError("malformed_response", exc.message) from None
        check_recovery_ack(ack, push=push)
        return ack
