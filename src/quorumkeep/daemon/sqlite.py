"""One SQLite file that holds sealed secrets, owned by one process: the node's keystore and the
backup service's store (formats: docs/storage.md, docs/backup-protocol.md §9).

Both rely on the same promises from SQLite: WAL with ``synchronous=FULL`` (a transaction that
returned is on disk; a process killed at any instant leaves the old or the new state, never a
torn record), ``secure_delete`` (a deleted record's bytes are overwritten with zeros in the
page SQLite writes next) and a file readable by its owner only.

``secure_delete`` alone does not erase anything in WAL mode: the zeroed page is appended to the
``-wal`` file, whose earlier frames still hold the page as it was before the deletion, and
the main file keeps the old page until the next checkpoint. A transaction that deletes secrets
is therefore written with ``_write(erase=True)``: after its commit, ``wal_checkpoint(TRUNCATE)``
copies the zeroed pages into the main file and truncates the WAL to zero bytes, so no image
of the deleted record remains in either file. (Blocks the file system itself remapped, e.g.
on copy-on-write or flash media, are out of SQLite's reach.)
"""

from __future__ import annotations

import logging
import os
import sqlite3
import threading
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

BUSY_TIMEOUT_MS = 10000

log = logging.getLogger(__name__)


def create_owner_only(path: Path) -> None:
    """Create ``path`` empty with mode 0600; SQLite gives the -wal and -shm files the same."""
    os.close(os.open(path, os.O_WRONLY | os.O_CREAT, 0o600))


def connect(path: Path) -> sqlite3.Connection:
    """A connection in autocommit mode (transactions are explicit, see :meth:`SqliteStore._write`)
    usable from any thread: the store's lock serialises access."""
    return sqlite3.connect(path, isolation_level=None, check_same_thread=False)


class SqliteStore:
    """Base of a store kept in one SQLite file. Thread-safe: every access holds ``_lock``."""

    def __init__(self, connection: sqlite3.Connection, path: Path) -> None:
        self._db = connection
        self.path = path
        self._lock = threading.RLock()

    def _apply_settings(self) -> str:
        """Set the durability settings; returns the journal mode SQLite reports afterwards
        (it keeps the old mode, and says so, when it cannot use WAL)."""
        db = self._db
        mode = str(db.execute("PRAGMA journal_mode=WAL").fetchone()[0])
        db.execute("PRAGMA synchronous=FULL")
        # Deleted secrets are overwritten in the file, not merely unlinked from it.
        db.execute("PRAGMA secure_delete=ON")
        db.execute(f"PRAGMA busy_timeout={BUSY_TIMEOUT_MS}")
        return mode

    def _create_schema(
        self,
        cursor: sqlite3.Cursor,
        schema: str,
        version: int,
        error: Callable[[str], Exception],
    ) -> bool:
        """In a write transaction: create ``schema`` in an empty file (True) or check that the
        file has schema ``version`` (False); ``error(message)`` is raised for another version."""
        found = cursor.execute("PRAGMA user_version").fetchone()[0]
        if found == 0:
            for statement in schema.split(";"):
                if statement.strip():
                    cursor.execute(statement)
            cursor.execute(f"PRAGMA user_version={version}")
            return True
        if found != version:
            raise error(f"{self.path}: unsupported schema version {found}")
        return False

    def close(self) -> None:
        with self._lock:
            self._db.close()

    @contextmanager
    def _write(self, *, erase: bool = False) -> Iterator[sqlite3.Cursor]:
        """One write transaction: BEGIN IMMEDIATE … COMMIT, rolled back on any exception.

        ``erase=True`` for a transaction that deletes secrets: the WAL is then truncated
        after the commit (see the module docstring), still under the lock.
        """
        with self._lock:
            cursor = self._db.cursor()
            cursor.execute("BEGIN IMMEDIATE")
            try:
                yield cursor
            except BaseException:
                cursor.execute("ROLLBACK")
                raise
            cursor.execute("COMMIT")
            if erase:
                self._truncate_wal()

    def _truncate_wal(self) -> None:
        """Checkpoint every frame into the main file and truncate the WAL to zero bytes.

        The store's own connection holds the lock, so none of its reads can keep the
        checkpoint from completing. Another process reading the file at that instant (e.g.
        ``backup status``) can: the deletion is committed all the same, the next erasing
        write truncates, and the miss is logged rather than failing a committed write.
        """
        with self._lock:
            busy, _, _ = self._db.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchone()
        if busy:
            log.warning(
                "%s: WAL not truncated (another reader); the next deletion retries", self.path
            )

    def _read(self, sql: str, parameters: Iterable[object] = ()) -> list[tuple[Any, ...]]:
        with self._lock:
            return list(self._db.execute(sql, tuple(parameters)).fetchall())
