"""The node snapshot's archive format (docs/storage.md, *Snapshots*): the manifest and its
strict JSON codec, the tar archive's members in their order and size bounds, and the base
of snapshot errors with those of a bad archive or node directory (``code`` is stable).

The archive is written by node/snapshot.py and read, checked and restored (with the
contract's refusals) by node/snapshot_restore.py; the keystore copy inside it is read by
node/snapshot_keystore.py.
"""

from __future__ import annotations

import io
import json
import re
import tarfile
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from quorumkeep.node.config import CONFIG_FILE_NAME
from quorumkeep.node.identity import (
    IDENTITY_FILE_NAME,
    SIGNER_KEY_FILE_NAME,
    TLS_CERT_FILE_NAME,
    TLS_KEY_FILE_NAME,
)
from quorumkeep.node.keystore import KEYSTORE_FILE_NAME
from quorumkeep.node.storage_key import STORAGE_KEY_FILE_NAME

SNAPSHOT_FORMAT = "quorumkeep node snapshot v1"
MANIFEST_NAME = "manifest.json"
NODE_FILES = (
    CONFIG_FILE_NAME,
    STORAGE_KEY_FILE_NAME,
    IDENTITY_FILE_NAME,
    TLS_CERT_FILE_NAME,
    TLS_KEY_FILE_NAME,
    SIGNER_KEY_FILE_NAME,
    KEYSTORE_FILE_NAME,
)
"""Every file of a snapshot besides the manifest, in archive order."""
MAX_MANIFEST_SIZE = 64 * 1024
MAX_FILE_SIZE = 1024 * 1024 * 1024
"""Bound on one member (the keystore of a busy node is a few MiB)."""
_HEX64 = re.compile(r"[0-9a-f]{64}")


class SnapshotError(Exception):
    """Base of snapshot errors. ``code`` is stable; messages never hold a secret."""

    code = "snapshot_error"


class SnapshotInvalid(SnapshotError):
    """Not a snapshot of this format, or a member missing, unknown, repeated or too large."""

    code = "snapshot_invalid"


class ChecksumMismatch(SnapshotError):
    code = "checksum_mismatch"


class NotANodeDirectory(SnapshotError):
    code = "not_a_node_directory"


# --- the manifest --------------------------------------------------------------------------


@dataclass(frozen=True)
class SnapshotFile:
    name: str
    size: int
    sha256: str

    def to_json(self) -> dict[str, Any]:
        return {"name": self.name, "size": self.size, "sha256": self.sha256}


