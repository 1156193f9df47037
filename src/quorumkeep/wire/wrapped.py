"""Wrapped export: a node's shares sealed to another node's wrapping key (docs/wrapped-export.md).

A wrapped export carries one participant's shares of every domain of one keyset, each share
sealed on its own with :func:`quorumkeep.crypto.seal.seal_to` from the source node's X25519
wrapping key to the destination's, under associated data that binds the account, the
domain, the epoch, the keyset hash, the participant id and the source node's TLS key (the
wrapping keys of both ends are in the AD by construction). The whole document is signed by
the source node's TLS key, the key the contract lists for the account's participant, so a
receiver knows which node exported it before it opens anything.

What the receiver must still check against the contract (the node does,
:mod:`quorumkeep.node.standby`): the signer is the account's listed TLS key, the keyset is
the one in force, every share reproduces the participant's verifying share.

Pure: no I/O, no clock, no randomness except what the caller passes. Error messages name
fields and domains, never a share.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from quorumkeep.contract.state import Keyset
from quorumkeep.crypto.errors import InvalidEncoding, SealError
from quorumkeep.crypto.group import RandomBytes, scalar_decode
from quorumkeep.crypto.seal import KxKeyPair, open_from, seal_to
from quorumkeep.wire.backup import (
    BackupProtocolError,
    KeyShare,
    Signer,
    read_keyset,
    statement,
    verify_signature,
)
from quorumkeep.wire.backup.fields import (
    read_account,
    read_ed25519_key,
    read_hex,
    read_int,
    read_json,
    read_object,
    read_signature,
    read_x25519_key,
)
from quorumkeep.wire.backup.protocol import MAX_BODY_BYTES, MAX_DOMAINS, SHARE_SIZE

WRAPPED_FORMAT = "quorumkeep wrapped export v1"
"""The document's ``format`` field."""
WRAP_LABEL = "quorumkeep/wrapped-share v1"
"""The sealing label of every share (docs/sealing.md, "AD")."""
STATEMENT_KIND = "wrapped-export"
"""The kind of the signed statement (docs/backup-protocol.md §3 layout)."""
SEALED_SHARE_SIZE = 24 + SHARE_SIZE + 16
"""nonce ‖ ciphertext ‖ tag of one 32-byte share."""
PATH_WRAPPED_EXPORT = "/standby/wrapped-export"
"""Where a node takes a wrapped export (``PUT``, the document as the body)."""

WRAPPED_ERROR_STATUS: Mapping[str, int] = {
    "malformed_export": 400,
    "decryption_failed": 400,
    "bad_signature": 401,
    "unknown_source": 403,
    "not_standby": 409,
    "is_participant": 409,
    "wrong_epoch": 409,
    "wrong_keyset": 409,
    "body_too_large": 413,
    "wrong_destination": 421,
    "shares_mismatch": 422,
    "import_failed": 500,
    "contract_unavailable": 503,
}
"""Every code a node answers an import with, and its HTTP status (docs/wrapped-export.md)."""

EXPORT_CODES = frozenset({"export_disabled", "not_whitelisted", "no_shares", "not_participant"})
"""Codes only the exporting side raises (nothing to answer over HTTP)."""

_FIELDS = (
    "format",
    "account",
    "participant_id",
    "keyset",
    "source_tls_public_key",
    "source_wrapping_public_key",
    "destination_wrapping_public_key",
    "created_at_ms",
    "shares",
    "signature",
)


class WrappedExportError(Exception):
    """A refused export or import. ``code`` is stable; the message holds no secret."""

    def __init__(self, code: str, message: str) -> None:
        if code not in WRAPPED_ERROR_STATUS and code not in EXPORT_CODES:
            raise ValueError(f"unknown wrapped export error code {code!r}")
        super().__init__(message)
        self.code = code
        self.message = message

    @property
    def status(self) -> int:
        return WRAPPED_ERROR_STATUS.get(self.code, 400)

    def to_json(self) -> dict[str, Any]:
        return {"error": {"code": self.code, "message": self.message}}


def share_binding(
    account: str, domain_id: int, keyset: Keyset, participant_id: int, source_tls_public_key: bytes
) -> dict[str, str | int]:
    """The sealing binding of one share (with the two wrapping keys, its AD)."""
    return {
        "account": account,
        "domain_id": domain_id,
        "epoch": keyset.epoch,
        "keyset_hash": keyset.hash.hex(),
        "participant_id": participant_id,
        "source": source_tls_public_key.hex(),
    }


