"""The key provider's status document (``provider status`` and ``GET /v1/status``).

Read from the piece store alone, so ``provider status`` needs neither the passphrase nor the
web stack: accounts, epochs and indices held, never a piece.
"""

from __future__ import annotations

from typing import Any

from quorumkeep.provider.store import PieceStore


def status_document(
    account: str,
    identity_key: bytes,
    store: PieceStore,
    registered: bool | None = None,
    counts: dict[str, int] | None = None,
    refused: dict[str, int] | None = None,
) -> dict[str, Any]:
    """What ``provider status`` and ``GET /v1/status`` show: accounts and epochs, no secret."""
    held = store.held()
    body: dict[str, Any] = {
        "account": account,
        "identity_public_key": identity_key.hex(),
        "registered": registered,
        "held": [h.to_json() for h in held],
        "accounts": sorted({h.account for h in held}),
    }
    if counts is not None:
        body["counts"] = dict(counts)
    if refused is not None:
        body["refused"] = dict(sorted(refused.items()))
    return body
