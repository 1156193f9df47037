"""The node's secret store: key shares and presignature nonces, sealed at rest in SQLite.

Layout and byte formats: docs/storage.md. In short:

- One SQLite file (``keystore.sqlite3``) in the node directory, WAL journal with
  ``synchronous=FULL``: a transaction that returned is on disk, and a process killed at any
  instant leaves either the old or the new state, never a torn record.
- Every secret column is XChaCha20-Poly1305 (:func:`quorumkeep.crypto.seal.aead_seal`) under a
  key derived from the node's *storage key*, with associated data naming the record kind,
  every public column of the row and the node (account, TLS public key). A sealed value copied
  into another row, another kind of record or another node's store fails to open.
- The storage key comes from a :class:`KeySource`. :class:`PassphraseKeySource` (Argon2id) is
  the one implemented; a TEE-sealing source and a peer key-provider source plug in later.

A presignature's nonces are deleted durably *before* they are handed out
(:meth:`Keystore.take_presignature`): whatever happens afterwards, that nonce can never be
used a second time, even if the node crashes and restarts.
"""

from __future__ import annotations

import json
import math
import os
import re
import sqlite3
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import Protocol

from nacl.encoding import RawEncoder
from nacl.hash import blake2b

from quorumkeep.crypto.errors import SealError
from quorumkeep.crypto.group import RandomBytes
from quorumkeep.crypto.seal import (
    DEFAULT_MEMLIMIT,
    DEFAULT_OPSLIMIT,
    PassphraseParams,
    aead_open,
    aead_seal,
    passphrase_key,
)
from quorumkeep.daemon import config as daemon_config
from quorumkeep.daemon.sqlite import SqliteStore, connect, create_owner_only
from quorumkeep.encoding.fields import len32
from quorumkeep.node.config import NodeConfig, PassphraseKeyConfig

KEYSTORE_FILE_NAME = "keystore.sqlite3"
STORAGE_KEY_FILE_NAME = "storage-key.json"
SCHEMA_VERSION = 1
STORAGE_KEY_SIZE = 32
AD_PREFIX = b"quorumkeep keystore v1\x00"
STORAGE_KEY_FILE_FORMAT = "quorumkeep storage key v1"
_SUBKEY_PERSON = b"qk-storage-key"
_CHECK_PLAINTEXT = b"quorumkeep storage key check"
_MAX_INT = 2**63 - 1
_PRESIGNATURE_ID = re.compile(r"[!-~]{1,128}")
ELEMENT_SIZE = 32


# --- errors ------------------------------------------------------------------------------


class KeystoreError(Exception):
    """Base of keystore errors. ``code`` is stable; messages never hold secret values."""

    code = "keystore_error"


class InvalidRecord(KeystoreError, ValueError):
    """The caller passed a value the keystore does not accept; nothing was changed."""

    code = "invalid_record"


class RecordNotFound(KeystoreError, LookupError):
    code = "not_found"


class RecordExists(KeystoreError):
    code = "already_exists"


class RecordCorrupted(KeystoreError):
    """A stored value failed authentication: tampered, swapped or from another node."""

    code = "record_corrupted"


class WrongStorageKey(KeystoreError):
    code = "wrong_storage_key"


class IdentityMismatch(KeystoreError):
    """The store belongs to another node (account or TLS key differ)."""

    code = "identity_mismatch"


class StorageKeyUnavailable(KeystoreError):
    """The storage key cannot be obtained (no passphrase, no parameters file, ...)."""

    code = "storage_key_unavailable"


# --- storage key ------------------------------------------------------------------------


