"""What the protocol messages are declared with: their channels, field kinds and base class.

A message declares its fields once, as dataclass fields in wire order whose metadata names
their kind (quorumkeep.encoding.records, the codec of the contract's records and the backup
protocol too); its JSON members and its strict reader are derived from that declaration.
This module holds the readers every kind is built from (each raises :class:`MessageError`
naming the field, never its value), the kinds more than one protocol uses, the
:class:`Message` base and the registry every message type enters, which the codec
(``messages.MESSAGE_TYPES``) is read from. The types themselves are declared in
``messages_keygen`` and ``messages_signing``; ``messages`` is their public entry point and
holds the codec.
"""

from __future__ import annotations

import itertools
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, ClassVar, TypeVar

from quorumkeep.crypto.errors import CryptoError
from quorumkeep.encoding.fields import decode_hex
from quorumkeep.encoding.records import kind, layout

CHANNEL_DKG = "dkg"
CHANNEL_RESHARE = "reshare"
CHANNEL_PRESIGN = "presign"
CHANNEL_SIGN = "sign"
CHANNELS = frozenset({CHANNEL_DKG, CHANNEL_RESHARE, CHANNEL_PRESIGN, CHANNEL_SIGN})

MAX_ID = 2**63 - 1
"""Participant ids, domain ids, epochs and request ids are contract integers: < 2^63."""
MAX_REASON = 200

_SESSION_ID = re.compile(r"[!-~]{1,128}")


class MessageError(ValueError):
    """A payload that is not a valid protocol message. Never carries field values."""

    code = "invalid_message"


# --- field helpers ---------------------------------------------------------------------


def check_session_id(value: object) -> str:
    """Session ids: 1..128 printable ASCII characters without spaces."""
    if not isinstance(value, str) or not _SESSION_ID.fullmatch(value):
        raise MessageError("session: expected 1..128 printable ASCII characters, no spaces")
    return value


def read_int(value: object, what: str, minimum: int = 0, maximum: int = MAX_ID) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not minimum <= value <= maximum:
        raise MessageError(f"{what}: expected an integer in [{minimum}, {maximum}]")
    return value


def read_participant(value: object, what: str) -> int:
    return read_int(value, what, 1)


def read_str(value: object, what: str, maximum: int, *, allow_empty: bool = True) -> str:
    if not isinstance(value, str):
        raise MessageError(f"{what}: expected a string")
    if len(value) > maximum or (not value and not allow_empty):
        raise MessageError(f"{what}: expected {0 if allow_empty else 1}..{maximum} characters")
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        raise MessageError(f"{what}: not valid Unicode text") from None
    return value


def read_hex(value: object, what: str, size: int | None = None, *, maximum: int = 0) -> bytes:
    """Lowercase hex; exactly ``size`` bytes, or a multiple of nothing up to ``maximum``."""
    if not isinstance(value, str):
        raise MessageError(f"{what}: expected a hex string")
    if size is not None and len(value) != 2 * size:
        raise MessageError(f"{what}: expected {2 * size} hex digits")
    if size is None and (len(value) % 2 or len(value) > 2 * maximum):
        raise MessageError(f"{what}: expected an even number of hex digits, at most {2 * maximum}")
    if value != value.lower():
        raise MessageError(f"{what}: hex must be lowercase")
    try:
        return decode_hex(value)
    except ValueError:
        raise MessageError(f"{what}: not a hex string") from None


def read_list(value: object, what: str, maximum: int) -> list[object]:
    if not isinstance(value, list):
        raise MessageError(f"{what}: expected a list")
    if len(value) > maximum:
        raise MessageError(f"{what}: more than {maximum} items")
    return value


def read_ascending_ids(value: object, what: str, maximum: int = 0xFFFF) -> tuple[int, ...]:
    ids = tuple(
        read_participant(v, f"{what}[{k}]") for k, v in enumerate(read_list(value, what, maximum))
    )
    if any(a >= b for a, b in itertools.pairwise(ids)):
        raise MessageError(f"{what}: identifiers must be strictly ascending")
    return ids


def read_id_map(value: object, what: str, size: int | None, maximum: int = 0) -> dict[int, bytes]:
    """``[[id, hex], ...]`` with strictly ascending ids."""
    out: dict[int, bytes] = {}
    previous = 0
    for k, entry in enumerate(read_list(value, what, 0xFFFF)):
        if not isinstance(entry, list) or len(entry) != 2:
            raise MessageError(f"{what}[{k}]: expected [identifier, hex]")
        identifier = read_participant(entry[0], f"{what}[{k}] identifier")
        if identifier <= previous:
            raise MessageError(f"{what}: identifiers must be strictly ascending")
        out[identifier] = read_hex(entry[1], f"{what}[{k}]", size, maximum=maximum)
        previous = identifier
    return out


def id_map_to_json(values: Mapping[int, bytes]) -> list[list[object]]:
    return [[identifier, values[identifier].hex()] for identifier in sorted(values)]


def crypto_decode(decode: Any, value: object, what: str) -> Any:
    """Run one of crypto's validating decoders, turning its error into a MessageError."""
    try:
        return decode(value)
    except (CryptoError, ValueError) as exc:
        raise MessageError(f"{what}: {exc}") from None


# --- field kinds ---------------------------------------------------------------------------


def reader(read: Any, *args: Any, **kwargs: Any) -> Any:
    """``read`` with its size or range arguments bound: a kind's reader ``(value, what)``."""
    return lambda value, what: read(value, what, *args, **kwargs)


REASON = kind(reader(read_str, MAX_REASON), lambda reason: reason[:MAX_REASON])


# --- the base and the registry -------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Message:
    """Base of every protocol message; ``session`` routes it (sessions.SessionRouter)."""

    TYPE: ClassVar[str] = ""
    CHANNELS: ClassVar[frozenset[str]] = frozenset()
    FIELDS: ClassVar[tuple[str, ...]] = ()
    """The JSON members besides ``type`` and ``session``, in order (from the declaration)."""

    session: str

    def fields(self) -> dict[str, object]:
        return {name: k.write(getattr(self, name)) for name, k in layout(type(self))}

    @classmethod
    def from_fields(cls, session: str, obj: Mapping[str, object]) -> Message:
        return cls(session, **{name: k.read(obj[name], name) for name, k in layout(cls)})


_M = TypeVar("_M", bound=type[Message])
REGISTRY: dict[str, type[Message]] = {}
"""Every declared message type by its ``TYPE``; complete once ``messages`` is imported (it
imports every declaring module), which is where the codec reads it (``MESSAGE_TYPES``)."""


def register(cls: _M) -> _M:
    """Class decorator of every message type: enters it in the registry, derives FIELDS."""
    if cls.TYPE in REGISTRY:
        raise RuntimeError(f"duplicate message type {cls.TYPE}")
    REGISTRY[cls.TYPE] = cls
    cls.FIELDS = tuple(name for name, _ in layout(cls))
    return cls
