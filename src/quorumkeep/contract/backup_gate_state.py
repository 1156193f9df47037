"""The backup gate's records: each domain's backup policy and each operator's latest
backup confirmation.

- **policy** — how many operators' backup services must have confirmed a backup of the
  epoch in force before the domain signs. A domain without an entry requires **all**
  serving participants (the default); an entry is an explicit count, given by the
  `vote_add_domains` vote that created the domain (``backups_required``).
- **confirmation** — the latest `confirm_backup` of an account: the epoch and keyset hash
  its backup service verified, the domain ids that keyset holds, and the block (height
  and time) that recorded it. Confirmations of older epochs stay (they are what backup
  freshness reports) but no longer count.

The section is written into the state only when non-empty, so a state without a policy
entry or a confirmation keeps its bytes (and its hash).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from quorumkeep.contract.args import (
    check_fields,
    expect_account,
    expect_hex,
    expect_int,
    expect_list,
    expect_object,
)
from quorumkeep.contract.errors import InvalidArguments
from quorumkeep.encoding.records import JsonRecord, kind

MAX_DOMAINS = 64
MAX_PARTICIPANTS = 256


class _GateRecord(JsonRecord):
    """A record of the gate: errors are ``InvalidArguments`` naming the field."""

    @classmethod
    def check_object(
        cls, value: Any, name: str, required: Sequence[str], optional: Sequence[str]
    ) -> dict[str, Any]:
        obj = expect_object(value, name)
        check_fields(obj, name, required, optional)
        return obj


def _domain_ids(value: Any, name: str) -> tuple[int, ...]:
    ids = [expect_int(v, f"{name}[]") for v in expect_list(value, name, 1, MAX_DOMAINS)]
    if ids != sorted(set(ids)):
        raise InvalidArguments(f"{name} must ascend without repeats")
    return tuple(ids)


@dataclass(frozen=True)
class BackupConfirmation(_GateRecord):
    """An account's latest confirmed backup: what its backup service verified, and when."""

    epoch: int = field(metadata=kind(expect_int))
    keyset_hash: bytes = field(metadata=kind(lambda v, n: expect_hex(v, n, 32, 32)))
    domain_ids: tuple[int, ...] = field(metadata=kind(_domain_ids, list))
    block_height: int = field(metadata=kind(expect_int))
    timestamp_ms: int = field(metadata=kind(expect_int))


def _domain_key(key: str, name: str) -> int:
    if not key.isdigit() or key != str(int(key)):
        raise InvalidArguments(f"{name}: domain ids are decimal strings")
    return int(key)


@dataclass
class BackupGate:
    """Explicit policies by domain id (absent: all) and confirmations by account."""

    policies: dict[int, int] = field(default_factory=dict)
    confirmations: dict[str, BackupConfirmation] = field(default_factory=dict)

    def empty(self) -> bool:
        return not (self.policies or self.confirmations)

    def to_json(self) -> dict[str, Any]:
        return {
            "policies": {str(d): n for d, n in sorted(self.policies.items())},
            "confirmations": {a: c.to_json() for a, c in sorted(self.confirmations.items())},
        }

    @classmethod
    def from_json(cls, value: Any, name: str) -> BackupGate:
        obj = expect_object(value, name)
        check_fields(obj, name, ["policies", "confirmations"])
        policies = expect_object(obj["policies"], f"{name}.policies")
        confirmations = expect_object(obj["confirmations"], f"{name}.confirmations")
        return cls(
            policies={
                _domain_key(d, f"{name}.policies"): expect_int(
                    n, f"{name}.policies[{d}]", 0, MAX_PARTICIPANTS
                )
                for d, n in sorted(policies.items())
            },
            confirmations={
                expect_account(a, f"{name}.confirmations key"): BackupConfirmation.from_json(
                    c, f"{name}.confirmations[{a}]"
                )
                for a, c in sorted(confirmations.items())
            },
        )
