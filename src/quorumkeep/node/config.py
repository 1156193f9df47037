"""``node.toml``: everything a node process needs to start, and nothing secret.

The file names where the secrets come from (an environment variable, a passphrase file),
never the secrets themselves, so it can be copied, diffed and checked in. Relative paths in
it are relative to the file's own directory, which keeps a node directory movable.

Example::

    account = "alice-node"
    data_dir = "."
    ledger_url = "http://127.0.0.1:8500"
    p2p_listen = "127.0.0.1:7001"
    web_listen = "127.0.0.1:8001"

    exit_on_decommission = false

    [storage_key]
    source = "passphrase"
    passphrase_env = "QUORUMKEEP_PASSPHRASE"
"""

from __future__ import annotations

import tomllib
from collections.abc import Mapping
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Discriminator,
    Field,
    Tag,
    ValidationError,
    field_validator,
    model_validator,
)

from quorumkeep.daemon.attestation import AttestationConfig
from quorumkeep.daemon.config import (
    ConfigFileError,
    check_passphrase_source,
    dump_toml,
    load_toml,
    validation_message,
    write_atomically,
)
from quorumkeep.ledger.failover import checked_ledger_url
from quorumkeep.net.address import parse_host_port

CONFIG_FILE_NAME = "node.toml"
_WILDCARD_HOSTS = {"0.0.0.0", "::", ""}


class ConfigError(Exception):
    """The configuration is missing, unreadable or invalid. ``code`` is stable."""

    def __init__(self, message: str, *, code: str = "invalid_config") -> None:
        super().__init__(message)
        self.code = code


