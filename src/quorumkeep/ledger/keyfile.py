"""Ed25519 access-key files, sealed at rest under a passphrase.

    {"format": "quorumkeep-key-v1", "account": "alice" | null, "public_key": hex32,
     "sealed_secret_key": hex(seal_with_passphrase(passphrase, seed32, associated_data=AD))}
    AD = b"quorumkeep-key-v1\\x00" || canonical_json({"account": ..., "public_key": ...})

The private key (its 32-byte seed) never touches the disk in the clear; the associated data
binds the sealed seed to the account and public key written beside it, so editing either
makes the file fail to open rather than sign as someone else. Files are created 0600,
written to a temporary file, fsynced, and linked into place, so an existing key is never
overwritten and a crash leaves either no file or a complete one.
"""

from __future__ import annotations

import contextlib
import json
import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import nacl.signing

from quorumkeep.crypto.errors import SealError
from quorumkeep.crypto.seal import PassphraseParams, open_with_passphrase, seal_with_passphrase
from quorumkeep.encoding.fields import ACCOUNT_PATTERN, is_account_name
from quorumkeep.ledger.canonical import canonical_json
from quorumkeep.ledger.client import AccountSigner

KEY_FORMAT = "quorumkeep-key-v1"
PASSPHRASE_ENV = "QUORUMKEEP_PASSPHRASE"
_AD_DOMAIN = b"quorumkeep-key-v1\x00"


class KeyFileError(Exception):
    """A key file or passphrase that cannot be used; the message never holds a secret."""


@dataclass(frozen=True)
class KeyFile:
    account: str | None
    public_key: bytes
    sealed_secret_key: bytes

    def to_json(self) -> dict[str, object]:
        return {
            "format": KEY_FORMAT,
            "account": self.account,
            "public_key": self.public_key.hex(),
            "sealed_secret_key": self.sealed_secret_key.hex(),
        }


def _associated_data(account: str | None, public_key: bytes) -> bytes:
    return _AD_DOMAIN + canonical_json({"account": account, "public_key": public_key.hex()})


def read_passphrase(passphrase_file: Path | None = None) -> bytes:
    """The passphrase from ``passphrase_file`` (one trailing newline dropped) or the env."""
    if passphrase_file is not None:
        try:
            data = Path(passphrase_file).read_bytes()
        except OSError as exc:
            raise KeyFileError(
                f"cannot read passphrase file {passphrase_file}: {exc.strerror}"
            ) from None
        if data.endswith(b"\r\n"):
            data = data[:-2]
        elif data.endswith(b"\n"):
            data = data[:-1]
    else:
        env = os.environ.get(PASSPHRASE_ENV)
        if env is None:
            raise KeyFileError(f"no passphrase: set {PASSPHRASE_ENV} or pass --passphrase-file")
        data = env.encode("utf-8")
    if not data:
        raise KeyFileError("the passphrase is empty")
    return data


def seal_key(
    signing_key: nacl.signing.SigningKey,
    passphrase: bytes,
    *,
    account: str | None = None,
    random_bytes: Callable[[int], bytes] = os.urandom,
    params: PassphraseParams | None = None,
) -> KeyFile:
    if account is not None and not is_account_name(account):
        raise KeyFileError(f"account must match {ACCOUNT_PATTERN.pattern}")
    public_key = bytes(signing_key.verify_key)
    sealed = seal_with_passphrase(
        passphrase,
        bytes(signing_key),
        associated_data=_associated_data(account, public_key),
        random_bytes=random_bytes,
        params=params,
    )
    return KeyFile(account, public_key, sealed)


def write_key_file(path: Path, key_file: KeyFile) -> None:
    """Create ``path`` (0600) holding ``key_file``; refuses to replace an existing file."""
    write_private_file(path, json.dumps(key_file.to_json(), indent=2).encode() + b"\n")


def write_private_file(path: Path, data: bytes) -> None:
    """Atomically create ``path`` with mode 0600: temp file, fsync, link, fsync the dir."""
    path = Path(path)
    if path.exists():
        raise KeyFileError(f"{path} already exists; refusing to overwrite a key file")
    directory = path.parent
    try:
        directory.mkdir(parents=True, exist_ok=True)
        tmp = directory / f".{path.name}.{os.getpid()}.{os.urandom(4).hex()}.tmp"
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        try:
            with os.fdopen(fd, "wb") as handle:
                handle.write(data)
                handle.flush()
                os.fsync(handle.fileno())
            os.link(tmp, path)  # fails if path appeared meanwhile: never clobbers
        finally:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(tmp)
        dir_fd = os.open(directory, os.O_RDONLY)
        try:
            os.fsync(dir_fd)
        finally:
            os.close(dir_fd)
    except FileExistsError:
        raise KeyFileError(f"{path} already exists; refusing to overwrite a key file") from None
    except OSError as exc:
        raise KeyFileError(f"cannot write {path}: {exc.strerror}") from None


def read_key_file(path: Path) -> KeyFile:
    """Parse a key file (nothing is decrypted)."""
    try:
        raw = Path(path).read_text("utf-8")
    except OSError as exc:
        raise KeyFileError(f"cannot read key file {path}: {exc.strerror}") from None
    except UnicodeDecodeError:
        raise KeyFileError(f"{path} is not a quorumkeep key file") from None
    try:
        obj = json.loads(raw)
        if not isinstance(obj, dict) or obj.get("format") != KEY_FORMAT:
            raise ValueError("format")
        account = obj["account"]
        if account is not None and (not is_account_name(account)):
            raise ValueError("account")
        public_key = bytes.fromhex(obj["public_key"])
        sealed = bytes.fromhex(obj["sealed_secret_key"])
        if len(public_key) != 32:
            raise ValueError("public_key")
    except (ValueError, KeyError, TypeError):
        raise KeyFileError(f"{path} is not a {KEY_FORMAT} key file") from None
    return KeyFile(account, public_key, sealed)


def open_key(key_file: KeyFile, passphrase: bytes) -> nacl.signing.SigningKey:
    """Unseal the signing key; KeyFileError on a wrong passphrase or an edited file."""
    try:
        seed = open_with_passphrase(
            passphrase,
            key_file.sealed_secret_key,
            associated_data=_associated_data(key_file.account, key_file.public_key),
        )
    except SealError:
        raise KeyFileError(
            "cannot open the key file: wrong passphrase, or the file was modified"
        ) from None
    if len(seed) != 32:
        raise KeyFileError("the key file holds no Ed25519 key")
    signing_key = nacl.signing.SigningKey(seed)
    if bytes(signing_key.verify_key) != key_file.public_key:
        raise KeyFileError("the sealed key does not match the file's public_key")
    return signing_key


def load_signer(path: Path, passphrase: bytes, account: str | None = None) -> AccountSigner:
    """An AccountSigner from a key file; ``account`` must agree with the file's, if both set."""
    key_file = read_key_file(path)
    name = account or key_file.account
    if name is None:
        raise KeyFileError(f"{path} names no account; pass the signer account")
    if account is not None and key_file.account is not None and account != key_file.account:
        raise KeyFileError(f"{path} is a key of account {key_file.account!r}, not {account!r}")
    return AccountSigner(name, open_key(key_file, passphrase))
