"""The backup service's attestation: its quote binds its identity and encryption keys.

The service has no ledger key of its own: its evidence is submitted by the operator, with
``register_backup_service`` (which carries it) or ``submit_attestation`` (role
``backup_service``) to re-attest. ``quorumkeep backup attest --dir D`` prints it.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from quorumkeep import __version__
from quorumkeep.attest.binding import Role, report_data
from quorumkeep.backup.identity import PublicIdentity
from quorumkeep.daemon.attestation import AttestationConfig, quote_source

BACKUP_APP = f"quorumkeep-backup {__version__}"


async def backup_evidence(
    config: AttestationConfig | None, public: PublicIdentity
) -> dict[str, Any] | None:
    """Evidence bound to the service's keys (None without ``[attestation]``);
    AttestationUnavailable if the configured source cannot produce it."""
    source = quote_source(config or AttestationConfig(), BACKUP_APP)
    if source is None:
        return None
    rd = report_data(Role.BACKUP_SERVICE, public.identity_public_key, public.encryption_public_key)
    return await source.evidence(rd)


def summary_from_view(view: Any, identity_public_key: bytes) -> dict[str, Any]:
    """This service's entry of the contract's ``attestations`` view (``at`` given)."""
    if not isinstance(view, Mapping) or not view.get("enforced"):
        return {"enforced": False}
    for entry in view.get("entries", []):
        if (
            isinstance(entry, Mapping)
            and entry.get("role") == "backup_service"
            and entry.get("key") == identity_public_key.hex()
        ):
            record = entry.get("record") or {}
            return {
                "enforced": True,
                "status": entry.get("status"),
                "tcb_status": record.get("tcb_status"),
                "expires_in": entry.get("expires_in"),
                "insecure_dev_attestation": view.get("insecure_dev_attestation"),
            }
    return {"enforced": True, "status": "not registered"}
