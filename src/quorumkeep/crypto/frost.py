"""FROST(Ed25519, SHA-512) two-round threshold Schnorr signing, exactly as RFC 9591.

Names follow the RFC: ``nonce_generate`` and ``commit`` are round one, ``sign`` is round
two, ``aggregate`` is the Coordinator's last step; ``compute_binding_factors``,
``compute_group_commitment`` and ``compute_challenge`` are the shared steps (§4.4-4.6,
§5). The output is a plain RFC 8032 Ed25519 signature (``R || z``, 64 bytes), so any
Ed25519 verifier accepts it.

A commitment list is the RFC's ``[(identifier, hiding_nonce_commitment,
binding_nonce_commitment), ...]``: integers ``1 <= identifier < L`` (any, not only
``1..n``) with 32-byte element encodings, sorted by identifier.

Input validation (RFC 9591 §5.2, §5.3, §6.5). Everything that arrives from another party
is checked before use, and a failure raises a typed error that changes nothing:

- commitment list: non-empty, strictly ascending identifiers (unsorted and duplicate
  lists are refused, with different messages), every element deserialized with the
  RFC's DeserializeElement (canonical, in the prime-order subgroup, not the identity);
- a signer refuses a list that lacks its identifier or carries other commitments than
  the ones it made in round one;
- signature shares and tweaks must be canonical scalars (< L); a bad share names its
  sender through ``CheaterDetected``.

To keep round two and aggregation at the cost of the libsodium calls they make, each
element is validated exactly once per call. Hiding commitments go through
``element_decode``; binding commitments and verifying shares are validated by the
scalar multiplication that uses them anyway (libsodium's
``crypto_scalarmult_ed25519_noclamp`` refuses non-canonical, small-order and
mixed-order points, which is the same check as ``element_decode``), after an explicit
identity check because ``group.element_mul`` short-cuts the identity.

``aggregate`` verifies every signature share (RFC 9591 §5.4 ``verify_signature_share``)
and then the aggregate signature itself. Share verification alone does not catch a
signer set smaller than the threshold (each share still verifies against the Lagrange
coefficients of that set) nor verifying shares that do not belong to the group key; the
final check turns both into an ``InvalidParameters`` instead of an invalid signature.

Derived keys (``quorumkeep.crypto.derive``). To sign under PK' = PK + ε·G:

- every signer calls ``sign`` with ``group_public_key=PK'`` and its ordinary, untweaked
  signing share; binding factors and the challenge are then computed over PK', so the
  signing session is bound to the derived key;
- the Coordinator calls ``aggregate(..., group_public_key=PK', verifying_shares=<the
  untweaked verifying shares>, tweak=ε)``: shares are checked against the untweaked
  verifying shares with the challenge over PK', and c·ε is added to z.

This works because z = Σ z_i = r + c·s, and a signature under PK' needs r + c·(s + ε).
No signer learns anything but its own share; ε is public.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import NamedTuple

from nacl.exceptions import CryptoError as _SodiumError

from quorumkeep.crypto import group
from quorumkeep.crypto.errors import CheaterDetected, InvalidEncoding, InvalidParameters
from quorumkeep.crypto.group import (
    IDENTITY,
    ORDER,
    ZERO,
    Element,
    RandomBytes,
    Scalar,
)

SIGNATURE_SIZE = 64

CommitmentListEntry = tuple[int, Element, Element]
"""(identifier, hiding_nonce_commitment, binding_nonce_commitment)."""

_P = 2**255 - 19


class SigningCommitments(NamedTuple):
    """A signer's public round-one output: (hiding, binding) nonce commitments."""

    hiding: Element
    binding: Element

    def __repr__(self) -> str:
        return f"SigningCommitments(hiding={self.hiding.hex()}, binding={self.binding.hex()})"


@dataclass(frozen=True, slots=True, eq=False)
class SigningNonces:
    """A signer's secret round-one output. Use it in exactly one ``sign``, then drop it.

    The commitments ride along so ``sign`` can check that the Coordinator put this
    signer's own commitments in the list (RFC 9591 §5.2).
    """

    hiding: Scalar = field(repr=False)
    binding: Scalar = field(repr=False)
    commitments: SigningCommitments

    def __repr__(self) -> str:  # the nonces are as secret as the share: never print them
        return f"SigningNonces(<secret>, commitments={self.commitments!r})"


# --- round one -------------------------------------------------------------------------


