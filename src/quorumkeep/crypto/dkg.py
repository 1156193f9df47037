"""PedPoP: Pedersen's distributed key generation with Schnorr proofs of knowledge.

The layout follows ZF FROST's ``keys::dkg``: three local steps, two message rounds.
Participants are integers ``1 <= id < L`` (any, not only ``1..n``); ``t`` is the threshold;
``ctx`` is a caller-chosen session context (a DKG session id: domain, epoch, attempt),
identical for every participant of one run and never reused for another.

part1 (participant i)::

    a_i0 .. a_i(t-1)  random non-zero scalars      f_i(x) = Σ_k a_ik·x^k
    C_i = [a_i0·G, .., a_i(t-1)·G]                 Feldman commitment
    k random;  R = k·G;  c = H_pok(i, ctx, C_i0, R);  mu = k + a_i0·c
    broadcast Round1Package(C_i, R, mu)

part2 (participant i, holding every other participant's Round1Package)::

    for every j != i:  len(C_j) == t  and  R_j == mu_j·G - c_j·C_j0   else CheaterDetected(j)
    to every j != i, over a private channel (the caller seals it):  Round2Package(f_i(j))

part3 (participant i, holding every f_j(i))::

    C = Σ_j C_j (coefficient-wise);  PK = C_0;  V_p = Σ_k C_k·p^k for every participant p
    s_i = Σ_j f_j(i);  s_i·G == V_i, else the j with f_j(i)·G != C_j(i) → CheaterDetected(j)

    H_pok(i, ctx, C0, R) = SHA-512("quorumkeep pedpop pok v1" || len32(ctx) || ctx
                                   || id32(i) || C0 || R)  as a little-endian integer mod L

``len32`` is a 4-byte big-endian length, ``id32`` the identifier as a 32-byte little-endian
scalar. The proof binds the sender's identifier (a proof cannot be re-used under another
name, the rogue-key attack PedPoP exists to stop) and the session context (a proof from
another DKG cannot be replayed into this one).

Part 3 checks the received shares in one batch: Σ_j f_j(i)·G == (Σ_j C_j)(i), where the
right-hand side is V_i, which part 3 computes anyway. That costs one base multiplication
instead of t per sender. Only when the batch fails are the shares checked one by one to
name the sender; by linearity some sender then fails its own check. Senders whose errors
cancel in the sum are not named, but then the result is consistent: s_i·G == V_i.

What the caller must provide:
- a broadcast channel for round 1: every participant must see the same Round1Packages.
  Participants that saw different ones end with different PublicKeyPackages, so the
  run is complete only when all of them agree on it (quorumkeep votes the public key).
- a private, authenticated channel for round 2 (``crypto.seal``); Round2Packages are
  secret.
- Round1Packages that came over the wire decoded with ``Round1Package.from_bytes`` or
  ``from_dict``: those validate every element. Packages are otherwise trusted as built.

Wire formats:
    Round1Package bytes: u16 t || C_0 .. C_(t-1) (32 bytes each) || R (32) || mu (32)
    Round1Package dict:  {"commitment": [hex, ...], "proof": {"R": hex, "mu": hex}}
    Round2Package bytes: signing_share (32-byte scalar)
    Round2Package dict:  {"signing_share": hex}
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from nacl.exceptions import CryptoError as _SodiumError

from quorumkeep.crypto import encoding
from quorumkeep.crypto.errors import CheaterDetected, InvalidEncoding, InvalidParameters
from quorumkeep.crypto.group import (
    ELEMENT_SIZE,
    IDENTITY,
    SCALAR_SIZE,
    Element,
    RandomBytes,
    Scalar,
    base_mul,
    element_add,
    element_mul,
    element_sub,
    identifier_scalar,
    polynomial_evaluate,
    random_scalar,
    scalar_add,
    scalar_decode,
    scalar_mul,
    scalar_reduce,
    scalar_sum,
    vss_commit,
)
from quorumkeep.crypto.keys import KeyPackage, PublicKeyPackage, check_parameters, vss_verify
from quorumkeep.encoding.fields import len32

POK_DOMAIN = b"quorumkeep pedpop pok v1"

Commitment = tuple[Element, ...]
"""A Feldman commitment [a_0·G, .., a_(t-1)·G]; index 0 commits to the constant term."""


# --- packages --------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Round1Package:
    """Participant's public round-1 message: its commitment and proof of knowledge."""

    commitment: Commitment
    proof_r: Element
    proof_mu: Scalar

    def to_bytes(self) -> bytes:
        return encoding.encode_elements(self.commitment) + self.proof_r + self.proof_mu

    @classmethod
    def from_bytes(cls, data: bytes) -> Round1Package:
        reader = encoding.Reader(data, "round-1 package")
        commitment = reader.elements("commitment")
        proof_r = reader.element("proof R")
        proof_mu = reader.scalar("proof mu")
        reader.finish()
        return cls(commitment, proof_r, proof_mu)

    def to_dict(self) -> dict[str, object]:
        return {
            "commitment": [c.hex() for c in self.commitment],
            "proof": {"R": self.proof_r.hex(), "mu": self.proof_mu.hex()},
        }

    @classmethod
    def from_dict(cls, obj: object) -> Round1Package:
        what = "round-1 package"
        top = encoding.fields(obj, ("commitment", "proof"), what)
        proof = encoding.fields(top["proof"], ("R", "mu"), f"{what}: proof")
        return cls(
            encoding.hex_elements(top["commitment"], f"{what}: commitment"),
            encoding.hex_element(proof["R"], f"{what}: proof R"),
            encoding.hex_scalar(proof["mu"], f"{what}: proof mu"),
        )


