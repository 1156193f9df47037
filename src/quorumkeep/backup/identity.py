"""The backup service's keys: the service identity of :mod:`quorumkeep.daemon.service_identity`
in the backup format (``"quorumkeep backup identity v1"``), errors as :class:`BackupServiceError`.
"""

from __future__ import annotations

import os
from pathlib import Path

from quorumkeep.backup.errors import BackupServiceError
from quorumkeep.crypto.group import RandomBytes
from quorumkeep.crypto.seal import DEFAULT_MEMLIMIT, DEFAULT_OPSLIMIT
from quorumkeep.daemon import service_identity as _identity
from quorumkeep.daemon.service_identity import (
    IDENTITY_FILE_NAME,
    SEED_SIZE,
    IdentityFormat,
    PublicIdentity,
    StoreKey,
)
from quorumkeep.daemon.service_identity import ServiceIdentity as BackupIdentity

BACKUP_IDENTITY = IdentityFormat(
    _identity.BACKUP_IDENTITY.format,
    _identity.BACKUP_IDENTITY.init_command,
    BackupServiceError,
    _identity.BACKUP_IDENTITY.role,
)
IDENTITY_FORMAT = BACKUP_IDENTITY.format
IDENTITY_AD_PREFIX = BACKUP_IDENTITY.ad_prefix

__all__ = [
    "IDENTITY_AD_PREFIX",
    "IDENTITY_FILE_NAME",
    "IDENTITY_FORMAT",
    "SEED_SIZE",
    "BackupIdentity",
    "PublicIdentity",
    "StoreKey",
    "create_identity",
    "identity_associated_data",
    "read_public_identity",
    "unlock",
]


def identity_associated_data(
    account: str, identity_public_key: bytes, encryption_public_key: bytes
) -> bytes:
    return _identity.identity_associated_data(
        account, identity_public_key, encryption_public_key, BACKUP_IDENTITY
    )


def create_identity(
    directory: Path | str,
    account: str,
    passphrase: bytes,
    *,
    opslimit: int = DEFAULT_OPSLIMIT,
    memlimit: int = DEFAULT_MEMLIMIT,
    random_bytes: RandomBytes = os.urandom,
) -> tuple[BackupIdentity, StoreKey]:
    """Generate both keys and write ``identity.json`` (0600); never overwrites one."""
    return _identity.create_identity(
        directory,
        account,
        passphrase,
        opslimit=opslimit,
        memlimit=memlimit,
        random_bytes=random_bytes,
        kind=BACKUP_IDENTITY,
    )


def read_public_identity(directory: Path | str) -> PublicIdentity:
    return _identity.read_public_identity(directory, BACKUP_IDENTITY)


def unlock(
    directory: Path | str, passphrase: bytes, account: str
) -> tuple[BackupIdentity, StoreKey]:
    """Derive the storage key (Argon2id, once) and open the keys with it."""
    return _identity.unlock(directory, passphrase, account, BACKUP_IDENTITY)
