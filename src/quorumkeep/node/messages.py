"""The typed protocol messages nodes exchange over the mesh, and their one codec.

Every message is one mesh MESSAGE frame (docs/mesh.md) on the channel of its protocol
(``dkg``, ``reshare``, ``presign``, ``sign``); the payload is a UTF-8 JSON object::

    {"type": "<message type>", "session": "<session id>", <the type's fields>}

Full formats: docs/node-protocols.md. Decoding is strict: the object must hold exactly the
type's keys (no duplicates), integers are JSON integers (never booleans or floats), bytes are
lowercase hex of the exact size, identifiers are in [1, 2^63), lists are sorted where the
format says so. Anything else raises :class:`MessageError` (code ``invalid_message``), whose
one-line message names the field, never its value (some fields are secret shares).

Group elements inside signing messages are only size-checked here: ``crypto.frost`` validates
every element it uses, and validating twice would double the cost of the hot path. The
packages of key generation and resharing are rare and decoded by ``crypto``'s own validating
decoders.

This module is the public entry point: it re-exports every message type, declared in
``messages_keygen`` (key generation, resharing) and ``messages_signing`` (presignatures,
signing) on the field kinds and base of ``messages_fields``, and holds the codec, which
knows every type because importing this module declares them all. The public key package's
encodings are ``key_packages``.
"""

from __future__ import annotations

import json
from collections.abc import Mapping

from quorumkeep.crypto.errors import InvalidEncoding
from quorumkeep.encoding.fields import key_diff
from quorumkeep.encoding.json import JsonError, parse_json
from quorumkeep.node.messages_fields import (
    CHANNEL_DKG,
    CHANNEL_PRESIGN,
    CHANNEL_RESHARE,
    CHANNEL_SIGN,
    CHANNELS,
    REGISTRY,
    Message,
    MessageError,
    check_session_id,
)
from quorumkeep.node.messages_keygen import (
    DkgConfirm,
    DkgEcho,
    DkgRound1,
    DkgRound2,
    ReshareConfirm,
    ReshareDeal,
    ReshareDealers,
    ReshareReady,
    SessionAbort,
)
from quorumkeep.node.messages_signing import (
    PresignCommitments,
    PresignConfirm,
    PresignRequest,
    PresignStored,
    Refusal,
    SignShare,
    SignShareRequest,
)

__all__ = [
    "CHANNELS",
    "CHANNEL_DKG",
    "CHANNEL_PRESIGN",
    "CHANNEL_RESHARE",
    "CHANNEL_SIGN",
    "MAX_MESSAGE_SIZE",
    "MESSAGE_TYPES",
    "DkgConfirm",
    "DkgEcho",
    "DkgRound1",
    "DkgRound2",
    "Message",
    "MessageError",
    "PresignCommitments",
    "PresignConfirm",
    "PresignRequest",
    "PresignStored",
    "Refusal",
    "ReshareConfirm",
    "ReshareDeal",
    "ReshareDealers",
    "ReshareReady",
    "SessionAbort",
    "SignShare",
    "SignShareRequest",
    "decode",
    "encode",
]

MAX_MESSAGE_SIZE = 4 * 1024 * 1024
"""Largest payload the codec decodes (a presignature batch for 64 signers of 64 ids fits)."""

MESSAGE_TYPES: Mapping[str, type[Message]] = dict(REGISTRY)


# --- the codec -------------------------------------------------------------------------


_ENCODER = json.JSONEncoder(separators=(",", ":"), ensure_ascii=True)


def encode(message: Message) -> bytes:
    """The message's payload bytes: compact JSON, ASCII only."""
    obj: dict[str, object] = {"type": message.TYPE, "session": message.session}
    obj.update(message.fields())
    return _ENCODER.encode(obj).encode("ascii")


def decode(channel: str, payload: bytes) -> Message:
    """Strictly decode a payload received on ``channel``; MessageError for anything wrong."""
    if len(payload) > MAX_MESSAGE_SIZE:
        raise MessageError(f"message of {len(payload)} bytes exceeds {MAX_MESSAGE_SIZE}")
    try:
        obj = parse_json(payload)
    except JsonError as exc:
        raise MessageError(f"not a JSON document: {exc}"[:120]) from None
    if not isinstance(obj, dict):
        raise MessageError("expected a JSON object")
    kind = obj.get("type")
    cls = MESSAGE_TYPES.get(kind) if isinstance(kind, str) else None
    if cls is None:
        raise MessageError("unknown message type")
    if channel not in cls.CHANNELS:
        raise MessageError(f"message type {cls.TYPE} is not allowed on channel {channel[:32]!r}")
    missing, unknown = key_diff(obj, sorted({"type", "session", *cls.FIELDS}))
    if missing or unknown:
        unknown = [k[:32] for k in unknown][:5]
        raise MessageError(f"{cls.TYPE}: missing keys {missing}, unknown keys {unknown}")
    session = check_session_id(obj["session"])
    try:
        return cls.from_fields(session, obj)
    except MessageError as exc:
        raise MessageError(f"{cls.TYPE}: {exc}") from None
    except InvalidEncoding as exc:  # pragma: no cover - crypto_decode converts these already
        raise MessageError(f"{cls.TYPE}: {exc}") from None
