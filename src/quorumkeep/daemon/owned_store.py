"""A service's sealed store: one SQLite file (daemon/sqlite.py) in the service's directory,
owned by one (account, identity key) and opened with the service's :class:`StoreKey` (or
without it: public columns only). The backup service's backups and the key provider's pieces
are such stores; each names its file, schema and error type in a :class:`StoreKind`.

Every such schema starts with the ``owner`` table below: a file created for one account and
identity key refuses to open for another (``store_mismatch``)."""

from __future__ import annotations

import os
import sqlite3
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar, Self

from quorumkeep.crypto.group import RandomBytes
from quorumkeep.daemon.service_identity import StoreKey
from quorumkeep.daemon.sqlite import SqliteStore, connect, create_owner_only

OWNER_TABLE = """
CREATE TABLE owner (
    singleton INTEGER PRIMARY KEY CHECK (singleton = 1),
    account TEXT NOT NULL,
    identity_public_key BLOB NOT NULL
)"""


@dataclass(frozen=True)
class StoreKind:
    """Which service's store: its file, schema (after :data:`OWNER_TABLE`) and error type."""

    file_name: str
    schema: str
    schema_version: int
    service: str
    """How errors name the service ("backup service", "key provider")."""
    init_command: str
    """The command that creates the store (named when it is missing)."""
    error: Callable[[str, str], Exception]
    """``error(code, message)``: the service's typed, one-line error."""


class OwnedStore(SqliteStore):
    KIND: ClassVar[StoreKind]

    def __init__(
        self,
        connection: sqlite3.Connection,
        path: Path,
        account: str,
        key: StoreKey | None,
        random_bytes: RandomBytes,
    ) -> None:
        super().__init__(connection, path)
        self.account = account
        self._key = key
        self._random_bytes = random_bytes

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.path}, account={self.account!r})"

    @classmethod
    def open(
        cls,
        directory: Path | str,
        account: str,
        identity_public_key: bytes,
        key: StoreKey | None,
        *,
        create: bool = False,
        random_bytes: RandomBytes = os.urandom,
    ) -> Self:
        """Open (``create``: or create) the store in ``directory`` for this owner."""
        kind = cls.KIND
        path = Path(directory) / kind.file_name
        if not path.exists():
            if not create:
                raise kind.error("store_missing", f"{path} is missing: run `{kind.init_command}`")
            create_owner_only(path)
        connection = connect(path)
        store = cls(connection, path, account, key, random_bytes)
        try:
            store._initialize(identity_public_key)
        except BaseException:
            connection.close()
            raise
        return store

    def _initialize(self, identity_public_key: bytes) -> None:
        kind = self.KIND
        self._apply_settings()
        with self._write() as cursor:
            schema = OWNER_TABLE + ";\n" + kind.schema

            def invalid(message: str) -> Exception:
                return kind.error("store_invalid", message)

            if self._create_schema(cursor, schema, kind.schema_version, invalid):
                cursor.execute(
                    "INSERT INTO owner VALUES (1, ?, ?)", (self.account, identity_public_key)
                )
                return
            row = cursor.execute(
                "SELECT account, identity_public_key FROM owner WHERE singleton = 1"
            ).fetchone()
        if row is None or row[0] != self.account or bytes(row[1]) != identity_public_key:
            raise kind.error(
                "store_mismatch", f"{self.path} belongs to another {kind.service} or account"
            )

    def _require_key(self) -> StoreKey:
        if self._key is None:
            raise self.KIND.error("store_locked", "the store was opened without its key")
        return self._key
