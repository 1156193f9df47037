"""Publicly verifiable encryption (PVE) of an Ed25519 scalar to an RSA-OAEP key.

The construction is the cut-and-choose PVE of Coinbase's cb-mpc (``ec_pve_t``), with
RSA-OAEP (RFC 8017 §7.1) as the base encryption. It proves, to anyone holding only public
data, that a ciphertext decrypts under the recovery key to the discrete log x of a public
point X = x·G, bound to a label. docs/emergency-recovery.md specifies it in full; in short:

Encrypt(key, x, label), with X = x·G and κ = 128 rows. For each row i:

    r0_i, r1_i      16 random bytes each (injected randomness)
    x0_i            = H_x(r0_i)            (SHA-512, reduced mod L)
    x1_i            = x − x0_i mod L
    c0_i, c1_i      = OAEP_Enc(key, x0_i; ρ = H_ρ(r0_i)), OAEP_Enc(key, x1_i; ρ = H_ρ(r1_i))
    X0_i, X1_i      = x0_i·G, X − X0_i

The OAEP seed ρ (RFC 8017 §7.1.1 step 2.d) is derived from the row seed, so encryption is
deterministic given the seed and a verifier can re-encrypt an opened half. The Fiat–Shamir
challenge b = first κ bits of SHA-256 over the key, X, the label and every row's
(X0, c0, c1) (X1 = X − X0 is fixed by them) opens one half per row: bit 0 reveals r0_i
(hence x0_i), bit 1 reveals r1_i and x1_i. The unopened half's ciphertext is sent; the
opened half's is recomputed by the verifier, so the proof carries one RSA ciphertext per row.

Verify recomputes every opened half, its ciphertext and commitment, the other commitment as
X − X_b, and checks the challenge. Decrypt is standard RSA-OAEP (SHA-256, MGF1-SHA-256) of
one unopened ciphertext plus the opened half, trying rows until x·G = X.

Soundness: a row is *good* if both its ciphertexts decrypt to halves summing to x. If no row
is good, every row has at most one half consistent with (X0_i, X1_i) and its ciphertext, so
the prover must predict every one of the κ challenge bits: success 2^-κ per random-oracle
query. One good row suffices for decryption. Zero knowledge: an opened half is uniformly
random and independent of x; the unopened one is hidden by OAEP.

Everything here is pure: randomness is injected, no clock, no I/O. ``cryptography`` is used
for parsing keys and for the standard RSA-OAEP decryption; the encryption is RSAEP
(``pow(m, e, n)``, RFC 8017 §5.1.1) over an EME-OAEP encoding computed here, because
deterministic encryption needs the OAEP seed as an input, which no library API offers.
The modular exponentiation is GMP's (gmpy2): Python's ``pow`` is 5× slower at 3072 bits and
a verifier performs κ of them.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field

import gmpy2
from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa

from quorumkeep.crypto.errors import CryptoError, InvalidEncoding
from quorumkeep.crypto.group import (
    ZERO,
    Element,
    RandomBytes,
    Scalar,
    base_mul,
    element_decode,
    element_sub,
    scalar_add,
    scalar_decode,
    scalar_reduce,
    scalar_sub,
)

KAPPA = 128
"""Rows, and the statistical soundness in bits (a cheating prover succeeds w.p. 2^-κ)."""
SEED_SIZE = 16
"""Bytes of a row seed r0_i / r1_i."""
HASH_SIZE = 32
"""hLen of SHA-256, the OAEP hash and MGF1 hash."""
FORMAT_VERSION = 1
PUBLIC_EXPONENT = 65537
MIN_MODULUS_BITS = 2048
MAX_MODULUS_BITS = 8192

LABEL_TAG = b"quorumkeep-ers-label-v1"
PACKAGE_TAG = b"quorumkeep-ers-package-v1"
OAEP_TAG = b"quorumkeep-ers-oaep-v1"
X0_TAG = b"quorumkeep-ers-x0-v1"
RHO_TAG = b"quorumkeep-ers-rho-v1"
CHALLENGE_TAG = b"quorumkeep-ers-challenge-v1"


class InvalidProof(CryptoError):
    """A PVE part does not verify: malformed, for another key, point or label, or forged."""


class DecryptionFailed(CryptoError):
    """No row of a part decrypted to the discrete log of its point (wrong key or bad part)."""


# --- the recovery key -------------------------------------------------------------------


@dataclass(frozen=True)
class RecoveryPublicKey:
    """An RSA public key for emergency recovery, identified by its SPKI DER encoding."""

    spki_der: bytes
    n: int = field(repr=False)
    e: int = field(repr=False)

    @property
    def size(self) -> int:
        """k: the modulus length in bytes (and of every ciphertext)."""
        return (self.n.bit_length() + 7) // 8

    @property
    def bits(self) -> int:
        return self.n.bit_length()

    @property
    def fingerprint(self) -> bytes:
        """SHA-256 of the SubjectPublicKeyInfo DER encoding."""
        return hashlib.sha256(self.spki_der).digest()

    @classmethod
    def from_der(cls, spki_der: bytes) -> RecoveryPublicKey:
        """Parse an X.509 SubjectPublicKeyInfo; RSA, e = 65537, 2048..8192 bits only."""
        try:
            key = serialization.load_der_public_key(bytes(spki_der))
        except (ValueError, UnsupportedAlgorithm):
            raise InvalidEncoding("recovery key: not a DER SubjectPublicKeyInfo") from None
        if not isinstance(key, rsa.RSAPublicKey):
            raise InvalidEncoding("recovery key: not an RSA key")
        numbers = key.public_numbers()
        if numbers.e != PUBLIC_EXPONENT:
            raise InvalidEncoding(f"recovery key: public exponent must be {PUBLIC_EXPONENT}")
        if not MIN_MODULUS_BITS <= numbers.n.bit_length() <= MAX_MODULUS_BITS:
            raise InvalidEncoding(
                f"recovery key: modulus must have {MIN_MODULUS_BITS} to {MAX_MODULUS_BITS} bits"
            )
        canonical = key.public_bytes(
            serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
        )
        if canonical != bytes(spki_der):
            raise InvalidEncoding("recovery key: SubjectPublicKeyInfo is not in canonical DER")
        return cls(canonical, numbers.n, numbers.e)

    @classmethod
    def from_private(cls, private_key: rsa.RSAPrivateKey) -> RecoveryPublicKey:
        der = private_key.public_key().public_bytes(
            serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
        )
        return cls.from_der(der)


# --- the label --------------------------------------------------------------------------


def _u16(value: int) -> bytes:
    return value.to_bytes(2, "big")


def _u32(value: int) -> bytes:
    return value.to_bytes(4, "big")


def _u64(value: int) -> bytes:
    return value.to_bytes(8, "big")


def package_digest(
    domain_id: int,
    epoch: int,
    group_public_key: Element,
    threshold: int,
    verifying_shares: list[tuple[int, Element]],
) -> bytes:
    """The keyset hash a label names: SHA-256 over one domain's public key package.

    SHA-256(PACKAGE_TAG ‖ u32 domain ‖ u64 epoch ‖ group key ‖ u16 t ‖ u16 n ‖
    (u64 participant id ‖ verifying share)* in ascending id order).
    """
    h = hashlib.sha256(PACKAGE_TAG)
    h.update(_u32(domain_id) + _u64(epoch) + group_public_key + _u16(threshold))
    h.update(_u16(len(verifying_shares)))
    for pid, share in sorted(verifying_shares):
        h.update(_u64(pid) + share)
    return h.digest()


@dataclass(frozen=True)
class Label:
    """What a part is for: its bytes go into the challenge and the OAEP label."""

    domain_id: int
    epoch: int
    account: str
    participant_id: int
    keyset_hash: bytes

    def encode(self) -> bytes:
        """LABEL_TAG ‖ u32 domain ‖ u64 epoch ‖ u16 len ‖ account (UTF-8) ‖ u64 participant
        id ‖ keyset hash (32 bytes)."""
        account = self.account.encode()
        if not 0 <= self.domain_id < 2**32 or not 0 <= self.epoch < 2**64:
            raise InvalidEncoding("label: domain or epoch out of range")
        if not 1 <= self.participant_id < 2**64 or len(account) > 0xFFFF:
            raise InvalidEncoding("label: participant id or account out of range")
        if len(self.keyset_hash) != HASH_SIZE:
            raise InvalidEncoding("label: keyset hash must be 32 bytes")
        return (
            LABEL_TAG
            + _u32(self.domain_id)
            + _u64(self.epoch)
            + _u16(len(account))
            + account
            + _u64(self.participant_id)
            + self.keyset_hash
        )


# --- RSA-OAEP with an explicit seed (RFC 8017 §7.1.1) -----------------------------------


def _mgf1(seed: bytes, length: int) -> bytes:
    """MGF1 with SHA-256 (RFC 8017 appendix B.2.1)."""
    base = hashlib.sha256(seed)
    out = bytearray()
    counter = 0
    while len(out) < length:
        h = base.copy()
        h.update(counter.to_bytes(4, "big"))
        out += h.digest()
        counter += 1
    return bytes(out[:length])


def _xor(a: bytes, b: bytes) -> bytes:
    return (int.from_bytes(a, "big") ^ int.from_bytes(b, "big")).to_bytes(len(a), "big")


def oaep_encrypt(key: RecoveryPublicKey, message: bytes, oaep_label: bytes, seed: bytes) -> bytes:
    """RSAES-OAEP-ENCRYPT (SHA-256, MGF1-SHA-256) with the seed given, not drawn."""
    k = key.size
    if len(seed) != HASH_SIZE:
        raise InvalidEncoding("OAEP seed must be 32 bytes")
    if len(message) > k - 2 * HASH_SIZE - 2:
        raise InvalidEncoding("message too long for the key")
    l_hash = hashlib.sha256(oaep_label).digest()
    db = l_hash + bytes(k - len(message) - 2 * HASH_SIZE - 2) + b"\x01" + message
    masked_db = _xor(db, _mgf1(seed, k - HASH_SIZE - 1))
    masked_seed = _xor(seed, _mgf1(masked_db, HASH_SIZE))
    m = int.from_bytes(b"\x00" + masked_seed + masked_db, "big")
    return int(gmpy2.powmod(m, key.e, key.n)).to_bytes(k, "big")


def oaep_decrypt(private_key: rsa.RSAPrivateKey, ciphertext: bytes, oaep_label: bytes) -> bytes:
    """Standard RSAES-OAEP-DECRYPT (SHA-256, MGF1-SHA-256), by ``cryptography``."""
    return private_key.decrypt(
        ciphertext,
        padding.OAEP(
            mgf=padding.MGF1(algorithm=hashes.SHA256()),
            algorithm=hashes.SHA256(),
            label=oaep_label,
        ),
    )


# --- the part -----------------------------------------------------------------------------


def _x0(seed: bytes) -> Scalar:
    return scalar_reduce(hashlib.sha512(X0_TAG + seed).digest())


def _rho(seed: bytes) -> bytes:
    return hashlib.sha256(RHO_TAG + seed).digest()


def oaep_label_for(label: bytes, point: Element) -> bytes:
    """The OAEP label of every ciphertext of a part: OAEP_TAG ‖ label ‖ X."""
    return OAEP_TAG + label + point


def _challenge(
    key: RecoveryPublicKey,
    point: Element,
    label: bytes,
    rows: list[tuple[Element, bytes, bytes]],
) -> bytes:
    """First κ bits of SHA-256 over the key, X, the label and every row's (X0, c0, c1).

    X1 = X − X0 is fixed by X0 and X, so hashing X0 binds both commitments (cb-mpc hashes
    both; leaving X1 out saves the verifier a point subtraction on half the rows)."""
    h = hashlib.sha256(CHALLENGE_TAG)
    h.update(key.fingerprint + point + _u16(len(label)) + label + _u16(KAPPA) + _u16(key.size))
    for x0, c0, c1 in rows:
        h.update(x0 + c0 + c1)
    return h.digest()[: KAPPA // 8]


def _bit(challenge: bytes, i: int) -> int:
    return (challenge[i >> 3] >> (i & 7)) & 1


@dataclass(frozen=True)
class Row:
    """One row as sent: the opened half's seed, the unopened half's ciphertext and, for
    bit 1, the opened half x1 itself."""

    seed: bytes
    ciphertext: bytes
    opened_x1: Scalar | None


@dataclass(frozen=True)
class Part:
    """A PVE of one scalar: public, safe to store anywhere."""

    fingerprint: bytes
    point: Element
    label: bytes
    challenge: bytes
    rows: tuple[Row, ...]
    modulus_size: int

    def encode(self) -> bytes:
        """u8 version ‖ u16 κ ‖ u16 k ‖ fingerprint ‖ X ‖ u16 len ‖ label ‖ challenge (16) ‖
        rows, each seed (16) ‖ ciphertext (k) ‖ x1 (32, only where the challenge bit is 1)."""
        out = bytearray()
        out += bytes([FORMAT_VERSION]) + _u16(KAPPA) + _u16(self.modulus_size)
        out += self.fingerprint + self.point + _u16(len(self.label)) + self.label
        out += self.challenge
        for row in self.rows:
            out += row.seed + row.ciphertext
            if row.opened_x1 is not None:
                out += row.opened_x1
        return bytes(out)

    @classmethod
    def decode(cls, data: bytes) -> Part:
        """Parse strictly: exact sizes, canonical points and scalars, no trailing bytes."""
        pos = 0

        def take(size: int, what: str) -> bytes:
            nonlocal pos
            if pos + size > len(data):
                raise InvalidProof(f"part truncated in {what}")
            chunk = bytes(data[pos : pos + size])
            pos += size
            return chunk

        if take(1, "version")[0] != FORMAT_VERSION:
            raise InvalidProof(f"part: unknown format version (expected {FORMAT_VERSION})")
        if int.from_bytes(take(2, "kappa"), "big") != KAPPA:
            raise InvalidProof(f"part: κ must be {KAPPA}")
        k = int.from_bytes(take(2, "modulus size"), "big")
        if not MIN_MODULUS_BITS // 8 <= k <= MAX_MODULUS_BITS // 8:
            raise InvalidProof("part: modulus size out of range")
        fingerprint = take(HASH_SIZE, "fingerprint")
        try:
            point = element_decode(take(32, "point"))
        except InvalidEncoding as exc:
            raise InvalidProof(f"part: point: {exc}") from None
        label = take(int.from_bytes(take(2, "label length"), "big"), "label")
        challenge = take(KAPPA // 8, "challenge")
        rows = []
        for i in range(KAPPA):
            seed = take(SEED_SIZE, f"row {i} seed")
            ciphertext = take(k, f"row {i} ciphertext")
            opened = None
            if _bit(challenge, i):
                try:
                    opened = scalar_decode(take(32, f"row {i} x1"))
                except InvalidEncoding:
                    raise InvalidProof(f"part: row {i} x1 is not a canonical scalar") from None
            rows.append(Row(seed, ciphertext, opened))
        if pos != len(data):
            raise InvalidProof(f"part: {len(data) - pos} trailing bytes")
        return cls(fingerprint, point, label, challenge, tuple(rows), k)


def part_digest(encoded: bytes) -> bytes:
    """SHA-256 of a part's bytes: what the contract records."""
    return hashlib.sha256(encoded).digest()


