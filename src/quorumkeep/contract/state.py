"""The contract's state: typed records and their canonical JSON encoding.

Value records (participant info, keysets, requests, migrations…) are frozen; the protocol
state records (Running, Initializing, Resharing) carry vote tallies and are mutated in
place by the methods — only after a call has passed every check, so a rejected call leaves
them untouched. ``to_json`` lists every collection in a fixed order (by id, then by
account) so equal states give byte-equal JSON under ``sort_keys``.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from functools import cached_property
from typing import Any, Self

from quorumkeep.contract.args import (
    MAX_INT,
    check_fields,
    expect_account,
    expect_ed25519_key,
    expect_hex,
    expect_host_port,
    expect_int,
    expect_list,
    expect_object,
    expect_str,
    expect_verifying_shares,
    expect_web_url,
    expect_x25519_key,
)
from quorumkeep.contract.attestation_state import AttestationState
from quorumkeep.contract.backup_gate_state import BackupGate
from quorumkeep.contract.errors import InvalidArguments
from quorumkeep.contract.key_provider_state import KeyProviderBook
from quorumkeep.contract.recovery_state import RecoveryBook
from quorumkeep.encoding.records import Flattened, JsonRecord, kind, nullable, record_kind

KEYSET_HASH_PREFIX = b"quorumkeep keyset v1\x00"
"""Domain separation of :attr:`Keyset.hash`."""

STATE_FORMAT = 3
"""Version of the state's JSON layout (``format`` field); 2 added the verifying shares."""

SCHEME_ED25519 = "Ed25519"
SCHEMES = frozenset({SCHEME_ED25519})
"""Signature schemes a domain may use; the field exists so others can follow."""

UNASSIGNED_ID = 0
"""Participant id of an info whose id the contract has yet to assign (never stored)."""

MAX_PARTICIPANTS = 256
MAX_DOMAINS = 64
PAYLOAD_MIN = 32
PAYLOAD_MAX = 1232
PATH_MAX = 256
DEFAULT_SIGN_TIMEOUT_BLOCKS = 600
DEFAULT_SIGN_TIMEOUT_MS = 120_000
MAX_SIGN_TIMEOUT_MS = 86_400_000
DEFAULT_MAX_PENDING_REQUESTS = 10_000


# --- the record codec (quorumkeep.encoding.records) with the contract's argument rules ----


class _Record(JsonRecord):
    """A record of the contract's state: errors are ``InvalidArguments`` naming the field."""

    @classmethod
    def check_object(
        cls, value: Any, name: str, required: Sequence[str], optional: Sequence[str]
    ) -> dict[str, Any]:
        obj = expect_object(value, name)
        check_fields(obj, name, required, optional)
        return obj


def _ids_from(minimum: int) -> Any:
    return kind(lambda value, name: expect_int(value, name, minimum))


def _text(max_length: int) -> Any:
    return kind(lambda value, name: expect_str(value, name, max_length))


INT = kind(expect_int)
ID = _ids_from(1)
ACCOUNT = kind(expect_account)
ED25519_KEY = kind(expect_ed25519_key)
X25519_KEY = kind(expect_x25519_key)
HOST_PORT = kind(expect_host_port)
WEB_URL = kind(expect_web_url)
SCHEME = _text(32)


# --- participants ----------------------------------------------------------------------


@dataclass(frozen=True)
class ParticipantInfo(_Record):
    """A node as the contract knows it: who runs it, where, and the keys that identify it."""

    account: str = field(metadata=ACCOUNT)
    participant_id: int = field(metadata=ID)
    url: str = field(metadata=HOST_PORT)
    web_url: str = field(metadata=WEB_URL)
    tls_public_key: bytes = field(metadata=ED25519_KEY)
    signer_public_key: bytes = field(metadata=ED25519_KEY)

    @classmethod
    def from_json(
        cls,
        value: Any,
        what: str,
        id_required: bool = True,
        *,
        defaults: Mapping[str, Any] | None = None,
    ) -> Self:
        """Parse an info; without ``id_required`` a missing id reads as UNASSIGNED_ID."""
        if not id_required:
            defaults = {"participant_id": UNASSIGNED_ID, **(defaults or {})}
        return super().from_json(value, what, defaults=defaults)


def _members(value: Any, name: str) -> tuple[ParticipantInfo, ...]:
    items = expect_list(value, name, 1, MAX_PARTICIPANTS)
    members = (ParticipantInfo.from_json(item, f"{name}[{i}]") for i, item in enumerate(items))
    return tuple(sorted(members, key=lambda m: m.participant_id))


