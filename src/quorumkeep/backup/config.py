"""``backup.toml``: what a backup service process needs to start, and nothing secret.

The passphrase that unlocks the service's keys and backups is named by its source (an
environment variable or a file), never written here. Relative paths are relative to the
file's own directory, so a backup directory can be moved as a whole.

Example::

    account = "alice"
    dir = "."
    ledger_url = "http://127.0.0.1:7700"
    listen = "127.0.0.1:9401"        # optional: /health, /status, /metrics over plain HTTP
    key_provider = "provider/provider.toml"   # optional: run this key provider inside too

    [passphrase]
    passphrase_env = "QUORUMKEEP_BACKUP_PASSPHRASE"
"""

from __future__ import annotations

import json
import os
import tomllib
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from quorumkeep.backup.errors import BackupServiceError
from quorumkeep.daemon.attestation import AttestationConfig
from quorumkeep.daemon.config import (
    ConfigFileError,
    PassphraseUnavailable,
    check_passphrase_source,
    load_toml,
    passphrase_from_env,
    passphrase_from_file,
)
from quorumkeep.encoding.fields import ACCOUNT_PATTERN, is_account_name
from quorumkeep.net.server import parse_host_port

CONFIG_FILE_NAME = "backup.toml"
DEFAULT_PASSPHRASE_ENV = "QUORUMKEEP_BACKUP_PASSPHRASE"


class PassphraseConfig(BaseModel):
    """Where the passphrase comes from: exactly one of an environment variable or a file."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    passphrase_env: str | None = None
    passphrase_file: Path | None = None

    @model_validator(mode="after")
    def _exactly_one(self) -> PassphraseConfig:
        check_passphrase_source(self.passphrase_env, self.passphrase_file)
        return self


class BackupConfig(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    account: str
    dir: Path
    ledger_url: str
    listen: str | None = None
    passphrase: PassphraseConfig = Field(
        default_factory=lambda: PassphraseConfig(passphrase_env=DEFAULT_PASSPHRASE_ENV)
    )
    max_backoff: float = Field(default=5.0, ge=0.05, le=300.0)
    """Longest wait between two attempts at fetching a backup or pushing a recovery."""
    request_timeout: float = Field(default=10.0, gt=0.0, le=300.0)
    attestation: AttestationConfig | None = None
    """How the service obtains its TEE quote (docs/attestation.md); None: it has none."""
    key_provider: Path | None = None
    """A key provider's ``provider.toml`` (``quorumkeep provider init``): the backup service
    also runs that key provider in its process (docs/key-provider-protocol.md). None: not."""

    @field_validator("account")
    @classmethod
    def _account(cls, value: str) -> str:
        if not is_account_name(value):
            raise ValueError(f"account must match {ACCOUNT_PATTERN.pattern}")
        return value

    @field_validator("ledger_url")
    @classmethod
    def _ledger_url(cls, value: str) -> str:
        scheme, sep, rest = value.partition("://")
        if not sep or scheme not in ("http", "https") or not rest:
            raise ValueError("ledger_url must be an http:// or https:// URL")
        return value.rstrip("/")

    @field_validator("listen")
    @classmethod
    def _listen(cls, value: str | None) -> str | None:
        if value is not None:
            parse_host_port(value, allow_zero=True)
        return value

    @property
    def listen_address(self) -> tuple[str, int] | None:
        return None if self.listen is None else parse_host_port(self.listen, allow_zero=True)

    def read_passphrase(self) -> bytes:
        """The passphrase from its source; BackupServiceError if absent or empty."""
        source = self.passphrase
        try:
            if source.passphrase_file is not None:
                data = passphrase_from_file(source.passphrase_file)
            else:
                assert source.passphrase_env is not None
                data = passphrase_from_env(source.passphrase_env)
        except PassphraseUnavailable as exc:
            raise BackupServiceError("passphrase_unavailable", str(exc)) from None
        if not data:
            raise BackupServiceError("passphrase_unavailable", "the passphrase is empty")
        return data


def _first_error(exc: ValidationError) -> str:
    error = exc.errors()[0]
    where = ".".join(str(part) for part in error["loc"]) or CONFIG_FILE_NAME
    return f"{where}: {str(error['msg']).removeprefix('Value error, ')}"


def config_from_mapping(data: Mapping[str, Any], *, base_dir: Path) -> BackupConfig:
    try:
        config = BackupConfig.model_validate(dict(data))
    except ValidationError as exc:
        raise BackupServiceError("invalid_config", _first_error(exc)) from None
    updates: dict[str, Any] = {}
    if not config.dir.is_absolute():
        updates["dir"] = (base_dir / config.dir).resolve()
    if config.key_provider is not None and not config.key_provider.is_absolute():
        updates["key_provider"] = (base_dir / config.key_provider).resolve()
    source = config.passphrase
    if source.passphrase_file is not None and not source.passphrase_file.is_absolute():
        updates["passphrase"] = source.model_copy(
            update={"passphrase_file": (base_dir / source.passphrase_file).resolve()}
        )
    return config.model_copy(update=updates) if updates else config


def load_config(path: Path | str) -> BackupConfig:
    path = Path(path)
    try:
        data = load_toml(path)
    except ConfigFileError as exc:
        raise BackupServiceError(exc.code, str(exc)) from None
    return config_from_mapping(data, base_dir=path.parent.resolve())


def _toml_value(value: object) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return repr(value)
    # A JSON string with ASCII escapes is a valid TOML basic string.
    return json.dumps(str(value), ensure_ascii=True)


def render_config(config: BackupConfig, *, base_dir: Path) -> str:
    """TOML for ``config``; paths under ``base_dir`` are written relative to it."""

    def relative(path: Path) -> str:
        try:
            return str(path.resolve().relative_to(base_dir.resolve())) or "."
        except ValueError:
            return str(path)

    lines = [
        f"account = {_toml_value(config.account)}",
        f"dir = {_toml_value(relative(config.dir))}",
        f"ledger_url = {_toml_value(config.ledger_url)}",
    ]
    if config.listen is not None:
        lines.append(f"listen = {_toml_value(config.listen)}")
    if config.key_provider is not None:
        lines.append(f"key_provider = {_toml_value(relative(config.key_provider))}")
    lines.append(f"max_backoff = {_toml_value(config.max_backoff)}")
    lines.append(f"request_timeout = {_toml_value(config.request_timeout)}")
    lines.append("")
    lines.append("[passphrase]")
    source = config.passphrase
    if source.passphrase_env is not None:
        lines.append(f"passphrase_env = {_toml_value(source.passphrase_env)}")
    else:
        assert source.passphrase_file is not None
        lines.append(f"passphrase_file = {_toml_value(relative(source.passphrase_file))}")
    if config.attestation is not None:
        lines.append("")
        lines.append("[attestation]")
        for key, value in config.attestation.model_dump(exclude_none=True).items():
            lines.append(f"{key} = {_toml_value(value)}")
    return "\n".join(lines) + "\n"


def write_config(config: BackupConfig, path: Path) -> None:
    """Write ``path`` atomically; what is written must read back as the same config."""
    text = render_config(config, base_dir=path.parent)
    if config_from_mapping(tomllib.loads(text), base_dir=path.parent.resolve()) != (
        config_from_mapping(config.model_dump(), base_dir=path.parent.resolve())
    ):
        raise BackupServiceError("invalid_config", "configuration does not survive a round trip")
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "w", encoding="utf-8") as handle:
        handle.write(text)
        handle.flush()
        os.fsync(handle.fileno())
    os.replace(tmp, path)
