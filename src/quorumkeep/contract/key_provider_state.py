"""Key-provider records kept by the contract: registered providers and every node's deal.

A *provider* is registered per operator account (its identity key signs nothing on the
ledger; it is how nodes recognise the provider). A *deal* says who holds the pieces of one
node's storage secret (crypto/storage_split): the Feldman commitment, the threshold k, and
which provider holds which index 1..m, together with the two keys of the node it belongs to
— the signer key that recorded it and the release key that may ask for the pieces back.
Anyone reading the contract sees who holds what; providers decide from it what to release
and what to delete.

Kept under ``key_providers`` in the state's JSON, absent until first used, so a state without
key providers keeps its bytes.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from quorumkeep.contract.args import (
    check_fields,
    expect_account,
    expect_ed25519_key,
    expect_int,
    expect_list,
    expect_object,
)
from quorumkeep.contract.errors import InvalidArguments
from quorumkeep.contract.records import (
    ED25519_KEY,
    WEB_URL,
    X25519_KEY,
    ContractRecord,
    account_map,
)
from quorumkeep.crypto.storage_split import MAX_HOLDERS, MIN_THRESHOLD

MAX_PROVIDERS = 256


@dataclass(frozen=True)
class KeyProviderInfo(ContractRecord):
    """A registered provider: the keys nodes authenticate it by and seal pieces to."""

    identity_public_key: bytes = field(metadata=ED25519_KEY)
    encryption_public_key: bytes = field(metadata=X25519_KEY)
    url: str = field(metadata=WEB_URL)


# Hand-written: threshold bounds holders and commitment; an argument must omit recorded_height
@dataclass(frozen=True)
class StorageDeal:
    """Who holds the pieces of one node's storage secret, and under which commitment."""

    epoch: int
    threshold: int
    commitment: tuple[bytes, ...]
    holders: tuple[tuple[int, str], ...]
    """(index, provider account) for indices 1..m in order."""
    signer_public_key: bytes
    release_public_key: bytes
    recorded_height: int

    @property
    def providers(self) -> tuple[str, ...]:
        return tuple(account for _, account in self.holders)

    def index_of(self, provider: str) -> int | None:
        for index, account in self.holders:
            if account == provider:
                return index
        return None

    def to_json(self) -> dict[str, Any]:
        return {
            "epoch": self.epoch,
            "threshold": self.threshold,
            "commitment": [c.hex() for c in self.commitment],
            "holders": [{"index": i, "provider": a} for i, a in self.holders],
            "signer_public_key": self.signer_public_key.hex(),
            "release_public_key": self.release_public_key.hex(),
            "recorded_height": self.recorded_height,
        }

    @classmethod
    def from_json(cls, value: Any, name: str, *, recorded_height: int | None = None) -> StorageDeal:
        """Parse a deal; ``recorded_height`` given means an argument (no such member)."""
        obj = expect_object(value, name)
        fields = [
            "epoch",
            "threshold",
            "commitment",
            "holders",
            "signer_public_key",
            "release_public_key",
        ]
        if recorded_height is None:
            fields.append("recorded_height")
        check_fields(obj, name, fields)
        threshold = expect_int(obj["threshold"], f"{name}.threshold", MIN_THRESHOLD, MAX_HOLDERS)
        holders_json = expect_list(obj["holders"], f"{name}.holders", threshold, MAX_HOLDERS)
        holders: list[tuple[int, str]] = []
        for i, item in enumerate(holders_json):
            entry = expect_object(item, f"{name}.holders[{i}]")
            check_fields(entry, f"{name}.holders[{i}]", ["index", "provider"])
            index = expect_int(entry["index"], f"{name}.holders[{i}].index", 1, MAX_HOLDERS)
            if index != i + 1:
                raise InvalidArguments(f"{name}.holders must list indices 1..m in order")
            holders.append((index, expect_account(entry["provider"], f"{name}.holders[{i}]")))
        commitment = expect_list(obj["commitment"], f"{name}.commitment", threshold, threshold)
        return cls(
            epoch=expect_int(obj["epoch"], f"{name}.epoch", 1),
            threshold=threshold,
            commitment=tuple(
                expect_ed25519_key(c, f"{name}.commitment[{i}]") for i, c in enumerate(commitment)
            ),
            holders=tuple(holders),
            signer_public_key=expect_ed25519_key(
                obj["signer_public_key"], f"{name}.signer_public_key"
            ),
            release_public_key=expect_ed25519_key(
                obj["release_public_key"], f"{name}.release_public_key"
            ),
            recorded_height=recorded_height
            if recorded_height is not None
            else expect_int(obj["recorded_height"], f"{name}.recorded_height"),
        )


@dataclass
class KeyProviderBook(ContractRecord):
    """Registered providers by operator account, and the current deal of every node."""

    providers: dict[str, KeyProviderInfo] = field(
        default_factory=dict, metadata=account_map(KeyProviderInfo)
    )
    deals: dict[str, StorageDeal] = field(default_factory=dict, metadata=account_map(StorageDeal))

    def empty(self) -> bool:
        return not (self.providers or self.deals)

    def holders_of(self, provider: str) -> list[str]:
        """Accounts whose current deal names ``provider``, sorted."""
        return sorted(a for a, d in self.deals.items() if provider in d.providers)
