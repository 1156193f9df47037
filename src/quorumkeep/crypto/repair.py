"""Repairing a lost share: the Laing–Stinson repairable threshold scheme, made accountable.

Participant r lost its share s_r; the others still hold theirs. Helpers H, at least t
participants other than r, rebuild s_r for r without any of them learning it. ζ_i is the
Lagrange coefficient of helper i over H evaluated at r (not at 0), so Σ_{i∈H} ζ_i·s_i = s_r:

    ζ_i = Π_{j∈H, j≠i} (r - j) / (i - j)

repair_share_step_1 (helper i)::

    δ_ij for j ∈ H: random scalars with Σ_j δ_ij = ζ_i·s_i
    publish RepairCommitment(D_ij = δ_ij·G for j ∈ H) to every helper and to r
    send δ_ij to helper j over a private channel (the caller seals it)

repair_share_step_2 (helper j, holding δ_ij and D_i from every helper i)::

    δ_ij·G == D_ij                     else CheaterDetected(i)
    σ_j = Σ_i δ_ij, sent to r over a private channel

repair_share_step_3 (participant r, holding σ_j and D_j from every helper j)::

    Σ_j D_ij == ζ_i·V_i   for every i   else CheaterDetected(i)   (its pieces do not add up
                                                                    to its share's part)
    σ_j·G == Σ_i D_ij     for every j   else CheaterDetected(j)   (its sum is not the sum of
                                                                    the pieces it was sent)
    s_r = Σ_j σ_j;  s_r·G == V_r                  else InvalidParameters

Why the commitments D_ij. ZF FROST's ``repairable`` module (the same three steps without
them) does not check the result, and even with a final check s_r·G == V_r a failure names
nobody: a σ_j is the sum of secret pieces from every helper, so on its own it can be
checked against nothing public. The commitments give every piece a public image: a helper
checks each piece it receives, r checks that each helper's pieces add up to ζ_i·V_i
(public: V_i is in the PublicKeyPackage) and that each σ_j is the sum of the pieces sent
to j. Every way to spoil the repair is then attributable. Revealed in addition to ZF's
scheme: only the points D_ij, whose sum per helper, ζ_i·V_i, was already public. The final
check stays: it is what refuses a repair against an inconsistent PublicKeyPackage.

What the caller must provide: the same helper set at every party; commitments delivered
identically to every helper and to r (a broadcast: a helper that sent different
commitments to different parties could get an honest helper blamed at step 3); private,
authenticated channels for deltas and sigmas; commitments from the wire decoded with
``from_bytes``/``from_dict``.

Privacy (Laing–Stinson): helper j sees one random piece of each ζ_i·s_i; any |H|-1 pieces
of a split are uniformly random, so no helper, nor any coalition lacking a piece of every
split, learns s_r or another helper's share. r learns s_r and the σ_j, which are
uniformly random subject to summing to s_r.

Wire formats:
    RepairCommitment bytes: u16 count || (id32(j) || D_ij)*   ascending j, exactly H
    RepairCommitment dict:  {"delta_commitments": {"<j as decimal string>": hex, ...}}
    RepairDelta bytes:      the 32-byte scalar δ_ij;  dict: {"delta": hex}
    RepairSigma bytes:      the 32-byte scalar σ_j;   dict: {"sigma": hex}
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from nacl.exceptions import CryptoError as _SodiumError

from quorumkeep.crypto import encoding
from quorumkeep.crypto.errors import CheaterDetected, InvalidEncoding, InvalidParameters
from quorumkeep.crypto.group import (
    ELEMENT_SIZE,
    ONE,
    Element,
    RandomBytes,
    Scalar,
    base_mul,
    element_mul,
    element_sum,
    identifier_scalar,
    random_scalar,
    scalar_decode,
    scalar_inv,
    scalar_mul,
    scalar_sub,
    scalar_sum,
)
from quorumkeep.crypto.keys import KeyPackage, PublicKeyPackage


@dataclass(frozen=True, slots=True)
class RepairCommitment:
    """Helper i's public step-1 message: D_ij = δ_ij·G for every helper j."""

    delta_commitments: Mapping[int, Element]

    def to_bytes(self) -> bytes:
        ids = sorted(self.delta_commitments)
        return encoding.u16(len(ids)) + b"".join(
            encoding.encode_identifier(j) + self.delta_commitments[j] for j in ids
        )

    @classmethod
    def from_bytes(cls, data: bytes) -> RepairCommitment:
        reader = encoding.Reader(data, "repair commitment")
        entries: dict[int, Element] = {}
        previous = 0
        for k in range(reader.u16("count")):
            j = reader.identifier(f"entry {k} identifier")
            if j <= previous:
                raise InvalidEncoding("repair commitment: identifiers not strictly ascending")
            entries[j] = reader.element(f"entry {k} commitment")
            previous = j
        reader.finish()
        return cls(entries)

    def to_dict(self) -> dict[str, object]:
        return {
            "delta_commitments": {
                str(j): self.delta_commitments[j].hex() for j in sorted(self.delta_commitments)
            }
        }

    @classmethod
    def from_dict(cls, obj: object) -> RepairCommitment:
        what = "repair commitment"
        top = encoding.fields(obj, ("delta_commitments",), what)
        entries = top["delta_commitments"]
        if not isinstance(entries, Mapping):
            raise InvalidEncoding(f"{what}: delta_commitments must be an object")
        decoded: dict[int, Element] = {}
        for key, value in entries.items():
            j = encoding.json_identifier(key, f"{what}: identifier")
            decoded[j] = encoding.hex_element(value, f"{what}: commitment of {j}")
        return cls({j: decoded[j] for j in sorted(decoded)})


