"""Refusals: the stable error codes of the backup protocol and their HTTP statuses (docs/backup-
protocol.md §7).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

# --- errors --------------------------------------------------------------------------------

ERROR_STATUS: Mapping[str, int] = {
    "malformed_request": 400,
    "stale_timestamp": 400,
    "decryption_failed": 400,
    "bad_signature": 401,
    "unregistered_caller": 403,
    "service_not_attested": 403,
    "no_shares": 404,
    "unknown_session": 404,
    "replay": 409,
    "wrong_epoch": 409,
    "wrong_keyset": 409,
    "no_open_migration": 409,
    "not_participant": 409,
    "body_too_large": 413,
    "wrong_node": 421,
    "shares_mismatch": 422,
    "too_many_requests": 429,
    "import_failed": 500,
    "contract_unavailable": 503,
}
"""Every error code a node answers with, and its HTTP status (docs/backup-protocol.md §7)."""

CLIENT_CODES = frozenset({"malformed_response", "node_unreachable", "node_error"})
"""Codes only the backup service's side raises (about what a node answered)."""


class BackupProtocolError(Exception):
    """A refused message. ``code`` is stable; the message is one line and holds no secret."""

    def __init__(self, code: str, message: str) -> None:
        if code not in ERROR_STATUS and code not in CLIENT_CODES:
            raise ValueError(f"unknown backup protocol error code {code!r}")
        super().__init__(message)
        self.code = code
        self.message = message

    @property
    def status(self) -> int:
        return ERROR_STATUS.get(self.code, 400)

    def to_json(self) -> dict[str, Any]:
        return {"error": {"code": self.code, "message": self.message}}


def malformed(message: str) -> BackupProtocolError:
    return BackupProtocolError("malformed_request", message)
