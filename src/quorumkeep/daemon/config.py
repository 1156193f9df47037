"""Reading ``node.toml`` and ``backup.toml``, and the passphrase source they name.

Neither file holds a secret: it names where the passphrase comes from, an environment
variable or a file. Errors here are plain exceptions with the stable codes both processes
report (``config_not_found``, ``config_unreadable``, ``config_syntax``); each process turns
them into its own error type.
"""

from __future__ import annotations

import os
import tomllib
from pathlib import Path
from typing import Any


class ConfigFileError(Exception):
    """The configuration file is missing, unreadable or not TOML.

    ``code`` is stable; ``reason`` says what is wrong without the path (the message is
    ``"{path}: {reason}"``).
    """

    def __init__(self, path: Path, code: str, reason: str) -> None:
        super().__init__(f"{path}: {reason}")
        self.path = path
        self.code = code
        self.reason = reason


def load_toml(path: Path) -> dict[str, Any]:
    """The TOML document at ``path``; :class:`ConfigFileError` if it cannot be had."""
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        raise ConfigFileError(path, "config_not_found", "no such file") from None
    except OSError as exc:
        raise ConfigFileError(path, "config_unreadable", str(exc.strerror)) from None
    try:
        return tomllib.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, tomllib.TOMLDecodeError) as exc:
        raise ConfigFileError(path, "config_syntax", f"not valid TOML ({exc})") from None


def check_passphrase_source(variable: str | None, path: Path | None) -> None:
    """A configuration names exactly one passphrase source (ValueError, for pydantic)."""
    if (variable is None) == (path is None):
        raise ValueError("set exactly one of passphrase_env and passphrase_file")
    if variable is not None and not variable:
        raise ValueError("passphrase_env must name an environment variable")


class PassphraseUnavailable(Exception):
    """The passphrase cannot be read from its source; the message says which and why."""


def passphrase_from_env(variable: str) -> bytes:
    value = os.environ.get(variable)
    if not value:
        raise PassphraseUnavailable(f"environment variable {variable} is not set or empty")
    return value.encode("utf-8")


def passphrase_from_file(path: Path) -> bytes:
    """The file's bytes without one trailing newline; may be empty (callers word that)."""
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise PassphraseUnavailable(f"cannot read passphrase file {path}: {exc.strerror}") from None
    # One trailing newline is what editors and `echo` add; it is not part of the secret.
    return data.removesuffix(b"\n").removesuffix(b"\r")