@dataclass(frozen=True, slots=True)
class Round2Package:
    """The secret share f_i(j) that participant i sends to j. Seal it before sending."""

    signing_share: Scalar = field(repr=False)

    def __repr__(self) -> str:
        return "Round2Package(<secret>)"

    def to_bytes(self) -> bytes:
        return self.signing_share

    @classmethod
    def from_bytes(cls, data: bytes) -> Round2Package:
        reader = encoding.Reader(data, "round-2 package")
        share = reader.scalar("signing share")
        reader.finish()
        return cls(share)

    def to_dict(self) -> dict[str, object]:
        return {"signing_share": self.signing_share.hex()}

    @classmethod
    def from_dict(cls, obj: object) -> Round2Package:
        what = "round-2 package"
        top = encoding.fields(obj, ("signing_share",), what)
        return cls(encoding.hex_scalar(top["signing_share"], f"{what}: signing share"))


@dataclass(frozen=True, slots=True, eq=False)
class Round1SecretPackage:
    """What participant i keeps between part1 and part2. Holds its secret polynomial."""

    identifier: int
    participants: tuple[int, ...]
    threshold: int
    context: bytes
    coefficients: tuple[Scalar, ...] = field(repr=False)
    package: Round1Package

    def __repr__(self) -> str:
        return (
            f"Round1SecretPackage(identifier={self.identifier}, "
            f"participants={list(self.participants)}, threshold={self.threshold}, <secret>)"
        )


@dataclass(frozen=True, slots=True, eq=False)
class Round2SecretPackage:
    """What participant i keeps between part2 and part3: f_i(i) and the verified
    commitments of every participant (its own included)."""

    identifier: int
    participants: tuple[int, ...]
    threshold: int
    own_share: Scalar = field(repr=False)
    commitments: Mapping[int, Commitment]

    def __repr__(self) -> str:
        return (
            f"Round2SecretPackage(identifier={self.identifier}, "
            f"participants={list(self.participants)}, threshold={self.threshold}, <secret>)"
        )


# --- Feldman commitments (shared with reshare) -----------------------------------------


def sum_commitments(commitments: Sequence[Commitment]) -> Commitment:
    """Coefficient-wise sum of equally long commitments: the commitment of Σ f_j."""
    if not commitments:
        raise InvalidParameters("no commitments to add")
    length = len(commitments[0])
    if any(len(c) != length for c in commitments):
        raise InvalidParameters("commitments of different lengths cannot be added")
    total = list(commitments[0])
    for commitment in commitments[1:]:
        for k, c in enumerate(commitment):
            total[k] = element_add(total[k], c)
    return tuple(total)