def encrypt(key: RecoveryPublicKey, share: Scalar, label: bytes, random_bytes: RandomBytes) -> Part:
    """A part encrypting ``share`` to ``key`` under ``label`` (X = share·G)."""
    share = scalar_decode(share)
    point = base_mul(share)
    if share == ZERO:
        raise InvalidEncoding("cannot encrypt the scalar 0")
    oaep_label = oaep_label_for(label, point)
    seeds: list[tuple[bytes, bytes]] = []
    halves: list[tuple[Scalar, Scalar]] = []
    committed: list[tuple[Element, bytes, bytes]] = []
    for _ in range(KAPPA):
        r0, r1 = random_bytes(SEED_SIZE), random_bytes(SEED_SIZE)
        if len(r0) != SEED_SIZE or len(r1) != SEED_SIZE:
            raise InvalidEncoding("random_bytes returned the wrong length")
        x0 = _x0(r0)
        x1 = scalar_sub(share, x0)
        c0 = oaep_encrypt(key, x0, oaep_label, _rho(r0))
        c1 = oaep_encrypt(key, x1, oaep_label, _rho(r1))
        committed.append((base_mul(x0), c0, c1))
        seeds.append((r0, r1))
        halves.append((x0, x1))
    challenge = _challenge(key, point, label, committed)
    rows = []
    for i in range(KAPPA):
        (r0, r1), (_, x1), (_, c0, c1) = seeds[i], halves[i], committed[i]
        if _bit(challenge, i):
            rows.append(Row(r1, c0, x1))
        else:
            rows.append(Row(r0, c1, None))
    return Part(key.fingerprint, point, label, challenge, tuple(rows), key.size)


