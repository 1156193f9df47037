"""Emergency recovery: the offline recovery key per domain, and every participant's part.

Vote rule: a recovery key takes effect for a domain once **every** participant of the
serving set voted the same (public key, fingerprint). Whoever holds the recovery private
key and a bundle holds the whole signing key, so no subset of operators may grant that on
its own — the same unanimity as adding a domain. A vote may be changed (last call wins);
votes of accounts that are no longer participants do not count. Replacing a key in force
takes the same vote.

`submit_recovery_part` records a node's part for the epoch in force after checking its
proof against the domain's recovery key, the node's verifying share and the label
(domain, epoch, account, participant id, keyset hash). The part stays in the ledger's
block log as the transaction's argument; the state keeps its digest (recovery_state).
"""

from __future__ import annotations

import hashlib
from typing import Any

from quorumkeep.contract.access import (
    require_initialized,
    require_node_key,
    require_operator,
    require_participant,
    require_running,
)
from quorumkeep.contract.args import check_fields, expect_hex, expect_int
from quorumkeep.contract.context import CallContext, CallResult
from quorumkeep.contract.errors import (
    DomainNotFound,
    DuplicateVote,
    InvalidRecoveryKey,
    InvalidRecoveryPart,
    KeysetMismatch,
    RecoveryKeyNotSet,
)
from quorumkeep.contract.events import (
    RECOVERY_KEY_SET,
    RECOVERY_KEY_VOTED,
    RECOVERY_PART_RECORDED,
    Event,
)
from quorumkeep.contract.recovery_state import (
    MAX_SPKI_BYTES,
    PartRecord,
    RecoveryEpoch,
    RecoveryKey,
)
from quorumkeep.contract.state import ContractState, DomainKey
from quorumkeep.crypto import pve
from quorumkeep.crypto.errors import CryptoError, InvalidEncoding

MAX_PART_BYTES = 96 * 1024
"""A part with an RSA-4096 key is about 70 KB; larger is refused before parsing."""


def keyset_hash(domain: DomainKey, epoch: int, threshold: int) -> bytes:
    """The label's keyset hash: ``pve.package_digest`` of the domain's package."""
    return pve.package_digest(
        domain.domain_id, epoch, domain.public_key, threshold, list(domain.verifying_shares)
    )


def vote_recovery_key(state: ContractState, ctx: CallContext, args: dict[str, Any]) -> CallResult:
    check_fields(args, "args", ["domain_id", "public_key", "fingerprint"])
    domain_id = expect_int(args["domain_id"], "domain_id")
    spki = expect_hex(args["public_key"], "public_key", 1, MAX_SPKI_BYTES)
    fingerprint = expect_hex(args["fingerprint"], "fingerprint", 32, 32)
    try:
        parsed = pve.RecoveryPublicKey.from_der(spki)
    except InvalidEncoding as exc:
        raise InvalidRecoveryKey(str(exc)) from None
    if parsed.fingerprint != fingerprint:
        raise InvalidRecoveryKey("fingerprint is not the SHA-256 of the public key's DER")
    serving = require_initialized(state)
    account = ctx.predecessor
    require_participant(serving.parameters, account, "a participant")
    require_operator(ctx)
    if serving.keyset.get(domain_id) is None:
        raise DomainNotFound(f"there is no domain {domain_id} with a key")
    proposal = RecoveryKey(spki, fingerprint)
    book = state.recovery
    if book.keys.get(domain_id) == proposal:
        raise DuplicateVote(f"this recovery key is already in force for domain {domain_id}")
    votes = book.votes.setdefault(domain_id, {})
    if votes.get(account) == proposal:
        raise DuplicateVote(f"{account} already voted for this recovery key")
    votes[account] = proposal
    members = serving.parameters.members
    count = sum(1 for m in members if votes.get(m.account) == proposal)
    required = len(members)
    data = {
        "domain_id": domain_id,
        "account": account,
        "fingerprint": fingerprint.hex(),
        "votes": count,
        "required": required,
    }
    events = [Event(RECOVERY_KEY_VOTED, data)]
    if count == required:
        book.keys[domain_id] = proposal
        del book.votes[domain_id]
        events.append(
            Event(
                RECOVERY_KEY_SET,
                {
                    "domain_id": domain_id,
                    "public_key": spki.hex(),
                    "fingerprint": fingerprint.hex(),
                    "bits": parsed.bits,
                },
            )
        )
    return CallResult({"votes": count, "required": required, "set": count == required}, events)


def submit_recovery_part(
    state: ContractState, ctx: CallContext, args: dict[str, Any]
) -> CallResult:
    check_fields(args, "args", ["domain_id", "epoch", "part"])
    domain_id = expect_int(args["domain_id"], "domain_id")
    epoch = expect_int(args["epoch"], "epoch")
    encoded = expect_hex(args["part"], "part", 1, MAX_PART_BYTES)
    running = require_running(state)
    account = ctx.predecessor
    info = require_participant(running.parameters, account, "a participant")
    require_node_key(ctx, info)
    if epoch != running.epoch:
        raise KeysetMismatch(f"parts are taken for the epoch in force ({running.epoch}) only")
    domain = running.keyset.get(domain_id)
    if domain is None:
        raise DomainNotFound(f"there is no domain {domain_id} with a key")
    key = state.recovery.keys.get(domain_id)
    if key is None:
        raise RecoveryKeyNotSet(f"domain {domain_id} has no recovery key")
    record_key = (domain_id, epoch)
    book_epoch = state.recovery.epochs.get(record_key)
    existing = None if book_epoch is None else book_epoch.parts.get(account)
    if existing is not None and existing.fingerprint == key.fingerprint:
        raise DuplicateVote(f"{account} already recorded its part for this epoch and key")
    shares = dict(domain.verifying_shares)
    digest_of_set = keyset_hash(domain, epoch, running.parameters.threshold)
    label = pve.Label(domain_id, epoch, account, info.participant_id, digest_of_set)
    _check_part(key, encoded, shares[info.participant_id], label.encode())
    if book_epoch is None:
        book_epoch = RecoveryEpoch(
            domain_id,
            epoch,
            domain.public_key,
            running.parameters.threshold,
            domain.verifying_shares,
            digest_of_set,
        )
        state.recovery.epochs[record_key] = book_epoch
    digest = hashlib.sha256(encoded).digest()
    book_epoch.parts[account] = PartRecord(
        info.participant_id, digest, key.fingerprint, len(encoded), ctx.block_height
    )
    data = {
        "domain_id": domain_id,
        "epoch": epoch,
        "account": account,
        "participant_id": info.participant_id,
        "digest": digest.hex(),
        "fingerprint": key.fingerprint.hex(),
        "parts": sum(1 for p in book_epoch.parts.values() if p.fingerprint == key.fingerprint),
        "threshold": running.parameters.threshold,
    }
    return CallResult(digest.hex(), [Event(RECOVERY_PART_RECORDED, data)])


def _check_part(key: RecoveryKey, encoded: bytes, verifying_share: bytes, label: bytes) -> None:
    try:
        public = pve.RecoveryPublicKey.from_der(key.public_key)
        pve.verify(public, pve.Part.decode(encoded), verifying_share, label)
    except CryptoError as exc:
        raise InvalidRecoveryPart(str(exc)) from None
