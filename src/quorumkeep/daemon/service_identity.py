"""A service's two keys, sealed at rest under the operator's passphrase: the backup service's
and the key provider's (each with its own file format and associated-data prefix).

``DIR/identity.json``::

    {"format": "quorumkeep backup identity v1", "account": "alice",
     "identity_public_key": hex32, "encryption_public_key": hex32,
     "sealed_secrets": hex(passphrase blob of identity_seed ‖ encryption_seed)}

(a key provider writes ``"quorumkeep key provider identity v1"``, and its AD prefix is that
string ‖ 0x00).

- the **identity key** (ed25519) signs what the service sends; peers check it against the
  contract's ``identity_public_key`` for the account;
- the **encryption key** (X25519, a ``crypto_kx`` pair from its seed) is mixed into every
  transfer's key agreement (docs/backup-protocol.md §4, docs/key-provider-protocol.md), so
  what is sealed to the service can only be opened there.

The blob is the passphrase format of docs/sealing.md (Argon2id13 + XChaCha20-Poly1305), with
associated data binding it to the account and both public keys written beside it. Argon2id
runs once per process: the derived :class:`StoreKey` also seals everything in the service's
store.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from quorumkeep.crypto.errors import SealError
from quorumkeep.crypto.group import RandomBytes
from quorumkeep.crypto.seal import (
    DEFAULT_MEMLIMIT,
    DEFAULT_OPSLIMIT,
    KxKeyPair,
    PassphraseParams,
    open_with_passphrase_key,
    passphrase_key,
    passphrase_params_of,
    seal_with_passphrase_key,
)
from quorumkeep.encoding.fields import len32
from quorumkeep.wire.backup import Ed25519Signer

IDENTITY_FILE_NAME = "identity.json"
SEED_SIZE = 32


class ServiceIdentityError(Exception):
    """A problem the operator must see: one line, a stable ``code``, never a secret."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


@dataclass(frozen=True)
class IdentityFormat:
    """Which service an identity file belongs to: its format string, AD prefix, error type."""

    format: str
    init_command: str
    error: Callable[[str, str], Exception] = ServiceIdentityError
    role: str = "service"

    @property
    def ad_prefix(self) -> bytes:
        return self.format.encode("ascii") + b"\x00"


BACKUP_IDENTITY = IdentityFormat(
    "quorumkeep backup identity v1", "quorumkeep backup init", role="backup service"
)
KEY_PROVIDER_IDENTITY = IdentityFormat(
    "quorumkeep key provider identity v1", "quorumkeep provider init", role="key provider"
)


def identity_associated_data(
    account: str,
    identity_public_key: bytes,
    encryption_public_key: bytes,
    kind: IdentityFormat = BACKUP_IDENTITY,
) -> bytes:
    return (
        kind.ad_prefix
        + len32(account.encode("utf-8"))
        + len32(identity_public_key)
        + len32(encryption_public_key)
    )


@dataclass(frozen=True)
class StoreKey:
    """The Argon2id key derived from the operator passphrase, and the parameters it was
    derived under. In memory only."""

    key: bytes = field(repr=False)
    params: PassphraseParams

    def __repr__(self) -> str:
        return "StoreKey(<hidden>)"


@dataclass(frozen=True)
class PublicIdentity:
    """What ``identity.json`` tells without a passphrase."""

    account: str
    identity_public_key: bytes
    encryption_public_key: bytes

    def registration(self) -> dict[str, str]:
        """The key arguments of ``register_backup_service`` / ``register_key_provider``."""
        return {
            "identity_public_key": self.identity_public_key.hex(),
            "encryption_public_key": self.encryption_public_key.hex(),
        }


@dataclass(frozen=True)
class ServiceIdentity:
    account: str
    signer: Ed25519Signer
    encryption: KxKeyPair

    @property
    def public(self) -> PublicIdentity:
        return PublicIdentity(self.account, self.signer.public_key, self.encryption.public_key)


def _path(directory: Path | str) -> Path:
    return Path(directory) / IDENTITY_FILE_NAME


