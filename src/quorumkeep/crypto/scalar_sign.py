"""Ed25519 signatures (RFC 8032 §5.1.6) made with a bare secret scalar.

A FROST key, and the per-(account, path) key derived from it, is a scalar a with public key
A = a·G — not an RFC 8032 32-byte seed, whose SHA-512 would be clamped into a scalar. RFC
8032's signing algorithm only needs a and a secret 32-byte ``prefix`` for the nonce:

    prefix = SHA-512(NONCE_PREFIX_TAG ‖ a)[0:32]       (deterministic; ours, documented)
    r      = SHA-512(prefix ‖ M) mod L                  (§5.1.6 step 2)
    R      = r·G                                        (step 3)
    k      = SHA-512(R ‖ A ‖ M) mod L                   (step 4)
    S      = (r + k·a) mod L                            (step 5)
    signature = R ‖ S                                   (step 6)

Any RFC 8032 verifier accepts the result under A. The prefix only has to be secret and
fixed per key (RFC 8032 derives it from the seed; there is no seed here).
"""

from __future__ import annotations

import hashlib

from quorumkeep.crypto.group import (
    ZERO,
    Element,
    Scalar,
    base_mul,
    scalar_add,
    scalar_decode,
    scalar_mul,
    scalar_reduce,
)

NONCE_PREFIX_TAG = b"quorumkeep-ers-nonce-prefix-v1"


def nonce_prefix(secret: Scalar) -> bytes:
    return hashlib.sha512(NONCE_PREFIX_TAG + secret).digest()[:32]


def sign_with_scalar(secret: Scalar, message: bytes) -> tuple[bytes, Element]:
    """(R ‖ S, A): an RFC 8032 Ed25519 signature of ``message`` under A = secret·G."""
    secret = scalar_decode(secret)
    if secret == ZERO:
        raise ValueError("the scalar 0 is not a signing key")
    public = base_mul(secret)
    r = scalar_reduce(hashlib.sha512(nonce_prefix(secret) + message).digest())
    big_r = base_mul(r)
    k = scalar_reduce(hashlib.sha512(big_r + public + message).digest())
    s = scalar_add(r, scalar_mul(k, secret))
    return big_r + s, public