@dataclass(frozen=True)
class Participants(_Record):
    """A participant set and its threshold; ``members`` ascend by participant id."""

    threshold: int = field(metadata=INT)
    members: tuple[ParticipantInfo, ...] = field(
        metadata=kind(_members, lambda members: [m.to_json() for m in members], key="participants")
    )

    @cached_property
    def _by_account(self) -> dict[str, ParticipantInfo]:
        return {m.account: m for m in self.members}

    def get(self, account: str) -> ParticipantInfo | None:
        return self._by_account.get(account)

    @property
    def accounts(self) -> frozenset[str]:
        return frozenset(self._by_account)

    def __len__(self) -> int:
        return len(self.members)

    def replace_member(self, info: ParticipantInfo) -> Participants:
        """The same set with ``info`` in place of the member of the same account."""
        members = tuple(info if m.account == info.account else m for m in self.members)
        return Participants(self.threshold, members)


# --- domains and keys ------------------------------------------------------------------


@dataclass(frozen=True)
class Domain(_Record):
    """A signing domain: one group key per domain, generated by its own key event."""

    domain_id: int = field(metadata=INT)
    scheme: str = field(metadata=SCHEME)


@dataclass(frozen=True)
class ProposedDomain(_Record):
    """A domain as a `vote_add_domains` vote proposes it: the domain and its backup policy
    (``backups_required``: how many operators' backup services must have confirmed a
    backup of the epoch in force before it signs; None, the default, means all of them).
    ``backups_required`` is left out of the JSON when None."""

    domain_id: int = field(metadata=INT)
    scheme: str = field(metadata=SCHEME)
    backups_required: int | None = field(
        default=None,
        metadata=kind(
            *nullable(lambda value, name: expect_int(value, name, 0, MAX_PARTICIPANTS)),
            optional=True,
        ),
    )

    @property
    def domain(self) -> Domain:
        return Domain(self.domain_id, self.scheme)

    def to_json(self) -> dict[str, Any]:
        document = super().to_json()
        if self.backups_required is None:
            del document["backups_required"]
        return document


VerifyingShares = tuple[tuple[int, bytes], ...]
"""Participant id → verifying share (the point share·G), as pairs in ascending id order."""


def verifying_shares_json(shares: VerifyingShares) -> dict[str, str]:
    """``{"<participant id>": hex32}``: JSON object keys are strings, so ids are decimal."""
    return {str(pid): share.hex() for pid, share in shares}


def _verifying_shares(value: Any, name: str) -> VerifyingShares:
    return expect_verifying_shares(value, name, MAX_PARTICIPANTS)


VERIFYING_SHARES = kind(_verifying_shares, verifying_shares_json)


@dataclass(frozen=True)
class DomainKey(_Record):
    """A domain's public key package: the group key and every participant's verifying share.

    The shares belong to the participant set of the Running state holding this key (whose
    threshold is the package's); they are replaced when a resharing completes and stay
    valid across migrations, which keep participant ids.
    """

    domain_id: int = field(metadata=INT)
    scheme: str = field(metadata=SCHEME)
    public_key: bytes = field(metadata=ED25519_KEY)
    verifying_shares: VerifyingShares = field(default=(), metadata=VERIFYING_SHARES)
    """Empty in a keyset read from its JSON (the ``keyset`` view, a backup transfer), which
    names only the group keys."""

    @property
    def domain(self) -> Domain:
        return Domain(self.domain_id, self.scheme)

    def keyset_json(self) -> dict[str, Any]:
        """The domain as a keyset lists it: what a keyset names, without the shares."""
        document = self.to_json()
        del document["verifying_shares"]
        return document


@dataclass(frozen=True)
class Keyset:
    """The keys in force: the epoch and every domain's key package (ascending domain id).

    Its JSON (the ``keyset`` view, ``conclude_node_migration``'s argument) names only the
    epoch and each domain's group key; the verifying shares are read with the state or
    the ``public_key_package`` view.
    """

    epoch: int
    domains: tuple[DomainKey, ...]

    def get(self, domain_id: int) -> DomainKey | None:
        for d in self.domains:
            if d.domain_id == domain_id:
                return d
        return None

    @property
    def domain_ids(self) -> tuple[int, ...]:
        return tuple(d.domain_id for d in self.domains)

    def to_json(self) -> dict[str, Any]:
        return {"epoch": self.epoch, "domains": [d.keyset_json() for d in self.domains]}

    def canonical(self) -> bytes:
        """Sorted keys, no whitespace, ASCII (every value is an integer, hex or a scheme)."""
        return json.dumps(self.to_json(), sort_keys=True, separators=(",", ":")).encode("ascii")

    @property
    def hash(self) -> bytes:
        """BLAKE2b-256 (RFC 7693, unkeyed) of :data:`KEYSET_HASH_PREFIX` and the canonical
        JSON: names the keyset where bytes must (the backup protocol's AD and signatures)."""
        return hashlib.blake2b(KEYSET_HASH_PREFIX + self.canonical(), digest_size=32).digest()


