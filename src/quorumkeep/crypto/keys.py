"""Key material of a threshold group, trusted-dealer key generation and Feldman VSS.

A participant holds a ``KeyPackage`` (its secret share and the public data it signs
with); everyone can hold the ``PublicKeyPackage`` (group key and every participant's
verifying share), which is what the contract, backups and repairs are checked against.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from quorumkeep.crypto.errors import CheaterDetected, InvalidParameters
from quorumkeep.crypto.group import (
    Element,
    RandomBytes,
    Scalar,
    base_mul,
    commitment_evaluate,
    identifier_scalar,
    polynomial_evaluate,
    random_scalar,
    vss_commit,
)


@dataclass(frozen=True)
class PublicKeyPackage:
    """The public side of a threshold key: what every party may know."""

    group_public_key: Element
    verifying_shares: Mapping[int, Element]
    threshold: int

    @property
    def identifiers(self) -> list[int]:
        return sorted(self.verifying_shares)


@dataclass(frozen=True)
class KeyPackage:
    """One participant's share of a threshold key. ``signing_share`` is secret."""

    identifier: int
    signing_share: Scalar = field(repr=False)
    verifying_share: Element
    group_public_key: Element
    threshold: int

    def __repr__(self) -> str:  # never print the share, even by accident
        return (
            f"KeyPackage(identifier={self.identifier}, threshold={self.threshold}, "
            f"group_public_key={self.group_public_key.hex()})"
        )


def check_parameters(threshold: int, identifiers: Sequence[int]) -> None:
    """2 <= t <= n, identifiers distinct and each in [1, L)."""
    n = len(identifiers)
    if len(set(identifiers)) != n:
        raise InvalidParameters("duplicate participant identifiers")
    for identifier in identifiers:
        identifier_scalar(identifier)
    if not 2 <= threshold <= n:
        raise InvalidParameters(f"threshold must satisfy 2 <= t <= n, got t={threshold}, n={n}")


def vss_verify(identifier: int, share: Scalar, commitment: Sequence[Element]) -> bool:
    """Whether share·G equals the commitment evaluated at the identifier."""
    return base_mul(share) == commitment_evaluate(identifier, list(commitment))


def trusted_dealer_keygen(
    secret: Scalar,
    threshold: int,
    identifiers: Sequence[int],
    random_bytes: RandomBytes,
    coefficients: Sequence[Scalar] | None = None,
) -> tuple[dict[int, KeyPackage], PublicKeyPackage, list[Element]]:
    """Shamir-share ``secret`` among ``identifiers`` with Feldman commitments.

    ``coefficients`` (t-1 of them) may be given to reproduce test vectors; otherwise
    they are drawn from ``random_bytes``. Every share is checked against the
    commitment before it is returned, so a bug here cannot hand out a bad share.
    """
    check_parameters(threshold, identifiers)
    if coefficients is None:
        coefficients = [random_scalar(random_bytes) for _ in range(threshold - 1)]
    if len(coefficients) != threshold - 1:
        raise InvalidParameters(f"need {threshold - 1} coefficients, got {len(coefficients)}")
    polynomial = [secret, *coefficients]
    commitment = vss_commit(polynomial)
    group_public_key = commitment[0]
    packages: dict[int, KeyPackage] = {}
    verifying_shares: dict[int, Element] = {}
    for identifier in identifiers:
        share = polynomial_evaluate(identifier_scalar(identifier), polynomial)
        if not vss_verify(identifier, share, commitment):
            raise CheaterDetected(0, "dealer share does not match its commitment")
        verifying_share = base_mul(share)
        verifying_shares[identifier] = verifying_share
        packages[identifier] = KeyPackage(
            identifier=identifier,
            signing_share=share,
            verifying_share=verifying_share,
            group_public_key=group_public_key,
            threshold=threshold,
        )
    public = PublicKeyPackage(group_public_key, verifying_shares, threshold)
    return packages, public, commitment
