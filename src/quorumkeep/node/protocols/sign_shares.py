"""What both sides of a signature share (protocols/sign.py).

The key a share is made under — ``PK' = PK + ε·G`` with ``ε = derivation_tweak(caller, path)``
(docs/key-derivation.md) — the nonce pair a presignature taken from the keystore holds, and the
signing service's counters.
"""

from __future__ import annotations

from dataclasses import dataclass

from quorumkeep.crypto import frost
from quorumkeep.crypto.derive import derivation_tweak
from quorumkeep.crypto.group import Element, base_mul, element_add
from quorumkeep.node.keystore_records import Presignature


@dataclass
class SigningStats:
    led: int = 0
    failed: int = 0
    attempts: int = 0
    cheaters_named: int = 0
    shares_served: int = 0
    refusals: int = 0


def derived_key(group_public_key: Element, caller: str, path: str) -> tuple[Element, bytes]:
    """``PK'`` and the tweak ``ε`` for ``caller`` and ``path`` (module doc)."""
    tweak = derivation_tweak(caller, path)
    return element_add(group_public_key, base_mul(tweak)), tweak


def presignature_nonces(record: Presignature, me: int) -> frost.SigningNonces:
    """Our nonces of a taken presignature (``hiding ‖ binding``) with our commitments."""
    hiding, binding = record.commitments[me]
    return frost.SigningNonces(
        record.nonces[:32], record.nonces[32:64], frost.SigningCommitments(hiding, binding)
    )