@dataclass(frozen=True)
class KeyEventId(_Record):
    """Names one attempt at generating (or resharing) one domain's key in one epoch."""

    domain_id: int = field(metadata=INT)
    epoch: int = field(metadata=INT)
    attempt: int = field(metadata=INT)


def _votes(value: Any, name: str) -> dict[str, bytes]:
    votes = expect_object(value, name)
    return {
        expect_account(a, f"{name} key"): expect_ed25519_key(pk, f"{name}[{a}]")
        for a, pk in votes.items()
    }


@dataclass
class KeyEvent(_Record):
    """The current attempt for one domain and the votes cast in it.

    In key generation a vote is the public key the voter's DKG produced; in a resharing
    it is the domain's (unchanged) key, confirmed by a new participant holding its share.
    Every vote also carries the verifying shares of the set the key is shared among; votes
    only count when identical, so the attempt stores them once: ``verifying_shares`` is
    what every vote in this attempt carried (None before the first vote). ``public_key``
    is set once every required voter agreed.
    """

    domain: Domain = field(metadata=Flattened(Domain).metadata())
    epoch: int = field(metadata=INT)
    attempt: int = field(metadata=INT)
    votes: dict[str, bytes] = field(
        default_factory=dict,
        metadata=kind(_votes, lambda votes: {a: pk.hex() for a, pk in sorted(votes.items())}),
    )
    verifying_shares: VerifyingShares | None = field(
        default=None,
        metadata=kind(*nullable(_verifying_shares, verifying_shares_json)),
    )
    public_key: bytes | None = field(default=None, metadata=kind(*nullable(expect_ed25519_key)))

    @property
    def id(self) -> KeyEventId:
        return KeyEventId(self.domain.domain_id, self.epoch, self.attempt)

    @property
    def complete(self) -> bool:
        return self.public_key is not None


# --- protocol states -------------------------------------------------------------------


@dataclass
class NotInitializedState:
    """Before `init`: no participants, no keys."""

    name = "NotInitialized"

    def to_json(self) -> dict[str, Any]:
        return {"state": self.name}


@dataclass
class Running:
    """The network signs with ``keyset``; votes for the next change are collected here."""

    keyset: Keyset
    next_epoch: int
    parameters: Participants
    parameters_votes: dict[str, Participants] = field(default_factory=dict)
    add_domains_votes: dict[str, tuple[ProposedDomain, ...]] = field(default_factory=dict)

    name = "Running"

    @property
    def epoch(self) -> int:
        return self.keyset.epoch

    def settled(self) -> Running:
        """This state without pending votes: what a later state returns to."""
        return Running(self.keyset, self.next_epoch, self.parameters)

    def to_json(self) -> dict[str, Any]:
        return {
            "state": self.name,
            "epoch": self.keyset.epoch,
            "next_epoch": self.next_epoch,
            "threshold": self.parameters.threshold,
            "participants": [m.to_json() for m in self.parameters.members],
            "domains": [d.to_json() for d in self.keyset.domains],
            "parameters_votes": {a: p.to_json() for a, p in sorted(self.parameters_votes.items())},
            "add_domains_votes": {
                a: [d.to_json() for d in ds] for a, ds in sorted(self.add_domains_votes.items())
            },
        }

    @classmethod
    def from_json(cls, value: Any, name: str) -> Running:
        obj = expect_object(value, name)
        check_fields(
            obj,
            name,
            [
                "state",
                "epoch",
                "next_epoch",
                "threshold",
                "participants",
                "domains",
                "parameters_votes",
                "add_domains_votes",
            ],
        )
        if obj["state"] != cls.name:
            raise InvalidArguments(f"{name}.state must be {cls.name}")
        parameters = Participants.from_json(
            {"threshold": obj["threshold"], "participants": obj["participants"]}, name
        )
        domains = expect_list(obj["domains"], f"{name}.domains", 0, MAX_DOMAINS)
        keyset = Keyset(
            expect_int(obj["epoch"], f"{name}.epoch"),
            tuple(DomainKey.from_json(d, f"{name}.domains[{i}]") for i, d in enumerate(domains)),
        )
        ids = {m.participant_id for m in parameters.members}
        for d in keyset.domains:
            if {pid for pid, _ in d.verifying_shares} != ids:
                raise InvalidArguments(
                    f"{name}.domains: domain {d.domain_id}'s verifying shares do not name "
                    "exactly the participants"
                )
        pv = expect_object(obj["parameters_votes"], f"{name}.parameters_votes")
        adv = expect_object(obj["add_domains_votes"], f"{name}.add_domains_votes")
        return cls(
            keyset=keyset,
            next_epoch=expect_int(obj["next_epoch"], f"{name}.next_epoch"),
            parameters=parameters,
            parameters_votes={
                expect_account(a, f"{name}.parameters_votes key"): Participants.from_json(
                    p, f"{name}.parameters_votes[{a}]"
                )
                for a, p in pv.items()
            },
            add_domains_votes={
                expect_account(a, f"{name}.add_domains_votes key"): tuple(
                    ProposedDomain.from_json(d, f"{name}.add_domains_votes[{a}]")
                    for d in expect_list(ds, f"{name}.add_domains_votes[{a}]", 1, MAX_DOMAINS)
                )
                for a, ds in adv.items()
            },
        )


