"""The participants as the mesh knows them (node/mesh.py): their contract entries, the
certificates learned from them, their connections' state, the mesh's errors and counters.

A participant set is taken whole or not at all: each id matches its entry, no two participants
share a TLS key, and this node, when it is a participant, is listed with its own key. A peer's
certificate is trusted only once it was found to carry the key the contract names
(:func:`quorumkeep.wire.tls.pinned`); the listener's trust store is what has been learned.
"""

from __future__ import annotations

import ssl
from collections.abc import Collection, Mapping
from dataclasses import dataclass

from quorumkeep.net.address import parse_host_port
from quorumkeep.node.mesh_frames import MeshError
from quorumkeep.wire.tls import TLSCredentials

# --- errors ------------------------------------------------------------------------------


class PeerNotConnected(MeshError):
    code = "peer_not_connected"


class InvalidParticipants(MeshError, ValueError):
    code = "invalid_participants"


# --- participants ------------------------------------------------------------------------


@dataclass(frozen=True)
class PeerInfo:
    """A participant as the contract lists it, as far as the mesh cares."""

    participant_id: int
    account: str
    url: str
    tls_public_key: bytes

    def __post_init__(self) -> None:
        pid = self.participant_id
        if isinstance(pid, bool) or not isinstance(pid, int) or pid < 0:
            raise InvalidParticipants("participant_id must be a non-negative integer")
        if not isinstance(self.account, str) or not self.account:
            raise InvalidParticipants(f"participant {pid}: account must be a non-empty string")
        if not isinstance(self.tls_public_key, bytes) or len(self.tls_public_key) != 32:
            raise InvalidParticipants(f"participant {pid}: tls_public_key must be 32 bytes")
        try:
            parse_host_port(self.url)
        except ValueError as exc:
            raise InvalidParticipants(f"participant {pid}: {exc}") from None

    @property
    def address(self) -> tuple[str, int]:
        return parse_host_port(self.url)

    def __repr__(self) -> str:
        return (
            f"PeerInfo({self.participant_id}, {self.account!r}, {self.url}, "
            f"{self.tls_public_key.hex()[:16]}…)"
        )


def validated_participants(
    participants: Mapping[int, PeerInfo], my_id: int | None, my_key: bytes
) -> dict[int, PeerInfo]:
    """The participant set as a dict, or :class:`InvalidParticipants` (``my_key``: this
    node's TLS public key)."""
    if not isinstance(participants, Mapping):
        raise InvalidParticipants("participants must be a mapping id → PeerInfo")
    new: dict[int, PeerInfo] = {}
    seen_keys: dict[bytes, int] = {}
    for pid, info in participants.items():
        if not isinstance(info, PeerInfo):
            raise InvalidParticipants(f"participant {pid}: expected a PeerInfo")
        if pid != info.participant_id:
            raise InvalidParticipants(f"participant {pid}: entry says {info.participant_id}")
        if info.tls_public_key in seen_keys:
            raise InvalidParticipants(
                f"participants {seen_keys[info.tls_public_key]} and {pid} share a TLS key"
            )
        seen_keys[info.tls_public_key] = pid
        new[pid] = info
    if my_id is not None:
        mine = new.get(my_id)
        if mine is None:
            raise InvalidParticipants(f"my_id {my_id} is not in the participant set")
        if mine.tls_public_key != my_key:
            raise InvalidParticipants(
                f"participant {my_id}'s TLS key is not this node's: not a participant"
            )
    return new


@dataclass(frozen=True)
class PeerState:
    """One peer's connections; ids change whenever a connection is replaced."""

    participant_id: int
    outbound_connection: int | None
    inbound_connection: int | None


@dataclass
class MeshStats:
    """Counters for metrics and tests (never payload contents)."""

    messages_sent: int = 0
    messages_received: int = 0
    connections_accepted: int = 0
    connections_rejected: int = 0
    certificate_fetches_served: int = 0
    frames_rejected: int = 0
    handshakes_in_progress: int = 0
    handshakes_refused: int = 0


# --- certificates ------------------------------------------------------------------------


class PeerCertificates:
    """The peers' certificates learned so far, by TLS public key, and the server context that
    trusts them (each new inbound connection is upgraded with the current one)."""

    def __init__(self, credentials: TLSCredentials) -> None:
        self._credentials = credentials
        self._certificates: dict[bytes, bytes] = {}
        self._trusted: tuple[bytes, ...] = ()
        self._server_context = credentials.server_context([], require_client_cert=False)

    @property
    def server_context(self) -> ssl.SSLContext:
        return self._server_context

    def get(self, key: bytes) -> bytes | None:
        return self._certificates.get(key)

    def learn(self, key: bytes, der: bytes) -> None:
        """Trust ``der`` (already pinned to ``key``) as the certificate of ``key``."""
        if self._certificates.get(key) != der:
            self._certificates[key] = der
            self._refresh_server_context()

    def forget(self, key: bytes) -> None:
        """Fetch the certificate of ``key`` again before the next use."""
        self._certificates.pop(key, None)

    def retain(self, keys: Collection[bytes]) -> None:
        """Forget the certificates of every key not in ``keys`` (the participant set's)."""
        self._certificates = {k: v for k, v in self._certificates.items() if k in keys}
        self._refresh_server_context()

    def _refresh_server_context(self) -> None:
        trusted = tuple(self._certificates[k] for k in sorted(self._certificates))
        if trusted != self._trusted:
            self._server_context = self._credentials.server_context(
                list(trusted), require_client_cert=False
            )
            self._trusted = trusted
