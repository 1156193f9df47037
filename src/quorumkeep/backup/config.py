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
    dump_toml,
    load_toml,
    passphrase_from_env,
    passphrase_from_file,
    validation_message,
    write_atomically,
)
from quorumkeep.encoding.fields import ACCOUNT_PATTERN, is_account_name
from quorumkeep.ledger.failover import checked_ledger_url
from quorumkeep.net.address import parse_host_port

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
        return checked_ledger_url(value)

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


def config_from_mapping(data: Mapping[str, Any], *, base_dir: Path) -> BackupConfig:
    try:
        config = BackupConfig.model_validate(dict(data))
    except ValidationError as exc:
        raise BackupServiceError(
            "invalid_config", validation_message(exc, CONFIG_FILE_NAME)
        ) from None
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


def render_config(config: BackupConfig, *, base_dir: Path) -> str:
    """TOML for ``config``; paths under ``base_dir`` are written relative to it."""

    def relative(path: Path) -> str:
        try:
            return str(path.resolve().relative_to(base_dir.resolve())) or "."
        except ValueError:
            return str(path)

    source = config.passphrase
    document: dict[str, object] = {
        "account": config.account,
        "dir": relative(config.dir),
        "ledger_url": config.ledger_url,
        "listen": config.listen,
        "key_provider": None if config.key_provider is None else relative(config.key_provider),
        "max_backoff": config.max_backoff,
        "request_timeout": config.request_timeout,
        "passphrase": {
            "passphrase_env": source.passphrase_env,
            "passphrase_file": None
            if source.passphrase_file is None
            else relative(source.passphrase_file),
        },
    }
    if config.attestation is not None:
        document["attestation"] = config.attestation.model_dump(exclude_none=True)
    return dump_toml(document)


def write_config(config: BackupConfig, path: Path) -> None:
    """Write ``path`` atomically; what is written must read back as the same config."""
    text = render_config(config, base_dir=path.parent)
    if config_from_mapping(tomllib.loads(text), base_dir=path.parent.resolve()) != (
        config_from_mapping(config.model_dump(), base_dir=path.parent.resolve())
    ):
        raise BackupServiceError("invalid_config", "configuration does not survive a round trip")
    write_atomically(path, text)
