"""The ``peers`` source's two files in the node directory (docs/key-provider-protocol.md §8, §9).

- ``storage-key.json`` with ``source = "peers"`` (public): the check value, the release
  key's public key and the deal ``node init`` dealt — what the operator records.
- ``release-key.json``: the release key's seed, the one secret of the node directory kept
  unsealed (§8).

:func:`write_peers_files` writes both at ``node init``; :func:`read_peers_files` reads them
at every start and checks that they agree on the release key.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from quorumkeep.daemon.config import write_atomically
from quorumkeep.node.keystore_errors import StorageKeyUnavailable
from quorumkeep.node.storage_key import STORAGE_KEY_FILE_FORMAT
from quorumkeep.wire.backup.statements import Ed25519Signer

RELEASE_KEY_FILE_NAME = "release-key.json"
RELEASE_KEY_FORMAT = "quorumkeep release key v1"


def _write_json(path: Path, document: Mapping[str, Any]) -> None:
    write_atomically(path, json.dumps(document, indent=2) + "\n")


def _read_json(path: Path) -> dict[str, Any]:
    try:
        document = json.loads(path.read_bytes())
    except FileNotFoundError:
        raise StorageKeyUnavailable(f"{path} is missing: run `quorumkeep node init`") from None
    except (OSError, ValueError):
        raise StorageKeyUnavailable(f"{path} is unreadable or not JSON") from None
    if not isinstance(document, dict):
        raise StorageKeyUnavailable(f"{path} is not a JSON object")
    return document


def write_peers_files(
    path: Path,
    release_path: Path,
    *,
    source: str,
    account: str,
    release_seed: bytes,
    release_public_key: bytes,
    check: bytes,
    deal: Mapping[str, Any],
) -> None:
    """``release-key.json`` first, then ``storage-key.json`` (``deal``: the deal document)."""
    _write_json(
        release_path,
        {
            "format": RELEASE_KEY_FORMAT,
            "account": account,
            "release_public_key": release_public_key.hex(),
            "release_seed": release_seed.hex(),
        },
    )
    _write_json(
        path,
        {
            "format": STORAGE_KEY_FILE_FORMAT,
            "source": source,
            "check": check.hex(),
            "release_public_key": release_public_key.hex(),
            "deal": deal,
        },
    )


def read_peers_files(path: Path, release_path: Path) -> tuple[dict[str, Any], Ed25519Signer]:
    """The storage-key document and the release key, once both files agree on it."""
    document = _read_json(path)
    if document.get("format") != STORAGE_KEY_FILE_FORMAT or document.get("source") != "peers":
        raise StorageKeyUnavailable(f"{path} is not a peers storage-key file")
    release_doc = _read_json(release_path)
    try:
        if release_doc["format"] != RELEASE_KEY_FORMAT:
            raise ValueError("format")
        signer = Ed25519Signer(bytes.fromhex(release_doc["release_seed"]))
        if signer.public_key.hex() != document["release_public_key"]:
            raise ValueError("release key")
        bytes.fromhex(document["check"])
    except (KeyError, TypeError, ValueError):
        raise StorageKeyUnavailable(
            f"{release_path} does not hold the release key {path} names"
        ) from None
    return document, signer
