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
- **wait** — per domain, when its current wait for backups began and when it ended: the
  block at which the domain stopped signing (its key or a new epoch came into force, or a
  replaced backup service withdrew a confirmation it counted on) and the block at which
  its policy was met again (null while it waits). It makes the delay that backup before
  use adds to signing visible (``backup_status``).

The section is written into the state only when non-empty, so a state without a policy
entry or a confirmation keeps its bytes (and its hash).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from quorumkeep.contract.args import (
    check_fields,
    expect_account,
    expect_int,
    expect_list,
    expect_object,
)
from quorumkeep.contract.errors import InvalidArguments
from quorumkeep.contract.records import HASH32, INT, MAX_PARTICIPANTS, ContractRecord
from quorumkeep.encoding.records import kind, nullable

MAX_DOMAINS = 64


def _domain_ids(value: Any, name: str) -> tuple[int, ...]:
    ids = [expect_int(v, f"{name}[]") for v in expect_list(value, name, 1, MAX_DOMAINS)]
    if ids != sorted(set(ids)):
        raise InvalidArguments(f"{name} must ascend without repeats")
    return tuple(ids)


@dataclass(frozen=True)
class BackupConfirmation(ContractRecord):
    """An account's latest confirmed backup: what its backup service verified, and when."""

    epoch: int = field(metadata=INT)
    keyset_hash: bytes = field(metadata=HASH32)
    domain_ids: tuple[int, ...] = field(metadata=kind(_domain_ids, list))
    block_height: int = field(metadata=INT)
    timestamp_ms: int = field(metadata=INT)


@dataclass(frozen=True)
class GateWait(ContractRecord):
    """A domain's latest wait for backups at ``epoch``: it began at block
    ``since_height`` (time ``since_ms``) and ended when the policy was met at block
    ``opened_height`` (``opened_ms``); both null while the domain still waits. A domain
    whose policy was met in the block that began the wait has equal heights."""

    epoch: int = field(metadata=INT)
    since_height: int = field(metadata=INT)
    since_ms: int = field(metadata=INT)
    opened_height: int | None = field(metadata=kind(*nullable(expect_int)))
    opened_ms: int | None = field(metadata=kind(*nullable(expect_int)))

    @property
    def waited_ms(self) -> int | None:
        """How long signing waited for backups (None while it still waits)."""
        return None if self.opened_ms is None else self.opened_ms - self.since_ms


def _domain_key(key: str, name: str) -> int:
    if not key.isdigit() or key != str(int(key)):
        raise InvalidArguments(f"{name}: domain ids are decimal strings")
    return int(key)


@dataclass
class BackupGate:
    """Explicit policies by domain id (absent: all), confirmations by account, and each
    domain's latest wait for backups by domain id."""

    policies: dict[int, int] = field(default_factory=dict)
    confirmations: dict[str, BackupConfirmation] = field(default_factory=dict)
    waits: dict[int, GateWait] = field(default_factory=dict)

    def empty(self) -> bool:
        return not (self.policies or self.confirmations or self.waits)

    def to_json(self) -> dict[str, Any]:
        document: dict[str, Any] = {
            "policies": {str(d): n for d, n in sorted(self.policies.items())},
            "confirmations": {a: c.to_json() for a, c in sorted(self.confirmations.items())},
        }
        if self.waits:  # absent until a domain has a key, like the section itself
            document["waits"] = {str(d): w.to_json() for d, w in sorted(self.waits.items())}
        return document

    @classmethod
    def from_json(cls, value: Any, name: str) -> BackupGate:
        obj = expect_object(value, name)
        check_fields(obj, name, ["policies", "confirmations"], ["waits"])
        policies = expect_object(obj["policies"], f"{name}.policies")
        confirmations = expect_object(obj["confirmations"], f"{name}.confirmations")
        waits = expect_object(obj.get("waits", {}), f"{name}.waits")
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
            waits={
                _domain_key(d, f"{name}.waits"): GateWait.from_json(w, f"{name}.waits[{d}]")
                for d, w in sorted(waits.items())
            },
        )
