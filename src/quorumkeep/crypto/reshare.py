"""Resharing a threshold key to a new participant set and threshold; refresh.

The group public key never changes. Notation: old participants O with threshold t_old and
verifying shares V_i (the old ``PublicKeyPackage``); dealers D ⊆ O with |D| >= t_old; new
participants N with threshold t_new; λ_i the Lagrange coefficient of i over D at 0, so
that Σ_{i∈D} λ_i·s_i = s and Σ_{i∈D} λ_i·V_i = PK.

deal (old holder i ∈ D)::

    g_i(x) = λ_i·s_i + b_1·x + .. + b_(t_new-1)·x^(t_new-1)     b_k random non-zero
    publish ResharePublicPackage(C_i = [g_i's coefficients · G])
    to every j ∈ N, over a private channel (the caller seals it):  SubShare(g_i(j))

receive (new holder j ∈ N, holding every dealer's package and sub-share)::

    for every i ∈ D:  len(C_i) == t_new  and  C_i0 == λ_i·V_i      else CheaterDetected(i)
    Σ_i C_i0 == PK                                                  else InvalidParameters
    C = Σ_i C_i;  V'_p = C(p) for every p ∈ N
    s'_j = Σ_i g_i(j);  s'_j·G == V'_j, else the i with g_i(j)·G != C_i(j) → CheaterDetected(i)

The constant-term check is what stops a dealer from changing the key: its commitment's
constant term must be exactly its Lagrange-weighted old verifying share. The new sharing
g = Σ g_i has g(0) = Σ λ_i·s_i = s and degree t_new-1, independent of the old polynomial
beyond g(0). Sub-shares are checked in one batch as in ``dkg`` (its module doc).

Admission rules, checked by both sides: D ⊆ O, |D| >= t_old (fewer cannot interpolate
s, so their constant terms would not add up to PK); 2 <= t_new <= |N|; and
|O ∩ N| >= t_old (the contract's rule: enough current holders stay that the old
threshold still holds the key across the change).

What the caller must provide: the same dealer set, new set and threshold at every party
(from the contract); a broadcast channel for the public packages (receivers that saw
different ones end with different PublicKeyPackages, so compare them before using the
new shares and before anyone deletes an old one); a private channel for sub-shares;
public packages from the wire decoded with ``from_bytes``/``from_dict``.

Wire formats:
    ResharePublicPackage bytes: u16 t_new || C_0 .. C_(t_new-1) (32 bytes each)
    ResharePublicPackage dict:  {"commitment": [hex, ...]}
    SubShare bytes:             the 32-byte scalar g_i(j)
    SubShare dict:              {"sub_share": hex}
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from nacl.exceptions import CryptoError as _SodiumError

from quorumkeep.crypto import encoding
from quorumkeep.crypto.dkg import Commitment, sum_commitments, verifying_shares
from quorumkeep.crypto.errors import CheaterDetected, InvalidEncoding, InvalidParameters
from quorumkeep.crypto.group import (
    ELEMENT_SIZE,
    IDENTITY,
    Element,
    RandomBytes,
    Scalar,
    base_mul,
    element_mul,
    element_sum,
    identifier_scalar,
    lagrange_coefficient,
    polynomial_evaluate,
    random_scalar,
    scalar_decode,
    scalar_mul,
    scalar_sum,
    vss_commit,
)
from quorumkeep.crypto.keys import KeyPackage, PublicKeyPackage, check_parameters, vss_verify


@dataclass(frozen=True, slots=True)
class ResharePublicPackage:
    """A dealer's public message: the Feldman commitment to its resharing polynomial."""

    commitment: Commitment

    def to_bytes(self) -> bytes:
        return encoding.encode_elements(self.commitment)

    @classmethod
    def from_bytes(cls, data: bytes) -> ResharePublicPackage:
        reader = encoding.Reader(data, "reshare package")
        commitment = reader.elements("commitment")
        reader.finish()
        return cls(commitment)

    def to_dict(self) -> dict[str, object]:
        return {"commitment": [c.hex() for c in self.commitment]}

    @classmethod
    def from_dict(cls, obj: object) -> ResharePublicPackage:
        what = "reshare package"
        top = encoding.fields(obj, ("commitment",), what)
        return cls(encoding.hex_elements(top["commitment"], f"{what}: commitment"))


@dataclass(frozen=True, slots=True)
class SubShare:
    """g_i(j), what dealer i sends new holder j. Secret: seal it before sending."""

    value: Scalar = field(repr=False)

    def __repr__(self) -> str:
        return "SubShare(<secret>)"

    def to_bytes(self) -> bytes:
        return self.value

    @classmethod
    def from_bytes(cls, data: bytes) -> SubShare:
        reader = encoding.Reader(data, "sub-share")
        value = reader.scalar("sub-share")
        reader.finish()
        return cls(value)

    def to_dict(self) -> dict[str, object]:
        return {"sub_share": self.value.hex()}

    @classmethod
    def from_dict(cls, obj: object) -> SubShare:
        top = encoding.fields(obj, ("sub_share",), "sub-share")
        return cls(encoding.hex_scalar(top["sub_share"], "sub-share"))