class PassphraseKeyConfig(BaseModel):
    """Storage key from a passphrase (Argon2id); exactly one of env var or file names it."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    source: Literal["passphrase"] = "passphrase"
    passphrase_env: str | None = None
    passphrase_file: Path | None = None

    @model_validator(mode="after")
    def _exactly_one(self) -> PassphraseKeyConfig:
        check_passphrase_source(self.passphrase_env, self.passphrase_file)
        return self


def _wrapping_key(value: str) -> str:
    if len(value) != 64 or any(c not in "0123456789abcdef" for c in value):
        raise ValueError("a wrapping key is 64 lowercase hex digits (an X25519 public key)")
    if value == "0" * 64:
        raise ValueError("the all-zero X25519 key is not a wrapping key")
    return value


class ExportConfig(BaseModel):
    """``[export]``: whether this node exports its shares, to which wrapping keys, and the
    warm standby it feeds by itself (docs/wrapped-export.md)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    allow: bool = Field(default=False, strict=True)
    """Off by default: a node exports nothing unless its operator says so."""
    whitelist: tuple[str, ...] = ()
    """Wrapping public keys (hex) an export may be sealed to."""
    standby_web_url: str | None = None
    """The warm standby's web API (``https://HOST:PORT``) the node pushes every keyset to."""
    standby_tls_public_key: str | None = None
    """The standby's TLS key (hex): its certificate is pinned to it."""
    standby_wrapping_key: str | None = None
    """The standby's wrapping key (hex); must be in ``whitelist``."""

    @field_validator("whitelist")
    @classmethod
    def _whitelist(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        for key in value:
            _wrapping_key(key)
        if len(set(value)) != len(value):
            raise ValueError("the whitelist names a key twice")
        return value

    @field_validator("standby_wrapping_key", "standby_tls_public_key")
    @classmethod
    def _standby_key(cls, value: str | None) -> str | None:
        return None if value is None else _wrapping_key(value)

    @field_validator("standby_web_url")
    @classmethod
    def _standby_url(cls, value: str | None) -> str | None:
        if value is None:
            return None
        scheme, sep, rest = value.partition("://")
        if scheme != "https" or not sep:
            raise ValueError("standby_web_url must be an https:// URL")
        parse_host_port(rest.rstrip("/"))
        return value.rstrip("/")

    @model_validator(mode="after")
    def _standby_complete(self) -> ExportConfig:
        given = [
            self.standby_web_url is not None,
            self.standby_tls_public_key is not None,
            self.standby_wrapping_key is not None,
        ]
        if any(given) and not all(given):
            raise ValueError(
                "a warm standby needs standby_web_url, standby_tls_public_key and "
                "standby_wrapping_key together"
            )
        return self

    @property
    def pushes(self) -> bool:
        """Whether a warm standby is configured (whether exports are allowed is separate)."""
        return self.standby_web_url is not None

    def refusal(self, destination: bytes) -> tuple[str, str] | None:
        """Why this node may not seal its shares to ``destination`` (code, message), or None."""
        if not self.allow:
            return (
                "export_disabled",
                "this node does not export its shares ([export] allow = false)",
            )
        if destination.hex() not in self.whitelist:
            return (
                "not_whitelisted",
                f"wrapping key {destination.hex()[:16]}… is not in this node's [export] whitelist",
            )
        return None


class PeersKeyConfig(BaseModel):
    """Storage key held k-of-m by other operators' key providers (docs/key-provider-protocol.md).

    ``providers`` names the provider accounts (operators) at ``node init``; absent, every
    registered provider of another operator is used. The node's own operator's provider is
    never used (the contract refuses it). ``wait`` bounds how long a start keeps asking
    providers while fewer than ``threshold`` answer.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    source: Literal["peers"]
    threshold: int = Field(default=2, ge=2, le=32, strict=True)
    providers: tuple[str, ...] | None = Field(default=None, min_length=2, max_length=32)
    wait: float = Field(default=600.0, gt=0.0, le=86_400.0)

    @model_validator(mode="after")
    def _enough(self) -> PeersKeyConfig:
        if self.providers is not None:
            if len(set(self.providers)) != len(self.providers):
                raise ValueError("providers must be distinct accounts")
            if self.threshold > len(self.providers):
                raise ValueError("threshold must not exceed the number of providers")
        return self


def _key_source_tag(value: Any) -> str:
    if isinstance(value, dict):
        return str(value.get("source", "passphrase"))
    return str(getattr(value, "source", "passphrase"))


StorageKeyConfig = Annotated[
    Annotated[PassphraseKeyConfig, Tag("passphrase")] | Annotated[PeersKeyConfig, Tag("peers")],
    Discriminator(_key_source_tag),
]


class NodeConfig(BaseModel):
    """The parsed ``node.toml``. ``*_advertise`` default to the listen addresses."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    account: str = Field(min_length=1, max_length=128)
    data_dir: Path
    ledger_url: str
    p2p_listen: str
    web_listen: str
    p2p_advertise: str | None = None
    web_advertise: str | None = None
    storage_key: StorageKeyConfig
    attestation: AttestationConfig | None = None
    """How this node obtains its TEE quote (docs/attestation.md); None: it has none."""
    exit_on_decommission: bool = Field(default=False, strict=True)
    """Exit (code 0) once a migration replaced this node and it wiped itself, instead of
    standing by for a migration back to it (docs/node.md)."""
    warm_standby: bool = Field(default=False, strict=True)
    """A warm standby for ``account``: keeps the shares its primary pushes (wrapped exports)
    while it takes no part, so a fail-over migration to it concludes at once."""
    export: ExportConfig = Field(default_factory=ExportConfig)

    @field_validator("account")
    @classmethod
    def _account(cls, value: str) -> str:
        if any(c.isspace() or not c.isprintable() for c in value):
            raise ValueError("account must not contain whitespace or control characters")
        return value

    @field_validator("ledger_url")
    @classmethod
    def _ledger_url(cls, value: str) -> str:
        return checked_ledger_url(value)

    @field_validator("p2p_listen", "web_listen", "p2p_advertise", "web_advertise")
    @classmethod
    def _address(cls, value: str | None) -> str | None:
        if value is not None:
            parse_host_port(value)
        return value

    @model_validator(mode="after")
    def _advertisable(self) -> NodeConfig:
        for listen, advertise, what in (
            (self.p2p_listen, self.p2p_advertise, "p2p"),
            (self.web_listen, self.web_advertise, "web"),
        ):
            host = parse_host_port(advertise or listen)[0]
            if host in _WILDCARD_HOSTS:
                raise ValueError(f"{what}: {host!r} cannot be given to peers; set {what}_advertise")
        return self

    @property
    def p2p_listen_address(self) -> tuple[str, int]:
        return parse_host_port(self.p2p_listen)

    @property
    def web_listen_address(self) -> tuple[str, int]:
        return parse_host_port(self.web_listen)

    @property
    def p2p_url(self) -> str:
        """What peers dial: ``host:port`` (registered in the contract as the node's url)."""
        return self.p2p_advertise or self.p2p_listen

    @property
    def web_url(self) -> str:
        return "https://" + (self.web_advertise or self.web_listen)


def config_from_mapping(data: Mapping[str, Any], *, base_dir: Path) -> NodeConfig:
    """Validate a parsed TOML document; relative paths are made relative to ``base_dir``."""
    try:
        config = NodeConfig.model_validate(dict(data))
    except ValidationError as exc:
        raise ConfigError(validation_message(exc, CONFIG_FILE_NAME)) from None
    updates: dict[str, Any] = {}
    if not config.data_dir.is_absolute():
        updates["data_dir"] = (base_dir / config.data_dir).resolve()
    key = config.storage_key
    if (
        isinstance(key, PassphraseKeyConfig)
        and key.passphrase_file is not None
        and not key.passphrase_file.is_absolute()
    ):
        updates["storage_key"] = key.model_copy(
            update={"passphrase_file": (base_dir / key.passphrase_file).resolve()}
        )
    return config.model_copy(update=updates) if updates else config


def load_config(path: Path | str) -> NodeConfig:
    path = Path(path)
    try:
        data = load_toml(path)
    except ConfigFileError as exc:
        message = str(exc)
        if exc.code == "config_unreadable":  # node.toml's wording of it, kept as it was
            message = f"{path}: cannot read ({exc.reason})"
        raise ConfigError(message, code=exc.code) from None
    return config_from_mapping(data, base_dir=path.parent.resolve())


def config_document(config: NodeConfig, *, base_dir: Path | None = None) -> dict[str, object]:
    """The TOML document for ``config``; paths under ``base_dir`` are written relative to it."""

    def relative(path: Path) -> Path:
        if base_dir is not None:
            try:
                return path.resolve().relative_to(base_dir.resolve())
            except ValueError:
                return path
        return path

    data = config.model_dump(mode="python", exclude_none=True)
    data["data_dir"] = relative(config.data_dir)
    key = config.storage_key
    if isinstance(key, PassphraseKeyConfig) and key.passphrase_file is not None:
        data["storage_key"]["passphrase_file"] = relative(key.passphrase_file)
    if isinstance(key, PeersKeyConfig) and key.providers is not None:
        data["storage_key"]["providers"] = list(key.providers)
    return data


def write_config(config: NodeConfig, path: Path | str) -> None:
    """Write ``config`` to ``path`` atomically; what is written must read back the same."""
    path = Path(path)
    try:
        text = dump_toml(config_document(config, base_dir=path.parent))
    except ValueError as exc:
        raise ConfigError(str(exc), code="config_unwritable") from None
    base = path.parent.resolve()
    expected = config_from_mapping(config.model_dump(), base_dir=base)
    if config_from_mapping(tomllib.loads(text), base_dir=base) != expected:
        raise ConfigError(
            "configuration does not survive a TOML round trip", code="config_unwritable"
        )
    write_atomically(path, text)
