"""Per-(account, path) key derivation by an additive tweak.

    ε  = H("quorumkeep derive v1" ‖ len32(account) ‖ account ‖ len32(path) ‖ path) mod L
    PK' = PK + ε·G

H is SHA-512 read as a little-endian integer and reduced mod L; len32 is the byte length
as a 4-byte big-endian integer; account and path are UTF-8. Signing under PK' needs no
change to any signer: the aggregator adds c·ε to the aggregated z (``frost.aggregate``),
so nodes only ever use their own share of the underived key (docs/key-derivation.md).
"""

from __future__ import annotations

import hashlib

from quorumkeep.crypto.group import Element, Scalar, base_mul, element_add, scalar_reduce
from quorumkeep.encoding.fields import len32

DERIVE_DOMAIN = b"quorumkeep derive v1"


def derivation_tweak(account: str, path: str) -> Scalar:
    """ε for (account, path)."""
    h = hashlib.sha512(DERIVE_DOMAIN + len32(account.encode()) + len32(path.encode()))
    return scalar_reduce(h.digest())


def derive_public_key(group_public_key: Element, account: str, path: str) -> Element:
    """PK + ε·G: the key a signature for (account, path) verifies under."""
    return element_add(group_public_key, base_mul(derivation_tweak(account, path)))
