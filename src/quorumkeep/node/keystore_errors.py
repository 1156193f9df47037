"""The keystore's errors (docs/storage.md): one base class, a stable ``code`` on each."""

from __future__ import annotations


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
