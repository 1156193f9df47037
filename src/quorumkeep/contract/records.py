"""The contract's records: the record codec (:mod:`quorumkeep.encoding.records`) with the
contract's argument rules.

Every record of the contract's state — the protocol records of ``state.py`` and those of its
sections (recovery, key providers, attestation, backup gate) — derives from
:class:`ContractRecord`, so a record refused anywhere in the state is an
``InvalidArguments`` naming the field (``<what>.<field>``). The kinds below are the field
rules those records share; each reads through a reader of ``contract/args.py``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, Protocol, Self

from quorumkeep.contract.args import (
    check_fields,
    expect_account,
    expect_ed25519_key,
    expect_hex,
    expect_host_port,
    expect_int,
    expect_object,
    expect_str,
    expect_verifying_shares,
    expect_web_url,
    expect_x25519_key,
)
from quorumkeep.encoding.records import JsonRecord, Kind, kind


class ContractRecord(JsonRecord):
    """A record of the contract's state: errors are ``InvalidArguments`` naming the field."""

    @classmethod
    def check_object(
        cls, value: Any, name: str, required: Sequence[str], optional: Sequence[str]
    ) -> dict[str, Any]:
        obj = expect_object(value, name)
        check_fields(obj, name, required, optional)
        return obj


def int_from(minimum: int) -> Mapping[str, Kind]:
    """An integer of at least ``minimum`` (and at most ``MAX_INT``)."""
    return kind(lambda value, name: expect_int(value, name, minimum))


def text(max_length: int) -> Mapping[str, Kind]:
    """A string of at most ``max_length`` characters."""
    return kind(lambda value, name: expect_str(value, name, max_length))


def hex_bytes(min_size: int, max_size: int) -> Mapping[str, Kind]:
    """Bytes as lowercase hex, ``min_size`` to ``max_size`` of them."""
    return kind(lambda value, name: expect_hex(value, name, min_size, max_size))


MAX_PARTICIPANTS = 256

VerifyingShares = tuple[tuple[int, bytes], ...]
"""Participant id → verifying share (the point share·G), as pairs in ascending id order."""


def verifying_shares_json(shares: VerifyingShares) -> dict[str, str]:
    """``{"<participant id>": hex32}``: JSON object keys are strings, so ids are decimal."""
    return {str(pid): share.hex() for pid, share in shares}


def _verifying_shares(value: Any, name: str) -> VerifyingShares:
    return expect_verifying_shares(value, name, MAX_PARTICIPANTS)


VERIFYING_SHARES_CODEC = (_verifying_shares, verifying_shares_json)
"""The reader and writer of a verifying-shares field (for ``kind`` or ``nullable``)."""
VERIFYING_SHARES = kind(*VERIFYING_SHARES_CODEC)
INT = kind(expect_int)
ID = int_from(1)
ACCOUNT = kind(expect_account)
HASH32 = hex_bytes(32, 32)
ED25519_KEY = kind(expect_ed25519_key)
X25519_KEY = kind(expect_x25519_key)
HOST_PORT = kind(expect_host_port)
WEB_URL = kind(expect_web_url)


class Readable(Protocol):
    """What :func:`account_map` holds: a value with a JSON object and a strict reader."""

    @classmethod
    def from_json(cls, value: Any, name: str, /) -> Self: ...

    def to_json(self) -> dict[str, Any]: ...


def account_map(record: type[Readable]) -> Mapping[str, Kind]:
    """Records by account: an object written and read in account order; errors name an
    entry ``<field>[<account>]`` and a bad account ``<field> key``."""

    def read(value: Any, name: str) -> dict[str, Readable]:
        obj = expect_object(value, name)
        return {
            expect_account(account, f"{name} key"): record.from_json(item, f"{name}[{account}]")
            for account, item in sorted(obj.items())
        }

    def write(records: Mapping[str, Readable]) -> dict[str, Any]:
        return {account: r.to_json() for account, r in sorted(records.items())}

    return kind(read, write)
