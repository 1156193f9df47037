"""Emergency recovery records kept by the contract: recovery keys, their votes, and the
digest of every participant's part per (domain, epoch).

The parts themselves (≈ 53 KB each at RSA-3072) are not state: each is the argument of
the `submit_recovery_part` transaction that recorded it, so it lives in the ledger's block
log at ``block_height``; the state keeps its SHA-256 and the epoch's public key package,
so a bundle can be assembled and checked for any epoch that has records.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from quorumkeep.contract.args import (
    check_fields,
    expect_account,
    expect_list,
    expect_object,
)
from quorumkeep.contract.errors import InvalidArguments
from quorumkeep.contract.records import (
    ED25519_KEY,
    HASH32,
    ID,
    INT,
    VERIFYING_SHARES,
    ContractRecord,
    VerifyingShares,
    account_map,
    hex_bytes,
    int_from,
)

MAX_SPKI_BYTES = 1024
"""A SubjectPublicKeyInfo of an RSA key up to 4096 bits fits (550 bytes at 4096)."""


@dataclass(frozen=True)
class RecoveryKey(ContractRecord):
    """An RSA recovery public key (SPKI DER) and its fingerprint (SHA-256 of the DER)."""

    public_key: bytes = field(metadata=hex_bytes(1, MAX_SPKI_BYTES))
    fingerprint: bytes = field(metadata=HASH32)


@dataclass(frozen=True)
class PartRecord(ContractRecord):
    """One participant's part for a (domain, epoch): where it is and what it hashes to."""

    participant_id: int = field(metadata=ID)
    digest: bytes = field(metadata=HASH32)
    fingerprint: bytes = field(metadata=HASH32)
    size: int = field(metadata=INT)
    block_height: int = field(metadata=INT)


@dataclass
class RecoveryEpoch(ContractRecord):
    """The parts recorded for one (domain, epoch) and the package they were checked against."""

    domain_id: int = field(metadata=INT)
    epoch: int = field(metadata=INT)
    public_key: bytes = field(metadata=ED25519_KEY)
    threshold: int = field(metadata=int_from(1))
    verifying_shares: VerifyingShares = field(metadata=VERIFYING_SHARES)
    keyset_hash: bytes = field(metadata=HASH32)
    parts: dict[str, PartRecord] = field(default_factory=dict, metadata=account_map(PartRecord))


# Hand-written: epochs are listed, empty vote maps dropped and domain-id errors name the book itself
@dataclass
class RecoveryBook:
    """Every recovery key (by domain), the open votes for one, and the recorded parts."""

    keys: dict[int, RecoveryKey] = field(default_factory=dict)
    votes: dict[int, dict[str, RecoveryKey]] = field(default_factory=dict)
    epochs: dict[tuple[int, int], RecoveryEpoch] = field(default_factory=dict)

    def empty(self) -> bool:
        return not (self.keys or self.votes or self.epochs)

    def to_json(self) -> dict[str, Any]:
        return {
            "keys": {str(d): k.to_json() for d, k in sorted(self.keys.items())},
            "votes": {
                str(d): {a: k.to_json() for a, k in sorted(v.items())}
                for d, v in sorted(self.votes.items())
                if v
            },
            "epochs": [e.to_json() for _, e in sorted(self.epochs.items())],
        }

    @classmethod
    def from_json(cls, value: Any, name: str) -> RecoveryBook:
        obj = expect_object(value, name)
        check_fields(obj, name, ["keys", "votes", "epochs"])

        def domain(key: str) -> int:
            if not key.isdigit() or key != str(int(key)):
                raise InvalidArguments(f"{name}: domain ids are decimal strings")
            return int(key)

        keys = expect_object(obj["keys"], f"{name}.keys")
        votes = expect_object(obj["votes"], f"{name}.votes")
        epochs = [
            RecoveryEpoch.from_json(e, f"{name}.epochs[{i}]")
            for i, e in enumerate(expect_list(obj["epochs"], f"{name}.epochs", 0, 2**31))
        ]
        return cls(
            keys={
                domain(d): RecoveryKey.from_json(k, f"{name}.keys[{d}]") for d, k in keys.items()
            },
            votes={
                domain(d): {
                    expect_account(a, f"{name}.votes[{d}] key"): RecoveryKey.from_json(
                        k, f"{name}.votes[{d}][{a}]"
                    )
                    for a, k in expect_object(v, f"{name}.votes[{d}]").items()
                }
                for d, v in votes.items()
            },
            epochs={(e.domain_id, e.epoch): e for e in epochs},
        )
