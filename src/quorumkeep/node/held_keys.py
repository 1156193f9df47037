"""Held keys: this node's key shares in its keystore, and the cache of those in force.

A share is stored per (domain, epoch) in the keystore's share format
(:mod:`quorumkeep.node.shares`), sealed. The keys *in force* are the serving epoch's shares
that are ours for the contract's key (our participant id, the contract's group key); they are
loaded once and kept in memory for the presignature pool and the signing service, and only
those are used. The deletion rules (docs/node.md):

- Running at epoch e: shares of older epochs go once every domain of epoch e is held; shares
  of later epochs belong to a cancelled resharing and go at once;
- not a participant of a Running contract: every share and presignature goes;
- shares imported for a migration that can no longer conclude go, with any presignature;
- a decommissioned node wipes everything (the keystore also truncates its WAL).

Secrets stay in the keystore's records and the :class:`KeyPackage` objects, which redact
them; nothing here logs more than domain and epoch numbers.
"""

from __future__ import annotations

import contextlib
import logging

from quorumkeep.contract.state import ContractState, Running
from quorumkeep.crypto.keys import KeyPackage, PublicKeyPackage
from quorumkeep.node.decisions import RecoveredShare
from quorumkeep.node.keystore import Keystore
from quorumkeep.node.keystore_errors import KeystoreError, RecordNotFound
from quorumkeep.node.shares import ShareFormatError, decode_key_share, encode_key_share

log = logging.getLogger("quorumkeep.node.held_keys")

KeyPair = tuple[KeyPackage, PublicKeyPackage]
Slot = tuple[int, int]
"""(domain id, epoch)."""


class HeldKeys:
    """The node's key shares: the keystore's records and the cache of those in force."""

    def __init__(self, keystore: Keystore) -> None:
        self._keystore = keystore
        self._in_force: dict[Slot, KeyPair] = {}

    # -- records --------------------------------------------------------------------------

    def load(self, domain_id: int, epoch: int) -> KeyPair:
        """The stored share; ``RecordNotFound``, ``ShareFormatError`` or ``KeystoreError``."""
        return decode_key_share(self._keystore.get_key_share(domain_id, epoch))

    def store(self, domain_id: int, epoch: int, key: KeyPackage, public: PublicKeyPackage) -> None:
        share, public_bytes = encode_key_share(key, public)
        # Replacing is only ever for a key the contract has not accepted yet (a rerun of an
        # aborted attempt, shares delivered again for an open migration): callers check that.
        self._keystore.put_key_share(domain_id, epoch, share, public_bytes, replace=True)

    def store_recovered(
        self, running: Running, participant_id: int, shares: list[RecoveredShare]
    ) -> None:
        """Store checked shares under (domain, epoch) with the contract's public packages."""
        by_domain = {s.domain_id: s for s in shares}
        for domain in running.keyset.domains:
            verifying = dict(domain.verifying_shares)
            public = PublicKeyPackage(domain.public_key, verifying, running.parameters.threshold)
            key = KeyPackage(
                identifier=participant_id,
                signing_share=by_domain[domain.domain_id].signing_share,
                verifying_share=verifying[participant_id],
                group_public_key=domain.public_key,
                threshold=running.parameters.threshold,
            )
            self.store(domain.domain_id, running.epoch, key, public)

    def recovered(self, running: Running) -> list[RecoveredShare]:
        """The stored shares of the keyset in force, as the migration checks take them
        (a missing or unreadable one is left out: the checks then name the gap)."""
        shares: list[RecoveredShare] = []
        for domain in running.keyset.domains:
            with contextlib.suppress(RecordNotFound, ShareFormatError, KeystoreError):
                key, _ = self.load(domain.domain_id, running.epoch)
                shares.append(
                    RecoveredShare(
                        domain.domain_id, running.epoch, key.identifier, key.signing_share
                    )
                )
        return shares

    def keysets(self) -> dict[int, tuple[int, ...]]:
        """epoch → the domain ids held for it."""
        return self._keystore.keysets()

    def holds_anything(self) -> bool:
        """Any key share or presignature at all."""
        return bool(self._keystore.key_shares() or self._keystore.presignature_counts())

    # -- the keys in force ------------------------------------------------------------------

    def select_in_force(self, state: ContractState, me: int | None) -> dict[Slot, KeyPair]:
        """Exactly the serving epoch's shares that are ours for the contract's keys (none
        when we take no part); cached, and returned by (domain, epoch)."""
        serving = state.serving()
        desired: dict[Slot, KeyPair] = {}
        if me is not None and serving is not None:
            for domain in serving.keyset.domains:
                slot = (domain.domain_id, serving.epoch)
                pair = self._in_force.get(slot)
                if pair is None:
                    try:
                        pair = self.load(*slot)
                    except (RecordNotFound, ShareFormatError):
                        continue
                    if pair[1].group_public_key != domain.public_key or pair[0].identifier != me:
                        log.error(
                            "stored share of domain %d epoch %d is not ours for the contract's "
                            "key; not used",
                            *slot,
                        )
                        continue
                desired[slot] = pair
        self._in_force = desired
        return dict(desired)

    def in_force(self, domain_id: int, epoch: int) -> bool:
        return (domain_id, epoch) in self._in_force

    # -- deletion ---------------------------------------------------------------------------

    def delete_obsolete(self, running: Running) -> None:
        """Running at epoch e: shares of older epochs are obsolete once we hold epoch e's for
        every domain; shares of later epochs belong to a cancelled resharing."""
        held = self._keystore.key_shares()
        domains = {d.domain_id for d in running.keyset.domains}
        current = {r.domain_id for r in held if r.epoch == running.epoch}
        for ref in held:
            stale_new = ref.epoch > running.epoch
            stale_old = ref.epoch < running.epoch and domains <= current
            if stale_new or stale_old:
                self._keystore.delete_key_share(ref.domain_id, ref.epoch)
                log.info(
                    "deleted key share domain=%d epoch=%d (epoch %d is in force)",
                    ref.domain_id,
                    ref.epoch,
                    running.epoch,
                )

    def delete_departed(self, state: ContractState) -> None:
        """Not a participant of a Running contract (we left, or joined a resharing that was
        cancelled): no share we hold is of any use."""
        if not isinstance(state.protocol, Running):
            return
        for ref in self._keystore.key_shares():
            self._keystore.delete_key_share(ref.domain_id, ref.epoch)
            log.info(
                "not a participant: deleted key share domain=%d epoch=%d",
                ref.domain_id,
                ref.epoch,
            )
        if self._keystore.presignature_counts():
            removed = self._keystore.purge_all_presignatures()
            log.info("not a participant: deleted %d presignatures", removed)

    def discard_imported(self, reason: str) -> None:
        """Delete shares imported for a migration that can no longer conclude (the caller
        checks they are imported ones, never those of a node that took part)."""
        held = self._keystore.key_shares()
        if not held and not self._keystore.presignature_counts():
            return
        self.wipe()
        log.warning("deleted %d imported key shares: %s", len(held), reason)

    def wipe(self) -> None:
        """Every share and presignature, and the cache."""
        self._keystore.wipe()
        self._in_force = {}

    # -- status -----------------------------------------------------------------------------

    def status(self) -> dict[str, object]:
        keysets = self._keystore.keysets()
        return {"keysets": {str(epoch): list(keysets[epoch]) for epoch in sorted(keysets)}}

    def count(self) -> int:
        return len(self._keystore.key_shares())