def create_identity(
    directory: Path | str,
    account: str,
    passphrase: bytes,
    *,
    opslimit: int = DEFAULT_OPSLIMIT,
    memlimit: int = DEFAULT_MEMLIMIT,
    random_bytes: RandomBytes = os.urandom,
    kind: IdentityFormat = BACKUP_IDENTITY,
) -> tuple[ServiceIdentity, StoreKey]:
    """Generate both keys and write ``identity.json`` (0600); never overwrites one."""
    path = _path(directory)
    if path.exists():
        raise kind.error("identity_exists", f"{path} exists; refusing to replace keys")
    try:
        params = PassphraseParams.new(random_bytes, opslimit, memlimit)
        key = StoreKey(passphrase_key(passphrase, params), params)
    except SealError as exc:
        raise kind.error("invalid_kdf", f"cannot derive the storage key: {exc}") from None
    identity_seed = random_bytes(SEED_SIZE)
    encryption_seed = random_bytes(SEED_SIZE)
    identity = ServiceIdentity(
        account, Ed25519Signer(identity_seed), KxKeyPair.from_seed(encryption_seed)
    )
    public = identity.public
    sealed = seal_with_passphrase_key(
        key.key,
        key.params,
        identity_seed + encryption_seed,
        associated_data=identity_associated_data(
            account, public.identity_public_key, public.encryption_public_key, kind
        ),
        random_bytes=random_bytes,
    )
    document = {
        "format": kind.format,
        "account": account,
        **public.registration(),
        "sealed_secrets": sealed.hex(),
    }
    path.parent.mkdir(parents=True, exist_ok=True)
    data = (json.dumps(document, indent=2) + "\n").encode()
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        raise kind.error("identity_exists", f"{path} exists") from None
    with os.fdopen(fd, "wb") as handle:
        handle.write(data)
        handle.flush()
        os.fsync(handle.fileno())
    return identity, key


def _read(directory: Path | str, kind: IdentityFormat) -> tuple[PublicIdentity, bytes]:
    path = _path(directory)
    try:
        document = json.loads(path.read_bytes())
    except FileNotFoundError:
        raise kind.error(
            "identity_missing", f"{path} is missing: run `{kind.init_command}`"
        ) from None
    except (OSError, ValueError):
        raise kind.error("identity_invalid", f"{path} is unreadable or not JSON") from None
    try:
        if document["format"] != kind.format:
            raise ValueError("format")
        public = PublicIdentity(
            str(document["account"]),
            bytes.fromhex(document["identity_public_key"]),
            bytes.fromhex(document["encryption_public_key"]),
        )
        sealed = bytes.fromhex(document["sealed_secrets"])
        if len(public.identity_public_key) != 32 or len(public.encryption_public_key) != 32:
            raise ValueError("key size")
    except (KeyError, TypeError, ValueError):
        raise kind.error("identity_invalid", f"{path}: missing or invalid fields") from None
    return public, sealed


def read_public_identity(
    directory: Path | str, kind: IdentityFormat = BACKUP_IDENTITY
) -> PublicIdentity:
    return _read(directory, kind)[0]


def unlock(
    directory: Path | str,
    passphrase: bytes,
    account: str,
    kind: IdentityFormat = BACKUP_IDENTITY,
) -> tuple[ServiceIdentity, StoreKey]:
    """Derive the storage key (Argon2id, once) and open the keys with it."""
    public, sealed = _read(directory, kind)
    if public.account != account:
        raise kind.error(
            "identity_mismatch",
            f"{_path(directory)} holds the keys of account {public.account!r}, not {account!r}",
        )
    try:
        params = passphrase_params_of(sealed)
        key = StoreKey(passphrase_key(passphrase, params), params)
        secrets = open_with_passphrase_key(
            key.key,
            params,
            sealed,
            associated_data=identity_associated_data(
                account, public.identity_public_key, public.encryption_public_key, kind
            ),
        )
    except SealError:
        raise kind.error(
            "wrong_passphrase", f"the passphrase does not open this {kind.role}'s keys"
        ) from None
    if len(secrets) != 2 * SEED_SIZE:
        raise kind.error("identity_invalid", "the sealed keys have the wrong size")
    identity = ServiceIdentity(
        account,
        Ed25519Signer(secrets[:SEED_SIZE]),
        KxKeyPair.from_seed(secrets[SEED_SIZE:]),
    )
    if identity.public != public:
        raise kind.error("identity_invalid", "the sealed keys are not the recorded ones")
    return identity, key
