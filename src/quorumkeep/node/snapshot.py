"""Node snapshots: one archive holding a consistent copy of a node directory (format:
docs/storage.md, *Snapshots*).

``create_snapshot`` may run while the node runs: the keystore is copied with SQLite's online
backup API (a consistent image of the last committed state, whatever the node writes
meanwhile); the other files are written once by ``node init`` and copied as they are. Every
secret stays sealed exactly as on disk — the archive holds nothing the directory does not,
and never the passphrase. A manifest names the node, the epoch and keyset hash of the newest
key shares, the number of presignatures, a SHA-256 per file and the time.

``read_snapshot`` checks an archive (format, members, sizes, checksums, that the files are
one node's) and ``restore_refusal`` decides, from the contract state alone, whether its
shares are still the node's (:class:`SnapshotStale` when the contract moved to a newer
epoch: only the backup service can bring that node back). ``write_restored`` writes the
directory. A restored node forgets the snapshot's presignatures when it starts
(node/incarnation.py): whatever nonce they hold may have signed since the snapshot.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import re
import sqlite3
import tarfile
import tempfile
import tomllib
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from quorumkeep.contract.state import SCHEME_ED25519, ContractState, DomainKey, Keyset, Resharing
from quorumkeep.daemon.config import write_atomically
from quorumkeep.node.config import (
    CONFIG_FILE_NAME,
    ConfigError,
    NodeConfig,
    config_from_mapping,
    load_config,
    write_config,
)
from quorumkeep.node.identity import (
    IDENTITY_FILE_NAME,
    SIGNER_KEY_FILE_NAME,
    TLS_CERT_FILE_NAME,
    TLS_KEY_FILE_NAME,
)
from quorumkeep.node.keystore import KEYSTORE_FILE_NAME, SCHEMA_VERSION
from quorumkeep.node.keystore_errors import KeystoreError
from quorumkeep.node.keystore_records import decode_commitments
from quorumkeep.node.shares import ShareFormatError, decode_public
from quorumkeep.node.storage_key import STORAGE_KEY_FILE_NAME

SNAPSHOT_FORMAT = "quorumkeep node snapshot v1"
MANIFEST_NAME = "manifest.json"
NODE_FILES = (
    CONFIG_FILE_NAME,
    STORAGE_KEY_FILE_NAME,
    IDENTITY_FILE_NAME,
    TLS_CERT_FILE_NAME,
    TLS_KEY_FILE_NAME,
    SIGNER_KEY_FILE_NAME,
    KEYSTORE_FILE_NAME,
)
"""Every file of a snapshot besides the manifest, in archive order."""
MAX_MANIFEST_SIZE = 64 * 1024
MAX_FILE_SIZE = 1024 * 1024 * 1024
"""Bound on one member (the keystore of a busy node is a few MiB)."""
_HEX64 = re.compile(r"[0-9a-f]{64}")


class SnapshotError(Exception):
    """Base of snapshot errors. ``code`` is stable; messages never hold a secret."""

    code = "snapshot_error"


class SnapshotInvalid(SnapshotError):
    """Not a snapshot of this format, or a member missing, unknown, repeated or too large."""

    code = "snapshot_invalid"


class ChecksumMismatch(SnapshotError):
    code = "checksum_mismatch"


class NotANodeDirectory(SnapshotError):
    code = "not_a_node_directory"


class DirectoryNotEmpty(SnapshotError):
    code = "directory_not_empty"


class SnapshotStale(SnapshotError):
    """The contract moved past the snapshot's epoch: its shares are void."""

    code = "snapshot_stale"


class SnapshotSuperseded(SnapshotError):
    """The contract lists another node (another TLS key) for the account."""

    code = "snapshot_superseded"


class SnapshotMismatch(SnapshotError):
    """The snapshot's keys are not the contract's (another network, another keyset)."""

    code = "snapshot_mismatch"


# --- the manifest --------------------------------------------------------------------------


@dataclass(frozen=True)
class SnapshotFile:
    name: str
    size: int
    sha256: str

    def to_json(self) -> dict[str, Any]:
        return {"name": self.name, "size": self.size, "sha256": self.sha256}


