"""Dealing the storage secret to a set of key providers and gathering its pieces back
(docs/key-provider-protocol.md §2, §9).

:func:`choose_providers` picks the holders of a new deal; :func:`deal_to_providers` deals
``s`` k-of-m, deposits every piece in parallel (every deposit must succeed) and returns the
deal document ``record_key_providers`` takes; :func:`gather_pieces` asks every holder of a
recorded deal in parallel and says what each one did (:class:`ProviderOutcome`). Used at
``node init`` and at start (node/key_providers.py) and by rotation
(node/key_provider_rotation.py).
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from quorumkeep.crypto.errors import CryptoError
from quorumkeep.crypto.group import RandomBytes
from quorumkeep.crypto.storage_split import (
    KeyPiece,
    StorageSecret,
    check_commitment,
    check_split_parameters,
    deal,
)
from quorumkeep.node.key_provider_client import ProviderClient, ProviderEndpoint
from quorumkeep.node.keystore_errors import StorageKeyUnavailable
from quorumkeep.wire.backup.statements import Signer
from quorumkeep.wire.key_provider import KeyProviderError


@dataclass(frozen=True)
class ProviderOutcome:
    """What one provider did at the last attempt (public: shown in /status and logs)."""

    provider: str
    index: int
    ok: bool
    code: str | None = None
    message: str | None = None

    def to_json(self) -> dict[str, Any]:
        return {
            "provider": self.provider,
            "index": self.index,
            "ok": self.ok,
            "code": self.code,
            "message": self.message,
        }

    def line(self) -> str:
        return f"{self.provider} ({self.code}: {self.message})"


def choose_providers(
    registered: Mapping[str, ProviderEndpoint],
    own_account: str,
    wanted: Sequence[str] | None,
    threshold: int,
) -> list[ProviderEndpoint]:
    """The holders of a new deal: ``wanted`` (all registered, none of the node's own
    operator) or every registered provider of another operator, in account order."""
    if wanted is not None:
        if own_account in wanted:
            raise StorageKeyUnavailable(
                f"provider {own_account} is this node's own operator's: it may not hold a piece"
            )
        missing = [p for p in wanted if p not in registered]
        if missing:
            raise StorageKeyUnavailable(f"not registered key providers: {', '.join(missing)}")
        chosen = [registered[p] for p in wanted]
    else:
        chosen = [p for a, p in sorted(registered.items()) if a != own_account]
    try:
        check_split_parameters(threshold, len(chosen))
    except CryptoError:
        raise StorageKeyUnavailable(
            f"need at least {threshold} key providers of other operators (k = {threshold}), "
            f"the contract registers {len(chosen)}"
        ) from None
    return chosen


def deal_document(
    epoch: int,
    threshold: int,
    commitment: Sequence[bytes],
    holders: Sequence[ProviderEndpoint],
    signer_public_key: bytes,
    release_public_key: bytes,
) -> dict[str, Any]:
    """The arguments of ``record_key_providers``."""
    return {
        "epoch": epoch,
        "threshold": threshold,
        "commitment": [c.hex() for c in commitment],
        "holders": [{"index": i + 1, "provider": p.account} for i, p in enumerate(holders)],
        "signer_public_key": signer_public_key.hex(),
        "release_public_key": release_public_key.hex(),
    }


async def deal_to_providers(
    client: ProviderClient,
    secret: StorageSecret,
    *,
    account: str,
    epoch: int,
    threshold: int,
    holders: Sequence[ProviderEndpoint],
    signer: Signer,
    release_public_key: bytes,
    random_bytes: RandomBytes,
) -> dict[str, Any]:
    """Deal ``secret`` afresh to ``holders`` and deposit every piece; every deposit must
    succeed (the failures are named). Returns the deal document to record."""
    split = deal(secret, threshold, len(holders), random_bytes)

    async def one(index: int, endpoint: ProviderEndpoint) -> KeyProviderError | None:
        try:
            await client.deposit(
                endpoint,
                account=account,
                epoch=epoch,
                threshold=threshold,
                commitment=split.commitment,
                piece=split.pieces[index],
                signer=signer,
                release_public_key=release_public_key,
                random_bytes=random_bytes,
            )
        except KeyProviderError as exc:
            return exc
        return None

    results = await asyncio.gather(*(one(i + 1, p) for i, p in enumerate(holders)))
    failed = [
        f"{p.account} ({e.code}: {e.message})" for p, e in zip(holders, results, strict=True) if e
    ]
    if failed:
        raise KeyProviderError(
            "deposit_failed", f"deposits of epoch {epoch} failed at: {'; '.join(failed)}"
        )
    return deal_document(
        epoch, threshold, split.commitment, holders, signer.public_key, release_public_key
    )


async def gather_pieces(
    client: ProviderClient,
    deal_json: Mapping[str, Any],
    registered: Mapping[str, ProviderEndpoint],
    *,
    account: str,
    release_signer: Signer,
    random_bytes: RandomBytes,
) -> tuple[dict[str, KeyPiece], list[ProviderOutcome]]:
    """Ask every holder of the deal in parallel; good pieces by provider, and every outcome."""
    threshold = int(deal_json["threshold"])
    commitment = check_commitment([bytes.fromhex(c) for c in deal_json["commitment"]], threshold)
    epoch = int(deal_json["epoch"])

    async def one(index: int, provider: str) -> tuple[KeyPiece | None, ProviderOutcome]:
        endpoint = registered.get(provider)
        if endpoint is None:
            return None, ProviderOutcome(
                provider, index, False, "not_registered", "the provider is no longer registered"
            )
        try:
            piece = await client.fetch_piece(
                endpoint,
                account=account,
                epoch=epoch,
                index=index,
                commitment=commitment,
                release_signer=release_signer,
                random_bytes=random_bytes,
            )
        except KeyProviderError as exc:
            return None, ProviderOutcome(provider, index, False, exc.code, exc.message)
        return piece, ProviderOutcome(provider, index, True)

    holders = [(int(h["index"]), str(h["provider"])) for h in deal_json["holders"]]
    results = await asyncio.gather(*(one(i, p) for i, p in holders))
    pieces = {o.provider: p for p, o in results if p is not None}
    return pieces, [o for _, o in results]
