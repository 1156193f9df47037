"""The contract's attestation state: policy, allow-lists, votes and per-key records.

Kept apart from ``state.py``: ``ContractState.attestation`` holds one ``AttestationState``
(None for a contract initialised without attestation, which the views show as insecure).
Records are keyed by the attested public key — a node's TLS key, a backup service's or
key provider's identity key — so a migration destination can attest before it becomes
the participant, and a replaced node's record can never be mistaken for its successor's.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from quorumkeep.attest import ROLES, Measurement, TcbPolicy
from quorumkeep.contract.args import (
    MAX_INT,
    check_fields,
    expect_account,
    expect_bool,
    expect_hex,
    expect_int,
    expect_list,
    expect_object,
    expect_str,
)
from quorumkeep.contract.errors import InvalidArguments
from quorumkeep.contract.records import ACCOUNT, HASH32, INT, ContractRecord, text
from quorumkeep.encoding.records import Kind, kind, nullable

DEFAULT_VALIDITY_SECONDS = 7 * 24 * 3600
DEFAULT_GRACE_SECONDS = 3600
MAX_MEASUREMENTS = 64


def expect_role(value: Any, name: str) -> str:
    if value not in ROLES:
        raise InvalidArguments(f"{name} must be one of {', '.join(ROLES)}")
    return str(value)


def expect_measurement(value: Any, name: str) -> Measurement:
    try:
        return Measurement.from_json(value)
    except ValueError as exc:
        raise InvalidArguments(f"{name}: {exc}") from exc


def expect_tcb_policy(value: Any, name: str) -> TcbPolicy:
    obj = expect_object(value, name)
    check_fields(obj, name, ["statuses"], ["advisory_ids"])
    statuses = expect_list(obj["statuses"], f"{name}.statuses", 1, 8)
    ids = expect_list(obj.get("advisory_ids", []), f"{name}.advisory_ids", 0, 64)
    policy = TcbPolicy(
        frozenset(expect_str(s, f"{name}.statuses[]", 64) for s in statuses),
        frozenset(expect_str(a, f"{name}.advisory_ids[]", 24) for a in ids),
    )
    problem = policy.problem()
    if problem is not None:
        raise InvalidArguments(f"{name}: {problem}")
    return policy


class _MeasurementWithId(Kind):
    """A measurement, written with its id in the member after it (``<name>_id``, for
    readers of the state); the id is derived, and read back only to be checked: a record
    whose id is not its measurement's is refused rather than silently rewritten."""

    def __init__(self) -> None:
        super().__init__(expect_measurement, lambda m: m.to_json())

    def json_names(self, name: str) -> tuple[str, ...]:
        return (name, f"{name}_id")

    def to_json(self, name: str, value: Any) -> list[tuple[str, Any]]:
        return [(name, value.to_json()), (f"{name}_id", value.measurement_id)]

    def from_json(self, obj: Mapping[str, Any], name: str, path: str, what: str) -> Any:
        measurement = expect_measurement(obj[name], path)
        if obj[f"{name}_id"] != measurement.measurement_id:
            raise InvalidArguments(f"{path}_id: not the id of {path}")
        return measurement


def _advisory_ids(value: Any, name: str) -> tuple[str, ...]:
    return tuple(expect_str(a, f"{name}[]", 24) for a in expect_list(value, name, 0, 64))


# Declared outside AttestationRecord: in its class body, after its field ``kind``, that name is
# the field, not the function.
_ROLE = kind(expect_role)
_MEASUREMENT = _MeasurementWithId().metadata()
_ADVISORY_IDS = kind(_advisory_ids, list)


@dataclass(frozen=True)
class AttestationRecord(ContractRecord):
    """A verified attestation of ``key`` (TLS or identity key) for ``role`` of ``account``."""

    role: str = field(metadata=_ROLE)
    account: str = field(metadata=ACCOUNT)
    key: bytes = field(metadata=HASH32)
    bound_key: bytes = field(metadata=HASH32)
    kind: str = field(metadata=text(8))
    measurement: Measurement = field(metadata=_MEASUREMENT)
    tcb_status: str = field(metadata=text(64))
    advisory_ids: tuple[str, ...] = field(metadata=_ADVISORY_IDS)
    attested_at: int = field(metadata=INT)
    expires_at: int = field(metadata=INT)


