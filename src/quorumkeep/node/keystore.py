"""The node's secret store: key shares and presignature nonces, sealed at rest in SQLite.

Layout and byte formats: docs/storage.md. In short:

- One SQLite file (``keystore.sqlite3``) in the node directory, WAL journal with
  ``synchronous=FULL``: a transaction that returned is on disk, and a process killed at any
  instant leaves either the old or the new state, never a torn record.
- Every secret column is XChaCha20-Poly1305 (:func:`quorumkeep.crypto.seal.aead_seal`) under a
  key derived from the node's *storage key*, with associated data naming the record kind,
  every public column of the row and the node (account, TLS public key). A sealed value copied
  into another row, another kind of record or another node's store fails to open.
- The storage key and its sources: node/storage_key.py; the records and their encodings:
  node/keystore_records.py; the presignature table: node/keystore_presignatures.py; the
  errors: node/keystore_errors.py.

A presignature's nonces are deleted durably *before* they are handed out
(:meth:`Keystore.take_presignature`): whatever happens afterwards, that nonce can never be
used a second time, even if the node crashes and restarts.
"""

from __future__ import annotations

import os
import sqlite3
import time
from collections.abc import Iterable, Sequence
from pathlib import Path
from types import TracebackType

from quorumkeep.crypto.errors import SealError
from quorumkeep.crypto.group import RandomBytes
from quorumkeep.crypto.seal import aead_open, aead_seal
from quorumkeep.daemon.sqlite import SqliteStore, connect, create_owner_only
from quorumkeep.node.keystore_errors import (
    IdentityMismatch,
    InvalidRecord,
    KeystoreError,
    RecordCorrupted,
    RecordExists,
    RecordNotFound,
)
from quorumkeep.node.keystore_presignatures import PresignatureTable
from quorumkeep.node.keystore_records import (
    KeyShareRef,
    KeystoreOwner,
    Presignature,
    PresignatureInfo,
    StoredKeyShare,
    check_bytes,
    check_int,
    key_share_record,
    record_associated_data,
)
from quorumkeep.node.storage_key import StorageKey, key_check, verify_key_check

KEYSTORE_FILE_NAME = "keystore.sqlite3"
SCHEMA_VERSION = 1


_SCHEMA = """
CREATE TABLE owner (
    singleton INTEGER PRIMARY KEY CHECK (singleton = 1),
    account TEXT NOT NULL,
    tls_public_key BLOB NOT NULL,
    key_check BLOB NOT NULL
);
CREATE TABLE key_shares (
    domain_id INTEGER NOT NULL,
    epoch INTEGER NOT NULL,
    public BLOB NOT NULL,
    sealed_share BLOB NOT NULL,
    stored_at_ms INTEGER NOT NULL,
    PRIMARY KEY (domain_id, epoch)
);
CREATE TABLE presignatures (
    id TEXT PRIMARY KEY,
    domain_id INTEGER NOT NULL,
    epoch INTEGER NOT NULL,
    commitments BLOB NOT NULL,
    sealed_nonces BLOB NOT NULL,
    created_at_ms INTEGER NOT NULL
);
CREATE INDEX presignatures_by_domain ON presignatures (domain_id, epoch, created_at_ms);
CREATE TABLE presignature_participants (
    participant_id INTEGER NOT NULL,
    presignature_id TEXT NOT NULL REFERENCES presignatures (id) ON DELETE CASCADE,
    PRIMARY KEY (participant_id, presignature_id)
);
CREATE INDEX presignature_participants_by_presignature
    ON presignature_participants (presignature_id);
CREATE TABLE metadata (
    name TEXT PRIMARY KEY,
    value TEXT NOT NULL
);
"""

_KEYSTORE_SUBKEY = "keystore records"


