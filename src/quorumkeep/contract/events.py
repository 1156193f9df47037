"""Events: the contract's record of every state change, for nodes and tools to follow.

Each event has a stable ``kind`` and a ``data`` object of JSON values; docs/contract.md
lists every kind with its fields. The ledger stores them with the block that caused them.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

PROTOCOL_STATE_CHANGED = "protocol_state_changed"
PARTICIPANTS_CHANGED = "participants_changed"
ADD_DOMAINS_VOTED = "add_domains_voted"
DOMAINS_ADDED = "domains_added"
PK_VOTED = "pk_voted"
KEY_GENERATED = "key_generated"
KEY_EVENT_ABORTED = "key_event_aborted"
CANCEL_KEYGEN_VOTED = "cancel_keygen_voted"
KEYGEN_CANCELLED = "keygen_cancelled"
NEW_PARAMETERS_VOTED = "new_parameters_voted"
RESHARING_STARTED = "resharing_started"
RESHARED_VOTED = "reshared_voted"
DOMAIN_RESHARED = "domain_reshared"
RESHARING_COMPLETED = "resharing_completed"
CANCEL_RESHARING_VOTED = "cancel_resharing_voted"
RESHARING_CANCELLED = "resharing_cancelled"
PARTICIPANT_INFO_SUBMITTED = "participant_info_submitted"
BACKUP_SERVICE_REGISTERED = "backup_service_registered"
MIGRATION_STARTED = "migration_started"
MIGRATION_CONCLUDED = "migration_concluded"
MIGRATION_CANCELLED = "migration_cancelled"
SIGN_REQUESTED = "sign_requested"
SIGN_RESPONDED = "sign_responded"
SIGN_FAILED = "sign_failed"
ATTESTATION_SUBMITTED = "attestation_submitted"
ATTESTATION_POLICY_VOTED = "attestation_policy_voted"
ATTESTATION_POLICY_CHANGED = "attestation_policy_changed"
ATTESTATIONS_VERIFIED = "attestations_verified"
RECOVERY_KEY_VOTED = "recovery_key_voted"
RECOVERY_KEY_SET = "recovery_key_set"
RECOVERY_PART_RECORDED = "recovery_part_recorded"
BACKUP_CONFIRMED = "backup_confirmed"
BACKUP_POLICY_MET = "backup_policy_met"
KEY_PROVIDER_REGISTERED = "key_provider_registered"
KEY_PROVIDER_DEREGISTERED = "key_provider_deregistered"
KEY_PROVIDERS_RECORDED = "key_providers_recorded"

EVENT_KINDS: frozenset[str] = frozenset(
    {
        PROTOCOL_STATE_CHANGED,
        PARTICIPANTS_CHANGED,
        ADD_DOMAINS_VOTED,
        DOMAINS_ADDED,
        PK_VOTED,
        KEY_GENERATED,
        KEY_EVENT_ABORTED,
        CANCEL_KEYGEN_VOTED,
        KEYGEN_CANCELLED,
        NEW_PARAMETERS_VOTED,
        RESHARING_STARTED,
        RESHARED_VOTED,
        DOMAIN_RESHARED,
        RESHARING_COMPLETED,
        CANCEL_RESHARING_VOTED,
        RESHARING_CANCELLED,
        PARTICIPANT_INFO_SUBMITTED,
        BACKUP_SERVICE_REGISTERED,
        MIGRATION_STARTED,
        MIGRATION_CONCLUDED,
        MIGRATION_CANCELLED,
        SIGN_REQUESTED,
        SIGN_RESPONDED,
        SIGN_FAILED,
        ATTESTATION_SUBMITTED,
        ATTESTATION_POLICY_VOTED,
        ATTESTATION_POLICY_CHANGED,
        ATTESTATIONS_VERIFIED,
        RECOVERY_KEY_VOTED,
        RECOVERY_KEY_SET,
        RECOVERY_PART_RECORDED,
        BACKUP_CONFIRMED,
        BACKUP_POLICY_MET,
        KEY_PROVIDER_REGISTERED,
        KEY_PROVIDER_DEREGISTERED,
        KEY_PROVIDERS_RECORDED,
    }
)


@dataclass(frozen=True)
class Event:
    """One state change. ``data`` holds JSON values only and is never shared with the state."""

    kind: str
    data: dict[str, Any]

    def to_json(self) -> dict[str, Any]:
        return {"kind": self.kind, "data": self.data}

    @classmethod
    def from_json(cls, value: dict[str, Any]) -> Event:
        kind = value.get("kind")
        data = value.get("data")
        if not isinstance(kind, str) or not isinstance(data, dict):
            raise ValueError("an event is an object with a string 'kind' and an object 'data'")
        return cls(kind, data)


def protocol_state_changed(before: str, after: str, epoch: int) -> Event:
    """``epoch`` is the one the new state works in (for Resharing: the epoch being built)."""
    return Event(PROTOCOL_STATE_CHANGED, {"from": before, "to": after, "epoch": epoch})


def participants_changed(epoch: int, parameters: dict[str, Any], reason: str) -> Event:
    """``parameters`` is a participant set's JSON: ``{"threshold", "participants"}``."""
    return Event(PARTICIPANTS_CHANGED, {"epoch": epoch, **parameters, "reason": reason})
