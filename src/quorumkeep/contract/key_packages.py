"""Public key packages: the checks a voted package passes before the contract keeps it.

Backups, migrations and repairs are verified against the package (a share is valid when
share·G equals the participant's verifying share), and a newcomer to a resharing learns
the old verifying shares from it, so the contract refuses packages that are visibly
wrong instead of storing them. Unanimity does the rest: a package counts only once every
participant voted exactly the same one.
"""

from __future__ import annotations

from quorumkeep.contract.records import VerifyingShares
from quorumkeep.contract.state import Participants
from quorumkeep.crypto.group import (
    element_mul,
    element_sum,
    identifier_scalar,
    lagrange_coefficient,
)


def _ids(ids: list[int]) -> str:
    return ", ".join(str(i) for i in ids)


def coverage_problem(shares: VerifyingShares, participants: Participants) -> str | None:
    """Why the shares do not name exactly the participants' ids, or None."""
    given = {pid for pid, _ in shares}
    expected = {m.participant_id for m in participants.members}
    if given == expected:
        return None
    missing = sorted(expected - given)
    extra = sorted(given - expected)
    parts = []
    if missing:
        parts.append(f"missing participant(s) {_ids(missing)}")
    if extra:
        parts.append(f"participant(s) {_ids(extra)} not in the set")
    return f"verifying_shares must cover exactly participants {_ids(sorted(expected))}: " + (
        "; ".join(parts)
    )


def interpolated_key(shares: VerifyingShares, threshold: int) -> bytes:
    """Σ λ_i·Y_i over the ``threshold`` lowest ids: the group key if the shares are sound.

    With shares s_i = f(i) of a degree t−1 polynomial, Y_i = s_i·G and λ_i the Lagrange
    coefficients at 0 of that subset, Σ λ_i·Y_i = f(0)·G is the group public key.
    """
    subset = shares[:threshold]
    xs = [identifier_scalar(pid) for pid, _ in subset]
    return element_sum(
        element_mul(y, lagrange_coefficient(x, xs)) for x, (_, y) in zip(xs, subset, strict=True)
    )


def package_problem(
    public_key: bytes, shares: VerifyingShares, participants: Participants
) -> str | None:
    """Why (public_key, shares) is not a package for ``participants``, or None.

    Checks that the shares name exactly the set's ids and that the lowest ``threshold`` of
    them interpolate, in the exponent, to ``public_key``. One subset is a sanity check,
    not a proof that every share lies on the same polynomial: that needs every node's
    agreement, which the vote requires anyway.
    """
    problem = coverage_problem(shares, participants)
    if problem is not None:
        return problem
    if interpolated_key(shares, participants.threshold) != public_key:
        return (
            f"the verifying shares of the {participants.threshold} lowest participant ids do "
            "not interpolate to the public key"
        )
    return None
