"""The messages of presignatures and signing (channels ``presign`` and ``sign``).

These are the hot path. Group elements inside them are only size-checked here:
``crypto.frost`` validates every element it uses, and validating twice would double the
cost; the owner validates members' commitments once, when a batch is made
(protocols/presign_owner.py). Formats: docs/node-protocols.md, "Messages".
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from quorumkeep.crypto import frost
from quorumkeep.crypto.group import ELEMENT_SIZE, SCALAR_SIZE, Scalar
from quorumkeep.encoding.records import kind
from quorumkeep.node.messages_fields import (
    CHANNEL_PRESIGN,
    CHANNEL_SIGN,
    REASON,
    Message,
    MessageError,
    read_ascending_ids,
    read_hex,
    read_id_map,
    read_int,
    read_list,
    read_participant,
    read_str,
    reader,
    register,
)

MAX_BATCH = 64
"""Most presignatures one batch request may ask for."""
MAX_PATH = 256
MAX_CALLER = 256
MAX_PAYLOAD = 4096
NONCE_PAIR_SIZE = 2 * ELEMENT_SIZE

_CODE = re.compile(r"[a-z][a-z0-9_]{0,47}")

# --- field kinds ---------------------------------------------------------------------------


def _code(value: object, what: str) -> str:
    if not isinstance(value, str) or not _CODE.fullmatch(value):
        raise MessageError(f"{what}: expected a lowercase identifier")
    return value


def _presign_confirm(value: object, what: str) -> dict[int, tuple[frost.SigningCommitments, ...]]:
    raw = read_id_map(value, what, None, MAX_BATCH * NONCE_PAIR_SIZE)
    out: dict[int, tuple[frost.SigningCommitments, ...]] = {}
    for participant, data in raw.items():
        if not data or len(data) % NONCE_PAIR_SIZE:
            raise MessageError(f"{what}: expected pairs of 32-byte commitments")
        out[participant] = split_commitments(data)
    if len({len(v) for v in out.values()}) > 1:
        raise MessageError(f"{what}: participants carry different counts")
    return out


def _commitment_list(value: object, what: str) -> tuple[frost.CommitmentListEntry, ...]:
    entries: list[frost.CommitmentListEntry] = []
    previous = 0
    for k, entry in enumerate(read_list(value, what, 1024)):
        if not isinstance(entry, list) or len(entry) != 3:
            raise MessageError(f"{what}[{k}]: expected [identifier, hiding, binding]")
        identifier = read_participant(entry[0], f"{what}[{k}] identifier")
        if identifier <= previous:
            raise MessageError(f"{what}: identifiers must be strictly ascending")
        entries.append(
            (
                identifier,
                read_hex(entry[1], f"{what}[{k}] hiding", ELEMENT_SIZE),
                read_hex(entry[2], f"{what}[{k}] binding", ELEMENT_SIZE),
            )
        )
        previous = identifier
    if not entries:
        raise MessageError(f"{what}: empty")
    return tuple(entries)


def _commitments_to_hex(commitments: Sequence[frost.SigningCommitments]) -> str:
    return b"".join(c.hiding + c.binding for c in commitments).hex()


def split_commitments(data: bytes) -> tuple[frost.SigningCommitments, ...]:
    return tuple(
        frost.SigningCommitments(
            data[k : k + ELEMENT_SIZE], data[k + ELEMENT_SIZE : k + NONCE_PAIR_SIZE]
        )
        for k in range(0, len(data), NONCE_PAIR_SIZE)
    )


def _commitment_run(value: object, what: str) -> tuple[frost.SigningCommitments, ...]:
    data = read_hex(value, what, maximum=MAX_BATCH * NONCE_PAIR_SIZE)
    if not data or len(data) % NONCE_PAIR_SIZE:
        raise MessageError(f"{what}: expected 1..{MAX_BATCH} pairs of 32-byte commitments")
    return split_commitments(data)


INT = kind(read_int)


# --- messages ------------------------------------------------------------------------------


@register
@dataclass(frozen=True, slots=True)
class Refusal(Message):
    """A member declines a presignature or signing request; ``code`` is stable."""

    TYPE = "refusal"
    CHANNELS = frozenset({CHANNEL_PRESIGN, CHANNEL_SIGN})

    code: str = field(metadata=kind(_code))
    reason: str = field(metadata=REASON)


# -- presignatures (protocols/presign.py)


@register
@dataclass(frozen=True, slots=True)
class PresignRequest(Message):
    """The owner asks a member for ``count`` nonce commitments (ids ``<session>:<k>``)."""

    TYPE = "presign_request"
    CHANNELS = frozenset({CHANNEL_PRESIGN})

    domain_id: int = field(metadata=INT)
    epoch: int = field(metadata=INT)
    participants: tuple[int, ...] = field(metadata=kind(reader(read_ascending_ids, 1024), list))
    count: int = field(metadata=kind(reader(read_int, 1, MAX_BATCH)))


@register
@dataclass(frozen=True, slots=True)
class PresignCommitments(Message):
    """A member's commitments for the batch, in id order."""

    TYPE = "presign_commitments"
    CHANNELS = frozenset({CHANNEL_PRESIGN})

    commitments: tuple[frost.SigningCommitments, ...] = field(
        metadata=kind(_commitment_run, _commitments_to_hex)
    )


@register
@dataclass(frozen=True, slots=True)
class PresignConfirm(Message):
    """Every participant's commitments for the batch: members store them with their nonces."""

    TYPE = "presign_confirm"
    CHANNELS = frozenset({CHANNEL_PRESIGN})

    commitments: Mapping[int, tuple[frost.SigningCommitments, ...]] = field(
        metadata=kind(
            _presign_confirm,
            lambda commitments: [
                [p, _commitments_to_hex(commitments[p])] for p in sorted(commitments)
            ],
        )
    )


@register
@dataclass(frozen=True, slots=True)
class PresignStored(Message):
    """A member stored its nonces for the batch, sealed and durable."""

    TYPE = "presign_stored"
    CHANNELS = frozenset({CHANNEL_PRESIGN})


# -- signing (protocols/sign.py)


@register
@dataclass(frozen=True, slots=True)
class SignShareRequest(Message):
    """The leader asks a member for its signature share; ``session`` is the presignature id."""

    TYPE = "sign_request"
    CHANNELS = frozenset({CHANNEL_SIGN})

    request_id: int = field(metadata=INT)
    domain_id: int = field(metadata=INT)
    epoch: int = field(metadata=INT)
    payload: bytes = field(metadata=kind(reader(read_hex, maximum=MAX_PAYLOAD)))
    path: str = field(metadata=kind(reader(read_str, MAX_PATH)))
    caller: str = field(metadata=kind(reader(read_str, MAX_CALLER, allow_empty=False)))
    commitments: tuple[frost.CommitmentListEntry, ...] = field(
        metadata=kind(
            _commitment_list, lambda entries: [[i, h.hex(), b.hex()] for i, h, b in entries]
        )
    )


@register
@dataclass(frozen=True, slots=True)
class SignShare(Message):
    TYPE = "sign_share"
    CHANNELS = frozenset({CHANNEL_SIGN})

    # canonicity is checked by frost.aggregate, which names the sender if it fails
    share: Scalar = field(metadata=kind(reader(read_hex, SCALAR_SIZE)))
