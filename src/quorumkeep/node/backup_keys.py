"""The node's keys behind its backup endpoints: its TLS key as a signer, its keystore's shares.

:func:`tls_signer` decrypts the node's TLS key (the contract's ``tls_public_key``) for the
statements it signs; :func:`keystore_share_source` is the ``current_shares`` of
:class:`~quorumkeep.node.backup_api.BackupNodeDeps` and :func:`store_verified_shares` writes
the shares of a recovery in the node's share format (node/shares.py).
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Sequence

from cryptography.hazmat.primitives import serialization

from quorumkeep.node.keystore import Keystore
from quorumkeep.node.shares import ShareFormatError, decode_key_share, encode_key_share
from quorumkeep.wire.backup import Ed25519Signer, Keyset, KeyShare, VerifiedShares
from quorumkeep.wire.tls import TLSCredentials, load_encrypted_private_key

SharesSource = Callable[[Keyset], Awaitable[Sequence[KeyShare]]]
"""The node's shares of every domain of the keyset; LookupError (or fewer shares) if it
does not hold them all."""


def tls_signer(credentials: TLSCredentials) -> Ed25519Signer:
    """The node's TLS key as a :class:`Signer` (decrypted in memory from its PKCS#8 file)."""
    pem = credentials.private_key_path.read_bytes()
    private = load_encrypted_private_key(pem, credentials.password)
    seed = private.private_bytes(
        serialization.Encoding.Raw,
        serialization.PrivateFormat.Raw,
        serialization.NoEncryption(),
    )
    signer = Ed25519Signer(seed)
    if signer.public_key != credentials.public_key:
        raise ValueError("the TLS key file does not hold the node's TLS key")
    return signer


def keystore_shares(keystore: Keystore, keyset: Keyset) -> list[KeyShare]:
    """The node's shares of ``keyset`` from its keystore; LookupError if one is missing or
    belongs to another key."""
    shares = []
    for domain in keyset.domains:
        stored = keystore.get_key_share(domain.domain_id, keyset.epoch)
        try:
            key, public = decode_key_share(stored)
        except ShareFormatError:
            raise LookupError(f"stored share of domain {domain.domain_id} is unusable") from None
        if public.group_public_key != domain.public_key:
            raise LookupError(f"stored share of domain {domain.domain_id} is for another key")
        shares.append(KeyShare(domain.domain_id, keyset.epoch, key.identifier, key.signing_share))
    return shares


def keystore_share_source(keystore: Keystore) -> SharesSource:
    """``current_shares`` for :class:`BackupNodeDeps`, reading the keystore off the loop."""

    async def current_shares(keyset: Keyset) -> list[KeyShare]:
        return await asyncio.to_thread(keystore_shares, keystore, keyset)

    return current_shares


def store_verified_shares(keystore: Keystore, verified: VerifiedShares) -> None:
    """Write verified shares into the keystore in the node's share format (replacing any
    stale record of the same slot: these match the contract, whatever was there did not)."""
    for domain_id, (key, public) in verified.key_packages().items():
        share, public_bytes = encode_key_share(key, public)
        keystore.put_key_share(domain_id, verified.keyset.epoch, share, public_bytes, replace=True)
