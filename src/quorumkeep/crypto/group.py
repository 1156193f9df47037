"""The edwards25519 prime-order group and its scalar field, on libsodium.

Scalars and elements travel as their canonical 32-byte encodings (RFC 9591 §6.5):
a scalar is little-endian and < L; an element is the compressed Edwards point.
Keeping the encodings as plain ``bytes`` lets the hot paths hand them straight to
libsodium without conversion.

libsodium refuses two inputs that the protocols legitimately meet: multiplication by
the scalar 0 and any result equal to the identity. Those cases are handled here, so
callers never see a libsodium ``RuntimeError`` for valid math.
"""

from __future__ import annotations

import functools
import hashlib
from collections.abc import Callable, Iterable

from nacl import bindings as _sodium

from quorumkeep.crypto.errors import InvalidEncoding

Scalar = bytes
"""A canonical scalar encoding: 32 bytes, little-endian, < L."""

Element = bytes
"""A canonical compressed edwards25519 point: 32 bytes."""

RandomBytes = Callable[[int], bytes]
"""A source of uniformly random bytes (``os.urandom`` at the edges; injected in tests)."""

ORDER = 2**252 + 27742317777372353535851937790883648493
"""L, the order of the prime-order subgroup."""

SCALAR_SIZE = 32
ELEMENT_SIZE = 32

ZERO: Scalar = bytes(32)
ONE: Scalar = (1).to_bytes(32, "little")
IDENTITY: Element = ONE  # (0, 1) compresses to 0x01 followed by zeros
BASE: Element = bytes.fromhex("5866666666666666666666666666666666666666666666666666666666666666")

_add = _sodium.crypto_core_ed25519_add
_sub = _sodium.crypto_core_ed25519_sub
_mul = _sodium.crypto_scalarmult_ed25519_noclamp
_base_mul = _sodium.crypto_scalarmult_ed25519_base_noclamp
_s_add = _sodium.crypto_core_ed25519_scalar_add
_s_sub = _sodium.crypto_core_ed25519_scalar_sub
_s_mul = _sodium.crypto_core_ed25519_scalar_mul
_s_neg = _sodium.crypto_core_ed25519_scalar_negate
_s_inv = _sodium.crypto_core_ed25519_scalar_invert
_s_reduce = _sodium.crypto_core_ed25519_scalar_reduce


@functools.lru_cache(maxsize=8192)
def _is_valid_point(data: bytes) -> bool:
    """libsodium's ``crypto_core_ed25519_is_valid_point``, remembered for the last 8,192
    encodings: the contract decodes the same public keys each time it reads its state, and
    the subgroup check (a multiplication by L, ~50 µs) dominated that. The same bytes always
    give the same answer, and every element decoded is public (keys, commitments), so a
    cache hit reveals nothing."""
    return bool(_sodium.crypto_core_ed25519_is_valid_point(data))


# --- scalars ---------------------------------------------------------------------------


def scalar_from_int(value: int) -> Scalar:
    return (value % ORDER).to_bytes(32, "little")


def scalar_to_int(s: Scalar) -> int:
    return int.from_bytes(s, "little")


def scalar_decode(data: bytes) -> Scalar:
    """DeserializeScalar: reject anything but a canonical encoding (< L)."""
    if len(data) != SCALAR_SIZE:
        raise InvalidEncoding(f"scalar must be {SCALAR_SIZE} bytes, got {len(data)}")
    if int.from_bytes(data, "little") >= ORDER:
        raise InvalidEncoding("scalar is not canonical (>= group order)")
    return bytes(data)


def scalar_reduce(wide: bytes) -> Scalar:
    """Reduce a 64-byte little-endian integer mod L (the output of the RFC's H1..H5)."""
    return bytes(_s_reduce(wide))


def scalar_add(a: Scalar, b: Scalar) -> Scalar:
    return bytes(_s_add(a, b))


def scalar_sub(a: Scalar, b: Scalar) -> Scalar:
    return bytes(_s_sub(a, b))


def scalar_mul(a: Scalar, b: Scalar) -> Scalar:
    return bytes(_s_mul(a, b))


def scalar_neg(a: Scalar) -> Scalar:
    return bytes(_s_neg(a))


def scalar_inv(a: Scalar) -> Scalar:
    if a == ZERO:
        raise ZeroDivisionError("the scalar 0 has no inverse")
    return bytes(_s_inv(a))


def scalar_sum(values: Iterable[Scalar]) -> Scalar:
    total = ZERO
    for v in values:
        total = _s_add(total, v)
    return bytes(total)


def random_scalar(random_bytes: RandomBytes) -> Scalar:
    """A uniformly random non-zero scalar (64 random bytes reduced, bias < 2^-250)."""
    while True:
        s = scalar_reduce(random_bytes(64))
        if s != ZERO:
            return s


