"""Replay protection on the node: single-use nonces within the timestamp window."""

from __future__ import annotations

from collections import OrderedDict

from quorumkeep.wire.backup.errors import BackupProtocolError
from quorumkeep.wire.backup.protocol import TIMESTAMP_WINDOW_MS

# --- replay protection on the node ---------------------------------------------------------


class ReplayGuard:
    """Single-use nonces within the timestamp window, in a bounded table.

    A nonce is remembered until its message's timestamp is out of the window (after which
    the timestamp check refuses it anyway), so the table only holds what could still be
    replayed. Only authenticated messages are recorded: an outsider cannot fill it. When
    it is full of live nonces, new messages are refused (``too_many_requests``) rather
    than forgetting one that could then be replayed.
    """

    def __init__(self, capacity: int = 4096) -> None:
        self.capacity = capacity
        self._seen: OrderedDict[bytes, int] = OrderedDict()

    def __len__(self) -> int:
        return len(self._seen)

    def check_and_record(self, nonce: bytes, timestamp_ms: int, now_ms: int) -> None:
        expiry = timestamp_ms + TIMESTAMP_WINDOW_MS
        for old, old_expiry in list(self._seen.items()):
            if old_expiry < now_ms:
                del self._seen[old]
        if nonce in self._seen:
            raise BackupProtocolError("replay", "this request nonce was already used")
        if len(self._seen) >= self.capacity:
            raise BackupProtocolError(
                "too_many_requests", "too many recent requests; retry in a minute"
            )
        self._seen[nonce] = expiry
