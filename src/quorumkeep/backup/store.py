"""Backups at rest: one SQLite file in the service's directory, every share sealed.

``DIR/backups.sqlite3`` (WAL, ``synchronous=FULL``, ``secure_delete``):

- ``owner`` — the account and identity key the store belongs to;
- ``backups`` — one row per verified backup: public columns (account, epoch, keyset JSON
  and hash, participant id, the TLS key of the node it came from, when it was stored and
  last verified) and ``sealed``: the shares document (docs/backup-protocol.md §5) sealed
  in the passphrase blob format (docs/sealing.md §3) under the :class:`StoreKey`, with
  associated data naming every public column that matters, so a blob moved to another row
  or another store does not open;
- ``meta`` — the last verification's outcome (public).

Rules (docs/backup-protocol.md §9): only :class:`VerifiedShares` go in, and they are checked
again here; a backup of an older epoch than the newest held is refused (``older_epoch``);
storing a verified backup deletes every backup of an older epoch in the same transaction,
and of the newest epoch at most the newest two are kept — so a previous backup stays until
a newer one has been verified and stored, and no share outlives its epoch's replacement.
``status`` needs no passphrase: only public columns are read.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from quorumkeep.backup.errors import BackupServiceError
from quorumkeep.crypto.errors import SealError
from quorumkeep.crypto.seal import open_with_passphrase_key, seal_with_passphrase_key
from quorumkeep.daemon.owned_store import OwnedStore, StoreKind
from quorumkeep.encoding.fields import len32
from quorumkeep.wire.backup import (
    BackupProtocolError,
    Keyset,
    KeyShare,
    VerifiedShares,
    decode_shares,
    encode_shares,
    read_keyset,
    verify_shares,
)

STORE_FILE_NAME = "backups.sqlite3"
SCHEMA_VERSION = 1
RECORD_AD_PREFIX = b"quorumkeep backup record v1\x00"
KEEP = 2
"""Backups kept of the newest epoch: the newest and the one before it (fewer domains)."""

_SCHEMA = """
CREATE TABLE backups (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    account TEXT NOT NULL,
    epoch INTEGER NOT NULL,
    keyset TEXT NOT NULL,
    keyset_hash BLOB NOT NULL UNIQUE,
    participant_id INTEGER NOT NULL,
    source_tls_public_key BLOB NOT NULL,
    stored_at_ms INTEGER NOT NULL,
    verified_at_ms INTEGER NOT NULL,
    sealed BLOB NOT NULL
);
CREATE TABLE meta (name TEXT PRIMARY KEY, value TEXT NOT NULL)
"""


STORE_KIND = StoreKind(
    file_name=STORE_FILE_NAME,
    schema=_SCHEMA,
    schema_version=SCHEMA_VERSION,
    service="backup service",
    init_command="quorumkeep backup init",
    error=BackupServiceError,
)


def record_associated_data(
    account: str, epoch: int, keyset_hash: bytes, participant_id: int, source: bytes
) -> bytes:
    return (
        RECORD_AD_PREFIX
        + len32(account.encode("utf-8"))
        + len32(str(epoch).encode("ascii"))
        + len32(keyset_hash)
        + len32(str(participant_id).encode("ascii"))
        + len32(source)
    )


@dataclass(frozen=True)
class BackupRecord:
    """A stored backup's public columns."""

    id: int
    account: str
    epoch: int
    keyset: Keyset
    participant_id: int
    source_tls_public_key: bytes
    stored_at: float
    verified_at: float

    def covers(self, keyset: Keyset) -> bool:
        """Whether this backup holds a share of every domain of ``keyset`` (same keys)."""
        return self.keyset == keyset

    def to_json(self) -> dict[str, Any]:
        return {
            "epoch": self.epoch,
            "domains": list(self.keyset.domain_ids),
            "keyset_hash": self.keyset.hash.hex(),
            "participant_id": self.participant_id,
            "source_tls_public_key": self.source_tls_public_key.hex(),
            "stored_at": self.stored_at,
            "verified_at": self.verified_at,
        }


