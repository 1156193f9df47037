"""The block log in one SQLite file (WAL, ``synchronous=FULL``).

Only blocks are the truth; ``transactions`` and ``event_kinds`` are indexes that can be
rebuilt from them, and ``snapshots`` hold the ledger state at a block, each checked against
that block's state hash before it is used (``snapshot.py``).
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

from quorumkeep.ledger.blocks import LEDGER_FORMAT, Block, block_event_kinds

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
CREATE TABLE IF NOT EXISTS event_kinds (
    kind   TEXT NOT NULL,
    height INTEGER NOT NULL,
    PRIMARY KEY (kind, height)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS snapshots (
    height     INTEGER PRIMARY KEY,
    block_hash BLOB NOT NULL,
    body       BLOB NOT NULL
);
"""
SNAPSHOTS_KEPT = 2


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
        self.set_meta("event_index", "1")

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
            kinds = block_event_kinds(block)
            if kinds:
                conn.executemany(
                    "INSERT OR IGNORE INTO event_kinds (kind, height) VALUES (?, ?)",
                    [(kind, block.height) for kind in kinds],
                )
            conn.execute("COMMIT")
        except BaseException:
            conn.execute("ROLLBACK")
            raise

    def iter_blocks(self, above: int = -1) -> Iterator[tuple[int, bytes, bytes]]:
        """(height, stored hash, body) above ``above`` in height order, for verification."""
        cursor = self._conn.execute(
            "SELECT height, hash, body FROM blocks WHERE height > ? ORDER BY height", (above,)
        )
        for height, block_hash, body in cursor:
            yield int(height), bytes(block_hash), bytes(body)

    def block(self, height: int) -> tuple[bytes, bytes] | None:
        """(stored hash, body) of one block."""
        row = self._conn.execute(
            "SELECT hash, body FROM blocks WHERE height = ?", (height,)
        ).fetchone()
        return None if row is None else (bytes(row[0]), bytes(row[1]))

    def oldest_height_above_genesis(self) -> int | None:
        row = self._conn.execute("SELECT MIN(height) FROM blocks WHERE height > 0").fetchone()
        return None if row is None or row[0] is None else int(row[0])

    # --- the event index -------------------------------------------------------------

    def event_index(self) -> list[tuple[str, int]]:
        """(kind, height) of every stored block with an event of that kind, by height."""
        rows = self._conn.execute(
            "SELECT kind, height FROM event_kinds ORDER BY height, kind"
        ).fetchall()
        return [(str(kind), int(height)) for kind, height in rows]

    def rebuild_event_index(self, rows: list[tuple[str, int]]) -> None:
        """Replace the event index (after a full replay of a ledger written without it)."""
        conn = self._conn
        conn.execute("BEGIN IMMEDIATE")
        try:
            conn.execute("DELETE FROM event_kinds")
            conn.executemany("INSERT OR IGNORE INTO event_kinds (kind, height) VALUES (?, ?)", rows)
            conn.execute("INSERT OR REPLACE INTO meta (key, value) VALUES ('event_index', '1')")
            conn.execute("COMMIT")
        except BaseException:
            conn.execute("ROLLBACK")
            raise

    def has_event_index(self) -> bool:
        """Whether every block was indexed as written (ledgers made before the index was
        not: a full replay rebuilds it)."""
        return self.meta("event_index") is not None

    # --- meta ---------------------------------------------------------------------------

    def meta(self, key: str) -> str | None:
        row = self._conn.execute("SELECT value FROM meta WHERE key = ?", (key,)).fetchone()
        return None if row is None else str(row[0])

    def set_meta(self, key: str, value: str) -> None:
        self._conn.execute("INSERT OR REPLACE INTO meta (key, value) VALUES (?, ?)", (key, value))

    # --- snapshots ----------------------------------------------------------------------

    def write_snapshot(self, height: int, block_hash: bytes, body: bytes) -> None:
        """Store a snapshot (fsynced), keeping the newest ``SNAPSHOTS_KEPT``."""
        conn = self._conn
        conn.execute("BEGIN IMMEDIATE")
        try:
            conn.execute(
                "INSERT OR REPLACE INTO snapshots (height, block_hash, body) VALUES (?, ?, ?)",
                (height, block_hash, body),
            )
            conn.execute(
                "DELETE FROM snapshots WHERE height NOT IN "
                "(SELECT height FROM snapshots ORDER BY height DESC LIMIT ?)",
                (SNAPSHOTS_KEPT,),
            )
            conn.execute(
                "INSERT OR REPLACE INTO meta (key, value) VALUES ('snapshot_height', ?)",
                (str(max(height, int(self.meta("snapshot_height") or -1))),),
            )
            conn.execute("COMMIT")
        except BaseException:
            conn.execute("ROLLBACK")
            raise

    def snapshots(self) -> list[tuple[int, bytes, bytes]]:
        """(height, block hash, body) of every stored snapshot, newest first."""
        rows = self._conn.execute(
            "SELECT height, block_hash, body FROM snapshots ORDER BY height DESC"
        ).fetchall()
        return [(int(h), bytes(bh), bytes(b)) for h, bh, b in rows]

    # --- pruning ------------------------------------------------------------------------

    def prune_below(self, height: int, anchor_hash: bytes) -> int:
        """Delete blocks 1 .. ``height`` - 1 (genesis stays) and their index rows; record
        the anchor (the hash of block ``height`` - 1, which block ``height`` names as its
        previous block). Returns how many blocks were deleted. Then VACUUM, so the file
        shrinks."""
        conn = self._conn
        conn.execute("BEGIN IMMEDIATE")
        try:
            deleted = conn.execute(
                "DELETE FROM blocks WHERE height > 0 AND height < ?", (height,)
            ).rowcount
            conn.execute("DELETE FROM transactions WHERE height < ?", (height,))
            conn.execute("DELETE FROM event_kinds WHERE height > 0 AND height < ?", (height,))
            conn.execute(
                "INSERT OR REPLACE INTO meta (key, value) VALUES ('anchor', ?)",
                (f"{height - 1}:{anchor_hash.hex()}",),
            )
            conn.execute("COMMIT")
        except BaseException:
            conn.execute("ROLLBACK")
            raise
        conn.execute("VACUUM")
        return int(deleted)

    def anchor(self) -> tuple[int, bytes] | None:
        """(height, hash) of the newest pruned block, if blocks were pruned."""
        value = self.meta("anchor")
        if value is None:
            return None
        height, _, hex_hash = value.partition(":")
        return int(height), bytes.fromhex(hex_hash)


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
