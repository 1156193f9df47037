"""A snapshot's keystore (docs/storage.md, *Snapshots*): the SQLite side of a node snapshot.

The keystore is copied with SQLite's online backup API (a consistent image of the last
committed state, whatever the node writes meanwhile). A copy, or the image a snapshot holds,
is read through its public columns only (no storage key needed): the owner, the newest
epoch's domains and keyset hash and the number of presignatures, which the manifest states,
and every presignature's commitments, which an auditor compares the signatures made after a
restore with.
"""

from __future__ import annotations

import os
import sqlite3
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from quorumkeep.contract.state import SCHEME_ED25519, DomainKey, Keyset
from quorumkeep.node.keystore import KEYSTORE_FILE_NAME, SCHEMA_VERSION
from quorumkeep.node.keystore_errors import KeystoreError
from quorumkeep.node.keystore_records import decode_commitments
from quorumkeep.node.shares import ShareFormatError, decode_public
from quorumkeep.node.snapshot_format import NotANodeDirectory, SnapshotInvalid


def copy_keystore(source: Path, destination: Path) -> None:
    """SQLite's online backup of ``source`` into a new single file (rollback journal)."""
    fd = os.open(destination, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    os.close(fd)
    src = sqlite3.connect(f"file:{source}?mode=ro", uri=True)
    try:
        dst = sqlite3.connect(destination)
        try:
            src.backup(dst)  # all pages in one step: one consistent read transaction
            dst.execute("PRAGMA journal_mode=DELETE")
            if dst.execute("PRAGMA integrity_check").fetchone()[0] != "ok":
                raise SnapshotInvalid(f"{source}: the copy fails SQLite's integrity check")
        finally:
            dst.close()
    finally:
        src.close()


def keystore_summary(
    path: Path,
) -> tuple[str, bytes, int | None, tuple[int, ...], bytes | None, int]:
    """(account, TLS key, epoch, domains, keyset hash, presignatures) from a keystore copy's
    public columns (no storage key needed)."""
    db = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    try:
        if db.execute("PRAGMA user_version").fetchone()[0] != SCHEMA_VERSION:
            raise NotANodeDirectory(f"{path.name}: not a keystore of schema {SCHEMA_VERSION}")
        owner = db.execute("SELECT account, tls_public_key FROM owner").fetchone()
        if owner is None:
            raise NotANodeDirectory(f"{path.name}: no owner record")
        epoch_row = db.execute("SELECT MAX(epoch) FROM key_shares").fetchone()
        epoch = None if epoch_row[0] is None else int(epoch_row[0])
        rows = db.execute(
            "SELECT domain_id, public FROM key_shares WHERE epoch = ? ORDER BY domain_id",
            (epoch if epoch is not None else -1,),
        ).fetchall()
        presignatures = int(db.execute("SELECT COUNT(*) FROM presignatures").fetchone()[0])
    except sqlite3.DatabaseError as exc:
        raise NotANodeDirectory(f"{path.name}: not a keystore ({exc})") from None
    finally:
        db.close()
    keyset_hash = None
    domains: list[DomainKey] = []
    for domain_id, public in rows:
        try:
            _, package = decode_public(bytes(public))
        except ShareFormatError as exc:
            raise NotANodeDirectory(f"{path.name}: share of domain {domain_id}: {exc}") from None
        domains.append(DomainKey(int(domain_id), SCHEME_ED25519, package.group_public_key))
    if epoch is not None:
        keyset_hash = Keyset(epoch, tuple(domains)).hash
    return (
        str(owner[0]),
        bytes(owner[1]),
        epoch,
        tuple(d.domain_id for d in domains),
        keyset_hash,
        presignatures,
    )


@contextmanager
def keystore_image(keystore: bytes) -> Iterator[Path]:
    """A keystore image (a snapshot's) as a file of a temporary directory, for SQLite."""
    with tempfile.TemporaryDirectory(prefix="qk-snapshot-") as tmp:
        path = Path(tmp) / KEYSTORE_FILE_NAME
        path.write_bytes(keystore)
        yield path


def presignature_commitments(keystore: bytes) -> dict[str, dict[int, tuple[bytes, bytes]]]:
    """Every presignature in a keystore image (a snapshot's): id → participant id →
    (hiding, binding) commitments. Public columns only: what an auditor compares the
    signatures made after a restore with."""
    with keystore_image(keystore) as path:
        db = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
        try:
            rows = db.execute("SELECT id, commitments FROM presignatures").fetchall()
        except sqlite3.DatabaseError as exc:
            raise SnapshotInvalid(f"{KEYSTORE_FILE_NAME}: not a keystore ({exc})") from None
        finally:
            db.close()
    try:
        return {str(i): decode_commitments(bytes(c)) for i, c in rows}
    except KeystoreError as exc:
        raise SnapshotInvalid(f"{KEYSTORE_FILE_NAME}: {exc}") from None
