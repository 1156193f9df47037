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
    expect_ed25519_key,
    expect_hex,
    expect_int,
    expect_list,
    expect_object,
    expect_verifying_shares,
)
from quorumkeep.contract.errors import InvalidArguments

MAX_SPKI_BYTES = 1024
"""A SubjectPublicKeyInfo of an RSA key up to 4096 bits fits (550 bytes at 4096)."""
MAX_PARTICIPANTS = 256


@dataclass(frozen=True)
class RecoveryKey:
    """An RSA recovery public key (SPKI DER) and its fingerprint (SHA-256 of the DER)."""

    public_key: bytes
    fingerprint: bytes

    def to_json(self) -> dict[str, Any]:
        return {"public_key": self.public_key.hex(), "fingerprint": self.fingerprint.hex()}

    @classmethod
    def from_json(cls, value: Any, name: str) -> RecoveryKey:
        obj = expect_object(value, name)
        check_fields(obj, name, ["public_key", "fingerprint"])
        return cls(
            expect_hex(obj["public_key"], f"{name}.public_key", 1, MAX_SPKI_BYTES),
            expect_hex(obj["fingerprint"], f"{name}.fingerprint", 32, 32),
        )


@dataclass(frozen=True)
class PartRecord:
    """One participant's part for a (domain, epoch): where it is and what it hashes to."""

    participant_id: int
    digest: bytes
    fingerprint: bytes
    size: int
    block_height: int

    def to_json(self) -> dict[str, Any]:
        return {
            "participant_id": self.participant_id,
            "digest": self.digest.hex(),
            "fingerprint": self.fingerprint.hex(),
            "size": self.size,
            "block_height": self.block_height,
        }

    @classmethod
    def from_json(cls, value: Any, name: str) -> PartRecord:
        obj = expect_object(value, name)
        check_fields(obj, name, ["participant_id", "digest", "fingerprint", "size", "block_height"])
        return cls(
            expect_int(obj["participant_id"], f"{name}.participant_id", 1),
            expect_hex(obj["digest"], f"{name}.digest", 32, 32),
            expect_hex(obj["fingerprint"], f"{name}.fingerprint", 32, 32),
            expect_int(obj["size"], f"{name}.size"),
            expect_int(obj["block_height"], f"{name}.block_height"),
        )


@dataclass
class RecoveryEpoch:
    """The parts recorded for one (domain, epoch) and the package they were checked against."""

    domain_id: int
    epoch: int
    public_key: bytes
    threshold: int
    verifying_shares: tuple[tuple[int, bytes], ...]
    keyset_hash: bytes
    parts: dict[str, PartRecord] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        return {
            "domain_id": self.domain_id,
            "epoch": self.epoch,
            "public_key": self.public_key.hex(),
            "threshold": self.threshold,
            "verifying_shares": {str(pid): s.hex() for pid, s in self.verifying_shares},
            "keyset_hash": self.keyset_hash.hex(),
            "parts": {a: p.to_json() for a, p in sorted(self.parts.items())},
        }

    @classmethod
    def from_json(cls, value: Any, name: str) -> RecoveryEpoch:
        obj = expect_object(value, name)
        check_fields(
            obj,
            name,
            [
                "domain_id",
                "epoch",
                "public_key",
                "threshold",
                "verifying_shares",
                "keyset_hash",
                "parts",
            ],
        )
        parts = expect_object(obj["parts"], f"{name}.parts")
        return cls(
            domain_id=expect_int(obj["domain_id"], f"{name}.domain_id"),
            epoch=expect_int(obj["epoch"], f"{name}.epoch"),
            public_key=expect_ed25519_key(obj["public_key"], f"{name}.public_key"),
            threshold=expect_int(obj["threshold"], f"{name}.threshold", 1),
            verifying_shares=expect_verifying_shares(
                obj["verifying_shares"], f"{name}.verifying_shares", MAX_PARTICIPANTS
            ),
            keyset_hash=expect_hex(obj["keyset_hash"], f"{name}.keyset_hash", 32, 32),
            parts={
                expect_account(a, f"{name}.parts key"): PartRecord.from_json(
                    p, f"{name}.parts[{a}]"
                )
                for a, p in sorted(parts.items())
            },
        )


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
