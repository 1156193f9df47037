"""The keystore's presignature table (docs/storage.md): FROST nonces, each used at most once.

A row of ``presignatures`` holds one presignature: its public columns (id, domain, epoch,
commitment list, creation time) and its nonces sealed under the keystore's key; the rows of
``presignature_participants`` name the participants it involves, so the presignatures of a
participant whose identity changed can be purged. :class:`PresignatureTable` runs these
operations in the transactions of the keystore that owns it (node/keystore.py); the
:class:`~quorumkeep.node.keystore.Keystore` methods of the same job delegate here.

A take reads, opens and deletes a row in one erasing transaction, committed (fsynced) before
the nonces are returned: a nonce handed out can never be handed out again, not even after a
crash.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable, Iterable, Sequence

from quorumkeep.daemon.sqlite import SqliteStore
from quorumkeep.node.keystore_errors import (
    InvalidRecord,
    KeystoreError,
    RecordCorrupted,
    RecordExists,
    RecordNotFound,
)
from quorumkeep.node.keystore_records import (
    Presignature,
    PresignatureInfo,
    check_int,
    check_presignature_id,
    decode_commitments,
    encode_commitments,
    presignature_record,
)

Seal = Callable[[str, bytes, bytes], bytes]
"""``seal(kind, record, plaintext)``: the keystore's sealing of a secret column."""
OpenSealed = Callable[[str, bytes, bytes, str], bytes]
"""``open_sealed(kind, record, sealed, what)``: the reverse, or :class:`RecordCorrupted`."""


class PresignatureTable:
    """The presignatures of one keystore: ``store`` runs the transactions, ``seal`` and
    ``open_sealed`` seal and open the nonces."""

    def __init__(self, store: SqliteStore, seal: Seal, open_sealed: OpenSealed) -> None:
        self._store = store
        self._seal = seal
        self._open = open_sealed

    def add(self, presignatures: Iterable[Presignature]) -> None:
        batch = list(presignatures)
        for item in batch:
            if not isinstance(item, Presignature):
                raise InvalidRecord("add_presignatures takes Presignature objects")
        ids = [item.id for item in batch]
        if len(set(ids)) != len(ids):
            raise InvalidRecord("duplicate presignature id in the batch")
        rows = []
        for item in batch:
            commitments = encode_commitments(item.commitments)
            created_ms = round(item.created_at * 1000)
            record = presignature_record(
                item.id, item.domain_id, item.epoch, created_ms, commitments
            )
            sealed = self._seal("presignature", record, item.nonces)
            rows.append(
                (item.id, item.domain_id, item.epoch, commitments, sealed, created_ms, item)
            )
        with self._store._write() as cursor:
            for pid, domain_id, epoch, commitments, sealed, created_ms, item in rows:
                try:
                    cursor.execute(
                        "INSERT INTO presignatures VALUES (?, ?, ?, ?, ?, ?)",
                        (pid, domain_id, epoch, commitments, sealed, created_ms),
                    )
                except sqlite3.IntegrityError:
                    raise RecordExists(f"presignature {pid!r} already exists") from None
                cursor.executemany(
                    "INSERT INTO presignature_participants VALUES (?, ?)",
                    [(participant, pid) for participant in item.participants],
                )

    def take(self, presignature_ids: Sequence[str]) -> list[Presignature | KeystoreError]:
        for presignature_id in presignature_ids:
            check_presignature_id(presignature_id)
        results: list[Presignature | KeystoreError] = []
        with self._store._write(erase=True) as cursor:
            for presignature_id in presignature_ids:
                row = cursor.execute(
                    "SELECT domain_id, epoch, commitments, sealed_nonces, created_at_ms "
                    "FROM presignatures WHERE id = ?",
                    (presignature_id,),
                ).fetchone()
                if row is None:
                    results.append(RecordNotFound(f"no presignature {presignature_id!r}"))
                    continue
                domain_id, epoch, commitments, sealed, created_ms = row
                record = presignature_record(
                    presignature_id, domain_id, epoch, created_ms, bytes(commitments)
                )
                try:
                    nonces = self._open(
                        "presignature", record, bytes(sealed), f"presignature {presignature_id!r}"
                    )
                except RecordCorrupted as exc:
                    results.append(exc)  # left in place
                    continue
                cursor.execute("DELETE FROM presignatures WHERE id = ?", (presignature_id,))
                results.append(
                    Presignature(
                        presignature_id,
                        domain_id,
                        epoch,
                        decode_commitments(bytes(commitments)),
                        nonces,
                        created_ms / 1000,
                    )
                )
        return results

    def count(self, domain_id: int, epoch: int | None, id_prefix: str) -> int:
        sql = "SELECT COUNT(*) FROM presignatures WHERE domain_id = ?"
        params: list[object] = [domain_id]
        if epoch is not None:
            sql += " AND epoch = ?"
            params.append(epoch)
        if id_prefix:
            sql += " AND id >= ? AND id < ?"
            params += [id_prefix, id_prefix[:-1] + chr(ord(id_prefix[-1]) + 1)]
        return int(self._store._read(sql, params)[0][0])

    def counts(self) -> dict[int, int]:
        rows = self._store._read("SELECT domain_id, COUNT(*) FROM presignatures GROUP BY domain_id")
        return {int(d): int(n) for d, n in rows}

    def infos(self, domain_id: int, epoch: int | None, limit: int | None) -> list[PresignatureInfo]:
        sql = "SELECT id, domain_id, epoch, commitments, created_at_ms FROM presignatures "
        sql += "WHERE domain_id = ?" + (" AND epoch = ?" if epoch is not None else "")
        sql += " ORDER BY created_at_ms, id"
        params: list[object] = [domain_id]
        if epoch is not None:
            params.append(epoch)
        if limit is not None:
            sql += " LIMIT ?"
            params.append(check_int(limit, "limit"))
        return [
            PresignatureInfo(
                str(pid),
                int(d),
                int(e),
                decode_commitments(bytes(c)),
                int(ms) / 1000,
            )
            for pid, d, e, c, ms in self._store._read(sql, params)
        ]

    def purge_involving(self, participant_ids: Iterable[int]) -> int:
        ids = sorted({check_int(p, "participant id", minimum=1) for p in participant_ids})
        if not ids:
            return 0
        marks = ",".join("?" * len(ids))
        with self._store._write(erase=True) as cursor:
            cursor.execute(
                "DELETE FROM presignatures WHERE id IN (SELECT presignature_id FROM "
                f"presignature_participants WHERE participant_id IN ({marks}))",
                ids,
            )
            return cursor.rowcount

    def delete(self, domain_id: int, epoch: int | None, before_epoch: int | None) -> int:
        check_int(domain_id, "domain id")
        if (epoch is None) == (before_epoch is None):
            raise InvalidRecord("give exactly one of epoch and before_epoch")
        if epoch is not None:
            where, bound = "epoch = ?", check_int(epoch, "epoch")
        else:
            assert before_epoch is not None
            where, bound = "epoch < ?", check_int(before_epoch, "epoch")
        with self._store._write(erase=True) as cursor:
            cursor.execute(
                f"DELETE FROM presignatures WHERE domain_id = ? AND {where}", (domain_id, bound)
            )
            return cursor.rowcount

    def purge_all(self) -> int:
        with self._store._write(erase=True) as cursor:
            cursor.execute("DELETE FROM presignatures")
            return cursor.rowcount