def nonce_generate(secret: Scalar, random_bytes: RandomBytes) -> Scalar:
    """H3(random_bytes(32) || SerializeScalar(secret)): hedged against a weak RNG."""
    randomness = random_bytes(32)
    if len(randomness) != 32:
        raise InvalidParameters(f"random_bytes returned {len(randomness)} bytes, wanted 32")
    return group.h3(randomness + secret)


def commit(
    signing_share: Scalar, random_bytes: RandomBytes
) -> tuple[SigningNonces, SigningCommitments]:
    """Round one: fresh nonces and their commitments."""
    group.scalar_decode(signing_share)
    hiding = nonce_generate(signing_share, random_bytes)
    binding = nonce_generate(signing_share, random_bytes)
    commitments = SigningCommitments(group.base_mul(hiding), group.base_mul(binding))
    return SigningNonces(hiding, binding, commitments), commitments


def commitment_list_from(
    commitments: Mapping[int, SigningCommitments],
) -> list[CommitmentListEntry]:
    """The RFC's commitment list, sorted by identifier, from per-signer commitments."""
    return [(i, commitments[i].hiding, commitments[i].binding) for i in sorted(commitments)]


# --- validation ------------------------------------------------------------------------


def _check_commitment_list(
    commitment_list: Sequence[CommitmentListEntry], *, decode_binding: bool = False
) -> tuple[list[int], list[Scalar]]:
    """Structure, order and hiding commitments; returns identifiers and their scalars.

    Unless ``decode_binding``, binding commitments get only the identity check here:
    the multiplication in ``_commitment_shares`` validates them fully.
    """
    if not commitment_list:
        raise InvalidParameters("commitment list is empty")
    identifiers: list[int] = []
    xs: list[Scalar] = []
    previous = 0
    for entry in commitment_list:
        if not isinstance(entry, tuple) or len(entry) != 3:
            raise InvalidParameters("commitment list entries must be (identifier, hiding, binding)")
        identifier, hiding, binding = entry
        if type(identifier) is not int:
            raise InvalidParameters("commitment list identifiers must be integers")
        if identifier == previous:
            raise InvalidParameters(f"duplicate identifier {identifier} in commitment list")
        if identifier < previous:
            raise InvalidParameters("commitment list is not sorted by identifier")
        xs.append(group.identifier_scalar(identifier))
        try:
            group.element_decode(hiding)
        except InvalidEncoding as exc:
            raise InvalidEncoding(f"hiding commitment of participant {identifier}: {exc}") from None
        if decode_binding:
            try:
                group.element_decode(binding)
            except InvalidEncoding as exc:
                raise InvalidEncoding(
                    f"binding commitment of participant {identifier}: {exc}"
                ) from None
        elif len(binding) != group.ELEMENT_SIZE or binding == IDENTITY:
            raise InvalidEncoding(
                f"binding commitment of participant {identifier}: "
                "element is not a canonical point of the prime-order subgroup, or is small-order"
            )
        identifiers.append(identifier)
        previous = identifier
    return identifiers, xs


def _position(identifiers: list[int], identifier: int) -> int:
    try:
        return identifiers.index(identifier)
    except ValueError:
        raise InvalidParameters(f"participant {identifier} is not in the commitment list") from None


def _checked_mul(point: Element, s: Scalar, what: str) -> Element:
    """s·point for a point from the wire: libsodium's multiplication validates it."""
    if s == ZERO:  # element_mul would not look at the point: validate it explicitly
        try:
            group.element_decode(point)
        except InvalidEncoding as exc:
            raise InvalidEncoding(f"{what}: {exc}") from None
        return IDENTITY
    try:
        return group.element_mul(point, s)
    except _SodiumError:
        raise InvalidEncoding(
            f"{what}: element is not a canonical point of the prime-order subgroup, "
            "or is small-order"
        ) from None


# --- shared steps ----------------------------------------------------------------------


def encode_group_commitment_list(commitment_list: Sequence[CommitmentListEntry]) -> bytes:
    """SerializeScalar(id) || hiding || binding for every entry, in list order."""
    return b"".join(
        group.identifier_scalar(identifier) + hiding + binding
        for identifier, hiding, binding in commitment_list
    )


def _binding_factor_inputs(
    group_public_key: Element,
    commitment_list: Sequence[CommitmentListEntry],
    msg: bytes,
    xs: list[Scalar],
) -> list[bytes]:
    prefix = (
        group_public_key + group.h4(msg) + group.h5(encode_group_commitment_list(commitment_list))
    )
    return [prefix + x for x in xs]