@dataclass(frozen=True)
class Manifest:
    """What a snapshot holds (all public: names, counts, hashes)."""

    account: str
    tls_public_key: bytes
    signer_public_key: bytes
    epoch: int | None
    """The newest epoch the keystore holds shares of (None: no share)."""
    domains: tuple[int, ...]
    keyset_hash: bytes | None
    """``Keyset.hash`` of ``epoch``'s shares (docs/backup-protocol.md §2)."""
    presignatures: int
    created_at_ms: int
    files: tuple[SnapshotFile, ...]

    def to_json(self) -> dict[str, Any]:
        created = datetime.fromtimestamp(self.created_at_ms / 1000, UTC)
        return {
            "format": SNAPSHOT_FORMAT,
            "account": self.account,
            "tls_public_key": self.tls_public_key.hex(),
            "signer_public_key": self.signer_public_key.hex(),
            "epoch": self.epoch,
            "domains": list(self.domains),
            "keyset_hash": None if self.keyset_hash is None else self.keyset_hash.hex(),
            "presignatures": self.presignatures,
            "created_at_ms": self.created_at_ms,
            "created_at": created.isoformat(timespec="milliseconds").replace("+00:00", "Z"),
            "files": [f.to_json() for f in self.files],
        }

    @classmethod
    def from_json(cls, value: Any) -> Manifest:
        """Strict: exactly the fields of :meth:`to_json`, each of its type."""

        def bad(what: str) -> SnapshotInvalid:
            return SnapshotInvalid(f"manifest: {what}")

        fields = {
            "format",
            "account",
            "tls_public_key",
            "signer_public_key",
            "epoch",
            "domains",
            "keyset_hash",
            "presignatures",
            "created_at_ms",
            "created_at",
            "files",
        }
        if not isinstance(value, dict) or set(value) != fields:
            raise bad(f"expected exactly the fields {', '.join(sorted(fields))}")
        if value["format"] != SNAPSHOT_FORMAT:
            raise bad(f"format is not {SNAPSHOT_FORMAT!r}")

        def key(name: str) -> bytes:
            text = value[name]
            if not isinstance(text, str) or not _HEX64.fullmatch(text):
                raise bad(f"{name} must be 32 bytes of lowercase hex")
            return bytes.fromhex(text)

        def integer(item: Any, name: str) -> int:
            if isinstance(item, bool) or not isinstance(item, int) or not 0 <= item < 2**63:
                raise bad(f"{name} must be an integer in [0, 2^63)")
            return item

        account = value["account"]
        if not isinstance(account, str) or not 1 <= len(account) <= 128:
            raise bad("account must be a string of 1..128 characters")
        epoch = None if value["epoch"] is None else integer(value["epoch"], "epoch")
        domains = value["domains"]
        if not isinstance(domains, list):
            raise bad("domains must be a list")
        keyset_hash = None if value["keyset_hash"] is None else key("keyset_hash")
        if (epoch is None) != (keyset_hash is None):
            raise bad("epoch and keyset_hash are both set or both null")
        files = value["files"]
        if not isinstance(files, list):
            raise bad("files must be a list")
        entries = []
        for item in files:
            if not isinstance(item, dict) or set(item) != {"name", "size", "sha256"}:
                raise bad("each file has exactly name, size and sha256")
            sha = item["sha256"]
            if not isinstance(sha, str) or not _HEX64.fullmatch(sha):
                raise bad("sha256 must be 64 lowercase hex digits")
            entries.append(SnapshotFile(str(item["name"]), integer(item["size"], "size"), sha))
        if [f.name for f in entries] != list(NODE_FILES):
            raise bad(f"files must be exactly {', '.join(NODE_FILES)}, in this order")
        if not isinstance(value["created_at"], str):
            raise bad("created_at must be a string")
        return cls(
            account=account,
            tls_public_key=key("tls_public_key"),
            signer_public_key=key("signer_public_key"),
            epoch=epoch,
            domains=tuple(integer(d, "domain id") for d in domains),
            keyset_hash=keyset_hash,
            presignatures=integer(value["presignatures"], "presignatures"),
            created_at_ms=integer(value["created_at_ms"], "created_at_ms"),
            files=tuple(entries),
        )


# --- taking a snapshot ---------------------------------------------------------------------


def _copy_keystore(source: Path, destination: Path) -> None:
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


