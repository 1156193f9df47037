"""The OpenAPI description of the node's ``/backup`` endpoints: the hello headers, the PUT
body and the 200 answers, with every constraint the parser enforces (docs/backup-protocol.md
§2, §6, §7), so that a client generated from ``/openapi.json`` sends what the node accepts.

Two rules span fields and cannot be stated in JSON Schema; they are named in the
descriptions: ``keyset_hash`` must be the hash of ``keyset`` (§2), and every ``public_key`` of
a keyset must be a canonical ed25519 point. A test generates requests from these schemas and
checks that the node answers no 5xx, refuses nothing valid as malformed, and refuses every
invalid request with a 4xx.
"""

from __future__ import annotations

from typing import Any

from quorumkeep.wire.backup.protocol import (
    H_ACCOUNT,
    H_EPHEMERAL_KEY,
    H_NODE_KEY,
    H_NONCE,
    H_PURPOSE,
    H_SERVICE_KEY,
    H_SIGNATURE,
    H_TIMESTAMP,
    KEY_SIZE,
    MAX_BODY_BYTES,
    MAX_DOMAINS,
    MAX_ID,
    NONCE_SIZE,
    PROTOCOL_VERSION,
    SESSION_ID_SIZE,
    SIGNATURE_SIZE,
)

ACCOUNT_PATTERN = r"^[a-z0-9_\-.]{2,64}$"


def _hex(size: int, description: str) -> dict[str, Any]:
    return {"type": "string", "pattern": f"^[0-9a-f]{{{2 * size}}}$", "description": description}


_KEY = _hex(KEY_SIZE, "32-byte key, lowercase hex")
_X25519 = {
    **_hex(KEY_SIZE, "X25519 public key, lowercase hex; not all zeros"),
    "not": {"const": "0" * 2 * KEY_SIZE},
}
_NONCE = _hex(NONCE_SIZE, "16 random bytes, lowercase hex")
_SESSION = _hex(SESSION_ID_SIZE, "the recovery session id (16 bytes), lowercase hex")
_SIGNATURE = _hex(SIGNATURE_SIZE, "Ed25519 signature, lowercase hex")
_HASH = _hex(32, "the keyset's hash (§2), lowercase hex")
_INTEGER = {"type": "integer", "minimum": 0, "maximum": MAX_ID}
_ACCOUNT = {"type": "string", "pattern": ACCOUNT_PATTERN}
_CIPHERTEXT = {
    "type": "string",
    "pattern": "^(?:[0-9a-f]{2})*$",
    "maxLength": 2 * MAX_BODY_BYTES,
    "description": "XChaCha20-Poly1305 ciphertext (§4), lowercase hex",
}
_KEYSET = {
    "type": "object",
    "additionalProperties": False,
    "required": ["epoch", "domains"],
    "properties": {
        "epoch": _INTEGER,
        "domains": {
            "type": "array",
            "maxItems": MAX_DOMAINS,
            "description": "by strictly ascending domain_id",
            "items": {
                "type": "object",
                "additionalProperties": False,
                "required": ["domain_id", "scheme", "public_key"],
                "properties": {
                    "domain_id": _INTEGER,
                    "scheme": {"type": "string", "pattern": "^[\\x00-\\x7f]{1,32}$"},
                    "public_key": {
                        **_KEY,
                        "description": "the domain's group key: a canonical ed25519 point",
                    },
                },
            },
        },
    },
}


def _message(properties: dict[str, Any], description: str) -> dict[str, Any]:
    every = {"version": {"const": PROTOCOL_VERSION}, **properties}
    return {
        "type": "object",
        "additionalProperties": False,
        "required": list(every),
        "properties": every,
        "description": description,
    }


