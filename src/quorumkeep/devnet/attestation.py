"""Development attestation for a devnet: the platform key and the genesis policy.

Every devnet runs with development attestation: ``DIR/dev-platform.key`` (0600, hex
seed) is the development platform key that signs every node's and backup service's
quote; the contract's genesis names its public key (so the contract, its views, the
nodes' status and ``devnet status`` show the network as insecure) and allow-lists the
measurement of this version's node and backup service.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from quorumkeep import __version__
from quorumkeep.attest.dev import dev_guest, dev_platform_public_key
from quorumkeep.attest.evidence import Measurement
from quorumkeep.backup.attestation import BACKUP_APP
from quorumkeep.daemon.attestation import write_dev_platform_key

DEV_PLATFORM_KEY_FILE = "dev-platform.key"
NODE_APP = f"quorumkeep-node {__version__}"


def dev_measurement(app: str) -> Measurement:
    m, app_hash, _ = dev_guest(app)
    return Measurement(m.mrtd, m.rtmr0, m.rtmr1, m.rtmr2, app_hash)


def create_platform_key(path: Path) -> bytes:
    """Make the devnet's platform key file; its public key."""
    seed = os.urandom(32)
    write_dev_platform_key(path, seed)
    return dev_platform_public_key(seed)


def platform_public_key(path: Path) -> bytes:
    return dev_platform_public_key(bytes.fromhex(path.read_text().strip()))


def genesis(path: Path) -> dict[str, Any]:
    """The ``attestation`` argument of the devnet's ``init``."""
    return {
        "dev_platform_public_key": platform_public_key(path).hex(),
        "allowed_measurements": {
            "node": [dev_measurement(NODE_APP).to_json()],
            "backup_service": [dev_measurement(BACKUP_APP).to_json()],
        },
    }


def all_attested(state: dict[str, Any]) -> bool:
    """Every serving participant's TLS key has an attestation record (state JSON)."""
    from quorumkeep.devnet import watch

    records = {r["key"] for r in (state.get("attestation") or {}).get("records", [])}
    return all(m["tls_public_key"] in records for m in watch.participants(state))


def node_evidence(path: Path, tls_public_key: bytes, signer_public_key: bytes) -> dict[str, Any]:
    """A development quote of this version's node for these keys (the devnet is the
    development platform: it vouches for its own nodes, e.g. one not started yet)."""
    import asyncio

    from quorumkeep.attest.binding import Role, report_data
    from quorumkeep.daemon.attestation import DevQuoteSource

    seed = bytes.fromhex(path.read_text().strip())
    rd = report_data(Role.NODE, tls_public_key, signer_public_key)
    return asyncio.run(DevQuoteSource(seed, NODE_APP).evidence(rd))


def cli_options(path: Path) -> list[str]:
    """``node init`` / ``backup init`` options for a dev-attested process."""
    return ["--attestation", "dev", "--dev-platform-key-file", str(path)]