def evaluate_commitment(identifier: int, commitment: Commitment) -> Element:
    """Σ_k C_k·x^k by Horner's rule: t-1 multiplications (group.commitment_evaluate makes t)."""
    x = identifier_scalar(identifier)
    value = commitment[-1]
    for c in reversed(commitment[:-1]):
        value = element_add(element_mul(value, x), c)
    return value


def verifying_shares(identifiers: Sequence[int], commitment: Commitment) -> dict[int, Element]:
    """Every participant's verifying share V_p = C(p), keyed and ordered by identifier."""
    return {p: evaluate_commitment(p, commitment) for p in sorted(identifiers)}


# --- the proof of knowledge ------------------------------------------------------------


def pok_challenge(identifier: int, context: bytes, constant: Element, r: Element) -> Scalar:
    """H_pok (module doc)."""
    h = hashlib.sha512(POK_DOMAIN + len32(context) + identifier_scalar(identifier) + constant + r)
    return scalar_reduce(h.digest())


def _check_context(context: bytes) -> bytes:
    if not isinstance(context, bytes | bytearray):
        raise InvalidParameters("the DKG context must be bytes")
    if not context:
        raise InvalidParameters("the DKG context must not be empty: it is the session id")
    if len(context) >= 2**32:
        raise InvalidParameters("the DKG context is too long")
    return bytes(context)


def _verify_round1(sender: int, package: Round1Package, threshold: int, context: bytes) -> None:
    commitment = package.commitment
    if len(commitment) != threshold:
        raise CheaterDetected(
            sender, f"commitment has {len(commitment)} coefficients, expected {threshold}"
        )
    if any(len(c) != ELEMENT_SIZE for c in commitment) or commitment[0] == IDENTITY:
        raise CheaterDetected(sender, "commitment holds an invalid element")
    if len(package.proof_r) != ELEMENT_SIZE or len(package.proof_mu) != SCALAR_SIZE:
        raise CheaterDetected(sender, "proof of knowledge is malformed")
    try:
        scalar_decode(package.proof_mu)
        challenge = pok_challenge(sender, context, commitment[0], package.proof_r)
        # libsodium's multiplication validates C_0 (canonical, prime-order subgroup)
        expected_r = element_sub(base_mul(package.proof_mu), element_mul(commitment[0], challenge))
    except (InvalidEncoding, _SodiumError):
        raise CheaterDetected(sender, "proof of knowledge is malformed") from None
    if expected_r != package.proof_r:
        raise CheaterDetected(sender, "proof of knowledge does not verify")


def _check_senders(
    identifier: int, participants: Sequence[int], received: Mapping[int, object], what: str
) -> list[int]:
    """The other participants, after checking that ``received`` holds exactly them
    (round 1 may also carry our own package)."""
    others = [p for p in participants if p != identifier]
    keys = set(received) - {identifier}
    if keys != set(others):
        missing = sorted(set(others) - keys)
        unexpected = sorted(keys - set(others))
        raise InvalidParameters(f"{what}: missing from {missing}, unexpected from {unexpected}")
    return others


# --- the three parts -------------------------------------------------------------------


def part1(
    identifier: int,
    participants: Sequence[int],
    threshold: int,
    random_bytes: RandomBytes,
    *,
    context: bytes,
) -> tuple[Round1SecretPackage, Round1Package]:
    """Draw this participant's polynomial, commit to it and prove knowledge of a_i0.

    Broadcast the Round1Package to every other participant; keep the secret package.
    """
    check_parameters(threshold, participants)
    if identifier not in participants:
        raise InvalidParameters(f"participant {identifier} is not in the participant list")
    context = _check_context(context)
    coefficients = tuple(random_scalar(random_bytes) for _ in range(threshold))
    commitment = tuple(vss_commit(list(coefficients)))
    nonce = random_scalar(random_bytes)
    proof_r = base_mul(nonce)
    challenge = pok_challenge(identifier, context, commitment[0], proof_r)
    proof_mu = scalar_add(nonce, scalar_mul(coefficients[0], challenge))
    package = Round1Package(commitment, proof_r, proof_mu)
    secret = Round1SecretPackage(
        identifier=identifier,
        participants=tuple(sorted(participants)),
        threshold=threshold,
        context=context,
        coefficients=coefficients,
        package=package,
    )
    return secret, package