_ACTIONS = ("add", "remove", "tcb_policy")


def _action(value: Any, name: str) -> str:
    if value not in _ACTIONS:
        raise InvalidArguments(f"{name} is not add, remove or tcb_policy")
    return str(value)


def _voters(value: Any, name: str) -> set[str]:
    return {expect_account(v, f"{name}[]") for v in expect_list(value, name, 0, 256)}


@dataclass
class PolicyProposal(ContractRecord):
    """A pending allow-list or TCB policy change and the operators who voted for it.

    ``action`` is ``add`` or ``remove`` (with ``role`` and ``measurement``) or
    ``tcb_policy`` (with ``policy``).
    """

    action: str = field(metadata=kind(_action))
    role: str | None = field(metadata=kind(*nullable(expect_role)))
    measurement: Measurement | None = field(
        metadata=kind(*nullable(expect_measurement, lambda m: m.to_json()))
    )
    policy: TcbPolicy | None = field(
        metadata=kind(*nullable(expect_tcb_policy, lambda p: p.to_json()))
    )
    voters: set[str] = field(default_factory=set, metadata=kind(_voters, sorted))

    def key(self) -> str:
        if self.action == "tcb_policy":
            assert self.policy is not None
            p = self.policy.to_json()
            return f"tcb_policy:{','.join(p['statuses'])}:{','.join(p['advisory_ids'])}"
        assert self.measurement is not None
        return f"{self.action}:{self.role}:{self.measurement.measurement_id}"

    def content_json(self) -> dict[str, Any]:
        """The proposal without its voters (what its events name)."""
        document = self.to_json()
        del document["voters"]
        return document


