"""The exceptions `quorumkeep.crypto` raises. Messages never contain secret material."""

from __future__ import annotations


class CryptoError(Exception):
    """Base class for every error raised by quorumkeep.crypto."""


class InvalidEncoding(CryptoError):
    """A scalar, element or identifier is malformed or outside the allowed set."""


class InvalidParameters(CryptoError):
    """Thresholds, participant sets or inputs that the protocol does not allow."""


class CheaterDetected(CryptoError):
    """A named participant sent something that fails verification."""

    def __init__(self, culprit: int, reason: str) -> None:
        super().__init__(f"participant {culprit}: {reason}")
        self.culprit = culprit
        self.reason = reason


class SealError(CryptoError):
    """Unsealing failed: wrong key, wrong associated data or tampered bytes."""
