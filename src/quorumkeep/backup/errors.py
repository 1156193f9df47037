"""Errors of the backup service process (the protocol's own are in quorumkeep.wire.backup)."""

from __future__ import annotations


class BackupServiceError(Exception):
    """A problem the operator must see: one line, a stable ``code``, never a secret."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
