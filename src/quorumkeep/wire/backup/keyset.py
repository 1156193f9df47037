"""The keyset and public key package views of the contract, as the backup protocol reads them.

The keyset is the contract's model (:class:`quorumkeep.contract.state.Keyset`, its hash
included); this module only reads its JSON under the protocol's rules and error codes.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from quorumkeep.contract.state import DomainKey, Keyset
from quorumkeep.crypto.keys import PublicKeyPackage
from quorumkeep.wire.backup.errors import malformed
from quorumkeep.wire.backup.fields import read_ed25519_key, read_int, read_object
from quorumkeep.wire.backup.protocol import ID_RE, MAX_DOMAINS


def read_keyset(value: object, what: str = "keyset") -> Keyset:
    """The contract's keyset view (epoch, and each domain's id, scheme and group key in
    ascending id order) as the backup protocol reads it: the contract's own model, without
    verifying shares."""
    obj = read_object(value, what, ["epoch", "domains"])
    epoch = read_int(obj["epoch"], f"{what}.epoch")
    items = obj["domains"]
    if not isinstance(items, list) or len(items) > MAX_DOMAINS:
        raise malformed(f"{what}.domains: expected a list of at most {MAX_DOMAINS}")
    domains = []
    previous = -1
    for i, item in enumerate(items):
        name = f"{what}.domains[{i}]"
        d = read_object(item, name, ["domain_id", "scheme", "public_key"])
        domain_id = read_int(d["domain_id"], f"{name}.domain_id")
        if domain_id <= previous:
            raise malformed(f"{what}.domains: ids must be ascending and distinct")
        previous = domain_id
        scheme = d["scheme"]
        if not isinstance(scheme, str) or not 1 <= len(scheme) <= 32 or not scheme.isascii():
            raise malformed(f"{name}.scheme: expected 1..32 ASCII characters")
        domains.append(DomainKey(domain_id, scheme, read_ed25519_key(d["public_key"], name)))
    return Keyset(epoch, tuple(domains))


@dataclass(frozen=True)
class PublicKeyPackageInfo:
    """The contract's ``public_key_package`` view of one domain: the domain and epoch it is
    of, and the package in the one model of public key packages
    (:class:`quorumkeep.crypto.keys.PublicKeyPackage`, which the mesh encodes its own way)."""

    domain_id: int
    epoch: int
    package: PublicKeyPackage

    @property
    def public_key(self) -> bytes:
        return self.package.group_public_key

    @property
    def threshold(self) -> int:
        return self.package.threshold

    @property
    def verifying_shares(self) -> Mapping[int, bytes]:
        return self.package.verifying_shares

    @classmethod
    def from_json(cls, value: object, what: str = "public key package") -> PublicKeyPackageInfo:
        obj = read_object(
            value, what, ["domain_id", "epoch", "public_key", "threshold", "verifying_shares"]
        )
        raw = obj["verifying_shares"]
        if not isinstance(raw, Mapping) or not raw:
            raise malformed(f"{what}.verifying_shares: expected a non-empty object")
        shares: dict[int, bytes] = {}
        for key, share in raw.items():
            if not isinstance(key, str) or not ID_RE.match(key):
                raise malformed(f"{what}.verifying_shares: keys are participant ids")
            pid = read_int(int(key), f"{what}.verifying_shares key", 1)
            shares[pid] = read_ed25519_key(share, f"{what}.verifying_shares[{pid}]")
        threshold = read_int(obj["threshold"], f"{what}.threshold", 1, len(shares))
        domain_id = read_int(obj["domain_id"], f"{what}.domain_id")
        epoch = read_int(obj["epoch"], f"{what}.epoch")
        public_key = read_ed25519_key(obj["public_key"], f"{what}.public_key")
        return cls(
            domain_id, epoch, PublicKeyPackage(public_key, dict(sorted(shares.items())), threshold)
        )

    def to_json(self) -> dict[str, Any]:
        return {
            "domain_id": self.domain_id,
            "epoch": self.epoch,
            "public_key": self.public_key.hex(),
            "threshold": self.threshold,
            "verifying_shares": {str(p): s.hex() for p, s in sorted(self.verifying_shares.items())},
        }


def public_key_package_json(domain_id: int, epoch: int, public: PublicKeyPackage) -> dict[str, Any]:
    """The view's JSON for a package made with :mod:`quorumkeep.crypto.keys` (tests, tools)."""
    return PublicKeyPackageInfo(domain_id, epoch, public).to_json()
