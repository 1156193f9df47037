"""What a node decides from the contract state alone: its role, and who leads a sign request.

Pure functions (no I/O, no clock): the coordinator calls them after every re-read of the
contract's ``state`` view, and tests call them directly. The rules are in docs/node.md.
"""

from __future__ import annotations

import enum
import hashlib
import math
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from quorumkeep.contract.state import (
    ContractState,
    Keyset,
    Migration,
    ParticipantInfo,
    Participants,
    Resharing,
    Running,
)
from quorumkeep.crypto.errors import InvalidEncoding
from quorumkeep.crypto.group import base_mul, scalar_decode
from quorumkeep.node.mesh_peers import PeerInfo

LEADER_DOMAIN = b"quorumkeep sign leader v1\x00"


class Role(enum.StrEnum):
    """The onboarding table of ARCHITECTURE.md, one member per row."""

    PARTICIPANT = "participant"
    NOT_PARTICIPANT = "not_participant"
    WAIT_FOR_MIGRATION = "wait_for_migration"
    WAITING = "waiting"
    DECOMMISSIONED = "decommissioned"


@dataclass(frozen=True)
class Onboarding:
    role: Role
    participant_id: int | None
    reason: str
    wipe: bool = False
    """Replaced right now: every share and presignature must go (``DECOMMISSIONED`` is also
    the role of a node that was wiped earlier and stands by; that one has nothing to wipe)."""


def my_infos(state: ContractState, account: str) -> list[ParticipantInfo]:
    """The infos the contract holds for ``account``: the serving set's, and during a
    resharing the new set's (the same info for a member of both)."""
    serving = state.serving()
    if serving is None:
        return []
    found = []
    info = serving.parameters.get(account)
    if info is not None:
        found.append(info)
    if isinstance(state.protocol, Resharing):
        following = state.protocol.parameters.get(account)
        if following is not None and following not in found:
            found.append(following)
    return found


def onboarding_decision(
    state: ContractState,
    account: str,
    tls_public_key: bytes,
    *,
    participated: bool,
    decommissioned: bool = False,
) -> Onboarding:
    """The row of the onboarding table that applies to this node now.

    ``participated``: this node (this TLS key, this keystore) has taken part as
    ``account``'s participant and was not wiped since. If the contract now lists another
    TLS key for the account, a migration replaced us and we must wipe — unless we never
    took part, in which case we are a new machine waiting for its turn.
    ``decommissioned``: we were replaced and wiped earlier and stay up as a stand-by, so a
    later migration back to this node (A → B → A) needs no restart.
    """
    if state.serving() is None:
        return Onboarding(Role.NOT_PARTICIPANT, None, "the contract is not initialized")
    infos = my_infos(state, account)
    if not infos:
        return Onboarding(Role.NOT_PARTICIPANT, None, f"{account} is not a participant")
    for info in infos:
        if info.tls_public_key == tls_public_key:
            return Onboarding(Role.PARTICIPANT, info.participant_id, "listed with our TLS key")
    listed = infos[0]
    if participated:
        return Onboarding(
            Role.DECOMMISSIONED,
            listed.participant_id,
            f"participant {listed.participant_id} of {account} now has TLS key "
            f"{listed.tls_public_key.hex()[:16]}…, not ours: this node was replaced",
            wipe=True,
        )
    if migration_to_me(state, account, tls_public_key) is not None:
        return Onboarding(
            Role.WAIT_FOR_MIGRATION,
            listed.participant_id,
            "a migration to this node is open",
        )
    if decommissioned:
        return Onboarding(
            Role.DECOMMISSIONED,
            listed.participant_id,
            f"participant {listed.participant_id} of {account} runs on another node; this one "
            "was replaced and stands by for a migration back to it",
        )
    return Onboarding(
        Role.WAITING,
        listed.participant_id,
        f"{account} is participant {listed.participant_id} with another TLS key and no "
        "migration to this node is open",
    )


def migration_to_me(state: ContractState, account: str, tls_public_key: bytes) -> Migration | None:
    """The account's open migration, if its destination is this node's TLS key."""
    migration = state.migrations.get(account)
    if migration is None or migration.destination.tls_public_key != tls_public_key:
        return None
    return migration