class BackupStore(OwnedStore):
    """Thread-safe; one per process. ``key=None`` opens it for public reads only."""

    KIND = STORE_KIND

    # -- backups

    def put(self, verified: VerifiedShares, source_tls_public_key: bytes, now: float) -> bool:
        """Store a verified backup; False if this keyset's backup is already held.

        Refuses (``older_epoch``) a backup of an epoch older than the newest held, and
        re-checks the shares against the packages they were verified with
        (``shares_mismatch``) — a caller cannot smuggle unverified shares in.
        """
        key = self._require_key()
        if verified.account != self.account:
            raise BackupServiceError("wrong_account", f"shares of {verified.account} refused")
        try:
            verify_shares(
                verified.account,
                verified.participant_id,
                verified.keyset,
                verified.shares,
                verified.packages,
            )
        except BackupProtocolError as exc:
            raise BackupServiceError("shares_mismatch", exc.message) from None
        keyset = verified.keyset
        keyset_hash = keyset.hash
        sealed = seal_with_passphrase_key(
            key.key,
            key.params,
            encode_shares(verified.shares),
            associated_data=record_associated_data(
                self.account,
                keyset.epoch,
                keyset_hash,
                verified.participant_id,
                source_tls_public_key,
            ),
            random_bytes=self._random_bytes,
        )
        now_ms = int(now * 1000)
        with self._write(erase=True) as cursor:
            newest = cursor.execute("SELECT MAX(epoch) FROM backups").fetchone()[0]
            if newest is not None and keyset.epoch < int(newest):
                raise BackupServiceError(
                    "older_epoch",
                    f"a backup of epoch {newest} is held; epoch {keyset.epoch} is older",
                )
            held = cursor.execute(
                "SELECT id FROM backups WHERE keyset_hash = ?", (keyset_hash,)
            ).fetchone()
            if held is not None:
                cursor.execute(
                    "UPDATE backups SET verified_at_ms = ? WHERE id = ?", (now_ms, held[0])
                )
                return False
            cursor.execute(
                "INSERT INTO backups (account, epoch, keyset, keyset_hash, participant_id, "
                "source_tls_public_key, stored_at_ms, verified_at_ms, sealed) "
                "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (
                    self.account,
                    keyset.epoch,
                    keyset.canonical().decode("ascii"),
                    keyset_hash,
                    verified.participant_id,
                    source_tls_public_key,
                    now_ms,
                    now_ms,
                    sealed,
                ),
            )
            # The new epoch's backup is verified (above) and stored: an older epoch's
            # shares can never be used again (a push sends the newest; nodes refuse other
            # epochs), and keeping them would let the old shares outlive the resharing
            # meant to make them worthless.
            cursor.execute("DELETE FROM backups WHERE epoch < ?", (keyset.epoch,))
            cursor.execute(
                "DELETE FROM backups WHERE id NOT IN "
                "(SELECT id FROM backups ORDER BY id DESC LIMIT ?)",
                (KEEP,),
            )
        return True

    def records(self) -> list[BackupRecord]:
        """Every backup held, newest first."""
        rows = self._read(
            "SELECT id, account, epoch, keyset, participant_id, source_tls_public_key, "
            "stored_at_ms, verified_at_ms FROM backups ORDER BY id DESC"
        )
        out = []
        for rid, account, epoch, keyset, pid, source, stored, verified in rows:
            try:
                parsed = read_keyset(json.loads(keyset))
            except (ValueError, BackupProtocolError):
                raise BackupServiceError(
                    "store_invalid", f"backup {rid}: keyset column unreadable"
                ) from None
            out.append(
                BackupRecord(
                    int(rid),
                    str(account),
                    int(epoch),
                    parsed,
                    int(pid),
                    bytes(source),
                    int(stored) / 1000,
                    int(verified) / 1000,
                )
            )
        return out

    def latest(self) -> BackupRecord | None:
        records = self.records()
        return records[0] if records else None

    def shares(self, record: BackupRecord) -> list[KeyShare]:
        """Open a backup's shares; ``record_corrupted`` if the blob does not open."""
        key = self._require_key()
        rows = self._read("SELECT sealed FROM backups WHERE id = ?", (record.id,))
        if not rows:
            raise BackupServiceError("not_found", f"backup {record.id} is no longer held")
        try:
            plaintext = open_with_passphrase_key(
                key.key,
                key.params,
                bytes(rows[0][0]),
                associated_data=record_associated_data(
                    record.account,
                    record.epoch,
                    record.keyset.hash,
                    record.participant_id,
                    record.source_tls_public_key,
                ),
            )
            return decode_shares(plaintext)
        except (SealError, BackupProtocolError):
            raise BackupServiceError(
                "record_corrupted", f"backup of epoch {record.epoch} does not open"
            ) from None

    def mark_verified(self, record: BackupRecord, now: float) -> None:
        with self._write() as cursor:
            cursor.execute(
                "UPDATE backups SET verified_at_ms = ? WHERE id = ?",
                (int(now * 1000), record.id),
            )

    # -- verification outcomes (public)

    def record_verification(self, outcome: dict[str, Any]) -> None:
        with self._write() as cursor:
            cursor.execute(
                "INSERT OR REPLACE INTO meta VALUES ('last_verify', ?)",
                (json.dumps(outcome, sort_keys=True),),
            )

    def last_verification(self) -> dict[str, Any] | None:
        rows = self._read("SELECT value FROM meta WHERE name = 'last_verify'")
        if not rows:
            return None
        try:
            value = json.loads(rows[0][0])
        except ValueError:
            return None
        return value if isinstance(value, dict) else None
