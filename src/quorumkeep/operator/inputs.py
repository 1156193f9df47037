"""What an operator hands the commands: a node's participant info and a backup service's
registration, each as the directory that holds it, a JSON file, or the JSON itself.

Both are public (keys and addresses): reading them needs no passphrase. A node directory
gives its info from ``node.toml`` (addresses) and ``identity.json`` (keys), cross-checked
with the certificate; a backup directory gives its keys from ``identity.json``. Everything
is validated with the contract's own argument rules, so what passes here is what the
contract accepts.
"""

from __future__ import annotations

import asyncio
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from quorumkeep.backup.attestation import backup_evidence
from quorumkeep.backup.config import CONFIG_FILE_NAME as BACKUP_CONFIG_FILE
from quorumkeep.backup.config import load_config as load_backup_config
from quorumkeep.backup.errors import BackupServiceError
from quorumkeep.backup.identity import read_public_identity
from quorumkeep.contract import ContractError
from quorumkeep.contract.state import BackupServiceInfo, ParticipantInfo
from quorumkeep.daemon.attestation import AttestationUnavailable
from quorumkeep.node.config import CONFIG_FILE_NAME as NODE_CONFIG_FILE
from quorumkeep.node.config import ConfigError
from quorumkeep.node.config import load_config as load_node_config
from quorumkeep.node.identity import IDENTITY_FILE_NAME, TLS_CERT_FILE_NAME
from quorumkeep.operator.errors import OperatorError
from quorumkeep.wire.tls import TLSError, certificate_public_key

INFO_FIELDS = ("account", "url", "web_url", "tls_public_key", "signer_public_key")


@dataclass(frozen=True)
class NodeInfo:
    """A node's participant info (no participant id: the contract keeps the account's)."""

    account: str
    url: str
    web_url: str
    tls_public_key: bytes
    signer_public_key: bytes

    def to_json(self) -> dict[str, str]:
        return {
            "account": self.account,
            "url": self.url,
            "web_url": self.web_url,
            "tls_public_key": self.tls_public_key.hex(),
            "signer_public_key": self.signer_public_key.hex(),
        }

    def destination(self) -> dict[str, str]:
        """The ``destination`` argument of ``start_node_migration``."""
        return {
            "url": self.url,
            "web_url": self.web_url,
            "tls_public_key": self.tls_public_key.hex(),
        }


@dataclass(frozen=True)
class BackupRegistration:
    """The arguments of ``register_backup_service``, and the account if the source named it."""

    identity_public_key: bytes
    encryption_public_key: bytes
    account: str | None = None
    attestation: dict[str, Any] | None = None
    """The service's evidence (its quote binding both keys), when it has one."""

    def to_json(self) -> dict[str, Any]:
        data: dict[str, Any] = {
            "identity_public_key": self.identity_public_key.hex(),
            "encryption_public_key": self.encryption_public_key.hex(),
        }
        if self.attestation is not None:
            data["attestation"] = self.attestation
        return data


def _inline(value: str) -> bool:
    return value.lstrip().startswith(("{", "["))


def _json_document(value: str, option: str) -> Any:
    """``value`` is inline JSON (starts with ``{`` or ``[``) or the path of a JSON file."""
    text = value
    if not _inline(value):
        try:
            text = Path(value).read_text("utf-8")
        except FileNotFoundError:
            raise OperatorError(
                "input_not_found", f"{option}: {value} is neither a directory, a file nor JSON"
            ) from None
        except OSError as exc:
            raise OperatorError(
                "input_unreadable", f"{option}: cannot read {value}: {exc.strerror}"
            ) from None
        except UnicodeDecodeError:
            raise OperatorError(
                "input_invalid", f"{option}: {value} is not a UTF-8 text file"
            ) from None
    try:
        return json.loads(text)
    except ValueError:
        raise OperatorError("input_invalid", f"{option}: {value} does not hold JSON") from None


def _node_info_from_json(document: Any, option: str) -> NodeInfo:
    if isinstance(document, dict) and isinstance(document.get("participant_info"), dict):
        document = document["participant_info"]
    if isinstance(document, dict):
        document = {k: v for k, v in document.items() if k != "participant_id"}
    try:
        info = ParticipantInfo.from_json(document, "node info", id_required=False)
    except ContractError as exc:
        raise OperatorError("input_invalid", f"{option}: {exc.message}") from None
    return NodeInfo(
        info.account, info.url, info.web_url, info.tls_public_key, info.signer_public_key
    )


