"""``provider.toml``: what a key-provider process needs to start, and nothing secret.

Example::

    account = "bob"
    dir = "."
    ledger_url = "http://127.0.0.1:7700"
    listen = "127.0.0.1:9501"
    url = "http://127.0.0.1:9501"      # what nodes are told (register_key_provider); default
                                       # http://<listen>
    poll_interval = 2.0                # seconds between checks of the contract (deletions)

    [passphrase]
    passphrase_env = "QUORUMKEEP_PROVIDER_PASSPHRASE"

The passphrase unlocks the provider's keys and every piece it holds (Argon2id, docs/sealing.md):
the provider's store never depends on another provider, so it survives a restart of
everything. Relative paths are relative to the file's own directory.
"""

from __future__ import annotations

import tomllib
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from quorumkeep.backup.config import PassphraseConfig
from quorumkeep.daemon.attestation import AttestationConfig
from quorumkeep.daemon.config import (
    ConfigFileError,
    PassphraseUnavailable,
    dump_toml,
    load_toml,
    passphrase_from_env,
    passphrase_from_file,
    validation_message,
    write_atomically,
)
from quorumkeep.encoding.fields import ACCOUNT_PATTERN, is_account_name
from quorumkeep.ledger.failover import checked_ledger_url, url_problem
from quorumkeep.net.address import parse_host_port
from quorumkeep.provider.errors import ProviderError

CONFIG_FILE_NAME = "provider.toml"
DEFAULT_PASSPHRASE_ENV = "QUORUMKEEP_PROVIDER_PASSPHRASE"


class ProviderConfig(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    account: str
    dir: Path
    ledger_url: str
    listen: str
    url: str | None = None
    passphrase: PassphraseConfig = Field(
        default_factory=lambda: PassphraseConfig(passphrase_env=DEFAULT_PASSPHRASE_ENV)
    )
    poll_interval: float = Field(default=2.0, ge=0.05, le=300.0)
    request_timeout: float = Field(default=10.0, gt=0.0, le=300.0)
    releases_per_minute: int = Field(default=12, ge=1, le=10_000)
    """Releases per account and minute; more are refused (``rate_limited``)."""
    require_attestation: bool = Field(default=False, strict=True)
    """Refuse a release that carries no attestation (``attestation_required``)."""
    attestation: AttestationConfig | None = None
    """How the provider obtains its own TEE quote (docs/attestation.md); None: it has none."""

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

    @field_validator("url")
    @classmethod
    def _url(cls, value: str | None) -> str | None:
        if value is None:
            return None
        problem = url_problem(value)
        if problem is not None or " " in value:
            raise ValueError(f"must be an http:// or https:// URL ({problem or 'a space'})")
        return value.rstrip("/")

    @field_validator("listen")
    @classmethod
    def _listen(cls, value: str) -> str:
        parse_host_port(value, allow_zero=True)
        return value

    @property
    def listen_address(self) -> tuple[str, int]:
        return parse_host_port(self.listen, allow_zero=True)

    @property
    def public_url(self) -> str:
        return self.url or f"http://{self.listen}"

    def read_passphrase(self) -> bytes:
        source = self.passphrase
        try:
            if source.passphrase_file is not None:
                data = passphrase_from_file(source.passphrase_file)
            else:
                assert source.passphrase_env is not None
                data = passphrase_from_env(source.passphrase_env)
        except PassphraseUnavailable as exc:
            raise ProviderError("passphrase_unavailable", str(exc)) from None
        if not data:
            raise ProviderError("passphrase_unavailable", "the passphrase is empty")
        return data


def config_from_mapping(data: Mapping[str, Any], *, base_dir: Path) -> ProviderConfig:
    try:
        config = ProviderConfig.model_validate(dict(data))
    except ValidationError as exc:
        raise ProviderError("invalid_config", validation_message(exc, CONFIG_FILE_NAME)) from None
    updates: dict[str, Any] = {}
    if not config.dir.is_absolute():
        updates["dir"] = (base_dir / config.dir).resolve()
    source = config.passphrase
    if source.passphrase_file is not None and not source.passphrase_file.is_absolute():
        updates["passphrase"] = source.model_copy(
            update={"passphrase_file": (base_dir / source.passphrase_file).resolve()}
        )
    return config.model_copy(update=updates) if updates else config


def load_config(path: Path | str) -> ProviderConfig:
    path = Path(path)
    try:
        data = load_toml(path)
    except ConfigFileError as exc:
        raise ProviderError(exc.code, str(exc)) from None
    return config_from_mapping(data, base_dir=path.parent.resolve())


def render_config(config: ProviderConfig) -> str:
    """TOML for ``config`` (paths absolute, as resolved)."""

    source = config.passphrase
    document: dict[str, object] = {
        "account": config.account,
        "dir": config.dir,
        "ledger_url": config.ledger_url,
        "listen": config.listen,
        "url": config.url,
        "poll_interval": config.poll_interval,
        "request_timeout": config.request_timeout,
        "releases_per_minute": config.releases_per_minute,
        "require_attestation": config.require_attestation,
        "passphrase": {
            "passphrase_env": source.passphrase_env,
            "passphrase_file": source.passphrase_file,
        },
    }
    if config.attestation is not None:
        document["attestation"] = config.attestation.model_dump(exclude_none=True)
    return dump_toml(document)


def write_config(config: ProviderConfig, path: Path) -> None:
    """Write ``path`` atomically (0600 not needed: nothing secret); must read back the same."""
    text = render_config(config)
    if config_from_mapping(tomllib.loads(text), base_dir=path.parent.resolve()) != config:
        raise ProviderError("invalid_config", "configuration does not survive a round trip")
    write_atomically(path, text)