def verify(key: RecoveryPublicKey, part: Part, point: Element, label: bytes) -> None:
    """Raise InvalidProof unless ``part`` encrypts the discrete log of ``point`` to ``key``
    under ``label``."""
    if part.fingerprint != key.fingerprint or part.modulus_size != key.size:
        raise InvalidProof("the part is encrypted to another recovery key")
    if part.point != point:
        raise InvalidProof("the part is for another point (not this verifying share)")
    if part.label != label:
        raise InvalidProof("the part is for another label")
    if len(part.rows) != KAPPA:
        raise InvalidProof(f"the part must have {KAPPA} rows")
    oaep_label = oaep_label_for(label, point)
    committed = []
    for i, row in enumerate(part.rows):
        if int.from_bytes(row.ciphertext, "big") >= key.n:
            raise InvalidProof(f"row {i}: ciphertext is not below the modulus")
        rho = _rho(row.seed)
        if _bit(part.challenge, i):
            if row.opened_x1 is None:
                raise InvalidProof(f"row {i}: the opened half x1 is missing")
            x1 = row.opened_x1
            c1 = oaep_encrypt(key, x1, oaep_label, rho)
            committed.append((element_sub(point, base_mul(x1)), row.ciphertext, c1))
        else:
            if row.opened_x1 is not None:
                raise InvalidProof(f"row {i}: an x1 is given for a row that opens x0")
            x0 = _x0(row.seed)
            c0 = oaep_encrypt(key, x0, oaep_label, rho)
            committed.append((base_mul(x0), c0, row.ciphertext))
    if _challenge(key, point, label, committed) != part.challenge:
        raise InvalidProof("the challenge does not match the rows (forged or altered part)")


