"""The one error type of the devnet tooling: a stable code and one readable line."""

from __future__ import annotations


class DevnetError(Exception):
    """Something the devnet could not do. ``code`` is stable; the message names what to
    look at next (usually a log file) and never holds a secret."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = " ".join(message.split())

    def __str__(self) -> str:
        return self.message