@dataclass(frozen=True)
class Manifest:
    """What a snapshot holds (all public: names, counts, hashes)."""

    account: str
    tls_public_key: bytes
    signer_public_key: bytes
    epoch: int | None
    """The newest epoch the keystore holds shares of (None: no share)."""
    domains: tuple[int, ...]
    keyset_hash: bytes | None
    """``Keyset.hash`` of ``epoch``'s shares (docs/backup-protocol.md §2)."""
    presignatures: int
    created_at_ms: int
    files: tuple[SnapshotFile, ...]

    def to_json(self) -> dict[str, Any]:
        created = datetime.fromtimestamp(self.created_at_ms / 1000, UTC)
        return {
            "format": SNAPSHOT_FORMAT,
            "account": self.account,
            "tls_public_key": self.tls_public_key.hex(),
            "signer_public_key": self.signer_public_key.hex(),
            "epoch": self.epoch,
            "domains": list(self.domains),
            "keyset_hash": None if self.keyset_hash is None else self.keyset_hash.hex(),
            "presignatures": self.presignatures,
            "created_at_ms": self.created_at_ms,
            "created_at": created.isoformat(timespec="milliseconds").replace("+00:00", "Z"),
            "files": [f.to_json() for f in self.files],
        }

    @classmethod
    def from_json(cls, value: Any) -> Manifest:
        """Strict: exactly the fields of :meth:`to_json`, each of its type."""

        def bad(what: str) -> SnapshotInvalid:
            return SnapshotInvalid(f"manifest: {what}")

        fields = {
            "format",
            "account",
            "tls_public_key",
            "signer_public_key",
            "epoch",
            "domains",
            "keyset_hash",
            "presignatures",
            "created_at_ms",
            "created_at",
            "files",
        }
        if not isinstance(value, dict) or set(value) != fields:
            raise bad(f"expected exactly the fields {', '.join(sorted(fields))}")
        if value["format"] != SNAPSHOT_FORMAT:
            raise bad(f"format is not {SNAPSHOT_FORMAT!r}")

        def key(name: str) -> bytes:
            text = value[name]
            if not isinstance(text, str) or not _HEX64.fullmatch(text):
                raise bad(f"{name} must be 32 bytes of lowercase hex")
            return bytes.fromhex(text)

        def integer(item: Any, name: str) -> int:
            if isinstance(item, bool) or not isinstance(item, int) or not 0 <= item < 2**63:
                raise bad(f"{name} must be an integer in [0, 2^63)")
            return item

        account = value["account"]
        if not isinstance(account, str) or not 1 <= len(account) <= 128:
            raise bad("account must be a string of 1..128 characters")
        epoch = None if value["epoch"] is None else integer(value["epoch"], "epoch")
        domains = value["domains"]
        if not isinstance(domains, list):
            raise bad("domains must be a list")
        keyset_hash = None if value["keyset_hash"] is None else key("keyset_hash")
        if (epoch is None) != (keyset_hash is None):
            raise bad("epoch and keyset_hash are both set or both null")
        files = value["files"]
        if not isinstance(files, list):
            raise bad("files must be a list")
        entries = []
        for item in files:
            if not isinstance(item, dict) or set(item) != {"name", "size", "sha256"}:
                raise bad("each file has exactly name, size and sha256")
            sha = item["sha256"]
            if not isinstance(sha, str) or not _HEX64.fullmatch(sha):
                raise bad("sha256 must be 64 lowercase hex digits")
            entries.append(SnapshotFile(str(item["name"]), integer(item["size"], "size"), sha))
        if [f.name for f in entries] != list(NODE_FILES):
            raise bad(f"files must be exactly {', '.join(NODE_FILES)}, in this order")
        if not isinstance(value["created_at"], str):
            raise bad("created_at must be a string")
        return cls(
            account=account,
            tls_public_key=key("tls_public_key"),
            signer_public_key=key("signer_public_key"),
            epoch=epoch,
            domains=tuple(integer(d, "domain id") for d in domains),
            keyset_hash=keyset_hash,
            presignatures=integer(value["presignatures"], "presignatures"),
            created_at_ms=integer(value["created_at_ms"], "created_at_ms"),
            files=tuple(entries),
        )


# --- the archive ---------------------------------------------------------------------------


def parse_identity(data: bytes) -> tuple[str, bytes, bytes]:
    """(account, TLS key, signer key) named by an ``identity.json``."""
    try:
        document = json.loads(data)
        return (
            str(document["account"]),
            bytes.fromhex(document["tls_public_key"]),
            bytes.fromhex(document["signer_public_key"]),
        )
    except (ValueError, KeyError, TypeError):
        raise NotANodeDirectory(f"{IDENTITY_FILE_NAME}: not a node identity") from None


def archive_bytes(manifest: Manifest, contents: Mapping[str, bytes]) -> bytes:
    """The tar archive: the manifest, then ``contents`` in their order, each mode 0600."""
    buffer = io.BytesIO()
    mtime = manifest.created_at_ms // 1000
    manifest_bytes = (json.dumps(manifest.to_json(), indent=2) + "\n").encode()
    with tarfile.open(fileobj=buffer, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for name, data in [(MANIFEST_NAME, manifest_bytes), *contents.items()]:
            info = tarfile.TarInfo(name)
            info.size = len(data)
            info.mode = 0o600
            info.mtime = mtime
            tar.addfile(info, io.BytesIO(data))
    return buffer.getvalue()


def archive_members(path: Path, tar: tarfile.TarFile) -> dict[str, bytes]:
    """Every member of the archive ``path`` by name: exactly the expected ones, in order,
    regular files within their size bound."""
    expected = [MANIFEST_NAME, *NODE_FILES]
    members = tar.getmembers()
    if [m.name for m in members] != expected:
        raise SnapshotInvalid(
            f"{path}: the archive must hold exactly {', '.join(expected)}, in this order"
        )
    contents: dict[str, bytes] = {}
    for member in members:
        limit = MAX_MANIFEST_SIZE if member.name == MANIFEST_NAME else MAX_FILE_SIZE
        if not member.isfile() or member.size > limit:
            raise SnapshotInvalid(f"{path}: {member.name} is not a file of at most {limit} B")
        handle = tar.extractfile(member)
        if handle is None:
            raise SnapshotInvalid(f"{path}: {member.name} cannot be read")
        contents[member.name] = handle.read()
    return contents