@dataclass(frozen=True)
class StorageKey:
    """The node's 32-byte storage key. Everything at rest is sealed under keys derived from it."""

    key: bytes = field(repr=False)

    def __post_init__(self) -> None:
        if not isinstance(self.key, bytes) or len(self.key) != STORAGE_KEY_SIZE:
            raise InvalidRecord(f"a storage key is {STORAGE_KEY_SIZE} bytes")

    def __repr__(self) -> str:
        return "StorageKey(<hidden>)"

    def subkey(self, purpose: str) -> bytes:
        """An independent 32-byte key for one purpose (keyed BLAKE2b of the purpose name).

        Separate keys per purpose mean a value sealed for one use can never be opened as
        another, whatever the associated data says.
        """
        digest: bytes = blake2b(
            purpose.encode("utf-8"),
            digest_size=32,
            key=self.key,
            person=_SUBKEY_PERSON,
            encoder=RawEncoder,
        )
        return digest


def key_check(key: StorageKey, random_bytes: RandomBytes) -> bytes:
    return aead_seal(key.subkey("key check"), _CHECK_PLAINTEXT, b"storage key check", random_bytes)


def verify_key_check(key: StorageKey, sealed: bytes) -> None:
    try:
        plaintext = aead_open(key.subkey("key check"), sealed, b"storage key check")
    except SealError:
        raise WrongStorageKey("the storage key does not open this node's data") from None
    if plaintext != _CHECK_PLAINTEXT:
        raise WrongStorageKey("the storage key does not open this node's data")


class KeySource(Protocol):
    """Where a node's storage key comes from.

    ``create`` runs once, at ``node init``; ``load`` at every start. Both may block (a later
    source asks other nodes over the network), so async callers run them in a thread.
    """

    @property
    def name(self) -> str: ...

    def exists(self) -> bool: ...

    def create(self, random_bytes: RandomBytes) -> StorageKey: ...

    def load(self) -> StorageKey: ...