def compute_binding_factor_inputs(
    group_public_key: Element, commitment_list: Sequence[CommitmentListEntry], msg: bytes
) -> list[tuple[int, bytes]]:
    """The RFC's ``rho_input`` per participant (published in the test vectors)."""
    identifiers, xs = _check_commitment_list(commitment_list, decode_binding=True)
    inputs = _binding_factor_inputs(group_public_key, commitment_list, msg, xs)
    return list(zip(identifiers, inputs, strict=True))


def compute_binding_factors(
    group_public_key: Element, commitment_list: Sequence[CommitmentListEntry], msg: bytes
) -> list[tuple[int, Scalar]]:
    """RFC 9591 §4.4: [(identifier, H1(rho_input)), ...] in commitment-list order."""
    return [
        (identifier, group.h1(rho_input))
        for identifier, rho_input in compute_binding_factor_inputs(
            group_public_key, commitment_list, msg
        )
    ]


def binding_factor_for_participant(
    binding_factor_list: Sequence[tuple[int, Scalar]], identifier: int
) -> Scalar:
    for i, binding_factor in binding_factor_list:
        if i == identifier:
            return binding_factor
    raise InvalidParameters(f"participant {identifier} has no binding factor")


def _commitment_shares(
    commitment_list: Sequence[CommitmentListEntry], binding_factors: list[Scalar]
) -> list[Element]:
    """hiding_i + ρ_i·binding_i per signer: the group commitment's summands, kept apart
    because per-share verification needs each of them again."""
    return [
        group.element_add(
            hiding, _checked_mul(binding, rho, f"binding commitment of participant {identifier}")
        )
        for (identifier, hiding, binding), rho in zip(commitment_list, binding_factors, strict=True)
    ]


def compute_group_commitment(
    commitment_list: Sequence[CommitmentListEntry],
    binding_factor_list: Sequence[tuple[int, Scalar]],
) -> Element:
    """RFC 9591 §4.5: Σ hiding_i + ρ_i·binding_i."""
    identifiers, _ = _check_commitment_list(commitment_list)
    if [i for i, _ in binding_factor_list] != identifiers:
        raise InvalidParameters("binding factors do not match the commitment list")
    factors = [rho for _, rho in binding_factor_list]
    return group.element_sum(_commitment_shares(commitment_list, factors))


def group_commitment(
    group_public_key: Element, commitment_list: Sequence[CommitmentListEntry], msg: bytes
) -> Element:
    """The R a signature over ``msg`` made with ``commitment_list`` has (§4.4 then §4.5):
    what tells, from a signature alone, which presignature it used."""
    return compute_group_commitment(
        commitment_list, compute_binding_factors(group_public_key, commitment_list, msg)
    )


def compute_challenge(group_commitment: Element, group_public_key: Element, msg: bytes) -> Scalar:
    """RFC 9591 §4.6: H2(R || PK || msg), the RFC 8032 challenge."""
    return group.h2(group_commitment + group_public_key + msg)


def _lagrange_coefficients(xs: list[Scalar]) -> list[Scalar]:
    """λ_i at 0 for every x_i of a set of distinct identifiers, in one pass.

    λ_i = Π_{j≠i} x_j / (x_j - x_i) = (Π_j x_j) / (x_i · d_i). Each difference is
    computed once for both of its products (the sign is fixed up by parity), and the
    t inversions are batched into one (Montgomery's trick).
    """
    n = len(xs)
    numerator = group.scalar_mul(xs[0], xs[1]) if n > 1 else xs[0]
    for x in xs[2:]:
        numerator = group.scalar_mul(numerator, x)
    denominators = list(xs)  # start from x_i: the divisor is x_i · d_i
    for i in range(n):
        x_i = xs[i]
        for j in range(i + 1, n):
            delta = group.scalar_sub(xs[j], x_i)  # x_j - x_i; for j it enters as -(delta)
            denominators[i] = group.scalar_mul(denominators[i], delta)
            denominators[j] = group.scalar_mul(denominators[j], delta)
    # denominators[j] collected j factors (x_j - x_i) with the wrong sign: fix odd j
    for j in range(1, n, 2):
        denominators[j] = group.scalar_neg(denominators[j])
    prefix = [denominators[0]]
    for d in denominators[1:]:
        prefix.append(group.scalar_mul(prefix[-1], d))
    inverse = group.scalar_inv(prefix[-1])
    coefficients = [ZERO] * n
    for i in range(n - 1, 0, -1):
        coefficients[i] = group.scalar_mul(numerator, group.scalar_mul(inverse, prefix[i - 1]))
        inverse = group.scalar_mul(inverse, denominators[i])
    coefficients[0] = group.scalar_mul(numerator, inverse)
    return coefficients


