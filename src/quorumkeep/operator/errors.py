"""The one error type of the operator actions: a stable code and one readable line."""

from __future__ import annotations


class OperatorError(Exception):
    """Something an operator action could not do. ``code`` is stable; the message is one
    line, names what to look at next, and never holds a secret."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = " ".join(message.split())

    def __str__(self) -> str:
        return self.message