# Hand-written: insecure_dev_attestation is derived, proposals and records re-keyed by computed keys
@dataclass
class AttestationState:
    """Everything attestation-related the contract keeps (see docs/contract.md)."""

    dev_platform_public_key: bytes | None
    validity_seconds: int
    grace_seconds: int
    require_tee_backup_services: bool
    genesis_at: int
    tcb_policy: TcbPolicy = field(default_factory=TcbPolicy)
    allowed: dict[str, dict[str, Measurement]] = field(default_factory=dict)
    proposals: dict[str, PolicyProposal] = field(default_factory=dict)
    records: dict[bytes, AttestationRecord] = field(default_factory=dict)
    marked: dict[str, str] = field(default_factory=dict)

    @property
    def dev_allowed(self) -> bool:
        return self.dev_platform_public_key is not None

    def is_allowed(self, role: str, m: Measurement) -> bool:
        return m.measurement_id in self.allowed.get(role, {})

    def to_json(self) -> dict[str, Any]:
        return {
            "dev_platform_public_key": None
            if self.dev_platform_public_key is None
            else self.dev_platform_public_key.hex(),
            "insecure_dev_attestation": self.dev_allowed,
            "validity_seconds": self.validity_seconds,
            "grace_seconds": self.grace_seconds,
            "require_tee_backup_services": self.require_tee_backup_services,
            "genesis_at": self.genesis_at,
            "tcb_policy": self.tcb_policy.to_json(),
            "allowed_measurements": {
                role: [m.to_json() for _, m in sorted(self.allowed.get(role, {}).items())]
                for role in ROLES
            },
            "proposals": {k: p.to_json() for k, p in sorted(self.proposals.items())},
            "records": [r.to_json() for _, r in sorted(self.records.items())],
            "marked": dict(sorted(self.marked.items())),
        }

    @classmethod
    def genesis_from_json(cls, value: Any, name: str, now: int) -> AttestationState:
        """The ``attestation`` argument of `init`."""
        obj = expect_object(value, name)
        check_fields(
            obj,
            name,
            ["allowed_measurements"],
            [
                "dev_platform_public_key",
                "validity_seconds",
                "grace_seconds",
                "require_tee_backup_services",
                "tcb_policy",
            ],
        )
        dev = obj.get("dev_platform_public_key")
        state = cls(
            dev_platform_public_key=None
            if dev is None
            else expect_hex(dev, f"{name}.dev_platform_public_key", 32, 32),
            validity_seconds=expect_int(
                obj.get("validity_seconds", DEFAULT_VALIDITY_SECONDS),
                f"{name}.validity_seconds",
                60,
                365 * 24 * 3600,
            ),
            grace_seconds=expect_int(
                obj.get("grace_seconds", DEFAULT_GRACE_SECONDS), f"{name}.grace_seconds", 0, 86400
            ),
            require_tee_backup_services=expect_bool(
                obj.get("require_tee_backup_services", False),
                f"{name}.require_tee_backup_services",
            ),
            genesis_at=now,
            tcb_policy=expect_tcb_policy(
                obj.get("tcb_policy", {"statuses": ["UpToDate"]}), f"{name}.tcb_policy"
            ),
            allowed=_allowed_from_json(obj["allowed_measurements"], f"{name}.allowed_measurements"),
        )
        if not state.allowed.get("node"):
            raise InvalidArguments(f"{name}.allowed_measurements.node must list a measurement")
        return state

    @classmethod
    def from_json(cls, value: Any, name: str) -> AttestationState:
        obj = expect_object(value, name)
        check_fields(
            obj,
            name,
            [
                "dev_platform_public_key",
                "insecure_dev_attestation",
                "validity_seconds",
                "grace_seconds",
                "require_tee_backup_services",
                "genesis_at",
                "tcb_policy",
                "allowed_measurements",
                "proposals",
                "records",
                "marked",
            ],
        )
        dev = obj["dev_platform_public_key"]
        records = [
            AttestationRecord.from_json(r, f"{name}.records[{i}]")
            # Bounded by the keys the contract names (records of others are pruned).
            for i, r in enumerate(expect_list(obj["records"], f"{name}.records", 0, MAX_INT))
        ]
        proposals = expect_object(obj["proposals"], f"{name}.proposals")
        marked = expect_object(obj["marked"], f"{name}.marked")
        parsed = {
            k: PolicyProposal.from_json(p, f"{name}.proposals[{k}]") for k, p in proposals.items()
        }
        return cls(
            dev_platform_public_key=None
            if dev is None
            else expect_hex(dev, f"{name}.dev_platform_public_key", 32, 32),
            validity_seconds=expect_int(obj["validity_seconds"], f"{name}.validity_seconds"),
            grace_seconds=expect_int(obj["grace_seconds"], f"{name}.grace_seconds"),
            require_tee_backup_services=expect_bool(
                obj["require_tee_backup_services"], f"{name}.require_tee_backup_services"
            ),
            genesis_at=expect_int(obj["genesis_at"], f"{name}.genesis_at", 0, MAX_INT),
            tcb_policy=expect_tcb_policy(obj["tcb_policy"], f"{name}.tcb_policy"),
            allowed=_allowed_from_json(obj["allowed_measurements"], f"{name}.allowed_measurements"),
            proposals={p.key(): p for p in parsed.values()},
            records={r.key: r for r in records},
            marked={
                expect_account(a, f"{name}.marked key"): expect_str(r, f"{name}.marked[{a}]", 200)
                for a, r in marked.items()
            },
        )


def _allowed_from_json(value: Any, name: str) -> dict[str, dict[str, Measurement]]:
    obj = expect_object(value, name)
    check_fields(obj, name, [], ROLES)
    allowed: dict[str, dict[str, Measurement]] = {}
    for role, items in obj.items():
        entries = expect_list(items, f"{name}.{role}", 0, MAX_MEASUREMENTS)
        ms = [expect_measurement(m, f"{name}.{role}[{i}]") for i, m in enumerate(entries)]
        allowed[role] = {m.measurement_id: m for m in ms}
    return allowed