RECOVERY_PUSH = _message(
    {
        "account": _ACCOUNT,
        "node_tls_public_key": _KEY,
        "service_identity_public_key": _KEY,
        "service_encryption_public_key": _KEY,
        "service_ephemeral_public_key": _X25519,
        "node_ephemeral_public_key": _X25519,
        "session_id": _SESSION,
        "keyset": _KEYSET,
        "keyset_hash": _HASH,
        "timestamp_ms": _INTEGER,
        "nonce": _NONCE,
        "ciphertext": _CIPHERTEXT,
        "signature": _SIGNATURE,
    },
    "The service's push of a migration's shares (docs/backup-protocol.md §7). keyset_hash "
    "must be the hash of keyset; at most 256 KiB.",
)
BACKUP_RESPONSE = _message(
    {
        "account": _ACCOUNT,
        "node_tls_public_key": _KEY,
        "service_identity_public_key": _KEY,
        "service_encryption_public_key": _KEY,
        "service_ephemeral_public_key": _X25519,
        "node_ephemeral_public_key": _X25519,
        "request_nonce": _NONCE,
        "keyset": _KEYSET,
        "keyset_hash": _HASH,
        "timestamp_ms": _INTEGER,
        "ciphertext": _CIPHERTEXT,
        "signature": _SIGNATURE,
    },
    "The node's shares sealed to its registered backup service (§6).",
)
RECOVERY_SESSION = _message(
    {
        "account": _ACCOUNT,
        "node_tls_public_key": _KEY,
        "service_identity_public_key": _KEY,
        "service_ephemeral_public_key": _X25519,
        "node_ephemeral_public_key": _X25519,
        "request_nonce": _NONCE,
        "session_id": _SESSION,
        "migration_started_height": _INTEGER,
        "expires_at_ms": _INTEGER,
        "signature": _SIGNATURE,
    },
    "A recovery session, open for 120 s (§7).",
)
RECOVERY_ACK = {
    "type": "object",
    "additionalProperties": False,
    "required": [
        "version",
        "status",
        "account",
        "node_tls_public_key",
        "session_id",
        "keyset_hash",
        "epoch",
        "signature",
    ],
    "properties": {
        "version": {"const": PROTOCOL_VERSION},
        "status": {"const": "imported"},
        "account": _ACCOUNT,
        "node_tls_public_key": _KEY,
        "session_id": _SESSION,
        "keyset_hash": _HASH,
        "epoch": _INTEGER,
        "signature": _SIGNATURE,
    },
    "description": "The node's signed acknowledgement of imported shares (§7).",
}
ERROR = {
    "type": "object",
    "required": ["error"],
    "properties": {
        "error": {
            "type": "object",
            "required": ["code", "message"],
            "properties": {"code": {"type": "string"}, "message": {"type": "string"}},
        }
    },
}


def hello_parameters(purpose: str) -> list[dict[str, Any]]:
    """The hello's headers (§6) as OpenAPI header parameters, all required."""
    schemas: list[tuple[str, dict[str, Any], str]] = [
        (H_PURPOSE, {"type": "string", "enum": [purpose]}, "what the hello asks for"),
        (H_ACCOUNT, _ACCOUNT, "the node's account"),
        (H_NODE_KEY, _KEY, "the target node's TLS key as the contract lists it"),
        (H_SERVICE_KEY, _KEY, "the backup service's registered identity key"),
        (H_EPHEMERAL_KEY, _X25519, "the service's fresh X25519 key"),
        (
            H_TIMESTAMP,
            {"type": "string", "pattern": "^[0-9]{1,16}$"},
            "milliseconds since the Unix epoch, ASCII decimal; within ±60 s of the node's clock",
        ),
        (H_NONCE, _NONCE, "fresh per request"),
        (H_SIGNATURE, _SIGNATURE, "the identity key's signature over the hello statement (§3)"),
    ]
    return [
        {
            "name": name.title(),
            "in": "header",
            "required": True,
            "schema": schema,
            "description": description,
        }
        for name, schema, description in schemas
    ]


def _json(schema: dict[str, Any], description: str) -> dict[str, Any]:
    return {"description": description, "content": {"application/json": {"schema": schema}}}


def operation(
    purpose: str | None,
    body: dict[str, Any] | None,
    answer: dict[str, Any],
    errors: dict[int | str, dict[str, Any]],
) -> dict[str, Any]:
    """``openapi_extra`` for one endpoint: its hello headers or body, and its answers."""
    extra: dict[str, Any] = {
        "responses": {
            "200": _json(answer, "accepted"),
            **{
                str(status): _json(ERROR, str(info["description"]))
                for status, info in errors.items()
            },
        }
    }
    if purpose is not None:
        extra["parameters"] = hello_parameters(purpose)
    if body is not None:
        extra["requestBody"] = {
            "required": True,
            "content": {"application/json": {"schema": body}},
        }
    return extra