# --- round two -------------------------------------------------------------------------


def sign(
    identifier: int,
    signing_share: Scalar,
    group_public_key: Element,
    nonces: SigningNonces,
    msg: bytes,
    commitment_list: Sequence[CommitmentListEntry],
) -> Scalar:
    """Round two: this signer's share z_i = d + e·ρ_i + λ_i·s_i·c.

    ``group_public_key`` is PK, or PK' when signing under a derived key (module doc).
    The caller must drop ``nonces`` afterwards: a reused nonce leaks the share.
    """
    group.scalar_decode(signing_share)
    identifiers, xs = _check_commitment_list(commitment_list)
    position = _position(identifiers, identifier)
    _, hiding_commitment, binding_commitment = commitment_list[position]
    if (hiding_commitment, binding_commitment) != nonces.commitments:
        raise InvalidParameters(
            f"commitment list carries other commitments for participant {identifier} "
            "than its round-one commitments"
        )
    rho_inputs = _binding_factor_inputs(group_public_key, commitment_list, msg, xs)
    binding_factors = [group.h1(rho_input) for rho_input in rho_inputs]
    group_commitment = group.element_sum(_commitment_shares(commitment_list, binding_factors))
    challenge = compute_challenge(group_commitment, group_public_key, msg)
    lambda_i = group.lagrange_coefficient(xs[position], xs)
    return group.scalar_add(
        group.scalar_add(
            nonces.hiding, group.scalar_mul(nonces.binding, binding_factors[position])
        ),
        group.scalar_mul(group.scalar_mul(lambda_i, signing_share), challenge),
    )


# --- aggregation -----------------------------------------------------------------------


def _decode_sig_share(identifier: int, sig_share: Scalar) -> Scalar:
    try:
        return group.scalar_decode(sig_share)
    except InvalidEncoding as exc:
        raise CheaterDetected(identifier, f"signature share: {exc}") from None


def _check_verifying_share(identifier: int, verifying_share: Element) -> None:
    # the identity would slip through element_mul's short-cut; the rest is checked by
    # libsodium when the share is multiplied
    if len(verifying_share) != group.ELEMENT_SIZE or verifying_share == IDENTITY:
        raise InvalidEncoding(f"verifying share of participant {identifier} is not a valid element")


def verify_signature_share(
    identifier: int,
    verifying_share: Element,
    sig_share: Scalar,
    commitment_list: Sequence[CommitmentListEntry],
    group_public_key: Element,
    msg: bytes,
) -> None:
    """RFC 9591 §5.4: z_i·G == hiding_i + ρ_i·binding_i + (c·λ_i)·PK_i.

    Raises ``CheaterDetected`` naming ``identifier`` when the share is malformed or does
    not verify. Under a derived key pass PK' as ``group_public_key`` and the untweaked
    verifying share.
    """
    identifiers, xs = _check_commitment_list(commitment_list)
    position = _position(identifiers, identifier)
    z_i = _decode_sig_share(identifier, sig_share)
    _check_verifying_share(identifier, verifying_share)
    rho_inputs = _binding_factor_inputs(group_public_key, commitment_list, msg, xs)
    binding_factors = [group.h1(rho_input) for rho_input in rho_inputs]
    shares = _commitment_shares(commitment_list, binding_factors)
    challenge = compute_challenge(group.element_sum(shares), group_public_key, msg)
    lambda_i = group.lagrange_coefficient(xs[position], xs)
    _verify_share(identifier, z_i, shares[position], verifying_share, challenge, lambda_i)


def _verify_share(
    identifier: int,
    z_i: Scalar,
    commitment_share: Element,
    verifying_share: Element,
    challenge: Scalar,
    lambda_i: Scalar,
) -> None:
    expected = group.element_add(
        commitment_share,
        _checked_mul(
            verifying_share,
            group.scalar_mul(challenge, lambda_i),
            f"verifying share of participant {identifier}",
        ),
    )
    if group.base_mul(z_i) != expected:
        raise CheaterDetected(identifier, "signature share does not verify")