# --- elements --------------------------------------------------------------------------


def element_decode(data: bytes) -> Element:
    """DeserializeElement: canonical, on the curve, in the prime-order subgroup, not identity."""
    if len(data) != ELEMENT_SIZE:
        raise InvalidEncoding(f"element must be {ELEMENT_SIZE} bytes, got {len(data)}")
    if not _is_valid_point(bytes(data)):
        raise InvalidEncoding(
            "element is not a canonical point of the prime-order subgroup, or is small-order"
        )
    return bytes(data)


def base_mul(s: Scalar) -> Element:
    """s·G; 0·G is the identity."""
    if s == ZERO:
        return IDENTITY
    return bytes(_base_mul(s))


def element_mul(p: Element, s: Scalar) -> Element:
    """s·P for P in the prime-order subgroup or the identity."""
    if s == ZERO or p == IDENTITY:
        return IDENTITY
    return bytes(_mul(s, p))


def element_add(p: Element, q: Element) -> Element:
    return bytes(_add(p, q))


def element_sub(p: Element, q: Element) -> Element:
    return bytes(_sub(p, q))


def element_sum(values: Iterable[Element]) -> Element:
    total = IDENTITY
    for v in values:
        total = _add(total, v)
    return bytes(total)


# --- hashing (RFC 9591 §6.5, FROST(Ed25519, SHA-512)) ----------------------------------

CONTEXT_STRING = b"FROST-ED25519-SHA512-v1"


def _h_scalar(tag: bytes, m: bytes) -> Scalar:
    return scalar_reduce(hashlib.sha512(CONTEXT_STRING + tag + m).digest())


def h1(m: bytes) -> Scalar:
    return _h_scalar(b"rho", m)


def h2(m: bytes) -> Scalar:
    """The challenge hash: no context string, so signatures are plain RFC 8032 Ed25519."""
    return scalar_reduce(hashlib.sha512(m).digest())


def h3(m: bytes) -> Scalar:
    return _h_scalar(b"nonce", m)


def h4(m: bytes) -> bytes:
    return hashlib.sha512(CONTEXT_STRING + b"msg" + m).digest()


def h5(m: bytes) -> bytes:
    return hashlib.sha512(CONTEXT_STRING + b"com" + m).digest()


# --- polynomials over the scalar field -------------------------------------------------


def identifier_scalar(identifier: int) -> Scalar:
    """A participant identifier as a scalar; identifiers are integers 1 <= id < L."""
    if not 1 <= identifier < ORDER:
        raise InvalidEncoding(f"identifier must be in [1, L), got {identifier}")
    return identifier.to_bytes(32, "little")


def polynomial_evaluate(x: Scalar, coefficients: list[Scalar]) -> Scalar:
    """Horner evaluation of sum(c_i · x^i); coefficients[0] is the constant term."""
    value = ZERO
    for coefficient in reversed(coefficients):
        value = _s_add(_s_mul(value, x), coefficient)
    return bytes(value)


def lagrange_coefficient(x_i: Scalar, xs: list[Scalar]) -> Scalar:
    """derive_interpolating_value (RFC 9591 §4.2): λ_i for x_i over the set xs, at 0."""
    if x_i not in xs:
        raise InvalidEncoding("x_i is not in the interpolation set")
    if len(set(xs)) != len(xs):
        raise InvalidEncoding("duplicate identifiers in the interpolation set")
    numerator = ONE
    denominator = ONE
    for x_j in xs:
        if x_j == x_i:
            continue
        numerator = _s_mul(numerator, x_j)
        denominator = _s_mul(denominator, _s_sub(x_j, x_i))
    return bytes(_s_mul(numerator, _s_inv(denominator)))


def interpolate_at_zero(shares: dict[int, Scalar]) -> Scalar:
    """f(0) = Σ λ_i·f(i) over the given identifiers (RFC 9591 §4.2 coefficients)."""
    ids = sorted(shares)
    xs = [identifier_scalar(i) for i in ids]
    return scalar_sum(
        scalar_mul(lagrange_coefficient(x, xs), shares[i]) for i, x in zip(ids, xs, strict=True)
    )


def vss_commit(coefficients: list[Scalar]) -> list[Element]:
    """Feldman commitment: [c_i·G] for each coefficient."""
    return [base_mul(c) for c in coefficients]


def commitment_evaluate(identifier: int, commitment: list[Element]) -> Element:
    """sum(C_i · id^i): the public counterpart of polynomial_evaluate at id."""
    x = identifier_scalar(identifier)
    power = ONE
    total = IDENTITY
    for c in commitment:
        total = element_add(total, element_mul(c, power))
        power = scalar_mul(power, x)
    return total
