"""Typed ledger errors: a stable code, a one-line message and the HTTP status it travels as.

The same classes are raised by the server (and turned into ``{"error": {"code", "message"}}``)
and by the client (rebuilt from that body), so callers on both sides match on ``code``.
Messages name what was wrong, never a secret.
"""

from __future__ import annotations

# code -> HTTP status. A code is part of the API: never rename one, only add.
ERROR_STATUS: dict[str, int] = {
    # malformed requests
    "MalformedRequest": 400,
    "InvalidRequest": 400,
    "InvalidTransaction": 400,
    "BodyTooLarge": 413,
    "NotFound": 404,
    "HttpMethodNotAllowed": 405,
    "UnsupportedMediaType": 415,
    # who signed
    "InvalidSignature": 401,
    "UnknownAccount": 404,
    "UnknownAccessKey": 401,
    # replay protection and expiry
    "WrongChain": 400,
    "TransactionExpired": 400,
    "InvalidBlockHeight": 400,
    "InvalidNonce": 409,
    "DuplicateTransaction": 409,
    # access keys
    "UnknownMethod": 400,
    "KeyMethodNotAllowed": 403,
    "FullAccessRequired": 403,
    "InvalidPermission": 400,
    "AccessKeyExists": 409,
    "AccessKeyNotFound": 404,
    "LastFullAccessKey": 409,
    # reads
    "BlockNotFound": 404,
    "TransactionNotFound": 404,
    "InvalidCursor": 400,
    # the ledger itself
    "InternalError": 500,
    "LedgerUnavailable": 503,
    "ShuttingDown": 503,
    # raised by the client before any request: never sent by the ledger
    "InvalidLedgerUrl": 400,
}


class LedgerError(Exception):
    """A request the ledger refused, or could not serve; ``code`` is stable."""

    def __init__(self, code: str, message: str, status: int | None = None) -> None:
        super().__init__(f"{code}: {message}")
        self.code = code
        self.message = message
        self.status = status if status is not None else ERROR_STATUS.get(code, 400)

    def to_json(self) -> dict[str, dict[str, str]]:
        return {"error": {"code": self.code, "message": self.message}}


class ContractCallFailed(LedgerError):
    """The transaction was included in a block but the contract rejected the call.

    The nonce was consumed; ``code`` is the contract's error code (e.g. ``NotOperator``),
    ``tx_hash`` and ``block_height`` say where the failure is recorded.
    """

    def __init__(self, code: str, message: str, *, tx_hash: str = "", block_height: int = -1):
        super().__init__(code, message, status=200)
        self.tx_hash = tx_hash
        self.block_height = block_height


class LedgerCorrupted(Exception):
    """The stored block log fails verification; the ledger must not start on it."""

    def __init__(self, height: int, reason: str) -> None:
        super().__init__(f"ledger data is corrupt at block {height}: {reason}")
        self.height = height
        self.reason = reason
