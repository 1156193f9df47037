"""Errors of the key-provider process (the protocol's own are in quorumkeep.wire.key_provider)."""

from __future__ import annotations


class ProviderError(Exception):
    """A problem the operator must see: one line, a stable ``code``, never a secret."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
