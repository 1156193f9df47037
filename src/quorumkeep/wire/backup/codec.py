"""The declarative field codec of backup messages."""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable, Mapping
from dataclasses import Field, dataclass, fields, replace
from typing import TYPE_CHECKING, Any, ClassVar, Self, TypeVar

from quorumkeep.contract.state import Keyset
from quorumkeep.wire.backup.errors import malformed
from quorumkeep.wire.backup.fields import (
    read_account,
    read_ciphertext,
    read_int,
    read_json,
    read_keyset_hash,
    read_nonce,
    read_object,
    read_purpose,
    read_registered_key,
    read_session_id,
    read_signature,
    read_x25519_key,
)
from quorumkeep.wire.backup.keyset import read_keyset
from quorumkeep.wire.backup.protocol import PROTOCOL_VERSION
from quorumkeep.wire.backup.statements import Signer, statement

if TYPE_CHECKING:
    from quorumkeep.wire.backup.hello import Hello
    from quorumkeep.wire.backup.messages import (
        BackupResponse,
        RecoveryAck,
        RecoveryPush,
        RecoverySession,
    )


# --- message fields -------------------------------------------------------------------------
#
# A message declares its fields once, as dataclass fields in wire order whose metadata names
# their kind; its signed statement, its JSON and its parser are all derived from that one
# declaration, so the three cannot disagree about a field. The derived bytes are the layouts of
# docs/backup-protocol.md §3, §6 and §7, pinned by tests/backup/test_backup_wire_golden.py.

StatementValue = bytes | str | int
Reader = Callable[[object, str], object]
"""Checks one JSON value and returns it decoded; the string names the field in the error."""


class Kind(ABC):
    """How one kind of field is written into JSON and a statement, and read back from JSON."""

    parsed_first = False
    """v1 read the keyset before every other field: a message with several faults must keep
    being refused with the same error."""

    @abstractmethod
    def json_names(self, name: str) -> tuple[str, ...]: ...

    @abstractmethod
    def to_json(self, name: str, value: Any) -> list[tuple[str, Any]]: ...

    @abstractmethod
    def signed(self, name: str, value: Any) -> list[tuple[str, StatementValue]]: ...

    @abstractmethod
    def from_json(self, obj: Mapping[str, Any], name: str, what: str) -> object: ...


class ValueKind(Kind):
    """One member, one statement field, named after the attribute; bytes are hex in JSON and
    raw in the statement (§2, §3)."""

    def __init__(self, read: Reader) -> None:
        self.read = read

    def json_names(self, name: str) -> tuple[str, ...]:
        return (name,)

    def to_json(self, name: str, value: Any) -> list[tuple[str, Any]]:
        return [(name, value.hex() if isinstance(value, bytes) else value)]

    def signed(self, name: str, value: Any) -> list[tuple[str, StatementValue]]:
        return [(name, value)]

    def from_json(self, obj: Mapping[str, Any], name: str, what: str) -> object:
        return self.read(obj[name], name)


class SignatureKind(ValueKind):
    def signed(self, name: str, value: Any) -> list[tuple[str, StatementValue]]:
        return []  # the statement is what the signature covers: it cannot hold the signature


class KeysetOfTransfer(Kind):
    """The keyset shares are of: JSON carries it whole plus its hash, which must agree; the
    statement names it by epoch and hash only, as the associated data does (§5)."""

    parsed_first = True

    def json_names(self, name: str) -> tuple[str, ...]:
        return (name, "keyset_hash")

    def to_json(self, name: str, value: Any) -> list[tuple[str, Any]]:
        keyset: Keyset = value
        return [(name, keyset.to_json()), ("keyset_hash", keyset.hash.hex())]

    def signed(self, name: str, value: Any) -> list[tuple[str, StatementValue]]:
        keyset: Keyset = value
        return [("epoch", keyset.epoch), ("keyset_hash", keyset.hash)]

    def from_json(self, obj: Mapping[str, Any], name: str, what: str) -> Keyset:
        keyset = read_keyset(obj[name], f"{what} {name}")
        if read_keyset_hash(obj["keyset_hash"], "keyset_hash") != keyset.hash:
            raise malformed(f"{what}: keyset_hash is not the keyset's hash")
        return keyset


KIND_KEY = "quorumkeep.wire.backup kind"
"""The metadata key of a message field's :class:`Kind`."""


