"""The block log in one SQLite file (WAL, ``synchronous=FULL``).

Only blocks are the truth; every other table is an index that can be rebuilt from them.
A block is written in a single SQLite transaction together with its index rows, and the
commit returns only after the WAL is fsynced, which is what lets the ledger answer a
submitter after the commit and promise the answer survives a crash (docs/ledger.md,
"Storage"). One process owns a data directory at a time: an exclusive ``flock`` on
``ledger.lock`` stops a second ledger from forking the chain.
"""

from __future__ import annotations

import fcntl
import os
import sqlite3
from collections.abc import Iterator
from pathlib import Path

from quorumkeep.ledger.blocks import LEDGER_FORMAT, Block

DB_NAME = "ledger.sqlite"
LOCK_NAME = "ledger.lock"

SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (
    key   TEXT PRIMARY KEY,
    value TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS blocks (
    height INTEGER PRIMARY KEY,
    hash   BLOB NOT NULL,
    body   BLOB NOT NULL
);
CREATE TABLE IF NOT EXISTS transactions (
    hash   BLOB PRIMARY KEY,
    height INTEGER NOT NULL
) WITHOUT ROWID;
"""


class StorageError(Exception):
    """The data directory cannot be used (missing, locked, not a ledger, already initialized)."""


def _connect(path: Path, *, readonly: bool = False) -> sqlite3.Connection:
    if readonly:
        conn = sqlite3.connect(
            f"file:{path}?mode=ro", uri=True, isolation_level=None, check_same_thread=False
        )
    else:
        conn = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
        conn.execute("PRAGMA journal_mode=WAL")
    # FULL: the WAL is fsynced at every commit, so a committed block survives power loss.
    conn.execute("PRAGMA synchronous=FULL")
    return conn


class BlockStore:
    """The writer side: owns the data directory's lock and appends blocks."""

    def __init__(self, data_dir: Path, *, create: bool = False) -> None:
        self.data_dir = Path(data_dir)
        self.path = self.data_dir / DB_NAME
        if not create and not self.path.exists():
            raise StorageError(f"{self.data_dir} holds no ledger (run `quorumkeep ledger init`)")
        self.data_dir.mkdir(parents=True, exist_ok=True)
        self._lock_fd = os.open(self.data_dir / LOCK_NAME, os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(self._lock_fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(self._lock_fd)
            raise StorageError(f"{self.data_dir} is in use by another ledger process") from None
        try:
            self._conn = _connect(self.path)
            self._conn.executescript(SCHEMA)
            row = self._conn.execute("SELECT value FROM meta WHERE key = 'format'").fetchone()
            if row is None:
                self._conn.execute(
                    "INSERT INTO meta (key, value) VALUES ('format', ?)", (LEDGER_FORMAT,)
                )
            elif row[0] != LEDGER_FORMAT:
                raise StorageError(f"{self.path} has format {row[0]!r}, expected {LEDGER_FORMAT}")
        except sqlite3.DatabaseError as exc:
            self.close()
            raise StorageError(f"{self.path} is not a usable SQLite ledger: {exc}") from None
        except StorageError:
            self.close()
            raise

    def close(self) -> None:
        conn: sqlite3.Connection | None = getattr(self, "_conn", None)
        if conn is not None:
            conn.close()
            del self._conn
        if self._lock_fd >= 0:
            os.close(self._lock_fd)
            self._lock_fd = -1

    def head_height(self) -> int | None:
        row = self._conn.execute("SELECT MAX(height) FROM blocks").fetchone()
        return None if row is None or row[0] is None else int(row[0])

    def write_genesis(self, genesis: Block) -> None:
        if self.head_height() is not None:
            raise StorageError(f"{self.data_dir} already holds a ledger (genesis exists)")
        self.append(genesis)

    def append(self, block: Block) -> None:
        """Durably append ``block`` (one SQLite transaction, fsynced before returning)."""
        conn = self._conn
        conn.execute("BEGIN IMMEDIATE")
        try:
            conn.execute(
                "INSERT INTO blocks (height, hash, body) VALUES (?, ?, ?)",
                (block.height, block.hash, block.body),
            )
            if block.transactions:
                conn.executemany(
                    "INSERT OR REPLACE INTO transactions (hash, height) VALUES (?, ?)",
                    [(t.signed.hash, block.height) for t in block.transactions],
                )
            conn.execute("COMMIT")
        except BaseException:
            conn.execute("ROLLBACK")
            raise

    def iter_blocks(self) -> Iterator[tuple[int, bytes, bytes]]:
        """(height, stored hash, body) in height order, for verification at start."""
        cursor = self._conn.execute("SELECT height, hash, body FROM blocks ORDER BY height")
        for height, block_hash, body in cursor:
            yield int(height), bytes(block_hash), bytes(body)


class BlockReader:
    """A second, read-only connection for serving blocks while the writer commits."""

    def __init__(self, data_dir: Path) -> None:
        self._conn = _connect(Path(data_dir) / DB_NAME, readonly=True)

    def close(self) -> None:
        self._conn.close()

    def block_body(self, height: int) -> bytes | None:
        row = self._conn.execute("SELECT body FROM blocks WHERE height = ?", (height,)).fetchone()
        return None if row is None else bytes(row[0])

    def block_bodies(self, heights: list[int]) -> list[tuple[int, bytes]]:
        if not heights:
            return []
        marks = ",".join("?" * len(heights))
        rows = self._conn.execute(
            f"SELECT height, body FROM blocks WHERE height IN ({marks}) ORDER BY height", heights
        ).fetchall()
        return [(int(h), bytes(b)) for h, b in rows]

    def transaction_height(self, tx_hash: bytes) -> int | None:
        row = self._conn.execute(
            "SELECT height FROM transactions WHERE hash = ?", (tx_hash,)
        ).fetchone()
        return None if row is None else int(row[0])