@dataclass(frozen=True, slots=True)
class RepairDelta:
    """δ_ij, a piece of helper i's contribution sent to helper j. Secret."""

    value: Scalar = field(repr=False)

    def __repr__(self) -> str:
        return "RepairDelta(<secret>)"

    def to_bytes(self) -> bytes:
        return self.value

    @classmethod
    def from_bytes(cls, data: bytes) -> RepairDelta:
        reader = encoding.Reader(data, "repair delta")
        value = reader.scalar("delta")
        reader.finish()
        return cls(value)

    def to_dict(self) -> dict[str, object]:
        return {"delta": self.value.hex()}

    @classmethod
    def from_dict(cls, obj: object) -> RepairDelta:
        top = encoding.fields(obj, ("delta",), "repair delta")
        return cls(encoding.hex_scalar(top["delta"], "repair delta"))


@dataclass(frozen=True, slots=True)
class RepairSigma:
    """σ_j, helper j's sum of the pieces it received, sent to the repaired participant."""

    value: Scalar = field(repr=False)

    def __repr__(self) -> str:
        return "RepairSigma(<secret>)"

    def to_bytes(self) -> bytes:
        return self.value

    @classmethod
    def from_bytes(cls, data: bytes) -> RepairSigma:
        reader = encoding.Reader(data, "repair sigma")
        value = reader.scalar("sigma")
        reader.finish()
        return cls(value)

    def to_dict(self) -> dict[str, object]:
        return {"sigma": self.value.hex()}

    @classmethod
    def from_dict(cls, obj: object) -> RepairSigma:
        top = encoding.fields(obj, ("sigma",), "repair sigma")
        return cls(encoding.hex_scalar(top["sigma"], "repair sigma"))


# --- parameters ------------------------------------------------------------------------


def check_repair(helpers: Sequence[int], participant: int, public: PublicKeyPackage) -> None:
    """r is a participant; the helpers are >= t other, distinct participants."""
    participants = set(public.verifying_shares)
    if participant not in participants:
        raise InvalidParameters(f"participant {participant} holds no share of this key")
    if len(set(helpers)) != len(helpers):
        raise InvalidParameters("duplicate helper identifiers")
    if participant in helpers:
        raise InvalidParameters(f"participant {participant} cannot help repair its own share")
    strangers = sorted(set(helpers) - participants)
    if strangers:
        raise InvalidParameters(f"helpers {strangers} hold no share of this key")
    if len(helpers) < public.threshold:
        raise InvalidParameters(
            f"{len(helpers)} helpers cannot repair a share of a key with threshold "
            f"{public.threshold}"
        )


def lagrange_at(x: int, x_i: int, xs: Sequence[int]) -> Scalar:
    """ζ_i: the Lagrange coefficient of x_i over the set xs, evaluated at x."""
    target = identifier_scalar(x)
    own = identifier_scalar(x_i)
    numerator = ONE
    denominator = ONE
    for x_j in xs:
        if x_j == x_i:
            continue
        other = identifier_scalar(x_j)
        numerator = scalar_mul(numerator, scalar_sub(target, other))
        denominator = scalar_mul(denominator, scalar_sub(own, other))
    return scalar_mul(numerator, scalar_inv(denominator))


def _check_keys(received: Mapping[int, object], helpers: Sequence[int], what: str) -> None:
    if set(received) != set(helpers):
        missing = sorted(set(helpers) - set(received))
        unexpected = sorted(set(received) - set(helpers))
        raise InvalidParameters(f"{what}: missing from {missing}, unexpected from {unexpected}")


def _check_commitment(sender: int, commitment: RepairCommitment, helpers: Sequence[int]) -> None:
    entries = commitment.delta_commitments
    if set(entries) != set(helpers):
        raise CheaterDetected(sender, "repair commitment does not cover exactly the helpers")
    if any(len(d) != ELEMENT_SIZE for d in entries.values()):
        raise CheaterDetected(sender, "repair commitment holds an invalid element")