def kind_metadata(kind: Kind) -> Mapping[str, Kind]:
    return {KIND_KEY: kind}


# The kinds of field; a message field is declared ``name: type = field(metadata=KIND)``.
PURPOSE = kind_metadata(ValueKind(read_purpose))
ACCOUNT = kind_metadata(ValueKind(read_account))
REGISTERED_KEY = kind_metadata(ValueKind(read_registered_key))
EPHEMERAL_KEY = kind_metadata(ValueKind(read_x25519_key))
NONCE = kind_metadata(ValueKind(read_nonce))
SESSION_ID = kind_metadata(ValueKind(read_session_id))
KEYSET = kind_metadata(KeysetOfTransfer())
KEYSET_HASH = kind_metadata(ValueKind(read_keyset_hash))
INTEGER = kind_metadata(ValueKind(read_int))
"""Timestamps, expiry times, heights and epochs: non-negative 63-bit integers."""
CIPHERTEXT = kind_metadata(ValueKind(read_ciphertext))
SIGNATURE = kind_metadata(SignatureKind(read_signature))


@dataclass(frozen=True)
class Envelope:
    """What a message carries besides its fields."""

    kind: str
    """The statement's kind (§3)."""
    what: str
    """How parse errors name the message."""
    status: str | None = None
    """A constant after the version, in JSON and first in the statement (the ack's)."""
    signed_order: tuple[str, ...] | None = None
    """The statement's field order where v1 made it differ from the JSON's (the ack's)."""


def message_layout(message: type[Signed]) -> tuple[tuple[str, Kind], ...]:
    return tuple((f.name, f.metadata[KIND_KEY]) for f in fields(message))


class Signed:
    """A message whose dataclass fields are declared with kinds; derives its statement.

    Subclasses are frozen dataclasses whose every field has ``metadata=`` one of the kinds
    above, in wire order."""

    __dataclass_fields__: ClassVar[dict[str, Field[Any]]]
    _ENVELOPE: ClassVar[Envelope]

    def statement(self) -> bytes:
        envelope = self._ENVELOPE
        pairs: list[tuple[str, StatementValue]] = []
        if envelope.status is not None:
            pairs.append(("status", envelope.status))
        for name, kind in message_layout(type(self)):
            pairs += kind.signed(name, getattr(self, name))
        if envelope.signed_order is not None:
            values = dict(pairs)
            if set(envelope.signed_order) != set(values):
                raise TypeError(f"{envelope.kind}: signed_order must name every signed field")
            pairs = [(name, values[name]) for name in envelope.signed_order]
        return statement(envelope.kind, pairs)


class JsonMessage(Signed):
    """A message sent as a JSON body: ``version`` first, then its fields in declared order."""

    def to_json(self) -> dict[str, Any]:
        document: dict[str, Any] = {"version": PROTOCOL_VERSION}
        if self._ENVELOPE.status is not None:
            document["status"] = self._ENVELOPE.status
        for name, kind in message_layout(type(self)):
            document.update(kind.to_json(name, getattr(self, name)))
        return document

    @classmethod
    def from_body(cls, body: bytes) -> Self:
        """Parse an HTTP body: strict JSON (never deeper than a message nests), then
        :meth:`from_json`."""
        return cls.from_json(read_json(body, "the body is not UTF-8 JSON"))

    @classmethod
    def from_json(cls, value: object) -> Self:
        envelope = cls._ENVELOPE
        preamble = ("version",) if envelope.status is None else ("version", "status")
        layout = message_layout(cls)
        names = [*preamble, *(n for name, kind in layout for n in kind.json_names(name))]
        obj = read_object(value, envelope.what, names)
        if obj["version"] != PROTOCOL_VERSION or (
            envelope.status is not None and obj["status"] != envelope.status
        ):
            raise malformed(f"{envelope.what}: unsupported {' or '.join(preamble)}")
        ordered = sorted(layout, key=lambda item: not item[1].parsed_first)
        return cls(**{name: kind.from_json(obj, name, envelope.what) for name, kind in ordered})


_Message = TypeVar(
    "_Message", "Hello", "BackupResponse", "RecoverySession", "RecoveryPush", "RecoveryAck"
)


def sign_message(unsigned: _Message, signer: Signer) -> _Message:
    return replace(unsigned, signature=signer.sign(unsigned.statement()))