@dataclass(frozen=True)
class WrappedExport:
    """One wrapped export as it travels (sealed shares: nothing secret in the clear)."""

    account: str
    participant_id: int
    keyset: Keyset
    source_tls_public_key: bytes
    source_wrapping_public_key: bytes
    destination_wrapping_public_key: bytes
    created_at_ms: int
    sealed: tuple[tuple[int, bytes], ...]
    """(domain id, sealed share), ascending domain id."""
    signature: bytes = field(default=b"")

    @property
    def epoch(self) -> int:
        return self.keyset.epoch

    def statement(self) -> bytes:
        """The byte string the source's TLS key signs."""
        fields: list[tuple[str, bytes | str | int]] = [
            ("format", WRAPPED_FORMAT),
            ("account", self.account),
            ("participant_id", self.participant_id),
            ("epoch", self.keyset.epoch),
            ("keyset_hash", self.keyset.hash),
            ("source_tls_public_key", self.source_tls_public_key),
            ("source_wrapping_public_key", self.source_wrapping_public_key),
            ("destination_wrapping_public_key", self.destination_wrapping_public_key),
            ("created_at_ms", self.created_at_ms),
            ("shares", len(self.sealed)),
        ]
        for domain_id, sealed in self.sealed:
            fields.append(("domain_id", domain_id))
            fields.append(("sealed", sealed))
        return statement(STATEMENT_KIND, fields)

    def verify(self) -> None:
        """The signature is the source TLS key's (who that key is: the caller's check)."""
        if not verify_signature(self.source_tls_public_key, self.statement(), self.signature):
            raise WrappedExportError(
                "bad_signature", "the export's signature does not verify under its source key"
            )

    def to_json(self) -> dict[str, Any]:
        return {
            "format": WRAPPED_FORMAT,
            "account": self.account,
            "participant_id": self.participant_id,
            "keyset": self.keyset.to_json(),
            "source_tls_public_key": self.source_tls_public_key.hex(),
            "source_wrapping_public_key": self.source_wrapping_public_key.hex(),
            "destination_wrapping_public_key": self.destination_wrapping_public_key.hex(),
            "created_at_ms": self.created_at_ms,
            "shares": [{"domain_id": d, "sealed": s.hex()} for d, s in self.sealed],
            "signature": self.signature.hex(),
        }

    def to_bytes(self) -> bytes:
        """Canonical JSON (sorted keys, no whitespace, ASCII) and a newline."""
        text = json.dumps(self.to_json(), sort_keys=True, separators=(",", ":"))
        return text.encode("ascii") + b"\n"

    @classmethod
    def from_json(cls, value: object) -> WrappedExport:
        try:
            return cls._read(value)
        except BackupProtocolError as exc:
            raise WrappedExportError("malformed_export", exc.message) from None

    @classmethod
    def from_bytes(cls, body: bytes) -> WrappedExport:
        if len(body) > MAX_BODY_BYTES:
            raise WrappedExportError(
                "body_too_large", f"a wrapped export is at most {MAX_BODY_BYTES} bytes"
            )
        try:
            value = read_json(body, "the wrapped export is not UTF-8 JSON")
        except BackupProtocolError as exc:
            raise WrappedExportError("malformed_export", exc.message) from None
        return cls.from_json(value)

    @classmethod
    def _read(cls, value: object) -> WrappedExport:
        obj = read_object(value, "wrapped export", _FIELDS)
        if obj["format"] != WRAPPED_FORMAT:
            raise WrappedExportError("malformed_export", "wrapped export: unknown format")
        keyset = read_keyset(obj["keyset"], "keyset")
        items = obj["shares"]
        if not isinstance(items, list) or not 1 <= len(items) <= MAX_DOMAINS:
            raise WrappedExportError(
                "malformed_export", f"shares: expected a list of 1 to {MAX_DOMAINS}"
            )
        sealed: list[tuple[int, bytes]] = []
        previous = -1
        for i, item in enumerate(items):
            name = f"shares[{i}]"
            entry = read_object(item, name, ["domain_id", "sealed"])
            domain_id = read_int(entry["domain_id"], f"{name}.domain_id")
            if domain_id <= previous:
                raise WrappedExportError(
                    "malformed_export", "shares: domain ids must be ascending and distinct"
                )
            previous = domain_id
            blob = read_hex(entry["sealed"], f"{name}.sealed", SEALED_SHARE_SIZE)
            sealed.append((domain_id, blob))
        return cls(
            account=read_account(obj["account"]),
            participant_id=read_int(obj["participant_id"], "participant_id", 1),
            keyset=keyset,
            source_tls_public_key=read_ed25519_key(
                obj["source_tls_public_key"], "source_tls_public_key"
            ),
            source_wrapping_public_key=read_x25519_key(
                obj["source_wrapping_public_key"], "source_wrapping_public_key"
            ),
            destination_wrapping_public_key=read_x25519_key(
                obj["destination_wrapping_public_key"], "destination_wrapping_public_key"
            ),
            created_at_ms=read_int(obj["created_at_ms"], "created_at_ms"),
            sealed=tuple(sealed),
            signature=read_signature(obj["signature"], "signature"),
        )