class ConclusionProgress(enum.StrEnum):
    """Where a migration to this node stands, for a node holding the shares it imported."""

    CONCLUDED = "concluded"
    """The contract lists our TLS key for the account: we are the participant now."""
    OPEN = "open"
    """Still open, for us, at the keyset our shares are of: ``conclude_node_migration``."""
    GONE = "gone"
    """Cancelled, replaced by one to another node or signer key, or the keyset moved on:
    the imported shares can never be used and must be deleted."""


def migration_progress(
    state: ContractState,
    account: str,
    tls_public_key: bytes,
    signer_public_key: bytes,
    keyset: Mapping[str, Any],
) -> ConclusionProgress:
    """Decide from a fresh state what a node that imported shares of ``keyset`` (the
    contract's keyset JSON: epoch and each domain's key) does next.

    A ``conclude_node_migration`` that was included can still have failed (another call
    replaced the migration, a resharing started): the caller re-reads the state after
    every call and asks again, instead of trusting the call's outcome.
    """
    serving = state.serving()
    if serving is not None:
        info = serving.parameters.get(account)
        if info is not None and info.tls_public_key == tls_public_key:
            return ConclusionProgress.CONCLUDED
    migration = migration_to_me(state, account, tls_public_key)
    if (
        migration is None
        or migration.destination_signer_public_key != signer_public_key
        or not isinstance(state.protocol, Running)
        or state.protocol.keyset.to_json() != dict(keyset)
    ):
        return ConclusionProgress.GONE
    return ConclusionProgress.OPEN


@dataclass(frozen=True)
class RecoveredShare:
    """One imported share as the checks need it (the scalar is secret: never shown)."""

    domain_id: int
    epoch: int
    participant_id: int
    signing_share: bytes = field(repr=False)


def recovered_shares_problem(
    state: ContractState,
    account: str,
    tls_public_key: bytes,
    signer_public_key: bytes,
    shares: Sequence[RecoveredShare],
) -> tuple[str, str] | None:
    """Why shares delivered for a migration to this node cannot be imported: ``(code,
    message)`` with a backup-protocol error code (docs/backup-protocol.md), or None.

    They must be for the open migration to us (which our signer key can conclude), of
    the participant it migrates, of the keyset in force, one per domain, and each must
    reproduce the contract's verifying share: ``share·G == verifying_shares[id]``.
    Messages name domains and ids, never a share.
    """
    migration = migration_to_me(state, account, tls_public_key)
    if migration is None:
        return "no_open_migration", f"no migration of {account} to this node is open"
    if migration.destination_signer_public_key != signer_public_key:
        return (
            "no_open_migration",
            "the open migration names another signer key than this node's",
        )
    running = state.protocol
    if not isinstance(running, Running):
        return "no_open_migration", f"the contract is {running.name}, not Running"
    return keyset_shares_problem(running.keyset, migration.participant_id, shares)


def keyset_shares_problem(
    keyset: Keyset, pid: int, shares: Sequence[RecoveredShare]
) -> tuple[str, str] | None:
    """Why ``shares`` are not participant ``pid``'s of every domain of ``keyset`` (one per
    domain, of its epoch, each reproducing ``verifying_shares[pid]``), or None."""
    by_domain: dict[int, RecoveredShare] = {}
    for share in shares:
        if share.domain_id in by_domain:
            return "shares_mismatch", f"two shares for domain {share.domain_id}"
        by_domain[share.domain_id] = share
    wanted = [d.domain_id for d in keyset.domains]
    if not wanted:
        return "shares_mismatch", "the keyset has no domains"
    if sorted(by_domain) != wanted:
        return (
            "shares_mismatch",
            f"the shares cover domains {sorted(by_domain)}, the keyset {wanted}",
        )
    for domain in keyset.domains:
        share = by_domain[domain.domain_id]
        if share.epoch != keyset.epoch:
            return (
                "wrong_epoch",
                f"the share of domain {domain.domain_id} is of epoch {share.epoch}, "
                f"the contract is at epoch {keyset.epoch}",
            )
        if share.participant_id != pid:
            return (
                "shares_mismatch",
                f"the share of domain {domain.domain_id} is participant "
                f"{share.participant_id}'s, expected participant {pid}'s",
            )
        expected = dict(domain.verifying_shares).get(pid)
        try:
            actual = base_mul(scalar_decode(share.signing_share))
        except InvalidEncoding:
            return "shares_mismatch", f"the share of domain {domain.domain_id} is not a scalar"
        if expected is None or actual != expected:
            return (
                "shares_mismatch",
                f"the share of domain {domain.domain_id} does not reproduce participant "
                f"{pid}'s verifying share",
            )
    return None


