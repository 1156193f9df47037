"""Node snapshots: one archive holding a consistent copy of a node directory (format:
docs/storage.md, *Snapshots*; the manifest and the archive: node/snapshot_format.py).

``create_snapshot`` may run while the node runs: the keystore is copied with SQLite's online
backup API (a consistent image of the last committed state, whatever the node writes
meanwhile; node/snapshot_keystore.py); the other files are written once by ``node init`` and
copied as they are. Every secret stays sealed exactly as on disk — the archive holds nothing
the directory does not, and never the passphrase. A manifest names the node, the epoch and
keyset hash of the newest key shares, the number of presignatures, a SHA-256 per file and
the time.

Reading an archive back and restoring it, with the contract's checks: node/snapshot_restore.py.
A restored node forgets the snapshot's presignatures when it starts (node/incarnation.py):
whatever nonce they hold may have signed since the snapshot.
"""

from __future__ import annotations

import hashlib
import sqlite3
import tempfile
from pathlib import Path

from quorumkeep.daemon.config import write_atomically
from quorumkeep.node.config import CONFIG_FILE_NAME, ConfigError, load_config
from quorumkeep.node.identity import IDENTITY_FILE_NAME
from quorumkeep.node.keystore import KEYSTORE_FILE_NAME
from quorumkeep.node.snapshot_format import (
    NODE_FILES,
    Manifest,
    NotANodeDirectory,
    SnapshotFile,
    archive_bytes,
    parse_identity,
)
from quorumkeep.node.snapshot_keystore import copy_keystore, keystore_summary


def _file_entry(name: str, data: bytes) -> SnapshotFile:
    return SnapshotFile(name, len(data), hashlib.sha256(data).hexdigest())


def create_snapshot(node_dir: Path, out: Path, *, now_ms: int) -> Manifest:
    """Write the snapshot of the node whose ``node.toml`` is in ``node_dir`` to ``out``
    (mode 0600, written atomically); the node may be running. Returns its manifest."""
    config_path = node_dir / CONFIG_FILE_NAME
    if not config_path.is_file():
        raise NotANodeDirectory(f"{node_dir} holds no {CONFIG_FILE_NAME}")
    try:
        config = load_config(config_path)
    except ConfigError as exc:
        raise NotANodeDirectory(str(exc)) from None
    data_dir = config.data_dir
    contents: dict[str, bytes] = {CONFIG_FILE_NAME: config_path.read_bytes()}
    for name in NODE_FILES[1:-1]:
        try:
            contents[name] = (data_dir / name).read_bytes()
        except OSError as exc:
            raise NotANodeDirectory(f"{data_dir / name}: {exc.strerror or exc}") from None
    keystore = data_dir / KEYSTORE_FILE_NAME
    if not keystore.is_file():
        raise NotANodeDirectory(f"{data_dir} holds no {KEYSTORE_FILE_NAME}")
    out.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=out.parent, prefix=".snapshot-") as tmp:
        copy = Path(tmp) / KEYSTORE_FILE_NAME
        try:
            copy_keystore(keystore, copy)
        except sqlite3.DatabaseError as exc:
            raise NotANodeDirectory(f"{keystore}: cannot be copied ({exc})") from None
        account, tls_key, epoch, domains, keyset_hash, presignatures = keystore_summary(copy)
        contents[KEYSTORE_FILE_NAME] = copy.read_bytes()
    identity = parse_identity(contents[IDENTITY_FILE_NAME])
    if (account, tls_key) != (config.account, identity[1]) or identity[0] != account:
        raise NotANodeDirectory(
            f"{node_dir}: node.toml, identity.json and the keystore name different nodes"
        )
    manifest = Manifest(
        account=account,
        tls_public_key=tls_key,
        signer_public_key=identity[2],
        epoch=epoch,
        domains=domains,
        keyset_hash=keyset_hash,
        presignatures=presignatures,
        created_at_ms=now_ms,
        files=tuple(_file_entry(name, contents[name]) for name in NODE_FILES),
    )
    write_atomically(out, archive_bytes(manifest, contents))
    return manifest
