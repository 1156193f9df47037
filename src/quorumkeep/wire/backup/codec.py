"""The declarative field codec of backup messages."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import Field, dataclass, replace
from typing import TYPE_CHECKING, Any, ClassVar, Self, TypeVar

from quorumkeep.contract.state import Keyset
from quorumkeep.encoding.records import JsonRecord, Kind, layout
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
# their kind (quorumkeep.encoding.records, the codec the contract's records use too); its
# signed statement, its JSON and its parser are all derived from that one declaration, so the
# three cannot disagree about a field. The derived bytes are the layouts of
# docs/backup-protocol.md §3, §6 and §7, pinned by tests/backup/test_backup_wire_golden.py.

StatementValue = bytes | str | int


class MessageKind(Kind):
    """A record kind that also says how its field enters the signed statement: by default
    one statement field named after the attribute, bytes raw (§2, §3)."""

    def signed(self, name: str, value: Any) -> list[tuple[str, StatementValue]]:
        return [(name, value)]


class SignatureKind(MessageKind):
    def signed(self, name: str, value: Any) -> list[tuple[str, StatementValue]]:
        return []  # the statement is what the signature covers: it cannot hold the signature


class KeysetOfTransfer(MessageKind):
    """The keyset shares are of: JSON carries it whole plus its hash, which must agree; the
    statement names it by epoch and hash only, as the associated data does (§5)."""

    parsed_first = True
    """v1 read the keyset before every other field: a message with several faults must keep
    being refused with the same error."""

    def __init__(self) -> None:
        super().__init__(read_keyset)

    def json_names(self, name: str) -> tuple[str, ...]:
        return (name, "keyset_hash")

    def to_json(self, name: str, value: Any) -> list[tuple[str, Any]]:
        keyset: Keyset = value
        return [(name, keyset.to_json()), ("keyset_hash", keyset.hash.hex())]

    def signed(self, name: str, value: Any) -> list[tuple[str, StatementValue]]:
        keyset: Keyset = value
        return [("epoch", keyset.epoch), ("keyset_hash", keyset.hash)]

    def from_json(self, obj: Mapping[str, Any], name: str, path: str, what: str) -> Keyset:
        keyset = read_keyset(obj[name], f"{what} {name}")
        if read_keyset_hash(obj["keyset_hash"], "keyset_hash") != keyset.hash:
            raise malformed(f"{what}: keyset_hash is not the keyset's hash")
        return keyset


# The kinds of field; a message field is declared ``name: type = field(metadata=KIND)``.
PURPOSE = MessageKind(read_purpose).metadata()
ACCOUNT = MessageKind(read_account).metadata()
REGISTERED_KEY = MessageKind(read_registered_key).metadata()
EPHEMERAL_KEY = MessageKind(read_x25519_key).metadata()
NONCE = MessageKind(read_nonce).metadata()
SESSION_ID = MessageKind(read_session_id).metadata()
KEYSET = KeysetOfTransfer().metadata()
KEYSET_HASH = MessageKind(read_keyset_hash).metadata()
INTEGER = MessageKind(read_int).metadata()
"""Timestamps, expiry times, heights and epochs: non-negative 63-bit integers."""
CIPHERTEXT = MessageKind(read_ciphertext).metadata()
SIGNATURE = SignatureKind(read_signature).metadata()


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


class Signed:
    """A message whose dataclass fields are declared with message kinds; derives its
    statement.

    Subclasses are frozen dataclasses whose every field has ``metadata=`` one of the kinds
    above, in wire order."""

    __dataclass_fields__: ClassVar[dict[str, Field[Any]]]
    _ENVELOPE: ClassVar[Envelope]

    def statement(self) -> bytes:
        envelope = self._ENVELOPE
        pairs: list[tuple[str, StatementValue]] = []
        if envelope.status is not None:
            pairs.append(("status", envelope.status))
        for name, kind in layout(type(self)):
            assert isinstance(kind, MessageKind)
            pairs += kind.signed(name, getattr(self, name))
        if envelope.signed_order is not None:
            values = dict(pairs)
            if set(envelope.signed_order) != set(values):
                raise TypeError(f"{envelope.kind}: signed_order must name every signed field")
            pairs = [(name, values[name]) for name in envelope.signed_order]
        return statement(envelope.kind, pairs)


class JsonMessage(Signed, JsonRecord):
    """A message sent as a JSON body: ``version`` (and the ack's ``status``) first, then its
    fields in declared order; errors name fields by their bare names."""

    @classmethod
    def _preamble(cls) -> tuple[str, ...]:
        return ("version",) if cls._ENVELOPE.status is None else ("version", "status")

    @classmethod
    def check_object(
        cls, value: Any, what: str, required: Sequence[str], optional: Sequence[str]
    ) -> Mapping[str, Any]:
        envelope = cls._ENVELOPE
        obj = read_object(value, what, [*cls._preamble(), *required, *optional])
        if obj["version"] != PROTOCOL_VERSION or (
            envelope.status is not None and obj["status"] != envelope.status
        ):
            raise malformed(f"{what}: unsupported {' or '.join(cls._preamble())}")
        return obj

    @classmethod
    def field_path(cls, what: str, name: str) -> str:
        return name

    def to_json(self) -> dict[str, Any]:
        document: dict[str, Any] = {"version": PROTOCOL_VERSION}
        if self._ENVELOPE.status is not None:
            document["status"] = self._ENVELOPE.status
        document.update(super().to_json())
        return document

    @classmethod
    def from_body(cls, body: bytes) -> Self:
        """Parse an HTTP body: strict JSON (never deeper than a message nests), then
        :meth:`from_json`."""
        return cls.from_json(read_json(body, "the body is not UTF-8 JSON"))

    @classmethod
    def from_json(
        cls, value: Any, what: str | None = None, *, defaults: Mapping[str, Any] | None = None
    ) -> Self:
        return super().from_json(value, what or cls._ENVELOPE.what, defaults=defaults)


_Message = TypeVar(
    "_Message", "Hello", "BackupResponse", "RecoverySession", "RecoveryPush", "RecoveryAck"
)


def sign_message(unsigned: _Message, signer: Signer) -> _Message:
    return replace(unsigned, signature=signer.sign(unsigned.statement()))
