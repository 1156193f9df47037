"""A node's long-lived keys: its TLS identity and its signer key, sealed at rest.

Files in the node directory (formats: docs/storage.md):

- ``identity.json`` — public: account, TLS public key, signer public key.
- ``tls-cert.pem`` — the self-signed certificate carrying the TLS key (public).
- ``tls-key.pem`` — the TLS private key as an *encrypted* PKCS#8 PEM. Its password is derived
  from the storage key, so OpenSSL can decrypt it in memory (``load_cert_chain``) without the
  plaintext key ever touching the disk.
- ``signer-key.sealed`` — the signer key's 32-byte seed, XChaCha20-Poly1305-sealed under the
  storage key with the node's public identity as associated data.

No X25519 key is kept on disk: the keys for sealed transfers are ephemeral, one per
exchange, and the node's *wrapping key* (the X25519 key wrapped exports are sealed to) is
derived from the storage key (:func:`wrapping_key_pair`), so it needs no file of its own.
"""

from __future__ import annotations

import contextlib
import json
import os
from dataclasses import dataclass, field
from pathlib import Path

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from nacl.signing import SigningKey

from quorumkeep.crypto.errors import SealError
from quorumkeep.crypto.group import RandomBytes
from quorumkeep.crypto.seal import KxKeyPair, aead_open, aead_seal
from quorumkeep.daemon.config import write_atomically
from quorumkeep.encoding.fields import len32
from quorumkeep.node.config import CONFIG_FILE_NAME, NodeConfig, write_config
from quorumkeep.node.keystore import Keystore
from quorumkeep.node.keystore_records import KeystoreOwner
from quorumkeep.node.storage_key import KeySource, StorageKey
from quorumkeep.wire.backup.statements import Ed25519Signer
from quorumkeep.wire.tls import (
    TLSCredentials,
    TLSError,
    certificate_public_key,
    encrypted_private_key_pem,
    load_encrypted_private_key,
    make_certificate,
    raw_public_key,
)

IDENTITY_FILE_NAME = "identity.json"
TLS_CERT_FILE_NAME = "tls-cert.pem"
TLS_KEY_FILE_NAME = "tls-key.pem"
SIGNER_KEY_FILE_NAME = "signer-key.sealed"
IDENTITY_FORMAT = "quorumkeep node identity v1"
SIGNER_AD_PREFIX = b"quorumkeep signer key v1\x00"
_IDENTITY_FILES = (IDENTITY_FILE_NAME, TLS_CERT_FILE_NAME, TLS_KEY_FILE_NAME, SIGNER_KEY_FILE_NAME)


class IdentityError(Exception):
    """The node's identity files are missing, damaged or belong to someone else."""

    def __init__(self, message: str, *, code: str = "identity_invalid") -> None:
        super().__init__(message)
        self.code = code


def signer_associated_data(account: str, tls_public_key: bytes, signer_public_key: bytes) -> bytes:
    return (
        SIGNER_AD_PREFIX
        + len32(account.encode("utf-8"))
        + len32(tls_public_key)
        + len32(signer_public_key)
    )


WRAPPING_KEY_PURPOSE = "wrapping key"
"""The storage sub-key the wrapping key pair is seeded from (docs/storage.md)."""


def wrapping_key_pair(storage_key: StorageKey) -> KxKeyPair:
    """The node's X25519 wrapping key: ``crypto_kx_seed_keypair(subkey("wrapping key"))``."""
    return KxKeyPair.from_seed(storage_key.subkey(WRAPPING_KEY_PURPOSE))


def tls_key_password(storage_key: StorageKey) -> bytes:
    """The PKCS#8 password for ``tls-key.pem``: 64 hex digits of a storage-key subkey."""
    return storage_key.subkey("tls key password").hex().encode("ascii")