@dataclass
class Initializing:
    """Generating keys for new domains; ``running`` is what the network keeps signing with."""

    running: Running
    generating: list[KeyEvent]
    cancel_votes: set[str] = field(default_factory=set)

    name = "Initializing"

    @property
    def epoch(self) -> int:
        return self.running.epoch

    def to_json(self) -> dict[str, Any]:
        return {
            "state": self.name,
            "running": self.running.to_json(),
            "generating": [e.to_json() for e in self.generating],
            "cancel_votes": sorted(self.cancel_votes),
        }

    @classmethod
    def from_json(cls, value: Any, name: str) -> Initializing:
        obj = expect_object(value, name)
        check_fields(obj, name, ["state", "running", "generating", "cancel_votes"])
        events = expect_list(obj["generating"], f"{name}.generating", 1, MAX_DOMAINS)
        votes = expect_list(obj["cancel_votes"], f"{name}.cancel_votes", 0, MAX_PARTICIPANTS)
        return cls(
            running=Running.from_json(obj["running"], f"{name}.running"),
            generating=[
                KeyEvent.from_json(e, f"{name}.generating[{i}]") for i, e in enumerate(events)
            ],
            cancel_votes={expect_account(a, f"{name}.cancel_votes[]") for a in votes},
        )


@dataclass
class Resharing:
    """Moving every domain's key to ``parameters`` at ``epoch``; ``previous`` keeps signing."""

    previous: Running
    epoch: int
    parameters: Participants
    resharing: list[KeyEvent]
    cancel_votes: set[str] = field(default_factory=set)

    name = "Resharing"

    def to_json(self) -> dict[str, Any]:
        return {
            "state": self.name,
            "previous_running": self.previous.to_json(),
            "epoch": self.epoch,
            "threshold": self.parameters.threshold,
            "participants": [m.to_json() for m in self.parameters.members],
            "resharing": [e.to_json() for e in self.resharing],
            "cancel_votes": sorted(self.cancel_votes),
        }

    @classmethod
    def from_json(cls, value: Any, name: str) -> Resharing:
        obj = expect_object(value, name)
        check_fields(
            obj,
            name,
            [
                "state",
                "previous_running",
                "epoch",
                "threshold",
                "participants",
                "resharing",
                "cancel_votes",
            ],
        )
        events = expect_list(obj["resharing"], f"{name}.resharing", 0, MAX_DOMAINS)
        votes = expect_list(obj["cancel_votes"], f"{name}.cancel_votes", 0, MAX_PARTICIPANTS)
        return cls(
            previous=Running.from_json(obj["previous_running"], f"{name}.previous_running"),
            epoch=expect_int(obj["epoch"], f"{name}.epoch"),
            parameters=Participants.from_json(
                {"threshold": obj["threshold"], "participants": obj["participants"]}, name
            ),
            resharing=[
                KeyEvent.from_json(e, f"{name}.resharing[{i}]") for i, e in enumerate(events)
            ],
            cancel_votes={expect_account(a, f"{name}.cancel_votes[]") for a in votes},
        )