def seal_export(
    *,
    account: str,
    participant_id: int,
    keyset: Keyset,
    shares: Sequence[KeyShare],
    source: Signer,
    source_wrapping: KxKeyPair,
    destination_wrapping_public_key: bytes,
    now_ms: int,
    random_bytes: RandomBytes,
) -> WrappedExport:
    """Seal ``shares`` (one per domain of ``keyset``, of its epoch and ``participant_id``)
    to the destination's wrapping key and sign the export with ``source`` (the node's TLS
    key). The caller has decided the destination may receive them (allow and whitelist)."""
    keyset = read_keyset(keyset.to_json())  # what the document carries: no verifying shares
    by_domain = {s.domain_id: s for s in shares}
    if sorted(by_domain) != list(keyset.domain_ids) or len(by_domain) != len(shares):
        raise WrappedExportError("no_shares", "the shares do not cover the keyset's domains")
    sealed: list[tuple[int, bytes]] = []
    for domain_id in keyset.domain_ids:
        share = by_domain[domain_id]
        if share.epoch != keyset.epoch or share.participant_id != participant_id:
            raise WrappedExportError(
                "no_shares",
                f"the share of domain {domain_id} is not participant {participant_id}'s "
                f"of epoch {keyset.epoch}",
            )
        try:
            blob = seal_to(
                source_wrapping,
                destination_wrapping_public_key,
                share.signing_share,
                label=WRAP_LABEL,
                binding=share_binding(
                    account, domain_id, keyset, participant_id, source.public_key
                ),
                random_bytes=random_bytes,
            )
        except SealError as exc:
            raise WrappedExportError("not_whitelisted", f"unusable wrapping key: {exc}") from None
        sealed.append((domain_id, blob))
    unsigned = WrappedExport(
        account=account,
        participant_id=participant_id,
        keyset=keyset,
        source_tls_public_key=source.public_key,
        source_wrapping_public_key=source_wrapping.public_key,
        destination_wrapping_public_key=destination_wrapping_public_key,
        created_at_ms=now_ms,
        sealed=tuple(sealed),
    )
    return dataclasses.replace(unsigned, signature=source.sign(unsigned.statement()))


def open_export(export: WrappedExport, receiver: KxKeyPair, account: str) -> list[KeyShare]:
    """The shares of an export addressed to ``receiver`` for ``account``: destination and
    account checked, signature verified, every share opened (all or nothing)."""
    if export.destination_wrapping_public_key != receiver.public_key:
        raise WrappedExportError(
            "wrong_destination", "the export is sealed to another node's wrapping key"
        )
    if export.account != account:
        raise WrappedExportError(
            "wrong_destination", f"the export is {export.account}'s; this node serves {account}"
        )
    export.verify()
    shares: list[KeyShare] = []
    for domain_id, sealed in export.sealed:
        try:
            share = open_from(
                receiver,
                export.source_wrapping_public_key,
                sealed,
                label=WRAP_LABEL,
                binding=share_binding(
                    export.account,
                    domain_id,
                    export.keyset,
                    export.participant_id,
                    export.source_tls_public_key,
                ),
            )
            scalar_decode(share)
        except (SealError, InvalidEncoding):
            raise WrappedExportError(
                "decryption_failed", f"the share of domain {domain_id} does not open"
            ) from None
        shares.append(KeyShare(domain_id, export.epoch, export.participant_id, share))
    return shares