@dataclass(frozen=True)
class NodeIdentity:
    """The loaded identity. ``signer_seed`` (and the TLS password) never appear in a repr."""

    directory: Path
    account: str
    tls: TLSCredentials
    certificate: bytes
    signer_public_key: bytes
    signer_seed: bytes = field(repr=False)
    wrapping_key: KxKeyPair | None = field(default=None, repr=False, compare=False)
    """The X25519 key wrapped exports to this node are sealed to (None: not loaded)."""

    def __repr__(self) -> str:
        return (
            f"NodeIdentity(account={self.account!r}, "
            f"tls_public_key={self.tls_public_key.hex()}, "
            f"signer_public_key={self.signer_public_key.hex()})"
        )

    @property
    def tls_public_key(self) -> bytes:
        return self.tls.public_key

    @property
    def owner(self) -> KeystoreOwner:
        """How the keystore names this node in every record's associated data."""
        return KeystoreOwner(self.account, self.tls_public_key)

    def sign(self, message: bytes) -> bytes:
        """An ed25519 signature (64 bytes) by the signer key, for the node's contract calls."""
        signature: bytes = SigningKey(self.signer_seed).sign(bytes(message)).signature
        return signature

    def participant_info(self, config: NodeConfig) -> dict[str, str]:
        """What the operator registers for this node in the contract."""
        if config.account != self.account:
            raise IdentityError(
                f"config account {config.account!r} is not this identity's {self.account!r}",
                code="identity_mismatch",
            )
        return {
            "account": self.account,
            "url": config.p2p_url,
            "web_url": config.web_url,
            "tls_public_key": self.tls_public_key.hex(),
            "signer_public_key": self.signer_public_key.hex(),
        }

    # -- creation and loading

    @classmethod
    def create(
        cls,
        directory: Path | str,
        account: str,
        storage_key: StorageKey,
        *,
        random_bytes: RandomBytes = os.urandom,
    ) -> NodeIdentity:
        """Generate the TLS and signer keys in ``directory``; refuses to overwrite any."""
        directory = Path(directory)
        if not account:
            raise IdentityError("account must not be empty")
        existing = [name for name in _IDENTITY_FILES if (directory / name).exists()]
        if existing:
            raise IdentityError(
                f"{directory} already holds a node identity ({', '.join(existing)})",
                code="identity_exists",
            )
        tls_seed = random_bytes(32)
        signer_seed = random_bytes(32)
        if len(tls_seed) != 32 or len(signer_seed) != 32:
            raise IdentityError("random source returned a short seed", code="bad_random")
        tls_key = Ed25519PrivateKey.from_private_bytes(tls_seed)
        tls_public_key = raw_public_key(tls_key)
        signer_public_key = bytes(SigningKey(signer_seed).verify_key)
        password = tls_key_password(storage_key)
        sealed_signer = aead_seal(
            storage_key.subkey("signer key"),
            signer_seed,
            signer_associated_data(account, tls_public_key, signer_public_key),
            random_bytes,
        )
        document = {
            "format": IDENTITY_FORMAT,
            "account": account,
            "tls_public_key": tls_public_key.hex(),
            "signer_public_key": signer_public_key.hex(),
        }
        directory.mkdir(parents=True, exist_ok=True)
        write_atomically(
            directory / TLS_KEY_FILE_NAME, encrypted_private_key_pem(tls_key, password)
        )
        write_atomically(directory / TLS_CERT_FILE_NAME, make_certificate(tls_key))
        write_atomically(directory / SIGNER_KEY_FILE_NAME, sealed_signer)
        # Written last: its presence means the identity is complete.
        write_atomically(
            directory / IDENTITY_FILE_NAME, (json.dumps(document, indent=2) + "\n").encode()
        )
        return cls.load(directory, account, storage_key)

    @classmethod
    def load(cls, directory: Path | str, account: str, storage_key: StorageKey) -> NodeIdentity:
        """Load and cross-check every identity file; any inconsistency is an IdentityError."""
        directory = Path(directory)
        try:
            document = json.loads((directory / IDENTITY_FILE_NAME).read_bytes())
            certificate = (directory / TLS_CERT_FILE_NAME).read_bytes()
            key_pem = (directory / TLS_KEY_FILE_NAME).read_bytes()
            sealed_signer = (directory / SIGNER_KEY_FILE_NAME).read_bytes()
        except FileNotFoundError as exc:
            raise IdentityError(
                f"{directory} has no complete node identity ({Path(str(exc.filename)).name} "
                "missing): run `quorumkeep node init`",
                code="identity_missing",
            ) from None
        except (OSError, ValueError):
            raise IdentityError(f"{directory}: identity files unreadable") from None
        try:
            if document["format"] != IDENTITY_FORMAT:
                raise IdentityError(f"{IDENTITY_FILE_NAME}: unknown format")
            stored_account = str(document["account"])
            tls_public_key = bytes.fromhex(document["tls_public_key"])
            signer_public_key = bytes.fromhex(document["signer_public_key"])
        except (KeyError, TypeError, ValueError):
            raise IdentityError(f"{IDENTITY_FILE_NAME}: missing or invalid fields") from None
        if stored_account != account:
            raise IdentityError(
                f"{directory} holds the identity of account {stored_account!r}, not {account!r}",
                code="identity_mismatch",
            )
        try:
            if certificate_public_key(certificate) != tls_public_key:
                raise IdentityError(f"{TLS_CERT_FILE_NAME} does not carry the recorded TLS key")
            password = tls_key_password(storage_key)
            if raw_public_key(load_encrypted_private_key(key_pem, password)) != tls_public_key:
                raise IdentityError(f"{TLS_KEY_FILE_NAME} is not the recorded TLS key")
        except TLSError as exc:
            raise IdentityError(f"TLS identity unusable: {exc}", code=exc.code) from None
        try:
            signer_seed = aead_open(
                storage_key.subkey("signer key"),
                sealed_signer,
                signer_associated_data(account, tls_public_key, signer_public_key),
            )
        except SealError:
            raise IdentityError(
                f"{SIGNER_KEY_FILE_NAME} does not open under this storage key and identity",
                code="identity_unreadable",
            ) from None
        if len(signer_seed) != 32 or bytes(SigningKey(signer_seed).verify_key) != signer_public_key:
            raise IdentityError(f"{SIGNER_KEY_FILE_NAME} is not the recorded signer key")
        return cls(
            directory=directory,
            account=account,
            tls=TLSCredentials(
                certificate_path=directory / TLS_CERT_FILE_NAME,
                private_key_path=directory / TLS_KEY_FILE_NAME,
                password=password,
                public_key=tls_public_key,
            ),
            certificate=certificate,
            signer_public_key=signer_public_key,
            signer_seed=signer_seed,
            wrapping_key=wrapping_key_pair(storage_key),
        )


