"""Bundles made without a network: a trusted dealer's shares, each encrypted to the test key."""

from __future__ import annotations

import os
from pathlib import Path

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from quorumkeep.crypto import pve
from quorumkeep.crypto.group import Scalar, random_scalar
from quorumkeep.crypto.keys import trusted_dealer_keygen
from quorumkeep.ers.bundle import Bundle, BundlePart

KEY_FILE = Path(__file__).parent.parent / "crypto" / "data" / "ers-test-rsa2048.pem"


def load_test_key() -> rsa.RSAPrivateKey:
    key = serialization.load_pem_private_key(KEY_FILE.read_bytes(), password=None)
    assert isinstance(key, rsa.RSAPrivateKey)
    return key


def make_bundle(
    private: rsa.RSAPrivateKey,
    *,
    threshold: int = 2,
    ids: tuple[int, ...] = (1, 2, 3),
    domain_id: int = 0,
    epoch: int = 1,
    secret: Scalar | None = None,
) -> tuple[Bundle, Scalar, dict[int, Scalar]]:
    """(bundle with one part per id, the group secret, the shares)."""
    secret = secret or random_scalar(os.urandom)
    packages, public, _ = trusted_dealer_keygen(secret, threshold, list(ids), os.urandom)
    key = pve.RecoveryPublicKey.from_private(private)
    keyset_hash = pve.package_digest(
        domain_id,
        epoch,
        public.group_public_key,
        threshold,
        sorted(public.verifying_shares.items()),
    )
    parts = []
    for pid in ids:
        account = f"op{pid}"
        label = pve.Label(domain_id, epoch, account, pid, keyset_hash).encode()
        encoded = pve.encrypt(key, packages[pid].signing_share, label, os.urandom).encode()
        parts.append(BundlePart(account, pid, pve.part_digest(encoded), encoded))
    bundle = Bundle(
        domain_id=domain_id,
        epoch=epoch,
        group_public_key=public.group_public_key,
        threshold=threshold,
        verifying_shares=dict(public.verifying_shares),
        keyset_hash=keyset_hash,
        recovery_key=key,
        stated_fingerprint=key.fingerprint,
        parts=tuple(parts),
    )
    return bundle, secret, {pid: p.signing_share for pid, p in packages.items()}
