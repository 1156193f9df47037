"""The node's client of the key providers: their endpoints as the contract lists them, and
deposit and release over HTTP (docs/key-provider-protocol.md §4).

:class:`ProviderClient` speaks to one provider per call; every failure is a
:class:`~quorumkeep.wire.key_provider.KeyProviderError` with the protocol's error code (§6),
and a released piece is checked against the recorded commitment before it is returned.
Dealing to and gathering from a whole holder set: node/key_provider_deal.py.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any

import httpx

from quorumkeep.crypto.group import RandomBytes
from quorumkeep.crypto.seal import KxKeyPair
from quorumkeep.crypto.storage_split import KeyPiece, verify_piece
from quorumkeep.ledger.client import AsyncLedgerClient
from quorumkeep.net.http_client import default_verify
from quorumkeep.wire.backup.statements import Signer
from quorumkeep.wire.key_provider import (
    PATH_CHALLENGE,
    PATH_DEPOSIT,
    PATH_RELEASE,
    KeyProviderError,
    Release,
    make_deposit,
    make_release_request,
    open_release,
    read_hex,
    release_report_data,
)

REQUEST_TIMEOUT = 10.0

Quote = Callable[[bytes], Awaitable[dict[str, Any]]]
"""Evidence (docs/attestation.md) whose report_data is the given 64 bytes."""


# --- providers as the contract lists them ------------------------------------------------


@dataclass(frozen=True)
class ProviderEndpoint:
    account: str
    url: str
    identity_public_key: bytes
    encryption_public_key: bytes

    @classmethod
    def from_view(cls, account: str, body: Mapping[str, Any]) -> ProviderEndpoint:
        return cls(
            account,
            str(body["url"]),
            bytes.fromhex(body["identity_public_key"]),
            bytes.fromhex(body["encryption_public_key"]),
        )


async def read_providers(ledger: AsyncLedgerClient) -> dict[str, ProviderEndpoint]:
    body = await ledger.view("key_providers")
    return {a: ProviderEndpoint.from_view(a, p) for a, p in body.items()}


# --- the client ---------------------------------------------------------------------------


class ProviderClient:
    """Deposit and release over HTTP; every failure is a :class:`KeyProviderError`."""

    def __init__(self, timeout: float = REQUEST_TIMEOUT, quote: Quote | None = None) -> None:
        self._http = httpx.AsyncClient(timeout=timeout, verify=default_verify())
        self._quote = quote

    async def aclose(self) -> None:
        await self._http.aclose()

    async def _post(self, endpoint: ProviderEndpoint, path: str, body: Any) -> Any:
        try:
            response = await self._http.post(endpoint.url + path, json=body)
        except httpx.HTTPError as exc:
            raise KeyProviderError(
                "provider_unreachable", f"{endpoint.url}: {type(exc).__name__}"
            ) from None
        try:
            answer = response.json()
        except ValueError:
            raise KeyProviderError(
                "malformed_response", f"HTTP {response.status_code} without a JSON body"
            ) from None
        if response.status_code != 200:
            if isinstance(answer, dict) and isinstance(answer.get("code"), str):
                raise KeyProviderError(answer["code"], str(answer.get("message", ""))[:300])
            raise KeyProviderError("malformed_response", f"HTTP {response.status_code}")
        return answer

    async def deposit(
        self,
        endpoint: ProviderEndpoint,
        *,
        account: str,
        epoch: int,
        threshold: int,
        commitment: Sequence[bytes],
        piece: KeyPiece,
        signer: Signer,
        release_public_key: bytes,
        random_bytes: RandomBytes,
    ) -> None:
        message = make_deposit(
            account=account,
            epoch=epoch,
            threshold=threshold,
            commitment=commitment,
            piece=piece,
            signer=signer,
            release_public_key=release_public_key,
            provider_identity=endpoint.identity_public_key,
            provider_encryption=endpoint.encryption_public_key,
            now_ms=int(time.time() * 1000),
            random_bytes=random_bytes,
        )
        await self._post(endpoint, PATH_DEPOSIT, message.to_json())

    async def fetch_piece(
        self,
        endpoint: ProviderEndpoint,
        *,
        account: str,
        epoch: int,
        index: int,
        commitment: Sequence[bytes],
        release_signer: Signer,
        random_bytes: RandomBytes,
    ) -> KeyPiece:
        """Challenge, release, open and check one piece (``piece_mismatch`` if it fails its
        commitment: the provider answered, with a wrong piece)."""
        challenge = await self._post(endpoint, PATH_CHALLENGE, {"account": account})
        if not isinstance(challenge, dict):
            raise KeyProviderError("malformed_response", "the challenge is not an object")
        try:
            nonce = read_hex(challenge, "nonce", 32)
        except KeyProviderError:
            raise KeyProviderError("malformed_response", "the challenge has no nonce") from None
        requester = KxKeyPair.generate(random_bytes)
        request = make_release_request(
            account=account,
            epoch=epoch,
            release_signer=release_signer,
            requester=requester,
            nonce=nonce,
            provider_identity=endpoint.identity_public_key,
        )
        if self._quote is not None:
            request = replace(request, attestation=await self._quote(release_report_data(request)))
        release = Release.from_json(await self._post(endpoint, PATH_RELEASE, request.to_json()))
        piece = open_release(release, request, requester, endpoint.encryption_public_key, index)
        if not verify_piece(piece, commitment):
            raise KeyProviderError(
                "piece_mismatch", "the released piece does not match the recorded commitment"
            )
        return piece
