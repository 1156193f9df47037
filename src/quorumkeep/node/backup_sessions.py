"""The node's open recovery sessions (``POST /backup/recovery-session``).

A session holds the node's ephemeral key the push is sealed to, the service keys and the
migration it was opened for (docs/backup-protocol.md §7). It lives in memory until it
expires or a push takes it; a taken session id is remembered until its expiry, so that it
cannot be used twice. At most ``max_sessions`` are open (the oldest is dropped first).
"""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass

from quorumkeep.crypto.seal import KxKeyPair
from quorumkeep.wire.backup import BackupProtocolError, RecoveryPush


@dataclass(frozen=True)
class _Session:
    node_ephemeral: KxKeyPair
    service_identity_public_key: bytes
    service_ephemeral_public_key: bytes
    migration_started_height: int
    expires_at_ms: int


class RecoverySessions:
    """Open sessions by id, and the ids already consumed (with their expiry)."""

    def __init__(self, max_sessions: int) -> None:
        self.max_sessions = max_sessions
        self._sessions: OrderedDict[bytes, _Session] = OrderedDict()
        self._consumed: OrderedDict[bytes, int] = OrderedDict()

    def prune(self, now_ms: int) -> None:
        for sid, session in list(self._sessions.items()):
            if session.expires_at_ms <= now_ms:
                del self._sessions[sid]
        for sid, expiry in list(self._consumed.items()):
            if expiry <= now_ms:
                del self._consumed[sid]

    def open(
        self,
        session_id: bytes,
        node_ephemeral: KxKeyPair,
        service_identity_public_key: bytes,
        service_ephemeral_public_key: bytes,
        migration_started_height: int,
        expires_at_ms: int,
    ) -> None:
        while len(self._sessions) >= self.max_sessions:
            self._sessions.popitem(last=False)
        self._sessions[session_id] = _Session(
            node_ephemeral,
            service_identity_public_key,
            service_ephemeral_public_key,
            migration_started_height,
            expires_at_ms,
        )

    def take(self, push: RecoveryPush, now_ms: int) -> _Session:
        """The push's session, consumed: whatever happens next, it cannot be used again."""
        self.prune(now_ms)
        if push.session_id in self._consumed:
            raise BackupProtocolError("replay", "this recovery session was already used")
        session = self._sessions.pop(push.session_id, None)
        if session is None:
            raise BackupProtocolError(
                "unknown_session", "no open recovery session has this id (expired or unknown)"
            )
        self._consumed[push.session_id] = session.expires_at_ms
        while len(self._consumed) > 4 * self.max_sessions:
            self._consumed.popitem(last=False)
        if (
            session.service_identity_public_key != push.service_identity_public_key
            or session.service_ephemeral_public_key != push.service_ephemeral_public_key
            or session.node_ephemeral.public_key != push.node_ephemeral_public_key
        ):
            raise BackupProtocolError(
                "unknown_session", "the push's keys are not the ones its session was opened with"
            )
        return session