class Keystore(SqliteStore):
    """Sealed key shares, presignatures and small metadata for one node. Thread-safe.

    Open with :meth:`open`; close with :meth:`close` (or use as a context manager).
    """

    def __init__(
        self,
        connection: sqlite3.Connection,
        path: Path,
        storage_key: StorageKey,
        owner: KeystoreOwner,
        random_bytes: RandomBytes,
    ) -> None:
        super().__init__(connection, path)
        self._key = storage_key.subkey(_KEYSTORE_SUBKEY)
        self.owner = owner
        self._random_bytes = random_bytes
        self._presignatures = PresignatureTable(self, self._seal, self._open)

    def __repr__(self) -> str:
        return f"Keystore({self.path}, account={self.owner.account!r})"

    # -- lifecycle

    @classmethod
    def open(
        cls,
        directory: Path | str,
        storage_key: StorageKey,
        owner: KeystoreOwner,
        *,
        random_bytes: RandomBytes = os.urandom,
    ) -> Keystore:
        """Open (creating if absent) ``DIR/keystore.sqlite3`` for ``owner``.

        Refuses a store created by another node (:class:`IdentityMismatch`) or under another
        storage key (:class:`WrongStorageKey`).
        """
        path = Path(directory) / KEYSTORE_FILE_NAME
        if not path.exists():
            create_owner_only(path)
        connection = connect(path)
        try:
            store = cls(connection, path, storage_key, owner, random_bytes)
            store._initialize(storage_key)
        except BaseException:
            connection.close()
            raise
        return store

    def _initialize(self, storage_key: StorageKey) -> None:
        if self._apply_settings().lower() != "wal":
            raise KeystoreError(f"cannot put {self.path} in WAL mode")
        self._db.execute("PRAGMA foreign_keys=ON")
        with self._write() as cursor:
            if self._create_schema(cursor, _SCHEMA, SCHEMA_VERSION, KeystoreError):
                cursor.execute(
                    "INSERT INTO owner VALUES (1, ?, ?, ?)",
                    (
                        self.owner.account,
                        self.owner.tls_public_key,
                        key_check(storage_key, self._random_bytes),
                    ),
                )
                return
            row = cursor.execute(
                "SELECT account, tls_public_key, key_check FROM owner WHERE singleton = 1"
            ).fetchone()
        if row is None:
            raise RecordCorrupted(f"{self.path}: owner record missing")
        account, tls_public_key, stored_check = row
        if account != self.owner.account or bytes(tls_public_key) != self.owner.tls_public_key:
            raise IdentityMismatch(
                f"{self.path} belongs to account {account!r} with TLS key "
                f"{bytes(tls_public_key).hex()[:16]}…, not to this node"
            )
        verify_key_check(storage_key, bytes(stored_check))

    def __enter__(self) -> Keystore:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.close()

    # -- sealing

    def _seal(self, kind: str, record: bytes, plaintext: bytes) -> bytes:
        ad = record_associated_data(kind, record, self.owner)
        return aead_seal(self._key, plaintext, ad, self._random_bytes)

    def _open(self, kind: str, record: bytes, sealed: bytes, what: str) -> bytes:
        ad = record_associated_data(kind, record, self.owner)
        try:
            return aead_open(self._key, sealed, ad)
        except SealError:
            raise RecordCorrupted(f"{what} fails authentication (tampered or swapped)") from None

    # -- key shares

    def put_key_share(
        self,
        domain_id: int,
        epoch: int,
        share: bytes,
        public: bytes = b"",
        *,
        replace: bool = False,
    ) -> None:
        """Store the share for (domain, epoch), durably, in one transaction.

        Storing the same value again is a no-op; a *different* value for a slot that is taken
        raises :class:`RecordExists` unless ``replace`` — overwriting a share by mistake is how
        keys get lost.
        """
        check_int(domain_id, "domain id")
        check_int(epoch, "epoch")
        share = check_bytes(share, "share", allow_empty=False)
        public = check_bytes(public, "public data")
        record = key_share_record(domain_id, epoch, public)
        sealed = self._seal("key_share", record, share)
        what = f"key share (domain {domain_id}, epoch {epoch})"
        with self._write() as cursor:
            row = cursor.execute(
                "SELECT public, sealed_share FROM key_shares WHERE domain_id = ? AND epoch = ?",
                (domain_id, epoch),
            ).fetchone()
            if row is not None and not replace:
                old_public = bytes(row[0])
                old_record = key_share_record(domain_id, epoch, old_public)
                old_share = self._open("key_share", old_record, bytes(row[1]), what)
                if old_share == share and old_public == public:
                    return
                raise RecordExists(f"a different {what} is already stored")
            cursor.execute(
                "INSERT OR REPLACE INTO key_shares VALUES (?, ?, ?, ?, ?)",
                (domain_id, epoch, public, sealed, int(time.time() * 1000)),
            )

    def get_key_share(self, domain_id: int, epoch: int) -> StoredKeyShare:
        check_int(domain_id, "domain id")
        check_int(epoch, "epoch")
        rows = self._read(
            "SELECT public, sealed_share FROM key_shares WHERE domain_id = ? AND epoch = ?",
            (domain_id, epoch),
        )
        what = f"key share (domain {domain_id}, epoch {epoch})"
        if not rows:
            raise RecordNotFound(f"no {what}")
        public, sealed = (bytes(x) for x in rows[0])
        share = self._open("key_share", key_share_record(domain_id, epoch, public), sealed, what)
        return StoredKeyShare(domain_id, epoch, share, public)

    def has_key_share(self, domain_id: int, epoch: int) -> bool:
        return bool(
            self._read(
                "SELECT 1 FROM key_shares WHERE domain_id = ? AND epoch = ?", (domain_id, epoch)
            )
        )

    def delete_key_share(self, domain_id: int, epoch: int) -> bool:
        with self._write(erase=True) as cursor:
            cursor.execute(
                "DELETE FROM key_shares WHERE domain_id = ? AND epoch = ?", (domain_id, epoch)
            )
            return cursor.rowcount > 0

    def delete_key_shares_before(self, epoch: int) -> int:
        """Delete every share of an epoch older than ``epoch`` (after a resharing completed)."""
        check_int(epoch, "epoch")
        with self._write(erase=True) as cursor:
            cursor.execute("DELETE FROM key_shares WHERE epoch < ?", (epoch,))
            return cursor.rowcount

    def key_shares(self) -> list[KeyShareRef]:
        rows = self._read("SELECT domain_id, epoch FROM key_shares ORDER BY epoch, domain_id")
        return [KeyShareRef(int(d), int(e)) for d, e in rows]

    def keysets(self) -> dict[int, tuple[int, ...]]:
        """epoch → the domain ids whose shares this node holds for it."""
        out: dict[int, list[int]] = {}
        for ref in self.key_shares():
            out.setdefault(ref.epoch, []).append(ref.domain_id)
        return {epoch: tuple(domains) for epoch, domains in out.items()}

    # -- presignatures (the table: node/keystore_presignatures.py)

    def add_presignatures(self, presignatures: Iterable[Presignature]) -> None:
        """Store a batch in one transaction: all of them, or (on any error) none."""
        self._presignatures.add(presignatures)

    def take_presignature(self, presignature_id: str) -> Presignature:
        """Remove a presignature durably and return it with its decrypted nonces.

        The deletion is committed (fsynced) before this returns, so a nonce handed out here can
        never be handed out again, not even after a crash: use the nonces only after this call
        returned. A record that fails authentication raises :class:`RecordCorrupted` and is
        left in place.
        """
        (result,) = self.take_presignatures([presignature_id])
        if isinstance(result, KeystoreError):
            raise result
        return result

    def take_presignatures(
        self, presignature_ids: Sequence[str]
    ) -> list[Presignature | KeystoreError]:
        """``take_presignature`` for many ids in one transaction (one fsync).

        Returns, in order, each presignature or the error for that id (``RecordNotFound``,
        ``RecordCorrupted`` — a corrupted record is left in place); the others are taken.
        """
        return self._presignatures.take(presignature_ids)

    def presignature_count(
        self, domain_id: int, epoch: int | None = None, *, id_prefix: str = ""
    ) -> int:
        """How many presignatures are held for a domain (of ``epoch``; whose id starts with
        ``id_prefix`` — an index range on the id, not a scan)."""
        return self._presignatures.count(domain_id, epoch, id_prefix)

    def presignature_counts(self) -> dict[int, int]:
        """domain id → number of presignatures held (for the pool and /status)."""
        return self._presignatures.counts()

    def presignatures(
        self, domain_id: int, epoch: int | None = None, *, limit: int | None = None
    ) -> list[PresignatureInfo]:
        """Public parts of the stored presignatures for a domain, oldest first."""
        return self._presignatures.infos(domain_id, epoch, limit)

    def purge_presignatures_involving(self, participant_ids: Iterable[int]) -> int:
        """Delete every presignature one of ``participant_ids`` takes part in; return how many.

        After a participant's identity changed, its old nonces may be in the wrong hands (or
        lost), so every presignature it is part of is unusable.
        """
        return self._presignatures.purge_involving(participant_ids)

    def delete_presignatures(
        self, domain_id: int, *, epoch: int | None = None, before_epoch: int | None = None
    ) -> int:
        """Delete, in one transaction, the presignatures of ``domain_id`` of ``epoch``, or of
        every epoch before ``before_epoch``; return how many went."""
        return self._presignatures.delete(domain_id, epoch, before_epoch)

    def purge_all_presignatures(self) -> int:
        return self._presignatures.purge_all()

    def wipe(self) -> None:
        """Delete every share and presignature (a decommissioned node), and flush the WAL.

        ``secure_delete`` has already zeroed the freed pages; the checkpoint truncates the WAL
        so no old frame lingers beside the database either.
        """
        with self._write(erase=True) as cursor:
            cursor.execute("DELETE FROM presignatures")
            cursor.execute("DELETE FROM key_shares")

    # -- metadata (public, unsealed)

    def set_metadata(self, name: str, value: str) -> None:
        if not isinstance(name, str) or not name or not isinstance(value, str):
            raise InvalidRecord("metadata name and value must be strings (name non-empty)")
        with self._write() as cursor:
            cursor.execute("INSERT OR REPLACE INTO metadata VALUES (?, ?)", (name, value))

    def get_metadata(self, name: str) -> str | None:
        rows = self._read("SELECT value FROM metadata WHERE name = ?", (name,))
        return str(rows[0][0]) if rows else None

    def delete_metadata(self, name: str) -> bool:
        with self._write() as cursor:
            cursor.execute("DELETE FROM metadata WHERE name = ?", (name,))
            return cursor.rowcount > 0