def write_atomically(path: Path, data: bytes) -> None:
    tmp = path.with_name(path.name + ".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        os.write(fd, data)
        os.fsync(fd)
    finally:
        os.close(fd)
    os.replace(tmp, path)
    directory = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(directory)
    finally:
        os.close(directory)


def passphrase_from_env(variable: str) -> Callable[[], bytes]:
    def read() -> bytes:
        try:
            return daemon_config.passphrase_from_env(variable)
        except daemon_config.PassphraseUnavailable as exc:
            raise StorageKeyUnavailable(str(exc)) from None

    return read


def passphrase_from_file(path: Path) -> Callable[[], bytes]:
    def read() -> bytes:
        try:
            data = daemon_config.passphrase_from_file(path)
        except daemon_config.PassphraseUnavailable as exc:
            raise StorageKeyUnavailable(str(exc)) from None
        if not data:
            raise StorageKeyUnavailable(f"passphrase file {path} is empty")
        return data

    return read


class PassphraseKeySource:
    """Storage key = Argon2id(passphrase, salt) with salt and cost in ``DIR/storage-key.json``.

    The file is public (salt, cost, and a sealed check value that tells a wrong passphrase
    apart from damaged data); the passphrase is read from ``passphrase`` on each call and
    never stored.
    """

    name = "passphrase"

    def __init__(
        self,
        directory: Path | str,
        passphrase: Callable[[], bytes],
        *,
        opslimit: int = DEFAULT_OPSLIMIT,
        memlimit: int = DEFAULT_MEMLIMIT,
    ) -> None:
        self.path = Path(directory) / STORAGE_KEY_FILE_NAME
        self._passphrase = passphrase
        self._opslimit = opslimit
        self._memlimit = memlimit

    def __repr__(self) -> str:
        return f"PassphraseKeySource({self.path})"

    def exists(self) -> bool:
        return self.path.exists()

    def _derive(self, params: PassphraseParams) -> StorageKey:
        try:
            return StorageKey(passphrase_key(self._passphrase(), params))
        except SealError as exc:
            raise StorageKeyUnavailable(f"passphrase key derivation failed: {exc}") from None

    def create(self, random_bytes: RandomBytes) -> StorageKey:
        if self.path.exists():
            raise RecordExists(f"{self.path} exists: this directory already has a storage key")
        try:
            params = PassphraseParams.new(random_bytes, self._opslimit, self._memlimit)
        except SealError as exc:
            raise InvalidRecord(f"bad Argon2id cost: {exc}") from None
        key = self._derive(params)
        document = {
            "format": STORAGE_KEY_FILE_FORMAT,
            "source": self.name,
            "kdf": "argon2id13",
            "salt": params.salt.hex(),
            "opslimit": params.opslimit,
            "memlimit": params.memlimit,
            "check": key_check(key, random_bytes).hex(),
        }
        write_atomically(self.path, (json.dumps(document, indent=2) + "\n").encode())
        return key

    def load(self) -> StorageKey:
        try:
            document = json.loads(self.path.read_bytes())
        except FileNotFoundError:
            raise StorageKeyUnavailable(
                f"{self.path} is missing: run `quorumkeep node init` first"
            ) from None
        except (OSError, ValueError):
            raise StorageKeyUnavailable(f"{self.path} is unreadable or not JSON") from None
        try:
            if document["format"] != STORAGE_KEY_FILE_FORMAT or document["source"] != self.name:
                raise StorageKeyUnavailable(f"{self.path} is not a passphrase storage-key file")
            params = PassphraseParams(
                bytes.fromhex(document["salt"]), document["opslimit"], document["memlimit"]
            )
            check = bytes.fromhex(document["check"])
        except (KeyError, TypeError, ValueError, SealError):
            raise StorageKeyUnavailable(f"{self.path} has missing or invalid fields") from None
        key = self._derive(params)
        try:
            verify_key_check(key, check)
        except WrongStorageKey:
            raise WrongStorageKey("wrong passphrase (it does not open this node's data)") from None
        return key


# --- records ----------------------------------------------------------------------------


def _check_int(value: object, what: str, *, minimum: int = 0) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not minimum <= value <= _MAX_INT:
        raise InvalidRecord(f"{what} must be an integer in [{minimum}, 2^63)")
    return value


def _check_bytes(value: object, what: str, *, allow_empty: bool = True) -> bytes:
    if not isinstance(value, bytes | bytearray | memoryview):
        raise InvalidRecord(f"{what} must be bytes")
    data = bytes(value)
    if not data and not allow_empty:
        raise InvalidRecord(f"{what} must not be empty")
    return data


def _check_presignature_id(value: object) -> str:
    if not isinstance(value, str) or not _PRESIGNATURE_ID.fullmatch(value):
        raise InvalidRecord("presignature id must be 1..128 printable ASCII characters, no spaces")
    return value


@dataclass(frozen=True)
class KeystoreOwner:
    """The node a store belongs to; part of every record's associated data."""

    account: str
    tls_public_key: bytes

    def __post_init__(self) -> None:
        if not isinstance(self.account, str) or not self.account:
            raise InvalidRecord("owner account must be a non-empty string")
        if not isinstance(self.tls_public_key, bytes) or len(self.tls_public_key) != 32:
            raise InvalidRecord("owner TLS public key must be 32 bytes")


@dataclass(frozen=True)
class KeyShareRef:
    domain_id: int
    epoch: int


@dataclass(frozen=True)
class StoredKeyShare:
    """A key share as stored: ``share`` is the secret, ``public`` travels with it unsealed."""

    domain_id: int
    epoch: int
    share: bytes = field(repr=False)
    public: bytes = b""

    def __repr__(self) -> str:
        return f"StoredKeyShare(domain_id={self.domain_id}, epoch={self.epoch}, share=<hidden>)"


Commitments = Mapping[int, tuple[bytes, bytes]]
"""participant id → (hiding, binding) nonce commitments, RFC 9591's commitment list."""


def _normalize_commitments(commitments: object) -> dict[int, tuple[bytes, bytes]]:
    if not isinstance(commitments, Mapping) or not commitments:
        raise InvalidRecord("commitments must be a non-empty mapping participant id → pair")
    out: dict[int, tuple[bytes, bytes]] = {}
    for participant, pair in sorted(commitments.items()):
        _check_int(participant, "participant id", minimum=1)
        if not isinstance(pair, tuple) or len(pair) != 2:
            raise InvalidRecord("each commitment is a (hiding, binding) pair")
        hiding, binding = (bytes(_check_bytes(x, "commitment")) for x in pair)
        if len(hiding) != ELEMENT_SIZE or len(binding) != ELEMENT_SIZE:
            raise InvalidRecord(f"nonce commitments are {ELEMENT_SIZE}-byte group elements")
        out[participant] = (hiding, binding)
    return out


@dataclass(frozen=True)
class PresignatureInfo:
    """The public part of a presignature: who is in it and their nonce commitments."""

    id: str
    domain_id: int
    epoch: int
    commitments: Commitments
    created_at: float

    @property
    def participants(self) -> tuple[int, ...]:
        return tuple(sorted(self.commitments))


@dataclass(frozen=True)
class Presignature:
    """One presignature this node takes part in; ``nonces`` is this node's secret nonce pair.

    ``nonces`` is opaque to the keystore (the signing protocol encodes it). ``created_at`` is
    Unix time in seconds, stored with millisecond precision.
    """

    id: str
    domain_id: int
    epoch: int
    commitments: Commitments
    nonces: bytes = field(repr=False)
    created_at: float = field(default_factory=time.time)

    def __post_init__(self) -> None:
        _check_presignature_id(self.id)
        _check_int(self.domain_id, "domain id")
        _check_int(self.epoch, "epoch")
        object.__setattr__(self, "commitments", _normalize_commitments(self.commitments))
        object.__setattr__(self, "nonces", _check_bytes(self.nonces, "nonces", allow_empty=False))
        if not isinstance(self.created_at, int | float) or not math.isfinite(self.created_at):
            raise InvalidRecord("created_at must be a finite number of seconds")
        if not 0 <= self.created_at * 1000 <= _MAX_INT:
            raise InvalidRecord("created_at out of range")

    def __repr__(self) -> str:
        return (
            f"Presignature(id={self.id!r}, domain_id={self.domain_id}, epoch={self.epoch}, "
            f"participants={list(self.participants)}, nonces=<hidden>)"
        )

    @property
    def participants(self) -> tuple[int, ...]:
        return tuple(sorted(self.commitments))

    @property
    def info(self) -> PresignatureInfo:
        return PresignatureInfo(
            self.id, self.domain_id, self.epoch, self.commitments, self.created_at
        )


# --- encodings (docs/storage.md) ---------------------------------------------------------


def _u64(value: int) -> bytes:
    return value.to_bytes(8, "big")


def encode_commitments(commitments: Commitments) -> bytes:
    return b"".join(
        _u64(participant) + hiding + binding
        for participant, (hiding, binding) in sorted(commitments.items())
    )


def decode_commitments(data: bytes) -> dict[int, tuple[bytes, bytes]]:
    entry = 8 + 2 * ELEMENT_SIZE
    if not data or len(data) % entry:
        raise RecordCorrupted("stored commitment list has a bad length")
    out: dict[int, tuple[bytes, bytes]] = {}
    for offset in range(0, len(data), entry):
        participant = int.from_bytes(data[offset : offset + 8], "big")
        hiding = data[offset + 8 : offset + 8 + ELEMENT_SIZE]
        binding = data[offset + 8 + ELEMENT_SIZE : offset + entry]
        out[participant] = (hiding, binding)
    return out


def _key_share_record(domain_id: int, epoch: int, public: bytes) -> bytes:
    return _u64(domain_id) + _u64(epoch) + len32(public)


def _presignature_record(
    presignature_id: str, domain_id: int, epoch: int, created_ms: int, commitments: bytes
) -> bytes:
    return (
        len32(presignature_id.encode("ascii"))
        + _u64(domain_id)
        + _u64(epoch)
        + _u64(created_ms)
        + len32(commitments)
    )


def record_associated_data(kind: str, record: bytes, owner: KeystoreOwner) -> bytes:
    """``AD_PREFIX ‖ field(kind) ‖ field(record) ‖ field(account) ‖ field(tls key)``."""
    return (
        AD_PREFIX
        + len32(kind.encode("ascii"))
        + len32(record)
        + len32(owner.account.encode("utf-8"))
        + len32(owner.tls_public_key)
    )


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
        _check_int(domain_id, "domain id")
        _check_int(epoch, "epoch")
        share = _check_bytes(share, "share", allow_empty=False)
        public = _check_bytes(public, "public data")
        record = _key_share_record(domain_id, epoch, public)
        sealed = self._seal("key_share", record, share)
        what = f"key share (domain {domain_id}, epoch {epoch})"
        with self._write() as cursor:
            row = cursor.execute(
                "SELECT public, sealed_share FROM key_shares WHERE domain_id = ? AND epoch = ?",
                (domain_id, epoch),
            ).fetchone()
            if row is not None and not replace:
                old_public = bytes(row[0])
                old_record = _key_share_record(domain_id, epoch, old_public)
                old_share = self._open("key_share", old_record, bytes(row[1]), what)
                if old_share == share and old_public == public:
                    return
                raise RecordExists(f"a different {what} is already stored")
            cursor.execute(
                "INSERT OR REPLACE INTO key_shares VALUES (?, ?, ?, ?, ?)",
                (domain_id, epoch, public, sealed, int(time.time() * 1000)),
            )

    def get_key_share(self, domain_id: int, epoch: int) -> StoredKeyShare:
        _check_int(domain_id, "domain id")
        _check_int(epoch, "epoch")
        rows = self._read(
            "SELECT public, sealed_share FROM key_shares WHERE domain_id = ? AND epoch = ?",
            (domain_id, epoch),
        )
        what = f"key share (domain {domain_id}, epoch {epoch})"
        if not rows:
            raise RecordNotFound(f"no {what}")
        public, sealed = (bytes(x) for x in rows[0])
        share = self._open("key_share", _key_share_record(domain_id, epoch, public), sealed, what)
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
        _check_int(epoch, "epoch")
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

    # -- presignatures

    def add_presignatures(self, presignatures: Iterable[Presignature]) -> None:
        """Store a batch in one transaction: all of them, or (on any error) none."""
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
            record = _presignature_record(
                item.id, item.domain_id, item.epoch, created_ms, commitments
            )
            sealed = self._seal("presignature", record, item.nonces)
            rows.append(
                (item.id, item.domain_id, item.epoch, commitments, sealed, created_ms, item)
            )
        with self._write() as cursor:
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
        for presignature_id in presignature_ids:
            _check_presignature_id(presignature_id)
        results: list[Presignature | KeystoreError] = []
        with self._write(erase=True) as cursor:
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
                record = _presignature_record(
                    presignature_id, domain_id, epoch, created_ms, bytes(commitments)
                )
                try:
                    nonces = self._open(
                        "presignature", record, bytes(sealed), f"presignature {presignature_id!r}"
                    )
                except RecordCorrupted as exc:
                    results.append(exc)
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

    def presignature_count(
        self, domain_id: int, epoch: int | None = None, *, id_prefix: str = ""
    ) -> int:
        """How many presignatures are held for a domain (of ``epoch``; whose id starts with
        ``id_prefix`` — an index range on the id, not a scan)."""
        sql = "SELECT COUNT(*) FROM presignatures WHERE domain_id = ?"
        params: list[object] = [domain_id]
        if epoch is not None:
            sql += " AND epoch = ?"
            params.append(epoch)
        if id_prefix:
            sql += " AND id >= ? AND id < ?"
            params += [id_prefix, id_prefix[:-1] + chr(ord(id_prefix[-1]) + 1)]
        return int(self._read(sql, params)[0][0])

    def presignature_counts(self) -> dict[int, int]:
        """domain id → number of presignatures held (for the pool and /status)."""
        rows = self._read("SELECT domain_id, COUNT(*) FROM presignatures GROUP BY domain_id")
        return {int(d): int(n) for d, n in rows}

    def presignatures(
        self, domain_id: int, epoch: int | None = None, *, limit: int | None = None
    ) -> list[PresignatureInfo]:
        """Public parts of the stored presignatures for a domain, oldest first."""
        sql = "SELECT id, domain_id, epoch, commitments, created_at_ms FROM presignatures "
        sql += "WHERE domain_id = ?" + (" AND epoch = ?" if epoch is not None else "")
        sql += " ORDER BY created_at_ms, id"
        params: list[object] = [domain_id]
        if epoch is not None:
            params.append(epoch)
        if limit is not None:
            sql += " LIMIT ?"
            params.append(_check_int(limit, "limit"))
        return [
            PresignatureInfo(
                str(pid),
                int(d),
                int(e),
                decode_commitments(bytes(c)),
                int(ms) / 1000,
            )
            for pid, d, e, c, ms in self._read(sql, params)
        ]

    def purge_presignatures_involving(self, participant_ids: Iterable[int]) -> int:
        """Delete every presignature one of ``participant_ids`` takes part in; return how many.

        After a participant's identity changed, its old nonces may be in the wrong hands (or
        lost), so every presignature it is part of is unusable.
        """
        ids = sorted({_check_int(p, "participant id", minimum=1) for p in participant_ids})
        if not ids:
            return 0
        marks = ",".join("?" * len(ids))
        with self._write(erase=True) as cursor:
            cursor.execute(
                "DELETE FROM presignatures WHERE id IN (SELECT presignature_id FROM "
                f"presignature_participants WHERE participant_id IN ({marks}))",
                ids,
            )
            return cursor.rowcount

    def delete_presignatures(
        self, domain_id: int, *, epoch: int | None = None, before_epoch: int | None = None
    ) -> int:
        """Delete, in one transaction, the presignatures of ``domain_id`` of ``epoch``, or of
        every epoch before ``before_epoch``; return how many went."""
        _check_int(domain_id, "domain id")
        if (epoch is None) == (before_epoch is None):
            raise InvalidRecord("give exactly one of epoch and before_epoch")
        if epoch is not None:
            where, bound = "epoch = ?", _check_int(epoch, "epoch")
        else:
            assert before_epoch is not None
            where, bound = "epoch < ?", _check_int(before_epoch, "epoch")
        with self._write(erase=True) as cursor:
            cursor.execute(
                f"DELETE FROM presignatures WHERE domain_id = ? AND {where}", (domain_id, bound)
            )
            return cursor.rowcount

    def purge_all_presignatures(self) -> int:
        with self._write(erase=True) as cursor:
            cursor.execute("DELETE FROM presignatures")
            return cursor.rowcount

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


def passphrase_source_from_config(
    config: NodeConfig,
    *,
    opslimit: int = DEFAULT_OPSLIMIT,
    memlimit: int = DEFAULT_MEMLIMIT,
) -> PassphraseKeySource:
    """The passphrase :class:`KeySource` a ``NodeConfig`` names (cost applies when creating)."""
    source = config.storage_key
    if not isinstance(source, PassphraseKeyConfig):
        raise StorageKeyUnavailable("node.toml's storage key source is not a passphrase")
    if source.passphrase_env is not None:
        read = passphrase_from_env(source.passphrase_env)
    elif source.passphrase_file is not None:
        read = passphrase_from_file(source.passphrase_file)
    else:  # the config model guarantees one of the two
        raise StorageKeyUnavailable("node.toml names no passphrase source")
    return PassphraseKeySource(config.data_dir, read, opslimit=opslimit, memlimit=memlimit)
