"""The contract's state: typed records and their canonical JSON encoding.

Value records (participant info, keysets, requests, migrations…) are frozen; the protocol
state records (Running, Initializing, Resharing) carry vote tallies and are mutated in
place by the methods — only after a call has passed every check, so a rejected call leaves
them untouched. ``to_json`` lists every collection in a fixed order (by id, then by
account) so equal states give byte-equal JSON under ``sort_keys``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import cached_property
from typing import Any

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
from quorumkeep.contract.errors import InvalidArguments

STATE_FORMAT = 2
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
DEFAULT_MAX_PENDING_REQUESTS = 10_000


# --- participants ----------------------------------------------------------------------


@dataclass(frozen=True)
class ParticipantInfo:
    """A node as the contract knows it: who runs it, where, and the keys that identify it."""

    account: str
    participant_id: int
    url: str
    web_url: str
    tls_public_key: bytes
    signer_public_key: bytes

    def to_json(self) -> dict[str, Any]:
        return {
            "account": self.account,
            "participant_id": self.participant_id,
            "url": self.url,
            "web_url": self.web_url,
            "tls_public_key": self.tls_public_key.hex(),
            "signer_public_key": self.signer_public_key.hex(),
        }

    @classmethod
    def from_json(cls, value: Any, name: str, id_required: bool = True) -> ParticipantInfo:
        """Parse an info; without ``id_required`` a missing id reads as UNASSIGNED_ID."""
        obj = expect_object(value, name)
        fields = ["account", "url", "web_url", "tls_public_key", "signer_public_key"]
        if id_required:
            check_fields(obj, name, [*fields, "participant_id"])
        else:
            check_fields(obj, name, fields, ["participant_id"])
        pid = UNASSIGNED_ID
        if "participant_id" in obj:
            pid = expect_int(obj["participant_id"], f"{name}.participant_id", minimum=1)
        return cls(
            account=expect_account(obj["account"], f"{name}.account"),
            participant_id=pid,
            url=expect_host_port(obj["url"], f"{name}.url"),
            web_url=expect_web_url(obj["web_url"], f"{name}.web_url"),
            tls_public_key=expect_ed25519_key(obj["tls_public_key"], f"{name}.tls_public_key"),
            signer_public_key=expect_ed25519_key(
                obj["signer_public_key"], f"{name}.signer_public_key"
            ),
        )


@dataclass(frozen=True)
class Participants:
    """A participant set and its threshold; ``members`` ascend by participant id."""

    threshold: int
    members: tuple[ParticipantInfo, ...]

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

    def to_json(self) -> dict[str, Any]:
        return {"threshold": self.threshold, "participants": [m.to_json() for m in self.members]}

    @classmethod
    def from_json(cls, value: Any, name: str) -> Participants:
        obj = expect_object(value, name)
        check_fields(obj, name, ["threshold", "participants"])
        items = expect_list(obj["participants"], f"{name}.participants", 1, MAX_PARTICIPANTS)
        members = tuple(
            ParticipantInfo.from_json(item, f"{name}.participants[{i}]")
            for i, item in enumerate(items)
        )
        threshold = expect_int(obj["threshold"], f"{name}.threshold")
        return cls(threshold, tuple(sorted(members, key=lambda m: m.participant_id)))


# --- domains and keys ------------------------------------------------------------------


@dataclass(frozen=True)
class Domain:
    """A signing domain: one group key per domain, generated by its own key event."""

    domain_id: int
    scheme: str

    def to_json(self) -> dict[str, Any]:
        return {"domain_id": self.domain_id, "scheme": self.scheme}

    @classmethod
    def from_json(cls, value: Any, name: str) -> Domain:
        obj = expect_object(value, name)
        check_fields(obj, name, ["domain_id", "scheme"])
        return cls(
            expect_int(obj["domain_id"], f"{name}.domain_id"),
            expect_str(obj["scheme"], f"{name}.scheme", 32),
        )


VerifyingShares = tuple[tuple[int, bytes], ...]
"""Participant id → verifying share (the point share·G), as pairs in ascending id order."""


def verifying_shares_json(shares: VerifyingShares) -> dict[str, str]:
    """``{"<participant id>": hex32}``: JSON object keys are strings, so ids are decimal."""
    return {str(pid): share.hex() for pid, share in shares}


@dataclass(frozen=True)
class DomainKey:
    """A domain's public key package: the group key and every participant's verifying share.

    The shares belong to the participant set of the Running state holding this key (whose
    threshold is the package's); they are replaced when a resharing completes and stay
    valid across migrations, which keep participant ids.
    """

    domain_id: int
    scheme: str
    public_key: bytes
    verifying_shares: VerifyingShares

    @property
    def domain(self) -> Domain:
        return Domain(self.domain_id, self.scheme)

    def keyset_json(self) -> dict[str, Any]:
        """The domain as a keyset lists it: what a keyset names, without the shares."""
        return {
            "domain_id": self.domain_id,
            "scheme": self.scheme,
            "public_key": self.public_key.hex(),
        }

    def to_json(self) -> dict[str, Any]:
        return {
            **self.keyset_json(),
            "verifying_shares": verifying_shares_json(self.verifying_shares),
        }

    @classmethod
    def from_json(cls, value: Any, name: str) -> DomainKey:
        obj = expect_object(value, name)
        check_fields(obj, name, ["domain_id", "scheme", "public_key", "verifying_shares"])
        return cls(
            expect_int(obj["domain_id"], f"{name}.domain_id"),
            expect_str(obj["scheme"], f"{name}.scheme", 32),
            expect_ed25519_key(obj["public_key"], f"{name}.public_key"),
            expect_verifying_shares(
                obj["verifying_shares"], f"{name}.verifying_shares", MAX_PARTICIPANTS
            ),
        )


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

    def to_json(self) -> dict[str, Any]:
        return {"epoch": self.epoch, "domains": [d.keyset_json() for d in self.domains]}


@dataclass(frozen=True)
class KeyEventId:
    """Names one attempt at generating (or resharing) one domain's key in one epoch."""

    domain_id: int
    epoch: int
    attempt: int

    def to_json(self) -> dict[str, Any]:
        return {"domain_id": self.domain_id, "epoch": self.epoch, "attempt": self.attempt}

    @classmethod
    def from_json(cls, value: Any, name: str) -> KeyEventId:
        obj = expect_object(value, name)
        check_fields(obj, name, ["domain_id", "epoch", "attempt"])
        return cls(
            expect_int(obj["domain_id"], f"{name}.domain_id"),
            expect_int(obj["epoch"], f"{name}.epoch"),
            expect_int(obj["attempt"], f"{name}.attempt"),
        )


@dataclass
class KeyEvent:
    """The current attempt for one domain and the votes cast in it.

    In key generation a vote is the public key the voter's DKG produced; in a resharing
    it is the domain's (unchanged) key, confirmed by a new participant holding its share.
    Every vote also carries the verifying shares of the set the key is shared among; votes
    only count when identical, so the attempt stores them once: ``verifying_shares`` is
    what every vote in this attempt carried (None before the first vote). ``public_key``
    is set once every required voter agreed.
    """

    domain: Domain
    epoch: int
    attempt: int
    votes: dict[str, bytes] = field(default_factory=dict)
    verifying_shares: VerifyingShares | None = None
    public_key: bytes | None = None

    @property
    def id(self) -> KeyEventId:
        return KeyEventId(self.domain.domain_id, self.epoch, self.attempt)

    @property
    def complete(self) -> bool:
        return self.public_key is not None

    def to_json(self) -> dict[str, Any]:
        return {
            "domain_id": self.domain.domain_id,
            "scheme": self.domain.scheme,
            "epoch": self.epoch,
            "attempt": self.attempt,
            "votes": {a: pk.hex() for a, pk in sorted(self.votes.items())},
            "verifying_shares": None
            if self.verifying_shares is None
            else verifying_shares_json(self.verifying_shares),
            "public_key": None if self.public_key is None else self.public_key.hex(),
        }

    @classmethod
    def from_json(cls, value: Any, name: str) -> KeyEvent:
        obj = expect_object(value, name)
        check_fields(
            obj,
            name,
            ["domain_id", "scheme", "epoch", "attempt", "votes", "verifying_shares", "public_key"],
        )
        votes_obj = expect_object(obj["votes"], f"{name}.votes")
        votes = {
            expect_account(a, f"{name}.votes key"): expect_ed25519_key(pk, f"{name}.votes[{a}]")
            for a, pk in votes_obj.items()
        }
        shares = obj["verifying_shares"]
        pk = obj["public_key"]
        return cls(
            domain=Domain(
                expect_int(obj["domain_id"], f"{name}.domain_id"),
                expect_str(obj["scheme"], f"{name}.scheme", 32),
            ),
            epoch=expect_int(obj["epoch"], f"{name}.epoch"),
            attempt=expect_int(obj["attempt"], f"{name}.attempt"),
            votes=votes,
            verifying_shares=None
            if shares is None
            else expect_verifying_shares(shares, f"{name}.verifying_shares", MAX_PARTICIPANTS),
            public_key=None if pk is None else expect_ed25519_key(pk, f"{name}.public_key"),
        )


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
    add_domains_votes: dict[str, tuple[Domain, ...]] = field(default_factory=dict)

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
                    Domain.from_json(d, f"{name}.add_domains_votes[{a}]")
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
class SignRequest:
    """A pending request; ``public_key`` is the derived key the signature must verify under."""

    request_id: int
    account: str
    payload: bytes
    path: str
    domain_id: int
    public_key: bytes
    block_height: int
    deadline_height: int

    def to_json(self) -> dict[str, Any]:
        return {
            "request_id": self.request_id,
            "account": self.account,
            "payload": self.payload.hex(),
            "path": self.path,
            "domain_id": self.domain_id,
            "public_key": self.public_key.hex(),
            "block_height": self.block_height,
            "deadline_height": self.deadline_height,
        }

    @classmethod
    def from_json(cls, value: Any, name: str) -> SignRequest:
        obj = expect_object(value, name)
        check_fields(
            obj,
            name,
            [
                "request_id",
                "account",
                "payload",
                "path",
                "domain_id",
                "public_key",
                "block_height",
                "deadline_height",
            ],
        )
        return cls(
            request_id=expect_int(obj["request_id"], f"{name}.request_id"),
            account=expect_account(obj["account"], f"{name}.account"),
            payload=expect_hex(obj["payload"], f"{name}.payload", PAYLOAD_MIN, PAYLOAD_MAX),
            path=expect_str(obj["path"], f"{name}.path", PATH_MAX),
            domain_id=expect_int(obj["domain_id"], f"{name}.domain_id"),
            public_key=expect_ed25519_key(obj["public_key"], f"{name}.public_key"),
            block_height=expect_int(obj["block_height"], f"{name}.block_height"),
            deadline_height=expect_int(obj["deadline_height"], f"{name}.deadline_height"),
        )


@dataclass(frozen=True)
class BackupServiceInfo:
    """The keys by which a backup service is authenticated and sealed to."""

    identity_public_key: bytes
    encryption_public_key: bytes

    def to_json(self) -> dict[str, Any]:
        return {
            "identity_public_key": self.identity_public_key.hex(),
            "encryption_public_key": self.encryption_public_key.hex(),
        }

    @classmethod
    def from_json(cls, value: Any, name: str) -> BackupServiceInfo:
        obj = expect_object(value, name)
        check_fields(obj, name, ["identity_public_key", "encryption_public_key"])
        return cls(
            expect_ed25519_key(obj["identity_public_key"], f"{name}.identity_public_key"),
            expect_x25519_key(obj["encryption_public_key"], f"{name}.encryption_public_key"),
        )


@dataclass(frozen=True)
class Destination:
    """Where a migrating participant's node will run, and the TLS key it will present."""

    url: str
    web_url: str
    tls_public_key: bytes

    def to_json(self) -> dict[str, Any]:
        return {
            "url": self.url,
            "web_url": self.web_url,
            "tls_public_key": self.tls_public_key.hex(),
        }


@dataclass(frozen=True)
class Migration:
    """An open migration of ``account``'s node to ``destination``."""

    account: str
    participant_id: int
    destination: Destination
    destination_signer_public_key: bytes
    started_height: int

    def to_json(self) -> dict[str, Any]:
        return {
            "account": self.account,
            "participant_id": self.participant_id,
            "destination": self.destination.to_json(),
            "destination_signer_public_key": self.destination_signer_public_key.hex(),
            "started_height": self.started_height,
        }

    @classmethod
    def from_json(cls, value: Any, name: str) -> Migration:
        obj = expect_object(value, name)
        check_fields(
            obj,
            name,
            [
                "account",
                "participant_id",
                "destination",
                "destination_signer_public_key",
                "started_height",
            ],
        )
        dest = expect_object(obj["destination"], f"{name}.destination")
        check_fields(dest, f"{name}.destination", ["url", "web_url", "tls_public_key"])
        return cls(
            account=expect_account(obj["account"], f"{name}.account"),
            participant_id=expect_int(obj["participant_id"], f"{name}.participant_id", 1),
            destination=Destination(
                expect_host_port(dest["url"], f"{name}.destination.url"),
                expect_web_url(dest["web_url"], f"{name}.destination.web_url"),
                expect_ed25519_key(dest["tls_public_key"], f"{name}.destination.tls_public_key"),
            ),
            destination_signer_public_key=expect_ed25519_key(
                obj["destination_signer_public_key"], f"{name}.destination_signer_public_key"
            ),
            started_height=expect_int(obj["started_height"], f"{name}.started_height"),
        )


@dataclass(frozen=True)
class Config:
    """Fixed at `init`. Immutable so request deadlines stay ordered by request id."""

    sign_timeout_blocks: int = DEFAULT_SIGN_TIMEOUT_BLOCKS
    max_pending_requests: int = DEFAULT_MAX_PENDING_REQUESTS

    def to_json(self) -> dict[str, Any]:
        return {
            "sign_timeout_blocks": self.sign_timeout_blocks,
            "max_pending_requests": self.max_pending_requests,
        }

    @classmethod
    def from_json(cls, value: Any, name: str) -> Config:
        obj = expect_object(value, name)
        check_fields(obj, name, [], ["sign_timeout_blocks", "max_pending_requests"])
        default = cls()
        timeout = obj.get("sign_timeout_blocks", default.sign_timeout_blocks)
        maximum = obj.get("max_pending_requests", default.max_pending_requests)
        return cls(
            expect_int(timeout, f"{name}.sign_timeout_blocks", 1, 1_000_000),
            expect_int(maximum, f"{name}.max_pending_requests", 1, 1_000_000),
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

    def to_json(self) -> dict[str, Any]:
        return {
            "format": STATE_FORMAT,
            "protocol_state": self.protocol.to_json(),
            "config": self.config.to_json(),
            "next_participant_id": self.next_participant_id,
            "next_domain_id": self.next_domain_id,
            "next_request_id": self.next_request_id,
            "sign_requests": [r.to_json() for r in self.requests.values()],
            "backup_services": {a: b.to_json() for a, b in sorted(self.backup_services.items())},
            "migrations": {a: m.to_json() for a, m in sorted(self.migrations.items())},
            "candidates": {a: candidate_json(c) for a, c in sorted(self.candidates.items())},
            # Absent for a contract initialised without attestation (the layout stays as it was).
            **({} if self.attestation is None else {"attestation": self.attestation.to_json()}),
        }

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
            ["attestation"],
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
            attestation=None
            if obj.get("attestation") is None
            else AttestationState.from_json(obj["attestation"], "state.attestation"),
        )