def peer_map(state: ContractState) -> dict[int, PeerInfo]:
    """Everyone the mesh must connect: the serving set, plus the new set in a resharing."""
    serving = state.serving()
    if serving is None:
        return {}
    sets: list[Participants] = [serving.parameters]
    if isinstance(state.protocol, Resharing):
        sets.append(state.protocol.parameters)
    out: dict[int, PeerInfo] = {}
    for parameters in sets:
        for m in parameters.members:
            out[m.participant_id] = PeerInfo(m.participant_id, m.account, m.url, m.tls_public_key)
    return out


def changed_participants(before: Mapping[int, bytes], after: Mapping[int, bytes]) -> frozenset[int]:
    """Participants (by id) whose TLS key changed or who left: their presignatures are void.

    ``before``/``after`` map participant id → TLS public key. A url change alone keeps
    presignatures (the same node, reachable elsewhere); a new key means a new machine
    whose nonces are not the ones we hold commitments for.
    """
    return frozenset(pid for pid, key in before.items() if after.get(pid) != key)


def peer_restarted(last_seen: bytes | None, announced: bytes) -> bool:
    """Whether a peer's connection announcing ``announced`` comes from a new process of it.

    ``last_seen`` is the incarnation the peer announced on its previous connection to this
    process (None: the first since this process started). A new incarnation means the peer
    forgot every presignature when it started (node/incarnation.py): every presignature
    holding its commitments is void. The first sighting voids nothing: this process forgot
    all of its own at its start, and everything it stored since with that peer was made
    from messages that arrived after the peer's announcement.
    """
    return last_seen is not None and last_seen != announced


def leader_hash(request_id: int) -> int:
    """H(request_id): the first 8 bytes of SHA-256(domain || request_id as u64 BE)."""
    if request_id < 0 or request_id >= 2**64:
        raise ValueError("request_id must fit in 64 bits")
    digest = hashlib.sha256(LEADER_DOMAIN + request_id.to_bytes(8, "big")).digest()
    return int.from_bytes(digest[:8], "big")


def sign_leader(request_id: int, participants: Collection[int], attempt: int) -> int:
    """leader(attempt k) = sorted(participants)[(H(request_id) + k) mod n]."""
    order = sorted(participants)
    if not order:
        raise ValueError("no participants")
    if attempt < 0:
        raise ValueError("attempt must be >= 0")
    return order[(leader_hash(request_id) + attempt) % len(order)]


def first_attempt(request_id: int, participants: Sequence[int] | Collection[int], me: int) -> int:
    """The smallest attempt number k whose leader is ``me``."""
    order = sorted(participants)
    if me not in order:
        raise ValueError(f"participant {me} is not in the set")
    return (order.index(me) - leader_hash(request_id)) % len(order)


def takeover_delay(
    request_id: int,
    participants: Collection[int],
    me: int,
    connected: Collection[int],
    takeover_timeout: float,
) -> float:
    """How long after seeing a request ``me`` waits before leading it.

    Attempt k's leader takes over after k × takeover_timeout — except that attempts whose
    leader we are not connected to cost nothing: such a leader is most likely down, and
    waiting for it only adds latency. If two nodes disagree about connectivity both may
    lead; that is safe (each uses its own presignature once; the contract keeps the first
    valid `respond`) and only costs a wasted signature.
    """
    if takeover_timeout < 0 or not math.isfinite(takeover_timeout):
        raise ValueError("takeover_timeout must be a finite non-negative number")
    k0 = first_attempt(request_id, participants, me)
    live = sum(
        1
        for k in range(k0)
        if (leader := sign_leader(request_id, participants, k)) != me and leader in connected
    )
    return live * takeover_timeout