def _keystore_summary(
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
            _copy_keystore(keystore, copy)
        except sqlite3.DatabaseError as exc:
            raise NotANodeDirectory(f"{keystore}: cannot be copied ({exc})") from None
        account, tls_key, epoch, domains, keyset_hash, presignatures = _keystore_summary(copy)
        contents[KEYSTORE_FILE_NAME] = copy.read_bytes()
    identity = _identity(contents[IDENTITY_FILE_NAME])
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
    write_atomically(out, _archive(manifest, contents))
    return manifest


def _identity(data: bytes) -> tuple[str, bytes, bytes]:
    try:
        document = json.loads(data)
        return (
            str(document["account"]),
            bytes.fromhex(document["tls_public_key"]),
            bytes.fromhex(document["signer_public_key"]),
        )
    except (ValueError, KeyError, TypeError):
        raise NotANodeDirectory(f"{IDENTITY_FILE_NAME}: not a node identity") from None


def _archive(manifest: Manifest, contents: Mapping[str, bytes]) -> bytes:
    buffer = io.BytesIO()
    mtime = manifest.created_at_ms // 1000
    manifest_bytes = (json.dumps(manifest.to_json(), indent=2) + "\n").encode()
    with tarfile.open(fileobj=buffer, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for name, data in [(MANIFEST_NAME, manifest_bytes), *contents.items()]:
            info = tarfile.TarInfo(name)
            info.size = len(data)
            info.mode = 0o600
            info.mtime = mtime
            tar.addfile(info, io.BytesIO(data))
    return buffer.getvalue()


# --- reading and restoring -----------------------------------------------------------------


def read_snapshot(path: Path) -> tuple[Manifest, dict[str, bytes]]:
    """The manifest and every file of the archive at ``path``, all checked (module doc)."""
    try:
        with tarfile.open(path, mode="r:") as tar:
            contents = _members(path, tar)
    except (OSError, tarfile.TarError) as exc:
        raise SnapshotInvalid(f"{path}: not a snapshot archive ({exc})") from None
    try:
        manifest = Manifest.from_json(json.loads(contents.pop(MANIFEST_NAME)))
    except (ValueError, RecursionError):
        raise SnapshotInvalid(f"{path}: the manifest is not JSON") from None
    for entry in manifest.files:
        data = contents[entry.name]
        if len(data) != entry.size or hashlib.sha256(data).hexdigest() != entry.sha256:
            raise ChecksumMismatch(f"{path}: {entry.name} does not match its manifest checksum")
    account, tls_key, signer_key = _identity(contents[IDENTITY_FILE_NAME])
    if (account, tls_key, signer_key) != (
        manifest.account,
        manifest.tls_public_key,
        manifest.signer_public_key,
    ):
        raise SnapshotInvalid(f"{path}: identity.json is not the manifest's node")
    _check_keystore(path, manifest, contents[KEYSTORE_FILE_NAME])
    return manifest, contents


def _check_keystore(path: Path, manifest: Manifest, keystore: bytes) -> None:
    """The manifest describes its keystore: owner, epoch, domains, keyset hash and number
    of presignatures are read again from the copy (the contract's check relies on them)."""
    with _keystore_image(keystore) as image:
        try:
            summary = _keystore_summary(image)
        except NotANodeDirectory as exc:
            raise SnapshotInvalid(f"{path}: {exc}") from None
    described = (
        manifest.account,
        manifest.tls_public_key,
        manifest.epoch,
        manifest.domains,
        manifest.keyset_hash,
        manifest.presignatures,
    )
    if summary != described:
        raise SnapshotInvalid(f"{path}: the manifest does not describe its keystore")


@contextmanager
def _keystore_image(keystore: bytes) -> Iterator[Path]:
    """A keystore image (a snapshot's) as a file of a temporary directory, for SQLite."""
    with tempfile.TemporaryDirectory(prefix="qk-snapshot-") as tmp:
        path = Path(tmp) / KEYSTORE_FILE_NAME
        path.write_bytes(keystore)
        yield path


def _members(path: Path, tar: tarfile.TarFile) -> dict[str, bytes]:
    expected = [MANIFEST_NAME, *NODE_FILES]
    members = tar.getmembers()
    if [m.name for m in members] != expected:
        raise SnapshotInvalid(
            f"{path}: the archive must hold exactly {', '.join(expected)}, in this order"
        )
    contents: dict[str, bytes] = {}
    for member in members:
        limit = MAX_MANIFEST_SIZE if member.name == MANIFEST_NAME else MAX_FILE_SIZE
        if not member.isfile() or member.size > limit:
            raise SnapshotInvalid(f"{path}: {member.name} is not a file of at most {limit} B")
        handle = tar.extractfile(member)
        if handle is None:
            raise SnapshotInvalid(f"{path}: {member.name} cannot be read")
        contents[member.name] = handle.read()
    return contents


def restore_refusal(manifest: Manifest, state: ContractState) -> SnapshotError | None:
    """Why the contract forbids restoring ``manifest``'s node now, or None. Pure.

    - the contract lists another TLS key for the account: a migration replaced this node
      (:class:`SnapshotSuperseded`);
    - the contract's serving epoch is newer than the snapshot's (or the snapshot holds no
      share while the account takes part): its shares are void (:class:`SnapshotStale`);
    - the same epoch with another keyset hash, or an epoch the contract never reached
      (:class:`SnapshotMismatch`).
    Before the contract serves a key there is nothing to compare: no refusal.
    """
    serving = state.serving()
    if serving is None:
        return None
    account = manifest.account
    infos = [serving.parameters.get(account)]
    protocol = state.protocol
    if isinstance(protocol, Resharing):
        infos.append(protocol.parameters.get(account))
    listed = [info for info in infos if info is not None]
    way_out = (
        "recover through the backup service instead: start a fresh node and "
        "`quorumkeep operator start-migration` to it"
    )
    if any(info.tls_public_key != manifest.tls_public_key for info in listed):
        return SnapshotSuperseded(
            f"the contract lists another node (TLS key) for {account}: a migration replaced "
            f"this snapshot's node; {way_out}"
        )
    current = serving.epoch
    if manifest.epoch is None or manifest.epoch < current:
        held = "no key share" if manifest.epoch is None else f"epoch {manifest.epoch}"
        return SnapshotStale(
            f"the snapshot holds {held} but the contract is at epoch {current}: its shares "
            f"are void; {way_out}"
        )
    if manifest.epoch == current:
        if manifest.keyset_hash != serving.keyset.hash:
            return SnapshotMismatch(
                f"the snapshot's keyset of epoch {current} is not the contract's (another network?)"
            )
        return None
    if isinstance(protocol, Resharing) and manifest.epoch == protocol.epoch:
        return None  # taken during a resharing, holding its new shares as well
    return SnapshotMismatch(
        f"the snapshot holds epoch {manifest.epoch}, which the contract (epoch {current}) "
        "never reached (another network?)"
    )


def restored_config(node_toml: bytes, directory: Path) -> NodeConfig:
    """The snapshot's ``node.toml`` as it reads from ``directory``."""
    try:
        document = tomllib.loads(node_toml.decode("utf-8"))
        return config_from_mapping(document, base_dir=directory)
    except (UnicodeDecodeError, tomllib.TOMLDecodeError, ConfigError) as exc:
        raise SnapshotInvalid(f"{CONFIG_FILE_NAME}: {exc}") from None


def write_restored(contents: Mapping[str, bytes], directory: Path) -> NodeConfig:
    """Write the files into ``directory`` (created 0700; must be absent or empty), each 0600
    and atomically; ``node.toml``'s ``data_dir`` is made the directory itself."""
    directory = directory.resolve()
    if directory.exists() and (not directory.is_dir() or any(directory.iterdir())):
        raise DirectoryNotEmpty(f"{directory} exists and is not an empty directory")
    config = restored_config(contents[CONFIG_FILE_NAME], directory)
    directory.mkdir(mode=0o700, parents=True, exist_ok=True)
    for name in NODE_FILES:
        write_atomically(directory / name, contents[name])
    if config.data_dir != directory:
        config = config.model_copy(update={"data_dir": directory})
        write_config(config, directory / CONFIG_FILE_NAME)
    return config


def presignature_commitments(keystore: bytes) -> dict[str, dict[int, tuple[bytes, bytes]]]:
    """Every presignature in a keystore image (a snapshot's): id → participant id →
    (hiding, binding) commitments. Public columns only: what an auditor compares the
    signatures made after a restore with."""
    with _keystore_image(keystore) as path:
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