def initialize_node(
    config: NodeConfig, key_source: KeySource, *, random_bytes: RandomBytes = os.urandom
) -> NodeIdentity:
    """``node init``: storage key, identity, empty keystore and ``node.toml`` in data_dir."""
    directory = config.data_dir
    directory.mkdir(parents=True, exist_ok=True)
    if (directory / CONFIG_FILE_NAME).exists():
        raise IdentityError(f"{directory / CONFIG_FILE_NAME} exists", code="identity_exists")
    storage_key = key_source.create(random_bytes)
    identity = NodeIdentity.create(
        directory, config.account, storage_key, random_bytes=random_bytes
    )
    Keystore.open(directory, storage_key, identity.owner, random_bytes=random_bytes).close()
    complete = getattr(key_source, "complete", None)
    if complete is not None:
        # A source that needs the identity (peers: deposits are signed by the signer key).
        try:
            complete(Ed25519Signer(identity.signer_seed))
        except BaseException:
            _remove_partial(directory)
            raise
    write_config(config, directory / CONFIG_FILE_NAME)
    return identity


def _remove_partial(directory: Path) -> None:
    """Undo a ``node init`` that failed after writing its files (it refused to start over a
    directory holding any of them, so they are all its own)."""
    for name in (
        IDENTITY_FILE_NAME,
        TLS_CERT_FILE_NAME,
        TLS_KEY_FILE_NAME,
        SIGNER_KEY_FILE_NAME,
        "keystore.sqlite3",
        "keystore.sqlite3-wal",
        "keystore.sqlite3-shm",
        "storage-key.json",
        "release-key.json",
    ):
        with contextlib.suppress(FileNotFoundError):
            (directory / name).unlink()


def load_node(config: NodeConfig, key_source: KeySource) -> tuple[NodeIdentity, Keystore]:
    """``node run``'s start: the storage key, then the identity and the keystore it opens."""
    storage_key = key_source.load()
    identity = NodeIdentity.load(config.data_dir, config.account, storage_key)
    return identity, Keystore.open(config.data_dir, storage_key, identity.owner)
