"""The public key package's encodings (docs/node-protocols.md, "Notation and encodings").

A public key package travels as a dict inside ``reshare_dealers``, is stored in the keystore
in its byte form (``shares``), and its hash is what participants echo to agree on the result
of a key event (``dkg_confirm``, ``reshare_confirm``). Every decoder validates every element
(canonical, in the subgroup, not the identity) and raises :class:`MessageError`; a stored
share is rebuilt into a ``KeyPackage`` only if it matches its verifying share.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping

from quorumkeep.crypto.group import (
    ELEMENT_SIZE,
    SCALAR_SIZE,
    Element,
    Scalar,
    base_mul,
    element_decode,
)
from quorumkeep.crypto.keys import KeyPackage, PublicKeyPackage
from quorumkeep.node.messages_fields import (
    MAX_ID,
    MessageError,
    crypto_decode,
    id_map_to_json,
    read_hex,
    read_id_map,
    read_int,
)


def public_key_package_to_dict(public: PublicKeyPackage) -> dict[str, object]:
    return {
        "group_public_key": public.group_public_key.hex(),
        "threshold": public.threshold,
        "verifying_shares": id_map_to_json(public.verifying_shares),
    }


def public_key_package_from_dict(obj: object, what: str = "public key package") -> PublicKeyPackage:
    """Strict and validating: every element canonical, in the subgroup, not the identity."""
    if not isinstance(obj, Mapping) or set(obj) != {
        "group_public_key",
        "threshold",
        "verifying_shares",
    }:
        raise MessageError(f"{what}: expected group_public_key, threshold, verifying_shares")
    group_public_key = crypto_decode(
        element_decode, read_hex(obj["group_public_key"], what, ELEMENT_SIZE), f"{what}: group key"
    )
    shares = read_id_map(obj["verifying_shares"], f"{what}: verifying_shares", ELEMENT_SIZE)
    for identifier, share in shares.items():
        crypto_decode(element_decode, share, f"{what}: verifying share of {identifier}")
    threshold = read_int(obj["threshold"], f"{what}: threshold", 1, max(1, len(shares)))
    return PublicKeyPackage(group_public_key, shares, threshold)


def public_key_package_to_bytes(public: PublicKeyPackage) -> bytes:
    """u16 threshold ‖ u16 n ‖ (u64 id ‖ verifying share)* ascending ‖ group key."""
    ids = sorted(public.verifying_shares)
    return b"".join(
        [
            public.threshold.to_bytes(2, "big"),
            len(ids).to_bytes(2, "big"),
            *(i.to_bytes(8, "big") + public.verifying_shares[i] for i in ids),
            public.group_public_key,
        ]
    )


def public_key_package_from_bytes(data: bytes) -> PublicKeyPackage:
    """Inverse of :func:`public_key_package_to_bytes`, validating every element."""
    what = "public key package"
    if len(data) < 4:
        raise MessageError(f"{what}: truncated")
    threshold = int.from_bytes(data[:2], "big")
    n = int.from_bytes(data[2:4], "big")
    entry = 8 + ELEMENT_SIZE
    if len(data) != 4 + n * entry + ELEMENT_SIZE:
        raise MessageError(f"{what}: wrong length for {n} participants")
    shares: dict[int, Element] = {}
    previous = 0
    for k in range(n):
        offset = 4 + k * entry
        identifier = int.from_bytes(data[offset : offset + 8], "big")
        if not previous < identifier <= MAX_ID:
            raise MessageError(f"{what}: identifiers must be ascending in [1, 2^63)")
        shares[identifier] = crypto_decode(
            element_decode, data[offset + 8 : offset + entry], f"{what}: verifying share"
        )
        previous = identifier
    if not 1 <= threshold <= max(1, n):
        raise MessageError(f"{what}: threshold out of range")
    group_public_key = crypto_decode(element_decode, data[-ELEMENT_SIZE:], f"{what}: group key")
    return PublicKeyPackage(group_public_key, shares, threshold)


def public_key_package_hash(public: PublicKeyPackage) -> bytes:
    """SHA-256 of the byte encoding under a domain tag: what participants echo to agree."""
    return hashlib.sha256(
        b"quorumkeep public key package v1\x00" + public_key_package_to_bytes(public)
    ).digest()


def key_package_from_share(
    identifier: int, signing_share: Scalar, public: PublicKeyPackage
) -> KeyPackage:
    """Rebuild a KeyPackage from a stored share and its public package (checked to match)."""
    verifying_share = public.verifying_shares.get(identifier)
    if verifying_share is None:
        raise MessageError(f"participant {identifier} has no verifying share in the package")
    if len(signing_share) != SCALAR_SIZE or base_mul(signing_share) != verifying_share:
        raise MessageError(f"the share does not match participant {identifier}'s verifying share")
    return KeyPackage(
        identifier=identifier,
        signing_share=signing_share,
        verifying_share=verifying_share,
        group_public_key=public.group_public_key,
        threshold=public.threshold,
    )
