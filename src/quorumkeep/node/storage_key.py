"""The node's storage key and where it comes from (docs/storage.md, "Storage key").

Everything a node keeps at rest is sealed under keys derived from one 32-byte storage key
(:meth:`StorageKey.subkey`: keyed BLAKE2b, one independent key per purpose). A
:class:`KeySource` creates it at ``node init`` and loads it at every start:
:class:`PassphraseKeySource` derives it with Argon2id from a passphrase, with salt, cost and
a sealed check value in ``DIR/storage-key.json``; the peer key-provider source
(node/key_sources.py, node/key_providers.py) gets it from other machines.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
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
from quorumkeep.node.config import NodeConfig, PassphraseKeyConfig
from quorumkeep.node.keystore_errors import (
    InvalidRecord,
    RecordExists,
    StorageKeyUnavailable,
    WrongStorageKey,
)

STORAGE_KEY_FILE_NAME = "storage-key.json"
STORAGE_KEY_SIZE = 32
STORAGE_KEY_FILE_FORMAT = "quorumkeep storage key v1"
_SUBKEY_PERSON = b"qk-storage-key"
_CHECK_PLAINTEXT = b"quorumkeep storage key check"


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
        daemon_config.write_atomically(self.path, json.dumps(document, indent=2) + "\n")
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