def _node_info_from_dir(directory: Path, option: str) -> NodeInfo:
    try:
        config = load_node_config(directory / NODE_CONFIG_FILE)
    except ConfigError as exc:
        raise OperatorError("input_invalid", f"{option}: {exc}") from None
    identity_path = config.data_dir / IDENTITY_FILE_NAME
    try:
        identity = json.loads(identity_path.read_bytes())
        tls_public_key = bytes.fromhex(identity["tls_public_key"])
        signer_public_key = bytes.fromhex(identity["signer_public_key"])
        account = str(identity["account"])
    except FileNotFoundError:
        raise OperatorError(
            "input_invalid", f"{option}: {identity_path} is missing (run `quorumkeep node init`)"
        ) from None
    except (OSError, ValueError, KeyError, TypeError):
        raise OperatorError("input_invalid", f"{option}: {identity_path} is not readable") from None
    if account != config.account:
        raise OperatorError(
            "input_invalid",
            f"{option}: {identity_path} is for {account!r} but node.toml for {config.account!r}",
        )
    try:
        certificate = (config.data_dir / TLS_CERT_FILE_NAME).read_bytes()
        if certificate_public_key(certificate) != tls_public_key:
            raise OperatorError(
                "input_invalid",
                f"{option}: the node's certificate does not carry the TLS key in {identity_path}",
            )
    except OSError as exc:
        raise OperatorError(
            "input_invalid", f"{option}: cannot read the node's certificate ({exc.strerror})"
        ) from None
    except TLSError as exc:
        raise OperatorError("input_invalid", f"{option}: node certificate: {exc}") from None
    document = {
        "account": account,
        "url": config.p2p_url,
        "web_url": config.web_url,
        "tls_public_key": tls_public_key.hex(),
        "signer_public_key": signer_public_key.hex(),
    }
    return _node_info_from_json(document, option)


def read_node_info(value: str, option: str = "--new-node") -> NodeInfo:
    """A node's participant info from its node directory, a JSON file, or inline JSON
    (what `quorumkeep node init` printed)."""
    path = Path(value)
    if not _inline(value) and path.is_dir():
        return _node_info_from_dir(path, option)
    return _node_info_from_json(_json_document(value, option), option)


def read_backup_registration(value: str, option: str = "--backup-dir") -> BackupRegistration:
    """A backup service's public keys from its directory (or its ``backup.toml``), a JSON
    file, or inline JSON (what `quorumkeep backup init` printed)."""
    path = Path(value)
    if not _inline(value) and (path.is_dir() or path.name == BACKUP_CONFIG_FILE):
        try:
            config_path = path / BACKUP_CONFIG_FILE if path.is_dir() else path
            config = load_backup_config(config_path) if config_path.exists() else None
            directory = path if path.is_dir() else load_backup_config(path).dir
            public = read_public_identity(directory)
            evidence = asyncio.run(
                backup_evidence(None if config is None else config.attestation, public)
            )
        except BackupServiceError as exc:
            raise OperatorError("input_invalid", f"{option}: {exc.message}") from None
        except AttestationUnavailable as exc:
            raise OperatorError("input_invalid", f"{option}: attestation: {exc}") from None
        return BackupRegistration(
            public.identity_public_key, public.encryption_public_key, public.account, evidence
        )
    document = _json_document(value, option)
    if not isinstance(document, dict):
        raise OperatorError("input_invalid", f"{option}: expected a JSON object")
    account = document.get("account")
    evidence = document.get("attestation")
    keys = {
        k: document[k] for k in ("identity_public_key", "encryption_public_key") if k in document
    }
    try:
        info = BackupServiceInfo.from_json(keys, "backup service")
    except ContractError as exc:
        raise OperatorError("input_invalid", f"{option}: {exc.message}") from None
    return BackupRegistration(
        info.identity_public_key,
        info.encryption_public_key,
        account if isinstance(account, str) else None,
        evidence if isinstance(evidence, dict) else None,
    )