def aggregate(
    commitment_list: Sequence[CommitmentListEntry],
    msg: bytes,
    group_public_key: Element,
    sig_shares: Mapping[int, Scalar],
    *,
    verifying_shares: Mapping[int, Element],
    tweak: Scalar = ZERO,
    verify_shares_first: bool = True,
) -> bytes:
    """Verify every share, sum them, verify the result; return the 64-byte signature.

    ``sig_shares`` must hold exactly the signers of ``commitment_list``;
    ``verifying_shares`` at least those. A bad share raises ``CheaterDetected`` naming
    its sender (the first one in identifier order). Under a derived key pass PK' as
    ``group_public_key``, the untweaked verifying shares and ``tweak=ε``.

    ``verify_shares_first=False`` is the optimistic order RFC 9591 §5.3 allows: check
    the aggregated signature first and verify the shares only when it fails, to name
    the culprit. A valid signature is all the output promises, so the result and the
    errors are the same; an honest run costs two multiplications instead of 2t + 2.
    """
    identifiers, xs = _check_commitment_list(commitment_list)
    if len(sig_shares) != len(identifiers) or any(i not in sig_shares for i in identifiers):
        missing = sorted(set(identifiers) - set(sig_shares))
        extra = sorted(set(sig_shares) - set(identifiers))
        raise InvalidParameters(
            f"signature shares do not match the commitment list (missing {missing}, "
            f"unexpected {extra})"
        )
    z_shares = [_decode_sig_share(i, sig_shares[i]) for i in identifiers]
    public_shares: list[Element] = []
    for i in identifiers:
        verifying_share = verifying_shares.get(i)
        if verifying_share is None:
            raise InvalidParameters(f"no verifying share for participant {i}")
        _check_verifying_share(i, verifying_share)
        public_shares.append(verifying_share)
    tweak = group.scalar_decode(tweak)
    if len(group_public_key) != group.ELEMENT_SIZE or group_public_key == IDENTITY:
        raise InvalidEncoding("group public key is not a valid element")

    rho_inputs = _binding_factor_inputs(group_public_key, commitment_list, msg, xs)
    binding_factors = [group.h1(rho_input) for rho_input in rho_inputs]
    shares = _commitment_shares(commitment_list, binding_factors)
    group_commitment = group.element_sum(shares)
    challenge = compute_challenge(group_commitment, group_public_key, msg)
    # needed for the final check; computed first so that a bad group key is reported as
    # such, not as a share that fails to verify against it
    c_pk = _checked_mul(group_public_key, challenge, "group public key")

    def verify_each_share() -> None:
        lambdas = _lagrange_coefficients(xs)
        for identifier, z_i, share, verifying_share, lambda_i in zip(
            identifiers, z_shares, shares, public_shares, lambdas, strict=True
        ):
            _verify_share(identifier, z_i, share, verifying_share, challenge, lambda_i)

    if verify_shares_first:
        verify_each_share()
    z = group.scalar_sum(z_shares)
    if tweak != ZERO:
        z = group.scalar_add(z, group.scalar_mul(challenge, tweak))
    # R and PK are prime-order here, so the cofactorless equation equals the cofactored one
    expected = group.element_add(group_commitment, c_pk)
    if group.base_mul(z) != expected:
        if not verify_shares_first:
            verify_each_share()  # names the culprit, if a share is to blame
        raise InvalidParameters(
            "signature shares verify but their sum does not verify under the group key: "
            "fewer signers than the threshold, or verifying shares of another key"
        )
    return group_commitment + z


# --- verification ----------------------------------------------------------------------


def _is_canonical_point_encoding(data: bytes) -> bool:
    """RFC 8032 §5.1.3 decoding preconditions: y < p, and no sign bit when x = 0."""
    y = int.from_bytes(data, "little") & ((1 << 255) - 1)
    if y >= _P:
        return False
    sign_bit = data[31] >> 7
    return not (sign_bit and y in (1, _P - 1))  # the only points with x = 0


def verify_signature(group_public_key: Element, msg: bytes, signature: bytes) -> bool:
    """RFC 8032 §5.1.7 with the cofactored equation [8][z]B = [8]R + [8][c]PK (RFC 9591
    §6.5). False for any malformed signature or a public key outside the prime-order
    subgroup."""
    if len(signature) != SIGNATURE_SIZE or len(group_public_key) != group.ELEMENT_SIZE:
        return False
    r_enc, z_enc = signature[:32], signature[32:]
    if int.from_bytes(z_enc, "little") >= ORDER or not _is_canonical_point_encoding(r_enc):
        return False
    if group_public_key == IDENTITY:
        return False
    challenge = compute_challenge(r_enc, group_public_key, msg)
    try:
        c_pk = _checked_mul(group_public_key, challenge, "group public key")
        difference = group.element_sub(group.element_sub(group.base_mul(z_enc), c_pk), r_enc)
        for _ in range(3):  # ·8: doubling works for every point on the curve
            difference = group.element_add(difference, difference)
    except (InvalidEncoding, _SodiumError):  # PK not a prime-order element, R not on the curve
        return False
    return difference == IDENTITY
