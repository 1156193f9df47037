"""A node's storage key held k-of-m by key providers: Feldman VSS over edwards25519.

The node never splits the storage key itself. It draws a *storage secret* ``s`` (a uniformly
random non-zero scalar mod L) and derives the storage key from it::

    storage_key = BLAKE2b(message = s (32 bytes, little-endian), digest size = 32,
                          personal = "qk-storage-split")

``s`` is Shamir-shared (degree k-1 polynomial ``f`` with ``f(0) = s``) among the providers'
*indices* ``1..m`` with a Feldman commitment ``C_j = a_j·G`` to every coefficient
(``quorumkeep.crypto.keys.trusted_dealer_keygen``; the same math as a FROST trusted dealer,
RFC 9591 Appendix C). The commitment is public (the contract records it), so

- a provider checks the share it is handed before storing it: ``f(i)·G == Σ C_j·i^j``;
- the node checks every share it gets back the same way, names the provider of any share
  that fails and excludes it, and interpolates ``s`` from any k good shares;
- ``C_0 = s·G`` pins the secret: the interpolated ``s`` is checked against it, so a wrong
  storage key can only come from a wrong commitment, which the storage-key file's check
  value catches (docs/storage.md).

A *re-deal* (rotation) keeps ``s`` — hence the storage key and everything sealed under it —
and draws a fresh polynomial, so shares of an old deal combine with shares of the new one
to nothing: an old provider that kept its share learns nothing more from the new deal.

Pure: randomness is injected, there is no I/O. Secrets (``s``, share values) are redacted
from every ``repr``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from nacl.encoding import RawEncoder
from nacl.hash import blake2b

from quorumkeep.crypto.errors import CheaterDetected, InvalidEncoding, InvalidParameters
from quorumkeep.crypto.group import (
    ZERO,
    Element,
    RandomBytes,
    Scalar,
    base_mul,
    element_decode,
    interpolate_at_zero,
    random_scalar,
    scalar_decode,
)
from quorumkeep.crypto.keys import trusted_dealer_keygen, vss_verify

STORAGE_KEY_PERSON = b"qk-storage-split"
"""BLAKE2b personalisation of the storage-key derivation (16 bytes)."""
MIN_THRESHOLD = 2
MAX_HOLDERS = 32
"""At most this many providers hold pieces of one node's storage key."""


def _check_scalar(value: bytes, what: str) -> Scalar:
    try:
        return scalar_decode(value)
    except InvalidEncoding:
        raise InvalidEncoding(f"{what} is not a canonical scalar") from None


@dataclass(frozen=True)
class StorageSecret:
    """The scalar ``s`` the storage key is derived from. Never printed."""

    value: Scalar = field(repr=False)

    def __post_init__(self) -> None:
        value = _check_scalar(self.value, "storage secret")
        if value == ZERO:
            raise InvalidEncoding("storage secret must not be zero")

    def __repr__(self) -> str:
        return "StorageSecret(<hidden>)"

    @classmethod
    def generate(cls, random_bytes: RandomBytes) -> StorageSecret:
        return cls(random_scalar(random_bytes))

    def storage_key(self) -> bytes:
        """The 32-byte storage key: BLAKE2b-256 of ``s`` personalised ``qk-storage-split``."""
        digest: bytes = blake2b(
            self.value, digest_size=32, person=STORAGE_KEY_PERSON, encoder=RawEncoder
        )
        return digest

    def public(self) -> Element:
        """``s·G``: the commitment's constant term."""
        return base_mul(self.value)


@dataclass(frozen=True)
class KeyPiece:
    """One provider's share ``f(index)`` of a storage secret. ``value`` is secret."""

    index: int
    value: Scalar = field(repr=False)

    def __post_init__(self) -> None:
        if isinstance(self.index, bool) or not isinstance(self.index, int):
            raise InvalidEncoding("piece index must be an int")
        if not 1 <= self.index <= MAX_HOLDERS:
            raise InvalidEncoding(f"piece index must be in [1, {MAX_HOLDERS}]")
        _check_scalar(self.value, "piece")

    def __repr__(self) -> str:
        return f"KeyPiece(index={self.index}, value=<hidden>)"


@dataclass(frozen=True)
class Deal:
    """A k-of-m split: the public commitment and one piece per index ``1..m``."""

    threshold: int
    commitment: tuple[Element, ...]
    pieces: Mapping[int, KeyPiece] = field(repr=False)

    def __repr__(self) -> str:
        return f"Deal(threshold={self.threshold}, holders={len(self.pieces)})"


def check_split_parameters(threshold: int, holders: int) -> None:
    """``2 <= k <= m <= 32``: no single holder can open a node's disk."""
    for value, what in ((threshold, "threshold"), (holders, "holder count")):
        if isinstance(value, bool) or not isinstance(value, int):
            raise InvalidParameters(f"{what} must be an int")
    if not MIN_THRESHOLD <= threshold <= holders <= MAX_HOLDERS:
        raise InvalidParameters(
            f"need {MIN_THRESHOLD} <= k <= m <= {MAX_HOLDERS}, got k={threshold}, m={holders}"
        )


def deal(secret: StorageSecret, threshold: int, holders: int, random_bytes: RandomBytes) -> Deal:
    """Split ``secret`` k-of-m with a fresh random polynomial (also the rotation re-deal)."""
    check_split_parameters(threshold, holders)
    packages, _, commitment = trusted_dealer_keygen(
        secret.value, threshold, list(range(1, holders + 1)), random_bytes
    )
    pieces = {i: KeyPiece(i, p.signing_share) for i, p in packages.items()}
    return Deal(threshold, tuple(commitment), pieces)


def check_commitment(commitment: Sequence[bytes], threshold: int) -> tuple[Element, ...]:
    """A commitment of exactly ``threshold`` canonical, non-identity elements."""
    if len(commitment) != threshold:
        raise InvalidEncoding(f"commitment must have {threshold} elements, has {len(commitment)}")
    return tuple(element_decode(bytes(c)) for c in commitment)


def verify_piece(piece: KeyPiece, commitment: Sequence[Element]) -> bool:
    """Whether ``piece.value·G`` equals the commitment evaluated at ``piece.index``."""
    return vss_verify(piece.index, piece.value, commitment)


def combine(
    pieces: Mapping[str, KeyPiece], commitment: Sequence[Element], threshold: int
) -> StorageSecret:
    """The secret from pieces keyed by holder name; every piece is checked first.

    A piece that fails its commitment raises :class:`CheaterDetected` naming the holder's
    *index* (the caller maps it back to a provider); callers that want to go on without it
    filter with :func:`verify_piece` first. Fewer than ``threshold`` pieces, or two pieces
    for one index, is :class:`InvalidParameters`.
    """
    by_index: dict[int, Scalar] = {}
    for name in sorted(pieces):
        piece = pieces[name]
        if not verify_piece(piece, commitment):
            raise CheaterDetected(piece.index, f"the piece from {name} fails its commitment")
        if piece.index in by_index:
            raise InvalidParameters(f"two pieces for index {piece.index}")
        by_index[piece.index] = piece.value
    if len(by_index) < threshold:
        raise InvalidParameters(f"need {threshold} pieces, have {len(by_index)}")
    chosen = dict(sorted(by_index.items())[:threshold])
    secret = interpolate_at_zero(chosen)
    if base_mul(secret) != commitment[0]:  # impossible with verified pieces; kept as a guard
        raise CheaterDetected(0, "the interpolated secret does not match the commitment")
    return StorageSecret(secret)
