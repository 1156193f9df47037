"""Constants of the backup protocol: version, prefixes, sizes, limits, header names and paths
(docs/backup-protocol.md §2–§4).
"""

from __future__ import annotations

import re
from typing import Literal

PROTOCOL_VERSION = 1
STATEMENT_PREFIX = b"quorumkeep backup v1\x00"
"""Every signed byte string starts with these 21 bytes (docs/backup-protocol.md §3)."""
KDF_PERSONAL = b"qkbackup-kdf-v1\x00"
"""BLAKE2b personalization of the transfer-key derivation (exactly 16 bytes)."""
LABEL_BACKUP = "quorumkeep/backup-shares v1"
LABEL_RECOVERY = "quorumkeep/recovery-shares v1"
DIRECTION_BACKUP = "node-to-service"
DIRECTION_RECOVERY = "service-to-node"
SHARES_FORMAT = "quorumkeep key shares v1"

KEY_SIZE = 32
SIGNATURE_SIZE = 64
NONCE_SIZE = 16
SESSION_ID_SIZE = 16
SHARE_SIZE = 32
TIMESTAMP_WINDOW_MS = 60_000
"""A message whose timestamp is more than this far from the receiver's clock is refused."""
SESSION_LIFETIME_MS = 120_000
MAX_BODY_BYTES = 256 * 1024
"""Largest PUT body a node reads (64 domains of shares need about 20 KiB)."""
MAX_DOMAINS = 64
MAX_ID = 2**63 - 1
MAX_ACCOUNT = 64
ID_RE = re.compile(r"^[1-9][0-9]{0,18}$")

Purpose = Literal["backup", "recovery"]
PURPOSES: tuple[Purpose, ...] = ("backup", "recovery")

# HTTP header names of a hello (case-insensitive on the wire).
H_PURPOSE = "quorumkeep-purpose"
H_ACCOUNT = "quorumkeep-account"
H_NODE_KEY = "quorumkeep-node-key"
H_SERVICE_KEY = "quorumkeep-service-key"
H_EPHEMERAL_KEY = "quorumkeep-ephemeral-key"
H_TIMESTAMP = "quorumkeep-timestamp"
H_NONCE = "quorumkeep-nonce"
H_SIGNATURE = "quorumkeep-signature"
HELLO_HEADERS = (
    H_PURPOSE,
    H_ACCOUNT,
    H_NODE_KEY,
    H_SERVICE_KEY,
    H_EPHEMERAL_KEY,
    H_TIMESTAMP,
    H_NONCE,
    H_SIGNATURE,
)

PATH_KEYSHARES = "/backup/keyshares"
PATH_RECOVERY_SESSION = "/backup/recovery-session"
