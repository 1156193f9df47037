"""Authenticated encryption to a peer's key or to a passphrase (byte layouts: docs/sealing.md).

Two recipes, both on libsodium through PyNaCl:

- *To a key*: X25519 key exchange with ``crypto_kx`` (the sender is the client, the receiver
  the server, so each direction has its own session key) and XChaCha20-Poly1305-IETF with
  associated data naming the context, both public keys and a caller-supplied binding such
  as account and epoch. A sealed share can therefore only be opened by the intended
  receiver, from the intended sender, for the intended purpose.
- *To a passphrase*: Argon2id13 (``crypto_pwhash``) stretches the passphrase into an
  XChaCha20-Poly1305 key; the blob carries its own parameters so it stays readable when
  the defaults change, and those parameters are bounded before any memory is committed.

Every failure raises :class:`SealError` and nothing else; no partially decrypted or
unauthenticated byte is ever returned, and no message carries key material.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType

from nacl import bindings as _sodium
from nacl import exceptions as _nacl_exc

from quorumkeep.crypto.errors import SealError
from quorumkeep.crypto.group import RandomBytes
from quorumkeep.encoding.fields import len32

KEY_SIZE = 32
"""XChaCha20-Poly1305 key, crypto_kx session key and crypto_kx seed size."""
PUBLIC_KEY_SIZE = 32
NONCE_SIZE = 24
TAG_SIZE = 16
SALT_SIZE = 16

AD_DOMAIN = b"quorumkeep seal ad v1"
"""Fixed prefix of every associated-data encoding; a new encoding gets a new version."""

PASSPHRASE_MAGIC = b"QKPS"
PASSPHRASE_VERSION = 1
ALG_ARGON2ID13_XCHACHA20POLY1305 = 1
"""Algorithm id in a passphrase blob: Argon2id v1.3 key, XChaCha20-Poly1305-IETF AEAD."""
PASSPHRASE_HEADER_SIZE = 4 + 1 + 1 + 4 + 8 + SALT_SIZE + NONCE_SIZE

# Parameters this module writes by default. A node derives its storage key once per start, so
# libsodium's MODERATE cost (about 0.7 s and 256 MiB on a 2-core machine) is paid rarely by
# us, and on every single guess by someone who copied the sealed files.
DEFAULT_OPSLIMIT: int = _sodium.crypto_pwhash_argon2id_OPSLIMIT_MODERATE
DEFAULT_MEMLIMIT: int = _sodium.crypto_pwhash_argon2id_MEMLIMIT_MODERATE
INTERACTIVE_OPSLIMIT: int = _sodium.crypto_pwhash_argon2id_OPSLIMIT_INTERACTIVE
INTERACTIVE_MEMLIMIT: int = _sodium.crypto_pwhash_argon2id_MEMLIMIT_INTERACTIVE

# What we accept, on writing and on reading. The upper bounds keep a hostile blob from making
# us allocate or compute without limit: libsodium's own maxima (4 TiB, 2^32 - 1 passes) are
# far beyond what a node should ever commit before it has authenticated a single byte.
MIN_OPSLIMIT: int = _sodium.crypto_pwhash_argon2id_OPSLIMIT_MIN
MIN_MEMLIMIT: int = _sodium.crypto_pwhash_argon2id_MEMLIMIT_MIN
MAX_OPSLIMIT = 16
MAX_MEMLIMIT: int = _sodium.crypto_pwhash_argon2id_MEMLIMIT_SENSITIVE  # 1 GiB

KDF_COSTS: Mapping[str, tuple[int, int]] = MappingProxyType(
    {
        "moderate": (DEFAULT_OPSLIMIT, DEFAULT_MEMLIMIT),
        "interactive": (INTERACTIVE_OPSLIMIT, INTERACTIVE_MEMLIMIT),
        "minimum": (MIN_OPSLIMIT, MIN_MEMLIMIT),
    }
)
"""The Argon2id costs (opslimit, memlimit) an ``init`` command's ``--kdf-cost`` names:
``moderate`` by default; ``interactive`` and ``minimum`` for tests and devnets, whose
passphrases lie beside the sealed files anyway."""

_AEAD_FAILED = "authentication failed: wrong key, wrong associated data or tampered bytes"
_EMPTY_BINDING: Mapping[str, str | int] = MappingProxyType({})


def _data(value: object, what: str) -> bytes:
    # bytes(5) would silently be five zero bytes: only genuine byte strings are accepted.
    if not isinstance(value, bytes | bytearray | memoryview):
        raise SealError(f"{what} must be bytes")
    return bytes(value)


def _require_bytes(value: object, size: int, what: str) -> bytes:
    data = _data(value, what)
    if len(data) != size:
        raise SealError(f"{what} must be {size} bytes, got {len(data)}")
    return data


def _random(random_bytes: RandomBytes, size: int, what: str) -> bytes:
    data = random_bytes(size)
    if not isinstance(data, bytes) or len(data) != size:
        raise SealError(f"random source returned a bad {what}")
    return data


# --- key exchange ----------------------------------------------------------------------


@dataclass(frozen=True)
class KxKeyPair:
    """An X25519 key pair for ``crypto_kx``. ``secret_key`` never appears in a repr."""

    public_key: bytes
    secret_key: bytes = field(repr=False, compare=False)

    def __post_init__(self) -> None:
        pk = _require_bytes(self.public_key, PUBLIC_KEY_SIZE, "kx public key")
        sk = _require_bytes(self.secret_key, KEY_SIZE, "kx secret key")
        # A pair whose halves disagree would seal to keys nobody can reproduce.
        if bytes(_sodium.crypto_scalarmult_base(sk)) != pk:
            raise SealError("kx public key does not match the secret key")
        object.__setattr__(self, "public_key", pk)
        object.__setattr__(self, "secret_key", sk)

    def __repr__(self) -> str:
        return f"KxKeyPair(public_key={self.public_key.hex()})"

    @classmethod
    def from_seed(cls, seed: bytes) -> KxKeyPair:
        """The pair ``crypto_kx_seed_keypair`` derives from a 32-byte seed."""
        seed = _require_bytes(seed, KEY_SIZE, "kx seed")
        pk, sk = _sodium.crypto_kx_seed_keypair(seed)
        return cls(public_key=bytes(pk), secret_key=bytes(sk))

    @classmethod
    def generate(cls, random_bytes: RandomBytes) -> KxKeyPair:
        return cls.from_seed(_random(random_bytes, KEY_SIZE, "seed"))


@dataclass(frozen=True)
class SessionKeys:
    """One key per direction: ``rx`` opens what the peer sent, ``tx`` seals what we send."""

    rx: bytes = field(repr=False)
    tx: bytes = field(repr=False)

    def __repr__(self) -> str:
        return "SessionKeys(rx=<hidden>, tx=<hidden>)"


def client_session_keys(client: KxKeyPair, server_public_key: bytes) -> SessionKeys:
    server_pk = _require_bytes(server_public_key, PUBLIC_KEY_SIZE, "server public key")
    try:
        rx, tx = _sodium.crypto_kx_client_session_keys(
            client.public_key, client.secret_key, server_pk
        )
    except _nacl_exc.CryptoError:
        # libsodium refuses a peer key whose shared point is all-zero (a small-order point).
        raise SealError("server public key is not a usable X25519 key") from None
    return SessionKeys(rx=bytes(rx), tx=bytes(tx))


def server_session_keys(server: KxKeyPair, client_public_key: bytes) -> SessionKeys:
    client_pk = _require_bytes(client_public_key, PUBLIC_KEY_SIZE, "client public key")
    try:
        rx, tx = _sodium.crypto_kx_server_session_keys(
            server.public_key, server.secret_key, client_pk
        )
    except _nacl_exc.CryptoError:
        raise SealError("client public key is not a usable X25519 key") from None
    return SessionKeys(rx=bytes(rx), tx=bytes(tx))


# --- associated data -------------------------------------------------------------------


def _binding_value(key: str, value: str | int) -> bytes:
    # bool is an int to Python but would make True and 1 the same binding: refuse it.
    if isinstance(value, bool):
        raise SealError(f"binding {key!r}: booleans are not allowed, use an int or a str")
    if isinstance(value, int):
        try:
            digits = str(value)
        except ValueError:  # beyond Python's int-to-str digit limit
            raise SealError(f"binding {key!r}: integer too large") from None
        return b"i" + len32(digits.encode("ascii"))
    if isinstance(value, str):
        return b"s" + len32(_utf8(value, f"binding {key!r}"))
    raise SealError(f"binding {key!r}: value must be str or int")


def _utf8(text: str, what: str) -> bytes:
    try:
        return text.encode("utf-8")
    except UnicodeEncodeError:  # lone surrogates have no UTF-8 form
        raise SealError(f"{what} is not valid Unicode text") from None


def associated_data(
    label: str,
    *,
    sender: bytes,
    receiver: bytes,
    binding: Mapping[str, str | int] = _EMPTY_BINDING,
) -> bytes:
    """The canonical associated data for a sealed message (docs/sealing.md, "AD").

    Every field is length-prefixed and the binding is sorted by key, so two different
    contexts can never encode to the same bytes and the order a caller built its
    mapping in does not matter.
    """
    if not isinstance(label, str):
        raise SealError("label must be a str")
    if not isinstance(sender, bytes | bytearray) or not isinstance(receiver, bytes | bytearray):
        raise SealError("sender and receiver must be bytes")
    entries: list[tuple[bytes, bytes]] = []
    for key, value in binding.items():
        if not isinstance(key, str):
            raise SealError("binding keys must be str")
        entries.append((_utf8(key, "binding key"), _binding_value(key, value)))
    entries.sort()
    parts = [
        AD_DOMAIN,
        len32(_utf8(label, "label")),
        len32(bytes(sender)),
        len32(bytes(receiver)),
        len(entries).to_bytes(4, "big"),
    ]
    for key_bytes, value_bytes in entries:
        parts.append(len32(key_bytes))
        parts.append(value_bytes)
    return b"".join(parts)


# --- AEAD ------------------------------------------------------------------------------


def aead_seal(
    key: bytes, plaintext: bytes, associated_data: bytes, random_bytes: RandomBytes
) -> bytes:
    """nonce (24 random bytes) ‖ XChaCha20-Poly1305-IETF ciphertext ‖ tag (16 bytes)."""
    key = _require_bytes(key, KEY_SIZE, "key")
    nonce = _random(random_bytes, NONCE_SIZE, "nonce")
    ciphertext = _sodium.crypto_aead_xchacha20poly1305_ietf_encrypt(
        _data(plaintext, "plaintext"), _data(associated_data, "associated data"), nonce, key
    )
    return nonce + bytes(ciphertext)


def aead_open(key: bytes, sealed: bytes, associated_data: bytes) -> bytes:
    key = _require_bytes(key, KEY_SIZE, "key")
    sealed = _data(sealed, "sealed data")
    ad = _data(associated_data, "associated data")
    if len(sealed) < NONCE_SIZE + TAG_SIZE:
        raise SealError(
            f"sealed data truncated: {len(sealed)} bytes, need at least {NONCE_SIZE + TAG_SIZE}"
        )
    try:
        plaintext = _sodium.crypto_aead_xchacha20poly1305_ietf_decrypt(
            sealed[NONCE_SIZE:], ad, sealed[:NONCE_SIZE], key
        )
    except _nacl_exc.CryptoError:
        raise SealError(_AEAD_FAILED) from None
    return bytes(plaintext)


# --- one-shot sealing between two kx key pairs -----------------------------------------


def seal_to(
    sender: KxKeyPair,
    receiver_public_key: bytes,
    plaintext: bytes,
    *,
    label: str,
    binding: Mapping[str, str | int] = _EMPTY_BINDING,
    random_bytes: RandomBytes,
) -> bytes:
    """Seal ``plaintext`` from ``sender`` to the holder of ``receiver_public_key``."""
    keys = client_session_keys(sender, receiver_public_key)
    ad = associated_data(
        label, sender=sender.public_key, receiver=receiver_public_key, binding=binding
    )
    return aead_seal(keys.tx, plaintext, ad, random_bytes)


def open_from(
    receiver: KxKeyPair,
    sender_public_key: bytes,
    sealed: bytes,
    *,
    label: str,
    binding: Mapping[str, str | int] = _EMPTY_BINDING,
) -> bytes:
    """Open what :func:`seal_to` sealed; the label and binding must match exactly."""
    keys = server_session_keys(receiver, sender_public_key)
    ad = associated_data(
        label, sender=sender_public_key, receiver=receiver.public_key, binding=binding
    )
    return aead_open(keys.rx, sealed, ad)


# --- passphrase sealing ----------------------------------------------------------------


def _check_cost(opslimit: int, memlimit: int) -> None:
    if isinstance(opslimit, bool) or not isinstance(opslimit, int):
        raise SealError("opslimit must be an int")
    if isinstance(memlimit, bool) or not isinstance(memlimit, int):
        raise SealError("memlimit must be an int")
    if not MIN_OPSLIMIT <= opslimit <= MAX_OPSLIMIT:
        raise SealError(
            f"opslimit {opslimit} outside the accepted [{MIN_OPSLIMIT}, {MAX_OPSLIMIT}]"
        )
    if not MIN_MEMLIMIT <= memlimit <= MAX_MEMLIMIT:
        raise SealError(
            f"memlimit {memlimit} outside the accepted [{MIN_MEMLIMIT}, {MAX_MEMLIMIT}]"
        )


@dataclass(frozen=True)
class PassphraseParams:
    """Argon2id13 salt and cost. Public: they are stored in the clear in every blob."""

    salt: bytes
    opslimit: int
    memlimit: int

    def __post_init__(self) -> None:
        object.__setattr__(self, "salt", _require_bytes(self.salt, SALT_SIZE, "salt"))
        _check_cost(self.opslimit, self.memlimit)

    @classmethod
    def new(
        cls,
        random_bytes: RandomBytes,
        opslimit: int = DEFAULT_OPSLIMIT,
        memlimit: int = DEFAULT_MEMLIMIT,
    ) -> PassphraseParams:
        """A fresh random salt with the given cost (libsodium's MODERATE by default)."""
        return cls(_random(random_bytes, SALT_SIZE, "salt"), opslimit, memlimit)


def passphrase_key(passphrase: bytes, params: PassphraseParams) -> bytes:
    """The 32-byte key Argon2id13 derives from ``passphrase`` under ``params``."""
    passphrase = _data(passphrase, "passphrase")
    if not isinstance(params, PassphraseParams):
        raise SealError("params must be PassphraseParams")
    _check_cost(params.opslimit, params.memlimit)
    try:
        key = _sodium.crypto_pwhash_alg(
            KEY_SIZE,
            passphrase,
            params.salt,
            params.opslimit,
            params.memlimit,
            _sodium.crypto_pwhash_ALG_ARGON2ID13,
        )
    except (_nacl_exc.CryptoError, ValueError, TypeError, MemoryError):
        raise SealError("passphrase key derivation failed") from None
    return bytes(key)


def _passphrase_header(params: PassphraseParams, nonce: bytes) -> bytes:
    return b"".join(
        [
            PASSPHRASE_MAGIC,
            bytes([PASSPHRASE_VERSION, ALG_ARGON2ID13_XCHACHA20POLY1305]),
            params.opslimit.to_bytes(4, "big"),
            params.memlimit.to_bytes(8, "big"),
            params.salt,
            nonce,
        ]
    )


def _parse_passphrase_blob(blob: bytes) -> tuple[PassphraseParams, bytes, bytes]:
    """(params, header, ciphertext) after checking everything that needs no key."""
    blob = _data(blob, "passphrase blob")
    if len(blob) < PASSPHRASE_HEADER_SIZE + TAG_SIZE:
        raise SealError(
            f"passphrase blob truncated: {len(blob)} bytes, "
            f"need at least {PASSPHRASE_HEADER_SIZE + TAG_SIZE}"
        )
    if blob[:4] != PASSPHRASE_MAGIC:
        raise SealError("not a quorumkeep passphrase blob (bad magic)")
    if blob[4] != PASSPHRASE_VERSION:
        raise SealError(f"unsupported passphrase blob version {blob[4]}")
    if blob[5] != ALG_ARGON2ID13_XCHACHA20POLY1305:
        raise SealError(f"unsupported passphrase blob algorithm {blob[5]}")
    opslimit = int.from_bytes(blob[6:10], "big")
    memlimit = int.from_bytes(blob[10:18], "big")
    salt = blob[18 : 18 + SALT_SIZE]
    # Bounded here, before Argon2 runs: a hostile file cannot make us allocate or spin.
    params = PassphraseParams(salt, opslimit, memlimit)
    return params, blob[:PASSPHRASE_HEADER_SIZE], blob[PASSPHRASE_HEADER_SIZE:]


def passphrase_params_of(blob: bytes) -> PassphraseParams:
    """The parameters a passphrase blob was sealed under (checked, bounded; no key needed)."""
    return _parse_passphrase_blob(blob)[0]


def seal_with_passphrase_key(
    key: bytes,
    params: PassphraseParams,
    plaintext: bytes,
    *,
    associated_data: bytes = b"",
    random_bytes: RandomBytes,
) -> bytes:
    """A passphrase blob from a key already derived by :func:`passphrase_key` under ``params``.

    Lets a node pay for Argon2 once at start and still write self-describing blobs.
    """
    key = _require_bytes(key, KEY_SIZE, "key")
    nonce = _random(random_bytes, NONCE_SIZE, "nonce")
    header = _passphrase_header(params, nonce)
    ciphertext = _sodium.crypto_aead_xchacha20poly1305_ietf_encrypt(
        _data(plaintext, "plaintext"),
        header + _data(associated_data, "associated data"),
        nonce,
        key,
    )
    return header + bytes(ciphertext)


def open_with_passphrase_key(
    key: bytes, params: PassphraseParams, blob: bytes, *, associated_data: bytes = b""
) -> bytes:
    """Open a blob sealed under ``params`` with the key derived for them."""
    key = _require_bytes(key, KEY_SIZE, "key")
    blob_params, header, ciphertext = _parse_passphrase_blob(blob)
    if blob_params != params:
        raise SealError("passphrase blob was sealed under other parameters")
    return _open_passphrase_body(key, header, ciphertext, associated_data)


def _open_passphrase_body(
    key: bytes, header: bytes, ciphertext: bytes, associated_data: bytes
) -> bytes:
    nonce = header[-NONCE_SIZE:]
    try:
        plaintext = _sodium.crypto_aead_xchacha20poly1305_ietf_decrypt(
            ciphertext, header + _data(associated_data, "associated data"), nonce, key
        )
    except _nacl_exc.CryptoError:
        raise SealError(
            "authentication failed: wrong passphrase, wrong associated data or tampered bytes"
        ) from None
    return bytes(plaintext)


def seal_with_passphrase(
    passphrase: bytes,
    plaintext: bytes,
    *,
    associated_data: bytes = b"",
    random_bytes: RandomBytes,
    params: PassphraseParams | None = None,
) -> bytes:
    """Seal for storage at rest; ``params`` defaults to a fresh salt at the default cost."""
    if params is None:
        params = PassphraseParams.new(random_bytes)
    key = passphrase_key(passphrase, params)
    return seal_with_passphrase_key(
        key, params, plaintext, associated_data=associated_data, random_bytes=random_bytes
    )


def open_with_passphrase(passphrase: bytes, blob: bytes, *, associated_data: bytes = b"") -> bytes:
    params, header, ciphertext = _parse_passphrase_blob(blob)
    key = passphrase_key(passphrase, params)
    return _open_passphrase_body(key, header, ciphertext, associated_data)
