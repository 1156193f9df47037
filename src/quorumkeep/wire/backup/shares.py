"""Key shares: their sealed plaintext (encode, decode) and their check against the contract."""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from quorumkeep.contract.state import Keyset
from quorumkeep.crypto.errors import InvalidEncoding
from quorumkeep.crypto.group import base_mul, scalar_decode
from quorumkeep.crypto.keys import KeyPackage, PublicKeyPackage
from quorumkeep.wire.backup.errors import BackupProtocolError, malformed
from quorumkeep.wire.backup.fields import read_hex, read_int, read_json, read_object
from quorumkeep.wire.backup.keyset import PublicKeyPackageInfo
from quorumkeep.wire.backup.protocol import MAX_DOMAINS, SHARE_SIZE, SHARES_FORMAT


@dataclass(frozen=True)
class KeyShare:
    """One participant's signing share of one domain's key in one epoch (secret)."""

    domain_id: int
    epoch: int
    participant_id: int
    signing_share: bytes = field(repr=False)

    def __repr__(self) -> str:
        return (
            f"KeyShare(domain_id={self.domain_id}, epoch={self.epoch}, "
            f"participant_id={self.participant_id}, signing_share=<hidden>)"
        )


def encode_shares(shares: Sequence[KeyShare]) -> bytes:
    """The plaintext sealed in a transfer and at rest: UTF-8 JSON, shares by ascending domain."""
    ordered = sorted(shares, key=lambda s: s.domain_id)
    document = {
        "format": SHARES_FORMAT,
        "shares": [
            {
                "domain_id": s.domain_id,
                "epoch": s.epoch,
                "participant_id": s.participant_id,
                "signing_share": s.signing_share.hex(),
            }
            for s in ordered
        ],
    }
    return json.dumps(document, sort_keys=True, separators=(",", ":")).encode("ascii")


def decode_shares(data: bytes) -> list[KeyShare]:
    """Strict inverse of :func:`encode_shares` (errors name fields, never values)."""
    document = read_json(data, "shares: not UTF-8 JSON")
    obj = read_object(document, "shares document", ["format", "shares"])
    if obj["format"] != SHARES_FORMAT:
        raise malformed("shares document: unknown format")
    items = obj["shares"]
    if not isinstance(items, list) or len(items) > MAX_DOMAINS:
        raise malformed(f"shares: expected a list of at most {MAX_DOMAINS}")
    out: list[KeyShare] = []
    previous = -1
    for i, item in enumerate(items):
        name = f"shares[{i}]"
        s = read_object(item, name, ["domain_id", "epoch", "participant_id", "signing_share"])
        domain_id = read_int(s["domain_id"], f"{name}.domain_id")
        if domain_id <= previous:
            raise malformed("shares: domain ids must be ascending and distinct")
        previous = domain_id
        share = read_hex(s["signing_share"], f"{name}.signing_share", SHARE_SIZE)
        try:
            scalar_decode(share)
        except InvalidEncoding:
            raise malformed(f"{name}.signing_share: not a canonical scalar") from None
        out.append(
            KeyShare(
                domain_id,
                read_int(s["epoch"], f"{name}.epoch"),
                read_int(s["participant_id"], f"{name}.participant_id", 1),
                share,
            )
        )
    return out


@dataclass(frozen=True)
class VerifiedShares:
    """Shares checked against the contract: the only form a node imports or a service stores."""

    account: str
    participant_id: int
    keyset: Keyset
    shares: tuple[KeyShare, ...]
    packages: Mapping[int, PublicKeyPackageInfo]

    def __repr__(self) -> str:
        return (
            f"VerifiedShares(account={self.account!r}, participant_id={self.participant_id}, "
            f"epoch={self.keyset.epoch}, domains={list(self.keyset.domain_ids)})"
        )

    def key_packages(self) -> dict[int, tuple[KeyPackage, PublicKeyPackage]]:
        """domain id → (key package, public key package), ready for a node's keystore."""
        out: dict[int, tuple[KeyPackage, PublicKeyPackage]] = {}
        for share in self.shares:
            package = self.packages[share.domain_id]
            public = package.package
            out[share.domain_id] = (
                KeyPackage(
                    identifier=share.participant_id,
                    signing_share=share.signing_share,
                    verifying_share=package.verifying_shares[share.participant_id],
                    group_public_key=package.public_key,
                    threshold=package.threshold,
                ),
                public,
            )
        return out


def verify_shares(
    account: str,
    participant_id: int,
    keyset: Keyset,
    shares: Sequence[KeyShare],
    packages: Mapping[int, PublicKeyPackageInfo],
) -> VerifiedShares:
    """Check shares against the contract's current keyset and public key packages.

    Every domain of the keyset must have exactly one share, of the keyset's epoch and of
    ``participant_id``, and ``share·G`` must equal the package's verifying share for that
    participant; every package must be of the keyset's epoch and carry the domain's key.
    Raises ``wrong_epoch`` or ``shares_mismatch`` naming the domain, never a value.
    """
    if not keyset.domains:
        raise BackupProtocolError("shares_mismatch", "the keyset has no domains to hold shares of")
    by_domain: dict[int, KeyShare] = {}
    for share in shares:
        if share.domain_id in by_domain:
            raise BackupProtocolError("shares_mismatch", f"two shares for domain {share.domain_id}")
        by_domain[share.domain_id] = share
    wanted = set(keyset.domain_ids)
    if set(by_domain) != wanted:
        missing = sorted(wanted - set(by_domain))
        extra = sorted(set(by_domain) - wanted)
        raise BackupProtocolError(
            "shares_mismatch",
            f"shares do not cover the keyset (missing domains {missing}, unexpected {extra})",
        )
    for domain in keyset.domains:
        share = by_domain[domain.domain_id]
        if share.epoch != keyset.epoch:
            raise BackupProtocolError(
                "wrong_epoch",
                f"share of domain {domain.domain_id} is of epoch {share.epoch}, "
                f"the contract is at epoch {keyset.epoch}",
            )
        if share.participant_id != participant_id:
            raise BackupProtocolError(
                "shares_mismatch",
                f"share of domain {domain.domain_id} is participant {share.participant_id}'s, "
                f"expected {participant_id}'s",
            )
        package = packages.get(domain.domain_id)
        if package is None or package.domain_id != domain.domain_id:
            raise BackupProtocolError(
                "shares_mismatch", f"no public key package for domain {domain.domain_id}"
            )
        if package.epoch != keyset.epoch or package.public_key != domain.public_key:
            raise BackupProtocolError(
                "wrong_keyset",
                f"the public key package of domain {domain.domain_id} is not the keyset's",
            )
        expected = package.verifying_shares.get(participant_id)
        if expected is None:
            raise BackupProtocolError(
                "shares_mismatch",
                f"domain {domain.domain_id} has no verifying share for participant "
                f"{participant_id}",
            )
        try:
            actual = base_mul(scalar_decode(share.signing_share))
        except InvalidEncoding:
            raise BackupProtocolError(
                "shares_mismatch", f"share of domain {domain.domain_id} is not a scalar"
            ) from None
        if actual != expected:
            raise BackupProtocolError(
                "shares_mismatch",
                f"share of domain {domain.domain_id} does not match participant "
                f"{participant_id}'s verifying share",
            )
    ordered = tuple(by_domain[d] for d in keyset.domain_ids)
    return VerifiedShares(
        account,
        participant_id,
        keyset,
        ordered,
        {d: packages[d] for d in keyset.domain_ids},
    )
