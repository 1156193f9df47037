"""Reading and writing ``node.toml``, ``backup.toml`` and ``provider.toml``, and the
passphrase source they name.

Neither file holds a secret: it names where the passphrase comes from, an environment
variable or a file. Errors here are plain exceptions with the stable codes both processes
report (``config_not_found``, ``config_unreadable``, ``config_syntax``); each process turns
them into its own error type.
"""

from __future__ import annotations

import math
import os
import tomllib
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from pydantic import ValidationError


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


def validation_message(exc: ValidationError, file_name: str) -> str:
    """One line for a configuration that does not validate: where, what, how many more."""
    error = exc.errors()[0]
    where = ".".join(str(part) for part in error["loc"]) or file_name
    message = str(error["msg"]).removeprefix("Value error, ")
    more = len(exc.errors()) - 1
    return f"{where}: {message}" + (f" (and {more} more)" if more else "")


_ESCAPES = {
    '"': '\\"',
    "\\": "\\\\",
    "\b": "\\b",
    "\t": "\\t",
    "\n": "\\n",
    "\f": "\\f",
    "\r": "\\r",
}


def _toml_string(value: str) -> str:
    out = []
    for char in value:
        if char in _ESCAPES:
            out.append(_ESCAPES[char])
        elif ord(char) < 0x20 or ord(char) == 0x7F:
            out.append(f"\\u{ord(char):04X}")
        else:
            out.append(char)
    return '"' + "".join(out) + '"'


def _toml_key(key: str) -> str:
    if key and all(c.isascii() and (c.isalnum() or c in "-_") for c in key):
        return key
    return _toml_string(key)


def _toml_value(value: object) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        if not math.isfinite(value):
            raise ValueError("cannot write a non-finite float")
        return repr(value)
    if isinstance(value, str):
        return _toml_string(value)
    if isinstance(value, Path):
        return _toml_string(str(value))
    if isinstance(value, list | tuple):
        return "[" + ", ".join(_toml_value(item) for item in value) + "]"
    raise ValueError(f"cannot write a {type(value).__name__} to TOML")


def dump_toml(document: Mapping[str, object]) -> str:
    """TOML for a mapping of scalars, lists of scalars and one level of tables; None is
    omitted (ValueError for anything else)."""
    lines: list[str] = []
    tables: list[tuple[str, Mapping[str, object]]] = []
    for key, value in document.items():
        if value is None:
            continue
        if isinstance(value, Mapping):
            tables.append((key, value))
        else:
            lines.append(f"{_toml_key(key)} = {_toml_value(value)}")
    for name, table in tables:
        lines.append("")
        lines.append(f"[{_toml_key(name)}]")
        for key, value in table.items():
            if value is None:
                continue
            if isinstance(value, Mapping):
                raise ValueError("nested tables deeper than one level")
            lines.append(f"{_toml_key(key)} = {_toml_value(value)}")
    return "\n".join(lines) + "\n"


def write_atomically(path: Path, data: bytes | str) -> None:
    """Write ``path`` atomically and owner-only (0600): a temporary file, fsync, rename, fsync
    of the directory. A crash leaves the old file or the new one, never a torn one. ``str``
    is written as UTF-8."""
    raw = data.encode("utf-8") if isinstance(data, str) else data
    tmp = path.with_name(path.name + ".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    os.fchmod(fd, 0o600)  # a temporary left by a crash keeps its mode through O_CREAT
    with os.fdopen(fd, "wb") as handle:
        handle.write(raw)
        handle.flush()
        os.fsync(handle.fileno())
    os.replace(tmp, path)
    directory = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(directory)
    finally:
        os.close(directory)
