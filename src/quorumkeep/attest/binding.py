"""report_data: what a quote commits to, so it cannot be presented for other keys.

Version 1 layout (64 bytes, the TDREPORT's REPORTDATA):

    offset  size  field
    0       2     version, big-endian: 0x0001
    2       1     role: 0x01 node, 0x02 backup service, 0x03 key provider
    3       48    SHA-384("quorumkeep/attest/report-data/v1" ‖ role ‖ key_a ‖ key_b)
    51      13    zero

For a node ``key_a`` is its TLS public key (ed25519, 32 bytes) and ``key_b`` its signer
public key (ed25519, 32 bytes); for a backup service or key provider ``key_a`` is its
identity key (ed25519) and ``key_b`` its encryption key (X25519). The role is hashed too,
so a node's quote never passes as a backup service's even if the bytes of its keys did.
"""

from __future__ import annotations

import hashlib
from enum import Enum

from quorumkeep.attest.errors import ReportDataMismatch
from quorumkeep.attest.report import REPORT_DATA_SIZE

REPORT_DATA_VERSION = 1
_TAG = b"quorumkeep/attest/report-data/v1"
KEY_SIZE = 32


class Role(Enum):
    """Who an attestation is for; the value is the role byte of report_data."""

    NODE = "node"
    BACKUP_SERVICE = "backup_service"
    KEY_PROVIDER = "key_provider"

    @property
    def byte(self) -> int:
        return {Role.NODE: 1, Role.BACKUP_SERVICE: 2, Role.KEY_PROVIDER: 3}[self]


ROLES = tuple(r.value for r in Role)


def report_data(role: Role, key_a: bytes, key_b: bytes) -> bytes:
    """The 64 bytes a quote for ``role`` with these two public keys must carry."""
    if len(key_a) != KEY_SIZE or len(key_b) != KEY_SIZE:
        raise ValueError("report_data binds two 32-byte public keys")
    role_byte = bytes([role.byte])
    digest = hashlib.sha384(_TAG + role_byte + key_a + key_b).digest()
    data = REPORT_DATA_VERSION.to_bytes(2, "big") + role_byte + digest
    return data + bytes(REPORT_DATA_SIZE - len(data))


def check_binding(actual: bytes, role: Role, key_a: bytes, key_b: bytes) -> None:
    """ReportDataMismatch unless ``actual`` is the version-1 report_data of these keys."""
    if actual[:2] != REPORT_DATA_VERSION.to_bytes(2, "big"):
        raise ReportDataMismatch(
            f"report_data version is {actual[:2].hex()}, expected {REPORT_DATA_VERSION:04x}"
        )
    if actual != report_data(role, key_a, key_b):
        raise ReportDataMismatch(f"report_data does not commit to this {role.value}'s keys")