def decrypt(private_key: rsa.RSAPrivateKey, part: Part, label: bytes) -> Scalar:
    """The scalar x with x·G = part.point. Verify the part first: this checks the result,
    not the proof. Tries rows in order; DecryptionFailed if none gives x."""
    if part.label != label:
        raise DecryptionFailed("the part is for another label")
    if RecoveryPublicKey.from_private(private_key).fingerprint != part.fingerprint:
        raise DecryptionFailed("the part is encrypted to another recovery key")
    oaep_label = oaep_label_for(label, part.point)
    for i, row in enumerate(part.rows):
        opened = row.opened_x1 if _bit(part.challenge, i) else _x0(row.seed)
        if opened is None:
            continue
        try:
            other = scalar_decode(oaep_decrypt(private_key, row.ciphertext, oaep_label))
        except (ValueError, InvalidEncoding):
            continue
        x = scalar_add(opened, other)
        if base_mul(x) == part.point:
            return x
    raise DecryptionFailed("no row decrypts to the discrete log of the part's point")


__all__ = [
    "KAPPA",
    "DecryptionFailed",
    "InvalidProof",
    "Label",
    "Part",
    "RecoveryPublicKey",
    "decrypt",
    "encrypt",
    "oaep_decrypt",
    "oaep_encrypt",
    "package_digest",
    "part_digest",
    "verify",
]