# --- admission -------------------------------------------------------------------------


def check_resharing(
    old_public: PublicKeyPackage,
    dealers: Sequence[int],
    new_participants: Sequence[int],
    new_threshold: int,
) -> None:
    """The admission rules (module doc); ``InvalidParameters`` names the one broken."""
    old = set(old_public.verifying_shares)
    t_old = old_public.threshold
    if len(set(dealers)) != len(dealers):
        raise InvalidParameters("duplicate dealer identifiers")
    strangers = sorted(set(dealers) - old)
    if strangers:
        raise InvalidParameters(f"dealers {strangers} hold no share of the old key")
    if len(dealers) < t_old:
        raise InvalidParameters(
            f"{len(dealers)} dealers cannot reshare a key with threshold {t_old}: "
            f"at least {t_old} old holders must deal"
        )
    check_parameters(new_threshold, new_participants)
    staying = len(old & set(new_participants))
    if staying < t_old:
        raise InvalidParameters(
            f"only {staying} old participants stay in the new set; the old threshold "
            f"{t_old} requires at least {t_old}"
        )


def _lagrange(identifier: int, dealers: Sequence[int]) -> Scalar:
    return lagrange_coefficient(
        identifier_scalar(identifier), [identifier_scalar(d) for d in dealers]
    )


# --- dealing and receiving -------------------------------------------------------------


def deal(
    key_package: KeyPackage,
    old_public: PublicKeyPackage,
    dealers: Sequence[int],
    new_participants: Sequence[int],
    new_threshold: int,
    random_bytes: RandomBytes,
) -> tuple[ResharePublicPackage, dict[int, SubShare]]:
    """An old holder's part: broadcast the package, send each new holder its sub-share.

    The sub-shares are keyed by new participant, this dealer's own new identifier
    included when it stays.
    """
    check_resharing(old_public, dealers, new_participants, new_threshold)
    me = key_package.identifier
    if me not in dealers:
        raise InvalidParameters(f"participant {me} is not one of the dealers")
    if (
        key_package.group_public_key != old_public.group_public_key
        or key_package.threshold != old_public.threshold
        or key_package.verifying_share != old_public.verifying_shares[me]
        or base_mul(key_package.signing_share) != key_package.verifying_share
    ):
        raise InvalidParameters(
            f"the key package of participant {me} does not belong to the old public key package"
        )
    constant = scalar_mul(_lagrange(me, dealers), key_package.signing_share)
    polynomial = [constant, *(random_scalar(random_bytes) for _ in range(new_threshold - 1))]
    package = ResharePublicPackage(tuple(vss_commit(polynomial)))
    sub_shares = {
        j: SubShare(polynomial_evaluate(identifier_scalar(j), polynomial))
        for j in sorted(new_participants)
    }
    return package, sub_shares


