"""Passphrases a devnet generates for its operators, nodes and user, kept in ``DIR/secrets``.

A devnet is a development tool: every passphrase it invents is stored beside the data it
protects (``DIR/secrets/<name>.passphrase``, mode 0600 in a 0700 directory) so that the
devnet can restart its own processes. A production operator keeps these elsewhere. The
passphrases reach child processes through their environment only, never a command line
(which any local user can read in ``/proc``).
"""

from __future__ import annotations

import base64
import os
from pathlib import Path

from quorumkeep.devnet.errors import DevnetError

SECRETS_DIR = "secrets"
_SUFFIX = ".passphrase"


def _check_name(name: str) -> None:
    if not name or not all(c.isalnum() or c in "-_." for c in name) or name.startswith("."):
        raise DevnetError("invalid_secret_name", f"bad secret name {name!r}")


class Secrets:
    """Named passphrases under ``DIR/secrets``; created once, then only read."""

    def __init__(self, devnet_dir: Path) -> None:
        self.directory = Path(devnet_dir) / SECRETS_DIR

    def path(self, name: str) -> Path:
        _check_name(name)
        return self.directory / f"{name}{_SUFFIX}"

    def create(self, name: str) -> bytes:
        """A fresh 256-bit passphrase under ``name``; refuses to replace an existing one."""
        path = self.path(name)
        self.directory.mkdir(mode=0o700, parents=True, exist_ok=True)
        os.chmod(self.directory, 0o700)
        passphrase = base64.urlsafe_b64encode(os.urandom(32)).rstrip(b"=")
        try:
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        except FileExistsError:
            raise DevnetError(
                "secret_exists", f"{path} already exists; not replacing a passphrase"
            ) from None
        with os.fdopen(fd, "wb") as handle:
            handle.write(passphrase)
            handle.flush()
            os.fsync(handle.fileno())
        return passphrase

    def get(self, name: str) -> bytes:
        path = self.path(name)
        try:
            data = path.read_bytes()
        except FileNotFoundError:
            raise DevnetError("secret_missing", f"{path} is missing") from None
        except OSError as exc:
            raise DevnetError("secret_unreadable", f"cannot read {path}: {exc.strerror}") from None
        if not data:
            raise DevnetError("secret_missing", f"{path} is empty")
        return data

    def get_or_create(self, name: str) -> bytes:
        return self.get(name) if self.path(name).exists() else self.create(name)
