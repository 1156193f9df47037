"""The backup service's attestation: its quote binds its identity and encryption keys.

The operator submits the first evidence with ``register_backup_service`` (which carries
it) and grants the service's identity key a function-call key limited to
``submit_attestation``; the running service then re-attests by itself (``BackupAttester``)
once per start and when a quarter of the validity is gone. Without that key the operator
re-submits: ``quorumkeep backup attest --config backup.toml`` prints the arguments.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from quorumkeep import __version__
from quorumkeep.attest.binding import Role, report_data
from quorumkeep.backup.identity import BackupIdentity, PublicIdentity
from quorumkeep.daemon.attestation import AttestationConfig, QuoteSource, quote_source
from quorumkeep.ledger.client import AccountSigner, AsyncLedgerClient

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


REFRESH_FRACTION = 0.75
"""Re-attest once less than this fraction of the validity is left (as nodes do)."""


def own_entry(view: Any, identity_public_key: bytes) -> Mapping[str, Any] | None:
    if not isinstance(view, Mapping):
        return None
    for entry in view.get("entries", []):
        if (
            isinstance(entry, Mapping)
            and entry.get("role") == "backup_service"
            and entry.get("key") == identity_public_key.hex()
        ):
            return entry
    return None


def reattest_reason(view: Any, identity_public_key: bytes, attested: bool) -> str | None:
    """Why this service should submit fresh evidence now (``attestations`` view read with
    ``at``), or None: the contract enforces attestation and lists this service, and it has
    no record, one with less than ``REFRESH_FRACTION`` of the validity left, or this
    process has not attested yet."""
    if not isinstance(view, Mapping) or not view.get("enforced"):
        return None
    entry = own_entry(view, identity_public_key)
    if entry is None:
        return None
    if entry.get("record") is None:
        return "the contract holds no attestation of this service"
    left = entry.get("expires_in")
    validity = view.get("validity_seconds")
    if isinstance(left, int) and isinstance(validity, int) and left < validity * REFRESH_FRACTION:
        return f"the attestation expires in {left} s"
    if not attested:
        return "first attestation of this process"
    return None


class BackupAttester:
    """Submits the service's evidence itself, signed by its identity key — which the
    operator granted a function-call key for ``submit_attestation`` on its account
    (``quorumkeep operator register-backup-service`` does when the service attests)."""

    def __init__(self, source: QuoteSource, identity: BackupIdentity) -> None:
        self.source = source
        self.identity = identity
        self.attested = False
        self._signer = AccountSigner(identity.account, identity.signer.signing_key)

    def __repr__(self) -> str:
        return f"BackupAttester({self.source!r})"

    async def step(self, ledger: AsyncLedgerClient, view: Any) -> str | None:
        """Attest if due; the reason it did (None: not due). Raises on failure."""
        public = self.identity.public
        reason = reattest_reason(view, public.identity_public_key, self.attested)
        if reason is None:
            return None
        rd = report_data(
            Role.BACKUP_SERVICE, public.identity_public_key, public.encryption_public_key
        )
        evidence = await self.source.evidence(rd)
        args = {"role": "backup_service", "attestation": evidence}
        await ledger.call(self._signer, "submit_attestation", args)
        self.attested = True
        return reason


def backup_attester(
    config: AttestationConfig | None, identity: BackupIdentity
) -> BackupAttester | None:
    source = quote_source(config or AttestationConfig(), BACKUP_APP)
    return None if source is None else BackupAttester(source, identity)