# --- the three steps -------------------------------------------------------------------


def repair_share_step_1(
    helpers: Sequence[int],
    key_package: KeyPackage,
    public: PublicKeyPackage,
    participant: int,
    random_bytes: RandomBytes,
) -> tuple[RepairCommitment, dict[int, RepairDelta]]:
    """Helper i: split ζ_i·s_i into one random piece per helper (its own included).

    Broadcast the commitment to every helper and to ``participant``; send each delta,
    sealed, to the helper it is keyed by.
    """
    check_repair(helpers, participant, public)
    me = key_package.identifier
    if me not in helpers:
        raise InvalidParameters(f"participant {me} is not one of the helpers")
    if (
        key_package.group_public_key != public.group_public_key
        or key_package.verifying_share != public.verifying_shares[me]
        or base_mul(key_package.signing_share) != key_package.verifying_share
    ):
        raise InvalidParameters(
            f"the key package of participant {me} does not belong to the public key package"
        )
    contribution = scalar_mul(lagrange_at(participant, me, helpers), key_package.signing_share)
    ordered = sorted(helpers)
    pieces = {j: random_scalar(random_bytes) for j in ordered[:-1]}
    pieces[ordered[-1]] = scalar_sub(contribution, scalar_sum(pieces.values()))
    commitment = RepairCommitment({j: base_mul(pieces[j]) for j in ordered})
    return commitment, {j: RepairDelta(pieces[j]) for j in ordered}


def repair_share_step_2(
    identifier: int,
    helpers: Sequence[int],
    deltas: Mapping[int, RepairDelta],
    commitments: Mapping[int, RepairCommitment],
) -> RepairSigma:
    """Helper j: check each received piece against its sender's commitment, add them up.

    ``deltas`` and ``commitments`` are keyed by sender and hold every helper (j's own
    piece included). Send the sigma, sealed, to the participant being repaired.
    """
    if len(set(helpers)) != len(helpers):
        raise InvalidParameters("duplicate helper identifiers")
    if identifier not in helpers:
        raise InvalidParameters(f"participant {identifier} is not one of the helpers")
    _check_keys(deltas, helpers, "repair deltas")
    _check_keys(commitments, helpers, "repair commitments")
    values: list[Scalar] = []
    for sender in sorted(helpers):
        _check_commitment(sender, commitments[sender], helpers)
        try:
            value = scalar_decode(deltas[sender].value)
        except InvalidEncoding:
            raise CheaterDetected(sender, "repair delta is not a canonical scalar") from None
        if base_mul(value) != commitments[sender].delta_commitments[identifier]:
            raise CheaterDetected(sender, "repair delta does not match its commitment")
        values.append(value)
    return RepairSigma(scalar_sum(values))


def repair_share_step_3(
    participant: int,
    helpers: Sequence[int],
    sigmas: Mapping[int, RepairSigma],
    commitments: Mapping[int, RepairCommitment],
    public: PublicKeyPackage,
) -> KeyPackage:
    """Participant r: check every helper's pieces and sum, rebuild s_r, check it.

    ``sigmas`` and ``commitments`` are keyed by helper. Returns r's KeyPackage only if
    s_r·G equals r's verifying share in ``public``.
    """
    check_repair(helpers, participant, public)
    _check_keys(sigmas, helpers, "repair sigmas")
    _check_keys(commitments, helpers, "repair commitments")
    ordered = sorted(helpers)
    for sender in ordered:
        _check_commitment(sender, commitments[sender], helpers)
    for sender in ordered:
        try:
            expected = element_mul(
                public.verifying_shares[sender], lagrange_at(participant, sender, helpers)
            )
        except _SodiumError:
            raise InvalidParameters(
                f"verifying share of participant {sender} is not a valid element"
            ) from None
        if element_sum(commitments[sender].delta_commitments.values()) != expected:
            raise CheaterDetected(sender, "repair pieces do not add up to its share's contribution")
    values: list[Scalar] = []
    for helper in ordered:
        try:
            value = scalar_decode(sigmas[helper].value)
        except InvalidEncoding:
            raise CheaterDetected(helper, "repair sigma is not a canonical scalar") from None
        column = element_sum(commitments[i].delta_commitments[helper] for i in ordered)
        if base_mul(value) != column:
            raise CheaterDetected(helper, "repair sigma is not the sum of the pieces sent to it")
        values.append(value)
    share = scalar_sum(values)
    verifying_share = public.verifying_shares[participant]
    if base_mul(share) != verifying_share:
        raise InvalidParameters(
            f"the repaired share does not match participant {participant}'s verifying share: "
            "the public key package is inconsistent"
        )
    return KeyPackage(
        identifier=participant,
        signing_share=share,
        verifying_share=verifying_share,
        group_public_key=public.group_public_key,
        threshold=public.threshold,
    )