def receive(
    identifier: int,
    old_public: PublicKeyPackage,
    dealers: Sequence[int],
    new_participants: Sequence[int],
    new_threshold: int,
    public_packages: Mapping[int, ResharePublicPackage],
    sub_shares: Mapping[int, SubShare],
) -> tuple[KeyPackage, PublicKeyPackage]:
    """A new holder's part: verify every dealer's package and sub-share, add them up.

    ``public_packages`` and ``sub_shares`` are keyed by dealer and must hold exactly the
    dealers. Returns this holder's new KeyPackage and the new PublicKeyPackage (same
    group key, new verifying shares, new threshold). A dealer whose commitment would
    change the key, or whose sub-share does not match its commitment, is named by
    ``CheaterDetected`` (the lowest identifier first).
    """
    check_resharing(old_public, dealers, new_participants, new_threshold)
    if identifier not in new_participants:
        raise InvalidParameters(f"participant {identifier} is not in the new participant set")
    for what, received in (("reshare packages", public_packages), ("sub-shares", sub_shares)):
        if set(received) != set(dealers):
            missing = sorted(set(dealers) - set(received))
            unexpected = sorted(set(received) - set(dealers))
            raise InvalidParameters(f"{what}: missing from {missing}, unexpected from {unexpected}")

    ordered = sorted(dealers)
    values: dict[int, Scalar] = {}
    for dealer in ordered:
        commitment = public_packages[dealer].commitment
        if len(commitment) != new_threshold:
            raise CheaterDetected(
                dealer, f"commitment has {len(commitment)} coefficients, expected {new_threshold}"
            )
        if any(len(c) != ELEMENT_SIZE for c in commitment) or commitment[0] == IDENTITY:
            raise CheaterDetected(dealer, "commitment holds an invalid element")
        try:
            values[dealer] = scalar_decode(sub_shares[dealer].value)
        except InvalidEncoding:
            raise CheaterDetected(dealer, "sub-share is not a canonical scalar") from None
        try:
            weighted = element_mul(old_public.verifying_shares[dealer], _lagrange(dealer, dealers))
        except _SodiumError:
            raise InvalidParameters(
                f"old verifying share of participant {dealer} is not a valid element"
            ) from None
        if commitment[0] != weighted:
            raise CheaterDetected(
                dealer, "commitment's constant term is not its weighted old verifying share"
            )
    constants: list[Element] = [public_packages[d].commitment[0] for d in ordered]
    if element_sum(constants) != old_public.group_public_key:
        raise InvalidParameters("the old verifying shares do not interpolate to the old group key")

    commitments = [public_packages[d].commitment for d in ordered]
    new_shares = verifying_shares(new_participants, sum_commitments(commitments))
    signing_share = scalar_sum(values[d] for d in ordered)
    if base_mul(signing_share) != new_shares[identifier]:
        for dealer in ordered:
            if not vss_verify(identifier, values[dealer], public_packages[dealer].commitment):
                raise CheaterDetected(dealer, "sub-share does not match its commitment")
        raise InvalidParameters("sub-shares are inconsistent with the commitments")
    group_public_key = old_public.group_public_key
    key_package = KeyPackage(
        identifier=identifier,
        signing_share=signing_share,
        verifying_share=new_shares[identifier],
        group_public_key=group_public_key,
        threshold=new_threshold,
    )
    return key_package, PublicKeyPackage(group_public_key, new_shares, new_threshold)


# --- refresh ---------------------------------------------------------------------------

# Why refresh refuses any change of threshold or participant set.
#
# A refresh promises one thing: afterwards every earlier share is worthless, so a party
# that left, a stolen disk or a stale backup gains nothing. It can only promise that if the
# access structure stays what everyone believes it is. ZF FROST's refresh took min_signers
# as an input and did not check it against the key's threshold until
# ZcashFoundation/frost#908 added the check. Its refresh adds a zero-constant polynomial of degree
# min_signers-1 to the old one, so a different min_signers leaves the shares on a
# polynomial whose degree is the larger of the two: lowered, the new key packages claim a
# threshold their shares do not have (and every later Lagrange set is sized by that lie);
# raised, say from 2 to 3 while removing a party, the group believes the removed party now
# needs two accomplices, yet the old shares are still a 2-of-n sharing of the same key: the
# removed party's share plus one old share nobody bothered to wipe ("the threshold is 3
# now") rebuild the key. Changing who holds the key or how many are needed is a
# resharing: ``deal``/``receive`` with their admission rules, run by the contract as a new
# epoch, so that every holder, backup and repair helper learns which shares and which
# threshold are current. ``refresh_deal``/``refresh_receive`` therefore take the intended
# set and threshold and refuse anything but the current ones.


def check_refresh(
    old_public: PublicKeyPackage,
    dealers: Sequence[int],
    participants: Sequence[int],
    threshold: int,
) -> None:
    """Refresh keeps the set and the threshold; see the comment above for why."""
    if threshold != old_public.threshold:
        raise InvalidParameters(
            f"a refresh keeps the threshold ({old_public.threshold}); changing it to "
            f"{threshold} needs a resharing"
        )
    if sorted(participants) != old_public.identifiers:
        raise InvalidParameters(
            "a refresh keeps the participant set; changing it needs a resharing"
        )
    check_resharing(old_public, dealers, participants, threshold)


def refresh_deal(
    key_package: KeyPackage,
    old_public: PublicKeyPackage,
    dealers: Sequence[int],
    participants: Sequence[int],
    threshold: int,
    random_bytes: RandomBytes,
) -> tuple[ResharePublicPackage, dict[int, SubShare]]:
    """``deal`` for a refresh: ``participants`` and ``threshold`` must be the current ones."""
    check_refresh(old_public, dealers, participants, threshold)
    return deal(key_package, old_public, dealers, participants, threshold, random_bytes)


def refresh_receive(
    identifier: int,
    old_public: PublicKeyPackage,
    dealers: Sequence[int],
    participants: Sequence[int],
    threshold: int,
    public_packages: Mapping[int, ResharePublicPackage],
    sub_shares: Mapping[int, SubShare],
) -> tuple[KeyPackage, PublicKeyPackage]:
    """``receive`` for a refresh: ``participants`` and ``threshold`` must be the current ones."""
    check_refresh(old_public, dealers, participants, threshold)
    return receive(
        identifier, old_public, dealers, participants, threshold, public_packages, sub_shares
    )