def part2(
    secret_package: Round1SecretPackage, round1_packages: Mapping[int, Round1Package]
) -> tuple[Round2SecretPackage, dict[int, Round2Package]]:
    """Verify every other participant's proof of knowledge, then deal the shares.

    ``round1_packages`` is keyed by sender and must hold every other participant (it may
    also hold our own, unchanged). Send each Round2Package, sealed, to the participant
    it is keyed by. A bad commitment or proof raises ``CheaterDetected`` naming its
    sender (the lowest identifier first).
    """
    me = secret_package.identifier
    others = _check_senders(me, secret_package.participants, round1_packages, "round-1 packages")
    own = round1_packages.get(me)
    if own is not None and own != secret_package.package:
        raise InvalidParameters("the round-1 package under our own identifier is not ours")
    for sender in others:
        _verify_round1(
            sender, round1_packages[sender], secret_package.threshold, secret_package.context
        )
    polynomial = list(secret_package.coefficients)
    shares = {
        j: Round2Package(polynomial_evaluate(identifier_scalar(j), polynomial)) for j in others
    }
    commitments = {p: round1_packages[p].commitment for p in others}
    commitments[me] = secret_package.package.commitment
    secret = Round2SecretPackage(
        identifier=me,
        participants=secret_package.participants,
        threshold=secret_package.threshold,
        own_share=polynomial_evaluate(identifier_scalar(me), polynomial),
        commitments={p: commitments[p] for p in secret_package.participants},
    )
    return secret, shares


def part3(
    round2_secret_package: Round2SecretPackage,
    round1_packages: Mapping[int, Round1Package],
    round2_packages: Mapping[int, Round2Package],
) -> tuple[KeyPackage, PublicKeyPackage]:
    """Check the received shares, add them up, and compute the group's public data.

    ``round1_packages`` must be the packages given to ``part2`` (their proofs were
    checked there); ``round2_packages`` holds, keyed by sender, the share every other
    participant sent us. A share that does not match its sender's commitment raises
    ``CheaterDetected`` naming the sender.
    """
    secret = round2_secret_package
    me = secret.identifier
    others = _check_senders(me, secret.participants, round1_packages, "round-1 packages")
    for sender in others:
        if round1_packages[sender].commitment != secret.commitments[sender]:
            raise InvalidParameters(
                f"round-1 package of participant {sender} differs from the one part2 verified"
            )
    if set(round2_packages) != set(others):
        missing = sorted(set(others) - set(round2_packages))
        unexpected = sorted(set(round2_packages) - set(others))
        raise InvalidParameters(
            f"round-2 packages: missing from {missing}, unexpected from {unexpected}"
        )
    received: dict[int, Scalar] = {}
    for sender in others:
        try:
            received[sender] = scalar_decode(round2_packages[sender].signing_share)
        except InvalidEncoding:
            raise CheaterDetected(sender, "round-2 share is not a canonical scalar") from None

    group_commitment = sum_commitments([secret.commitments[p] for p in secret.participants])
    group_public_key = group_commitment[0]
    if group_public_key == IDENTITY:
        raise InvalidParameters("the commitments add up to the identity: no usable group key")
    shares = verifying_shares(secret.participants, group_commitment)
    signing_share = scalar_add(secret.own_share, scalar_sum(received[p] for p in others))
    if base_mul(signing_share) != shares[me]:
        for sender in others:
            if not vss_verify(me, received[sender], secret.commitments[sender]):
                raise CheaterDetected(sender, "round-2 share does not match its commitment")
        raise InvalidParameters("received shares are inconsistent with the commitments")
    key_package = KeyPackage(
        identifier=me,
        signing_share=signing_share,
        verifying_share=shares[me],
        group_public_key=group_public_key,
        threshold=secret.threshold,
    )
    return key_package, PublicKeyPackage(group_public_key, shares, secret.threshold)