ProtocolState = NotInitializedState | Initializing | Running | Resharing


def protocol_state_from_json(value: Any) -> ProtocolState:
    obj = expect_object(value, "protocol_state")
    kind = obj.get("state")
    if kind == NotInitializedState.name:
        check_fields(obj, "protocol_state", ["state"])
        return NotInitializedState()
    if kind == Running.name:
        return Running.from_json(obj, "protocol_state")
    if kind == Initializing.name:
        return Initializing.from_json(obj, "protocol_state")
    if kind == Resharing.name:
        return Resharing.from_json(obj, "protocol_state")
    raise InvalidArguments("protocol_state.state is not a known protocol state")


# --- sign requests, backup services, migrations ----------------------------------------


@dataclass(frozen=True)
class SignRequest(_Record):
    """A pending request; ``public_key`` is the derived key the signature must verify under."""

    request_id: int = field(metadata=INT)
    account: str = field(metadata=ACCOUNT)
    payload: bytes = field(
        metadata=kind(lambda value, name: expect_hex(value, name, PAYLOAD_MIN, PAYLOAD_MAX))
    )
    path: str = field(metadata=_text(PATH_MAX))
    domain_id: int = field(metadata=INT)
    public_key: bytes = field(metadata=ED25519_KEY)
    block_height: int = field(metadata=INT)
    deadline_height: int = field(metadata=INT)
    deadline_ms: int | None = field(
        default=None, metadata=kind(*nullable(expect_int), optional=True)
    )
    """Block time (Unix ms) at which the request fails; None only in a request rebuilt from
    an event by a reader that did not copy the field (the contract always sets it)."""


@dataclass(frozen=True)
class BackupServiceInfo(_Record):
    """The keys by which a backup service is authenticated and sealed to."""

    identity_public_key: bytes = field(metadata=ED25519_KEY)
    encryption_public_key: bytes = field(metadata=X25519_KEY)


@dataclass(frozen=True)
class Destination(_Record):
    """Where a migrating participant's node will run, and the TLS key it will present."""

    url: str = field(metadata=HOST_PORT)
    web_url: str = field(metadata=WEB_URL)
    tls_public_key: bytes = field(metadata=ED25519_KEY)


@dataclass(frozen=True)
class Migration(_Record):
    """An open migration of ``account``'s node to ``destination``."""

    account: str = field(metadata=ACCOUNT)
    participant_id: int = field(metadata=ID)
    destination: Destination = field(metadata=record_kind(Destination))
    destination_signer_public_key: bytes = field(metadata=ED25519_KEY)
    started_height: int = field(metadata=INT)


_SETTING = kind(lambda value, name: expect_int(value, name, 1, 1_000_000), optional=True)


@dataclass(frozen=True)
class Config(_Record):
    """Fixed at `init`. Immutable so request deadlines stay ordered by request id."""

    sign_timeout_blocks: int = field(default=DEFAULT_SIGN_TIMEOUT_BLOCKS, metadata=_SETTING)
    max_pending_requests: int = field(default=DEFAULT_MAX_PENDING_REQUESTS, metadata=_SETTING)
    sign_timeout_ms: int = field(
        default=DEFAULT_SIGN_TIMEOUT_MS,
        metadata=kind(
            lambda value, name: expect_int(value, name, 1000, MAX_SIGN_TIMEOUT_MS), optional=True
        ),
    )


def candidate_json(info: ParticipantInfo) -> dict[str, Any]:
    """A candidate's info: a participant info without an id (one is assigned on joining)."""
    data = info.to_json()
    del data["participant_id"]
    return data


# --- the whole state -------------------------------------------------------------------


