"""Wrapped export and import from a node directory: what ``quorumkeep node wrapping-key``,
``export``, ``import`` and ``export-config`` do (docs/wrapped-export.md, docs/node.md).

- The wrapping key is derived from the node's storage key (the passphrase opens it), so
  printing it needs the node's directory and passphrase, not the running node.
- An export reads the contract (the node's participant id and the keyset in force), the
  node's TLS key (it signs) and its keystore (SQLite allows a reader beside the running
  node), and seals the shares only to a wrapping key ``[export]`` allows.
- An import hands the file to the running node's web API (its own certificate, from the
  directory, is the only one trusted): the node checks it against the contract and stores
  it under its own locks, exactly like a push from a primary.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import httpx

from quorumkeep.contract.state import ContractState, Running
from quorumkeep.crypto.group import RandomBytes
from quorumkeep.crypto.seal import KxKeyPair
from quorumkeep.ledger.client import LedgerClient
from quorumkeep.ledger.errors import LedgerError
from quorumkeep.node.backup_keys import tls_signer
from quorumkeep.node.config import (
    CONFIG_FILE_NAME,
    ExportConfig,
    NodeConfig,
    load_config,
    write_config,
)
from quorumkeep.node.held_keys import HeldKeys
from quorumkeep.node.identity import (
    IDENTITY_FILE_NAME,
    TLS_CERT_FILE_NAME,
    NodeIdentity,
    wrapping_key_pair,
)
from quorumkeep.node.key_sources import key_source_from_config
from quorumkeep.node.keystore import Keystore
from quorumkeep.node.keystore_errors import KeystoreError, RecordNotFound
from quorumkeep.node.shares import ShareFormatError
from quorumkeep.wire.backup import KeyShare
from quorumkeep.wire.tls import TLSError, client_context
from quorumkeep.wire.wrapped import (
    PATH_WRAPPED_EXPORT,
    WRAPPED_ERROR_STATUS,
    WrappedExport,
    WrappedExportError,
    seal_export,
)

IMPORT_TIMEOUT = 30.0


def held_shares(held: HeldKeys, running: Running, participant_id: int) -> list[KeyShare]:
    """Our shares of the keyset in force, as an export takes them (LookupError if one is
    missing or not ours for the contract's key)."""
    shares = []
    for domain in running.keyset.domains:
        try:
            key, public = held.load(domain.domain_id, running.epoch)
        except (RecordNotFound, ShareFormatError, KeystoreError):
            raise LookupError(f"no usable share of domain {domain.domain_id}") from None
        if public.group_public_key != domain.public_key or key.identifier != participant_id:
            raise LookupError(f"the share of domain {domain.domain_id} is not ours")
        shares.append(KeyShare(domain.domain_id, running.epoch, participant_id, key.signing_share))
    return shares


def load_wrapping_key(config: NodeConfig) -> KxKeyPair:
    """The node's wrapping key pair (derives the storage key: passphrase and Argon2id)."""
    return wrapping_key_pair(key_source_from_config(config).load())


def public_tls_key(config: NodeConfig) -> bytes:
    """The TLS key ``identity.json`` records (public; no passphrase needed)."""
    try:
        document = json.loads((config.data_dir / IDENTITY_FILE_NAME).read_bytes())
        return bytes.fromhex(document["tls_public_key"])
    except (OSError, ValueError, KeyError, TypeError):
        raise WrappedExportError(
            "malformed_export", f"{config.data_dir} holds no readable {IDENTITY_FILE_NAME}"
        ) from None


def standby_info(config: NodeConfig, wrapping: KxKeyPair) -> dict[str, str]:
    """What a primary's ``[export]`` needs to push to this node (``node wrapping-key --json``)."""
    return {
        "account": config.account,
        "web_url": config.web_url,
        "tls_public_key": public_tls_key(config).hex(),
        "wrapping_public_key": wrapping.public_key.hex(),
    }


def export_shares(
    config: NodeConfig,
    destination: bytes,
    *,
    clock: Any = time.time,
    random_bytes: RandomBytes = os.urandom,
) -> WrappedExport:
    """Seal this node's shares of the keyset in force to ``destination`` (a whitelisted
    wrapping key; refused with ``export_disabled`` / ``not_whitelisted`` otherwise)."""
    refusal = config.export.refusal(destination)
    if refusal is not None:
        raise WrappedExportError(*refusal)
    try:
        with LedgerClient(config.ledger_url) as client:
            state = ContractState.from_json(client.view("state"))
    except LedgerError as exc:
        raise WrappedExportError(
            "contract_unavailable", f"cannot read the contract ({exc.code}: {exc.message})"
        ) from None
    running = state.protocol
    if not isinstance(running, Running):
        raise WrappedExportError("no_shares", f"the contract is {running.name}, not Running")
    storage_key = key_source_from_config(config).load()
    identity = NodeIdentity.load(config.data_dir, config.account, storage_key)
    info = running.parameters.get(config.account)
    if info is None or info.tls_public_key != identity.tls_public_key:
        raise WrappedExportError(
            "not_participant",
            f"the contract does not list this node's TLS key for {config.account}",
        )
    keystore = Keystore.open(config.data_dir, storage_key, identity.owner)
    try:
        shares = held_shares(HeldKeys(keystore), running, info.participant_id)
    except LookupError as exc:
        raise WrappedExportError("no_shares", str(exc)) from None
    finally:
        keystore.close()
    assert identity.wrapping_key is not None
    return seal_export(
        account=config.account,
        participant_id=info.participant_id,
        keyset=running.keyset,
        shares=shares,
        source=tls_signer(identity.tls),
        source_wrapping=identity.wrapping_key,
        destination_wrapping_public_key=destination,
        now_ms=int(clock() * 1000),
        random_bytes=random_bytes,
    )


def import_file(config: NodeConfig, data: bytes, timeout: float = IMPORT_TIMEOUT) -> Any:
    """Hand a wrapped export to the running node of ``config``; its JSON answer, or
    ``WrappedExportError`` (the node's refusal, or ``node_unreachable``-like failures as
    ``import_failed``)."""
    WrappedExport.from_bytes(data)  # refuse a damaged file here, before any network
    try:
        certificate = (config.data_dir / TLS_CERT_FILE_NAME).read_bytes()
        context = client_context(None, None, None, [certificate])
    except (OSError, TLSError):
        raise WrappedExportError(
            "import_failed", f"{config.data_dir} has no usable {TLS_CERT_FILE_NAME}"
        ) from None
    url = config.web_url
    try:
        with httpx.Client(base_url=url, verify=context, timeout=timeout) as http:
            response = http.put(
                PATH_WRAPPED_EXPORT, content=data, headers={"content-type": "application/json"}
            )
    except httpx.HTTPError as exc:
        raise WrappedExportError(
            "import_failed",
            f"the node at {url} cannot be reached ({type(exc).__name__}): it must be running",
        ) from None
    try:
        body = response.json()
    except ValueError:
        body = None
    if response.status_code != 200:
        error = body.get("error") if isinstance(body, dict) else None
        if isinstance(error, dict) and error.get("code") in WRAPPED_ERROR_STATUS:
            raise WrappedExportError(str(error["code"]), str(error.get("message")))
        raise WrappedExportError("import_failed", f"the node answered HTTP {response.status_code}")
    return body


def update_export_config(
    directory: Path,
    *,
    allow: bool | None = None,
    whitelist: Sequence[str] = (),
    standby: dict[str, Any] | None = None,
) -> NodeConfig:
    """Change ``[export]`` in ``DIR/node.toml`` (written atomically): ``allow``, keys added
    to the whitelist, and a warm standby (its wrapping key is whitelisted with it)."""
    path = directory / CONFIG_FILE_NAME
    config = load_config(path)
    current = config.export.model_dump()
    keys = list(current["whitelist"])
    added = list(whitelist)
    if standby is not None:
        for name in ("web_url", "tls_public_key", "wrapping_public_key"):
            if not isinstance(standby.get(name), str):
                raise ValueError(f"the standby info has no {name}")
        if standby.get("account") not in (None, config.account):
            raise ValueError(
                f"the standby is for account {standby.get('account')!r}, not {config.account!r}"
            )
        current["standby_web_url"] = standby["web_url"]
        current["standby_tls_public_key"] = standby["tls_public_key"]
        current["standby_wrapping_key"] = standby["wrapping_public_key"]
        added.append(standby["wrapping_public_key"])
    for key in added:
        if key not in keys:
            keys.append(key)
    current["whitelist"] = keys
    if allow is not None:
        current["allow"] = allow
    updated = config.model_copy(update={"export": ExportConfig.model_validate(current)})
    write_config(updated, path)
    return updated
