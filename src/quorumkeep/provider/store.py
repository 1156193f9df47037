"""Pieces at rest: one SQLite file in the provider's directory, every piece sealed.

``DIR/pieces.sqlite3`` (WAL, ``synchronous=FULL``, ``secure_delete``, erasing deletions
truncate the WAL: daemon/sqlite.py):

- ``owner`` — the account and identity key the store belongs to;
- ``pieces`` — one row per (account, epoch, depositing signer key): the deal's public
  columns (threshold, commitment, index, the depositing node's signer and release keys,
  when it was stored) and ``sealed``: the 32-byte piece sealed in the passphrase blob
  format (docs/sealing.md) under the provider's :class:`StoreKey`, with associated data
  naming every public column, so a blob moved to another row or another store does not open.

``status`` needs no passphrase: only public columns are read. A piece is only ever returned
after it opened *and* verified against its commitment.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from quorumkeep.crypto.errors import InvalidEncoding, SealError
from quorumkeep.crypto.seal import open_with_passphrase_key, seal_with_passphrase_key
from quorumkeep.crypto.storage_split import KeyPiece, verify_piece
from quorumkeep.daemon.owned_store import OwnedStore, StoreKind
from quorumkeep.encoding.fields import len32
from quorumkeep.provider.errors import ProviderError

STORE_FILE_NAME = "pieces.sqlite3"
SCHEMA_VERSION = 1
RECORD_AD_PREFIX = b"quorumkeep key piece record v1\x00"
MAX_UNCONFIRMED = 4
"""Deposits kept per account that no recorded deal names yet (the newest win)."""

_SCHEMA = """
CREATE TABLE pieces (
    account TEXT NOT NULL,
    epoch INTEGER NOT NULL,
    piece_index INTEGER NOT NULL,
    threshold INTEGER NOT NULL,
    commitment BLOB NOT NULL,
    signer_public_key BLOB NOT NULL,
    release_public_key BLOB NOT NULL,
    stored_at_ms INTEGER NOT NULL,
    sealed BLOB NOT NULL,
    PRIMARY KEY (account, epoch, signer_public_key)
)
"""


STORE_KIND = StoreKind(
    file_name=STORE_FILE_NAME,
    schema=_SCHEMA,
    schema_version=SCHEMA_VERSION,
    service="key provider",
    init_command="quorumkeep provider init",
    error=ProviderError,
)


def record_associated_data(row: HeldPiece) -> bytes:
    return (
        RECORD_AD_PREFIX
        + len32(row.account.encode("utf-8"))
        + len32(str(row.epoch).encode("ascii"))
        + len32(str(row.index).encode("ascii"))
        + len32(str(row.threshold).encode("ascii"))
        + len32(b"".join(row.commitment))
        + len32(row.signer_public_key)
        + len32(row.release_public_key)
    )


@dataclass(frozen=True)
class HeldPiece:
    """A stored piece's public columns."""

    account: str
    epoch: int
    index: int
    threshold: int
    commitment: tuple[bytes, ...]
    signer_public_key: bytes
    release_public_key: bytes
    stored_at_ms: int = 0

    def to_json(self) -> dict[str, Any]:
        return {
            "account": self.account,
            "epoch": self.epoch,
            "index": self.index,
            "threshold": self.threshold,
            "signer_public_key": self.signer_public_key.hex(),
            "release_public_key": self.release_public_key.hex(),
            "stored_at_ms": self.stored_at_ms,
        }


class PieceStore(OwnedStore):
    KIND = STORE_KIND

    def put(self, held: HeldPiece, piece: KeyPiece) -> bool:
        """Store (or replace) the piece of (account, epoch). False if the same piece with the
        same public columns is already there (nothing written)."""
        key = self._require_key()
        if piece.index != held.index or not verify_piece(piece, held.commitment):
            raise ProviderError("piece_invalid", "the piece does not match its commitment")
        existing = self.get(held.account, held.epoch, held.signer_public_key)
        if existing is not None:
            old_row, old_piece = existing
            if (
                old_row.__dict__ | {"stored_at_ms": 0} == held.__dict__ | {"stored_at_ms": 0}
                and old_piece.value == piece.value
            ):
                return False
        sealed = seal_with_passphrase_key(
            key.key,
            key.params,
            piece.value,
            associated_data=record_associated_data(held),
            random_bytes=self._random_bytes,
        )
        with self._write(erase=existing is not None) as cursor:
            cursor.execute(
                "INSERT OR REPLACE INTO pieces VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (
                    held.account,
                    held.epoch,
                    held.index,
                    held.threshold,
                    b"".join(held.commitment),
                    held.signer_public_key,
                    held.release_public_key,
                    held.stored_at_ms,
                    sealed,
                ),
            )
        return True

    def _rows(self, where: str = "", parameters: tuple[object, ...] = ()) -> list[HeldPiece]:
        rows = self._read(
            "SELECT account, epoch, piece_index, threshold, commitment, signer_public_key, "
            f"release_public_key, stored_at_ms FROM pieces {where} "
            "ORDER BY account, epoch, stored_at_ms",
            parameters,
        )
        out = []
        for account, epoch, index, threshold, commitment, signer, release, stored in rows:
            blob = bytes(commitment)
            out.append(
                HeldPiece(
                    str(account),
                    int(epoch),
                    int(index),
                    int(threshold),
                    tuple(blob[i : i + 32] for i in range(0, len(blob), 32)),
                    bytes(signer),
                    bytes(release),
                    int(stored),
                )
            )
        return out

    def held(self) -> list[HeldPiece]:
        """Every piece held (public columns only), by account and epoch."""
        return self._rows()

    def get(
        self, account: str, epoch: int, signer_public_key: bytes
    ) -> tuple[HeldPiece, KeyPiece] | None:
        """The piece of (account, epoch) deposited by that signer key, opened and checked;
        None if not held."""
        where = "WHERE account = ? AND epoch = ? AND signer_public_key = ?"
        rows = self._rows(where, (account, epoch, signer_public_key))
        if not rows:
            return None
        [row] = rows
        key = self._require_key()
        sealed = self._read(
            f"SELECT sealed FROM pieces {where}", (account, epoch, signer_public_key)
        )[0][0]
        try:
            value = open_with_passphrase_key(
                key.key, key.params, bytes(sealed), associated_data=record_associated_data(row)
            )
            piece = KeyPiece(row.index, value)
        except (SealError, InvalidEncoding):
            raise ProviderError(
                "record_corrupted", f"the piece of {account} epoch {epoch} does not open"
            ) from None
        if not verify_piece(piece, row.commitment):
            raise ProviderError(
                "record_corrupted", f"the piece of {account} epoch {epoch} fails its commitment"
            )
        return row, piece

    def delete(self, held: HeldPiece) -> bool:
        with self._write(erase=True) as cursor:
            cursor.execute(
                "DELETE FROM pieces WHERE account = ? AND epoch = ? AND signer_public_key = ?",
                (held.account, held.epoch, held.signer_public_key),
            )
            return bool(cursor.rowcount)