@dataclass
class ContractState:
    """Everything the contract knows. ``requests`` iterates in request-id order."""

    protocol: ProtocolState = field(default_factory=NotInitializedState)
    config: Config = field(default_factory=Config)
    next_participant_id: int = 1
    next_domain_id: int = 0
    next_request_id: int = 0
    requests: dict[int, SignRequest] = field(default_factory=dict)
    backup_services: dict[str, BackupServiceInfo] = field(default_factory=dict)
    migrations: dict[str, Migration] = field(default_factory=dict)
    candidates: dict[str, ParticipantInfo] = field(default_factory=dict)
    attestation: AttestationState | None = None
    recovery: RecoveryBook = field(default_factory=RecoveryBook)
    backup_gate: BackupGate = field(default_factory=BackupGate)
    key_providers: KeyProviderBook = field(default_factory=KeyProviderBook)

    def serving(self) -> Running | None:
        """The Running state whose participants and keys currently sign (None before init)."""
        p = self.protocol
        if isinstance(p, Running):
            return p
        if isinstance(p, Initializing):
            return p.running
        if isinstance(p, Resharing):
            return p.previous
        return None

    def to_json(self, *, requests: bool = True) -> dict[str, Any]:
        """The state; ``requests=False`` leaves out ``sign_requests`` (for a hash that
        commits to them separately)."""
        body = {
            "format": STATE_FORMAT,
            "protocol_state": self.protocol.to_json(),
            "config": self.config.to_json(),
            "next_participant_id": self.next_participant_id,
            "next_domain_id": self.next_domain_id,
            "next_request_id": self.next_request_id,
            "sign_requests": [r.to_json() for r in self.requests.values()] if requests else [],
            "backup_services": {a: b.to_json() for a, b in sorted(self.backup_services.items())},
            "migrations": {a: m.to_json() for a, m in sorted(self.migrations.items())},
            "candidates": {a: candidate_json(c) for a, c in sorted(self.candidates.items())},
        }
        if not requests:
            del body["sign_requests"]
        # Absent for a contract initialised without attestation (the layout stays as it was).
        if self.attestation is not None:
            body["attestation"] = self.attestation.to_json()
        # Absent until first used, so a state without emergency recovery keeps its bytes.
        if not self.recovery.empty():
            body["emergency_recovery"] = self.recovery.to_json()
        # Likewise the backup gate: absent while no policy entry or confirmation exists.
        if not self.backup_gate.empty():
            body["backup_gate"] = self.backup_gate.to_json()
        if not self.key_providers.empty():
            body["key_providers"] = self.key_providers.to_json()
        return body

    @classmethod
    def from_json(cls, value: Any) -> ContractState:
        obj = expect_object(value, "state")
        check_fields(
            obj,
            "state",
            [
                "format",
                "protocol_state",
                "config",
                "next_participant_id",
                "next_domain_id",
                "next_request_id",
                "sign_requests",
                "backup_services",
                "migrations",
                "candidates",
            ],
            ["attestation", "emergency_recovery", "backup_gate", "key_providers"],
        )
        if obj["format"] != STATE_FORMAT:
            raise InvalidArguments(f"state.format must be {STATE_FORMAT}")
        requests = [
            SignRequest.from_json(r, f"state.sign_requests[{i}]")
            for i, r in enumerate(
                expect_list(obj["sign_requests"], "state.sign_requests", 0, MAX_INT)
            )
        ]
        requests.sort(key=lambda r: r.request_id)
        backups = expect_object(obj["backup_services"], "state.backup_services")
        migrations = expect_object(obj["migrations"], "state.migrations")
        candidates = expect_object(obj["candidates"], "state.candidates")
        return cls(
            protocol=protocol_state_from_json(obj["protocol_state"]),
            config=Config.from_json(obj["config"], "state.config"),
            next_participant_id=expect_int(
                obj["next_participant_id"], "state.next_participant_id", 1
            ),
            next_domain_id=expect_int(obj["next_domain_id"], "state.next_domain_id"),
            next_request_id=expect_int(obj["next_request_id"], "state.next_request_id"),
            requests={r.request_id: r for r in requests},
            backup_services={
                expect_account(a, "state.backup_services key"): BackupServiceInfo.from_json(
                    b, f"state.backup_services[{a}]"
                )
                for a, b in sorted(backups.items())
            },
            migrations={
                expect_account(a, "state.migrations key"): Migration.from_json(
                    m, f"state.migrations[{a}]"
                )
                for a, m in sorted(migrations.items())
            },
            candidates={
                expect_account(a, "state.candidates key"): ParticipantInfo.from_json(
                    c, f"state.candidates[{a}]", id_required=False
                )
                for a, c in sorted(candidates.items())
            },
            attestation=AttestationState.from_json(obj["attestation"], "state.attestation")
            if "attestation" in obj
            else None,
            recovery=RecoveryBook.from_json(obj["emergency_recovery"], "state.emergency_recovery")
            if "emergency_recovery" in obj
            else RecoveryBook(),
            backup_gate=BackupGate.from_json(obj["backup_gate"], "state.backup_gate")
            if "backup_gate" in obj
            else BackupGate(),
            key_providers=KeyProviderBook.from_json(obj["key_providers"], "state.key_providers")
            if "key_providers" in obj
            else KeyProviderBook(),
        )
