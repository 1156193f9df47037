"""Sealing to a key and to a passphrase: round trips, and every failure is one SealError."""

from __future__ import annotations

import random
import resource
from collections.abc import Callable, Iterator, Mapping

import nacl.bindings
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from quorumkeep.crypto import seal
from quorumkeep.crypto.errors import CryptoError, SealError
from quorumkeep.crypto.seal import (
    AD_DOMAIN,
    DEFAULT_MEMLIMIT,
    DEFAULT_OPSLIMIT,
    MAX_MEMLIMIT,
    MAX_OPSLIMIT,
    MIN_MEMLIMIT,
    MIN_OPSLIMIT,
    PASSPHRASE_HEADER_SIZE,
    KxKeyPair,
    PassphraseParams,
    SessionKeys,
    aead_open,
    aead_seal,
    associated_data,
    client_session_keys,
    open_from,
    open_with_passphrase,
    open_with_passphrase_key,
    passphrase_key,
    passphrase_params_of,
    seal_to,
    seal_with_passphrase,
    seal_with_passphrase_key,
    server_session_keys,
)

Binding = Mapping[str, str | int]

FLIPS = (0x01, 0x80, 0xFF)
PASSPHRASE = b"correct horse battery staple"


def rng(seed: int = 0) -> Callable[[int], bytes]:
    return random.Random(seed).randbytes


def fast_params(seed: int = 0) -> PassphraseParams:
    """libsodium's minimum Argon2id cost: the format is the same, the suite stays fast."""
    return PassphraseParams.new(rng(seed), opslimit=MIN_OPSLIMIT, memlimit=MIN_MEMLIMIT)


def flipped(data: bytes) -> Iterator[bytes]:
    """Every single-byte tamper of ``data`` (three different XOR masks per position)."""
    for i in range(len(data)):
        for mask in FLIPS:
            yield data[:i] + bytes([data[i] ^ mask]) + data[i + 1 :]


@pytest.fixture
def alice() -> KxKeyPair:
    return KxKeyPair.from_seed(bytes([1]) * 32)


@pytest.fixture
def bob() -> KxKeyPair:
    return KxKeyPair.from_seed(bytes([2]) * 32)


@pytest.fixture
def eve() -> KxKeyPair:
    return KxKeyPair.from_seed(bytes([3]) * 32)


bindings = st.dictionaries(
    st.text(max_size=12), st.one_of(st.text(max_size=24), st.integers()), max_size=5
)


# --- key pairs and session keys --------------------------------------------------------


def test_from_seed_is_libsodium_crypto_kx_seed_keypair() -> None:
    # Known answer from libsodium's crypto_kx test suite (seed = "lo" repeated).
    pair = KxKeyPair.from_seed(b"lo" * 16)
    assert pair.public_key.hex() == (
        "0cd703bbd6b1d46dc431a1fc4f1f7724c64b1d4c471e8c17de4966c9e15bf85e"
    )


def test_generate_takes_32_bytes_from_the_injected_source() -> None:
    drawn: list[int] = []

    def source(n: int) -> bytes:
        drawn.append(n)
        return bytes([7]) * n

    assert KxKeyPair.generate(source) == KxKeyPair.from_seed(bytes([7]) * 32)
    assert drawn == [32]
    assert KxKeyPair.generate(rng(1)) != KxKeyPair.generate(rng(2))


def test_secrets_stay_out_of_repr(alice: KxKeyPair, bob: KxKeyPair) -> None:
    assert alice.secret_key.hex() not in repr(alice)
    assert alice.public_key.hex() in repr(alice)
    keys = client_session_keys(alice, bob.public_key)
    text = repr(keys) + str(keys)
    assert keys.rx.hex() not in text and keys.tx.hex() not in text
    assert repr(SessionKeys(rx=b"\x11" * 32, tx=b"\x22" * 32)).count("11") == 0


def test_mismatched_key_pair_is_refused(alice: KxKeyPair, bob: KxKeyPair) -> None:
    with pytest.raises(SealError, match="does not match"):
        KxKeyPair(public_key=bob.public_key, secret_key=alice.secret_key)
    with pytest.raises(SealError):
        KxKeyPair.from_seed(b"short")


def test_session_keys_pair_up_per_direction(alice: KxKeyPair, bob: KxKeyPair) -> None:
    client = client_session_keys(alice, bob.public_key)
    server = server_session_keys(bob, alice.public_key)
    assert client.tx == server.rx
    assert client.rx == server.tx
    assert client.tx != client.rx


@pytest.mark.parametrize(
    "bad_public_key",
    [
        bytes(32),  # the all-zero point
        (1).to_bytes(32, "little"),  # small order
        bytes.fromhex("e0eb7a7c3b41b8ae1656e3faf19fc46ada098deb9c32b1fd866205165f49b800"),
        bytes(31),
        bytes(33),
        b"",
    ],
)
def test_invalid_public_keys_are_refused(alice: KxKeyPair, bad_public_key: bytes) -> None:
    with pytest.raises(SealError):
        client_session_keys(alice, bad_public_key)
    with pytest.raises(SealError):
        server_session_keys(alice, bad_public_key)
    with pytest.raises(SealError):
        seal_to(alice, bad_public_key, b"x", label="l", random_bytes=rng())
    with pytest.raises(SealError):
        open_from(alice, bad_public_key, bytes(64), label="l")


# --- associated data -------------------------------------------------------------------


def _decode_ad(ad: bytes) -> tuple[str, bytes, bytes, dict[str, str | int]]:
    """The inverse of the layout in docs/sealing.md; proves the encoding is unambiguous."""
    assert ad.startswith(AD_DOMAIN)
    pos = len(AD_DOMAIN)

    def field() -> bytes:
        nonlocal pos
        size = int.from_bytes(ad[pos : pos + 4], "big")
        value = ad[pos + 4 : pos + 4 + size]
        assert len(value) == size
        pos += 4 + size
        return value

    label = field().decode()
    sender = field()
    receiver = field()
    count = int.from_bytes(ad[pos : pos + 4], "big")
    pos += 4
    binding: dict[str, str | int] = {}
    previous = b""
    for index in range(count):
        key = field()
        assert index == 0 or key > previous
        previous = key
        tag = ad[pos : pos + 1]
        pos += 1
        raw = field().decode()
        binding[key.decode()] = int(raw) if tag == b"i" else raw
        assert tag in (b"i", b"s")
    assert pos == len(ad)
    return label, sender, receiver, binding


def test_associated_data_exact_layout() -> None:
    ad = associated_data("L", sender=b"S", receiver=b"RR", binding={"epoch": 7, "account": "a"})
    assert ad == (
        b"quorumkeep seal ad v1"
        + b"\x00\x00\x00\x01L"
        + b"\x00\x00\x00\x01S"
        + b"\x00\x00\x00\x02RR"
        + b"\x00\x00\x00\x02"
        + b"\x00\x00\x00\x07account"
        + b"s\x00\x00\x00\x01a"
        + b"\x00\x00\x00\x05epoch"
        + b"i\x00\x00\x00\x017"
    )


@settings(max_examples=100, deadline=None)
@given(
    label=st.text(max_size=20),
    sender=st.binary(max_size=40),
    receiver=st.binary(max_size=40),
    binding=bindings,
)
def test_associated_data_decodes_back_to_its_inputs(
    label: str, sender: bytes, receiver: bytes, binding: dict[str, str | int]
) -> None:
    ad = associated_data(label, sender=sender, receiver=receiver, binding=binding)
    assert _decode_ad(ad) == (label, sender, receiver, binding)
    reordered = dict(reversed(list(binding.items())))
    assert associated_data(label, sender=sender, receiver=receiver, binding=reordered) == ad


@pytest.mark.parametrize(
    ("left", "right"),
    [
        (("ab", b"c", b"", {}), ("a", b"bc", b"", {})),
        (("l", b"ab", b"c", {}), ("l", b"a", b"bc", {})),
        (("l", b"s", b"r", {"a": "1"}), ("l", b"s", b"r", {"a": 1})),
        (("l", b"s", b"r", {"ab": "c"}), ("l", b"s", b"r", {"a": "bc"})),
        (("l", b"s", b"r", {"a": ""}), ("l", b"s", b"r", {})),
        (("l", b"s", b"r", {"a": -1}), ("l", b"s", b"r", {"a": 1})),
        (("l", b"s", b"r", {}), ("l", b"r", b"s", {})),
    ],
)
def test_associated_data_separates_tricky_neighbours(
    left: tuple[str, bytes, bytes, Binding], right: tuple[str, bytes, bytes, Binding]
) -> None:
    def encode(args: tuple[str, bytes, bytes, Binding]) -> bytes:
        return associated_data(args[0], sender=args[1], receiver=args[2], binding=args[3])

    assert encode(left) != encode(right)


@pytest.mark.parametrize(
    "binding",
    [
        {"flag": True},
        {"x": 1.5},
        {"x": b"raw"},
        {1: "x"},
        {"x": "\ud800"},
        {"\udfff": "x"},
        {"x": 10**5000},
    ],
)
def test_associated_data_refuses_other_value_types(binding: dict[object, object]) -> None:
    with pytest.raises(SealError):
        associated_data("l", sender=b"s", receiver=b"r", binding=binding)  # type: ignore[arg-type]


def test_associated_data_refuses_bad_label_and_keys() -> None:
    with pytest.raises(SealError):
        associated_data("\ud800", sender=b"s", receiver=b"r")
    with pytest.raises(SealError):
        associated_data(b"label", sender=b"s", receiver=b"r")  # type: ignore[arg-type]
    with pytest.raises(SealError):
        associated_data("l", sender="s", receiver=b"r")  # type: ignore[arg-type]


# --- AEAD ------------------------------------------------------------------------------

KEY = bytes(range(32))
OTHER_KEY = bytes(range(1, 33))


@settings(max_examples=40, deadline=None)
@given(plaintext=st.binary(max_size=4096), ad=st.binary(max_size=64), seed=st.integers(0, 2**16))
def test_aead_round_trip(plaintext: bytes, ad: bytes, seed: int) -> None:
    sealed = aead_seal(KEY, plaintext, ad, rng(seed))
    assert len(sealed) == 24 + len(plaintext) + 16
    assert aead_open(KEY, sealed, ad) == plaintext


def test_aead_layout_is_nonce_then_libsodium_ciphertext() -> None:
    nonce_source = rng(5)
    sealed = aead_seal(KEY, b"hello", b"ad", nonce_source)
    nonce = rng(5)(24)
    assert sealed[:24] == nonce
    assert sealed[24:] == nacl.bindings.crypto_aead_xchacha20poly1305_ietf_encrypt(
        b"hello", b"ad", nonce, KEY
    )


def test_aead_every_single_byte_tamper_fails() -> None:
    sealed = aead_seal(KEY, b"a short secret", b"ctx", rng())
    for tampered in flipped(sealed):
        with pytest.raises(SealError):
            aead_open(KEY, tampered, b"ctx")
    with pytest.raises(SealError):
        aead_open(KEY, sealed + b"\x00", b"ctx")


def test_aead_every_truncation_fails() -> None:
    sealed = aead_seal(KEY, b"a short secret", b"ctx", rng())
    for length in range(len(sealed)):
        with pytest.raises(SealError):
            aead_open(KEY, sealed[:length], b"ctx")


def test_aead_wrong_key_or_associated_data_fails() -> None:
    sealed = aead_seal(KEY, b"secret", b"ctx", rng())
    with pytest.raises(SealError) as wrong_key:
        aead_open(OTHER_KEY, sealed, b"ctx")
    assert OTHER_KEY.hex() not in str(wrong_key.value)
    assert KEY.hex() not in str(wrong_key.value)
    with pytest.raises(SealError):
        aead_open(KEY, sealed, b"ctx2")
    with pytest.raises(SealError):
        aead_open(KEY, sealed, b"")


def test_aead_refuses_bad_inputs() -> None:
    with pytest.raises(SealError):
        aead_seal(b"short", b"x", b"", rng())
    with pytest.raises(SealError):
        aead_seal(KEY, "text", b"", rng())  # type: ignore[arg-type]
    with pytest.raises(SealError):
        aead_seal(KEY, 5, b"", rng())  # type: ignore[arg-type]  # not five zero bytes
    with pytest.raises(SealError):
        aead_seal(KEY, b"x", b"", lambda n: b"\x00" * (n - 1))
    with pytest.raises(SealError):
        aead_open(b"short", bytes(64), b"")


def test_seal_error_is_a_crypto_error() -> None:
    assert issubclass(SealError, CryptoError)


# --- seal_to / open_from ---------------------------------------------------------------


@settings(max_examples=40, deadline=None)
@given(plaintext=st.binary(max_size=4096), binding=bindings, label=st.text(max_size=20))
def test_seal_to_round_trip(plaintext: bytes, binding: dict[str, str | int], label: str) -> None:
    alice = KxKeyPair.from_seed(bytes([1]) * 32)
    bob = KxKeyPair.from_seed(bytes([2]) * 32)
    sealed = seal_to(
        alice, bob.public_key, plaintext, label=label, binding=binding, random_bytes=rng()
    )
    opened = open_from(bob, alice.public_key, sealed, label=label, binding=binding)
    assert opened == plaintext


def test_seal_to_is_the_documented_recipe(alice: KxKeyPair, bob: KxKeyPair) -> None:
    binding: Binding = {"account": "alice.near", "epoch": 4}
    sealed = seal_to(
        alice, bob.public_key, b"share", label="share-push", binding=binding, random_bytes=rng()
    )
    tx = client_session_keys(alice, bob.public_key).tx
    ad = associated_data(
        "share-push", sender=alice.public_key, receiver=bob.public_key, binding=binding
    )
    assert aead_open(tx, sealed, ad) == b"share"


def test_seal_to_every_single_byte_tamper_fails(alice: KxKeyPair, bob: KxKeyPair) -> None:
    binding: dict[str, str | int] = {"account": "alice.near", "epoch": 1}
    sealed = seal_to(
        alice, bob.public_key, b"share 7", label="l", binding=binding, random_bytes=rng()
    )
    for tampered in flipped(sealed):
        with pytest.raises(SealError):
            open_from(bob, alice.public_key, tampered, label="l", binding=binding)
    for length in range(len(sealed)):
        with pytest.raises(SealError):
            open_from(bob, alice.public_key, sealed[:length], label="l", binding=binding)


def test_open_from_refuses_every_wrong_context(
    alice: KxKeyPair, bob: KxKeyPair, eve: KxKeyPair
) -> None:
    binding: dict[str, str | int] = {"account": "alice.near", "epoch": 1}
    sealed = seal_to(
        alice, bob.public_key, b"share", label="push", binding=binding, random_bytes=rng()
    )
    assert open_from(bob, alice.public_key, sealed, label="push", binding=binding) == b"share"
    attempts: list[Callable[[], bytes]] = [
        # another receiver
        lambda: open_from(eve, alice.public_key, sealed, label="push", binding=binding),
        # the right receiver believing another sender
        lambda: open_from(bob, eve.public_key, sealed, label="push", binding=binding),
        # sender and receiver swapped
        lambda: open_from(alice, bob.public_key, sealed, label="push", binding=binding),
        # another label, another epoch, another account, a missing or extra binding
        lambda: open_from(bob, alice.public_key, sealed, label="pull", binding=binding),
        lambda: open_from(
            bob,
            alice.public_key,
            sealed,
            label="push",
            binding={"account": "alice.near", "epoch": 2},
        ),
        lambda: open_from(
            bob, alice.public_key, sealed, label="push", binding={"account": "bob.near", "epoch": 1}
        ),
        lambda: open_from(
            bob, alice.public_key, sealed, label="push", binding={"account": "alice.near"}
        ),
        lambda: open_from(
            bob, alice.public_key, sealed, label="push", binding={**binding, "domain": 0}
        ),
        lambda: open_from(
            bob,
            alice.public_key,
            sealed,
            label="push",
            binding={"account": "alice.near", "epoch": "1"},
        ),
    ]
    for attempt in attempts:
        with pytest.raises(SealError):
            attempt()


def test_each_direction_has_its_own_key(alice: KxKeyPair, bob: KxKeyPair) -> None:
    ad = associated_data("l", sender=alice.public_key, receiver=bob.public_key)
    sealed = seal_to(alice, bob.public_key, b"secret", label="l", random_bytes=rng())
    client = client_session_keys(alice, bob.public_key)
    server = server_session_keys(bob, alice.public_key)
    assert aead_open(server.rx, sealed, ad) == b"secret"
    for wrong in (client.rx, server.tx):
        with pytest.raises(SealError):
            aead_open(wrong, sealed, ad)
    # A reply from bob sealed with his tx key does not open as if alice had sent it.
    reply = aead_seal(server.tx, b"reply", ad, rng(9))
    with pytest.raises(SealError):
        open_from(bob, alice.public_key, reply, label="l")


# --- passphrase sealing ----------------------------------------------------------------


def test_default_cost_is_libsodium_moderate() -> None:
    moderate = (
        nacl.bindings.crypto_pwhash_argon2id_OPSLIMIT_MODERATE,
        nacl.bindings.crypto_pwhash_argon2id_MEMLIMIT_MODERATE,
    )
    assert moderate == (DEFAULT_OPSLIMIT, DEFAULT_MEMLIMIT)
    params = PassphraseParams.new(rng())
    assert (params.opslimit, params.memlimit) == (DEFAULT_OPSLIMIT, DEFAULT_MEMLIMIT)
    assert params.salt == rng()(16)


@settings(max_examples=25, deadline=None)
@given(plaintext=st.binary(max_size=4096), ad=st.binary(max_size=32), seed=st.integers(0, 99))
def test_passphrase_round_trip(plaintext: bytes, ad: bytes, seed: int) -> None:
    blob = seal_with_passphrase(
        PASSPHRASE, plaintext, associated_data=ad, random_bytes=rng(seed), params=fast_params(seed)
    )
    assert len(blob) == PASSPHRASE_HEADER_SIZE + len(plaintext) + 16
    assert open_with_passphrase(PASSPHRASE, blob, associated_data=ad) == plaintext


def test_passphrase_blob_layout_opens_with_bare_libsodium() -> None:
    params = fast_params(3)
    blob = seal_with_passphrase(
        PASSPHRASE,
        b"node storage key",
        associated_data=b"node-1",
        random_bytes=rng(4),
        params=params,
    )
    assert blob[0:4] == b"QKPS"
    assert blob[4] == 1  # version
    assert blob[5] == 1  # Argon2id13 + XChaCha20-Poly1305-IETF
    assert int.from_bytes(blob[6:10], "big") == MIN_OPSLIMIT
    assert int.from_bytes(blob[10:18], "big") == MIN_MEMLIMIT
    assert blob[18:34] == params.salt
    nonce = blob[34:58]
    key = nacl.bindings.crypto_pwhash_alg(
        32,
        PASSPHRASE,
        params.salt,
        MIN_OPSLIMIT,
        MIN_MEMLIMIT,
        nacl.bindings.crypto_pwhash_ALG_ARGON2ID13,
    )
    plaintext = nacl.bindings.crypto_aead_xchacha20poly1305_ietf_decrypt(
        blob[58:], blob[:58] + b"node-1", nonce, key
    )
    assert plaintext == b"node storage key"
    assert passphrase_key(PASSPHRASE, params) == key
    assert passphrase_params_of(blob) == params


def test_passphrase_every_single_byte_tamper_fails() -> None:
    blob = seal_with_passphrase(
        PASSPHRASE, b"share", associated_data=b"ctx", random_bytes=rng(), params=fast_params()
    )
    for tampered in flipped(blob):
        with pytest.raises(SealError):
            open_with_passphrase(PASSPHRASE, tampered, associated_data=b"ctx")
    with pytest.raises(SealError):
        open_with_passphrase(PASSPHRASE, blob + b"\x00", associated_data=b"ctx")


def test_passphrase_every_truncation_fails() -> None:
    blob = seal_with_passphrase(PASSPHRASE, b"share", random_bytes=rng(), params=fast_params())
    for length in range(len(blob)):
        with pytest.raises(SealError):
            open_with_passphrase(PASSPHRASE, blob[:length])


def test_wrong_passphrase_or_associated_data_fails() -> None:
    blob = seal_with_passphrase(
        PASSPHRASE, b"share", associated_data=b"ctx", random_bytes=rng(), params=fast_params()
    )
    for wrong in (b"", b"correct horse battery stapl", PASSPHRASE + b" "):
        with pytest.raises(SealError) as failure:
            open_with_passphrase(wrong, blob, associated_data=b"ctx")
        assert PASSPHRASE.decode() not in str(failure.value)
    with pytest.raises(SealError):
        open_with_passphrase(PASSPHRASE, blob)
    with pytest.raises(SealError):
        open_with_passphrase(PASSPHRASE, blob, associated_data=b"ctx2")


def test_derived_key_path_writes_the_same_format() -> None:
    params = fast_params(8)
    key = passphrase_key(PASSPHRASE, params)
    blobs = [
        seal_with_passphrase_key(
            key, params, f"record {i}".encode(), associated_data=b"db", random_bytes=rng(i)
        )
        for i in range(3)
    ]
    assert len({blob[34:58] for blob in blobs}) == 3  # a fresh nonce each time
    for i, blob in enumerate(blobs):
        expected = f"record {i}".encode()
        assert open_with_passphrase(PASSPHRASE, blob, associated_data=b"db") == expected
        assert open_with_passphrase_key(key, params, blob, associated_data=b"db") == expected
    other = fast_params(9)
    with pytest.raises(SealError, match="other parameters"):
        open_with_passphrase_key(
            passphrase_key(PASSPHRASE, other), other, blobs[0], associated_data=b"db"
        )


def _blob_with(
    opslimit: int, memlimit: int, *, magic: bytes = b"QKPS", version: int = 1, algorithm: int = 1
) -> bytes:
    header = (
        magic
        + bytes([version, algorithm])
        + opslimit.to_bytes(4, "big")
        + memlimit.to_bytes(8, "big")
        + bytes(16)
        + bytes(24)
    )
    return header + bytes(32)


@pytest.fixture
def kdf_must_not_run(monkeypatch: pytest.MonkeyPatch) -> None:
    """Fails the test if Argon2 is reached: the header must be refused before it runs."""

    def refuse(*_args: object) -> bytes:
        raise AssertionError("Argon2 ran on a header that should have been refused")

    monkeypatch.setattr(nacl.bindings, "crypto_pwhash_alg", refuse)


@pytest.mark.parametrize(
    ("opslimit", "memlimit"),
    [
        (0, MIN_MEMLIMIT),
        (MAX_OPSLIMIT + 1, MIN_MEMLIMIT),
        (2**32 - 1, MIN_MEMLIMIT),
        (MIN_OPSLIMIT, 0),
        (MIN_OPSLIMIT, MIN_MEMLIMIT - 1),
        (MIN_OPSLIMIT, MAX_MEMLIMIT + 1),
        (MIN_OPSLIMIT, 4 * 2**40),
        (MIN_OPSLIMIT, 2**64 - 1),
    ],
)
@pytest.mark.usefixtures("kdf_must_not_run")
def test_hostile_cost_parameters_are_refused_before_argon2(opslimit: int, memlimit: int) -> None:
    blob = _blob_with(opslimit, memlimit)
    with pytest.raises(SealError, match=r"opslimit|memlimit"):
        open_with_passphrase(PASSPHRASE, blob)
    with pytest.raises(SealError):
        passphrase_params_of(blob)


@pytest.mark.parametrize(
    "blob",
    [
        _blob_with(1, MIN_MEMLIMIT, magic=b"QKPX"),
        _blob_with(1, MIN_MEMLIMIT, version=2),
        _blob_with(1, MIN_MEMLIMIT, version=0),
        _blob_with(1, MIN_MEMLIMIT, algorithm=2),
        b"",
        b"QKPS",
    ],
)
@pytest.mark.usefixtures("kdf_must_not_run")
def test_bad_headers_are_refused_before_argon2(blob: bytes) -> None:
    with pytest.raises(SealError):
        open_with_passphrase(PASSPHRASE, blob)


def test_hostile_memlimit_allocates_nothing() -> None:
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # KiB on Linux
    with pytest.raises(SealError):
        open_with_passphrase(PASSPHRASE, _blob_with(MIN_OPSLIMIT, 2 * 2**30))
    after = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    assert after - before < 256 * 1024  # Argon2 at 2 GiB would have touched all of it


@pytest.mark.parametrize(
    ("opslimit", "memlimit", "salt"),
    [
        (0, MIN_MEMLIMIT, bytes(16)),
        (MAX_OPSLIMIT + 1, MIN_MEMLIMIT, bytes(16)),
        (MIN_OPSLIMIT, MAX_MEMLIMIT + 1, bytes(16)),
        (MIN_OPSLIMIT, MIN_MEMLIMIT, bytes(15)),
        (True, MIN_MEMLIMIT, bytes(16)),
    ],
)
def test_params_out_of_bounds_are_refused_when_writing(
    opslimit: int, memlimit: int, salt: bytes
) -> None:
    with pytest.raises(SealError):
        PassphraseParams(salt, opslimit, memlimit)


def test_passphrase_of_wrong_type_is_refused() -> None:
    with pytest.raises(SealError):
        passphrase_key("text", fast_params())  # type: ignore[arg-type]
    assert seal.MAX_MEMLIMIT == 2**30


# --- the vectors of docs/sealing.md ----------------------------------------------------


def test_documented_vectors() -> None:
    sender = KxKeyPair.from_seed(bytes([1]) * 32)
    receiver = KxKeyPair.from_seed(bytes([2]) * 32)
    assert sender.public_key.hex() == (
        "ab2fca32898322c208fb2dab5048bd43c355c6430f588897cb574961cfa9806f"
    )
    assert receiver.public_key.hex() == (
        "fc3b339367a5225d53a92d380323afd035d7817b6d1be47d946f6b09a9cbdc06"
    )
    keys = client_session_keys(sender, receiver.public_key)
    assert keys.tx.hex() == "43eb74c847209a3af513e0fc824b791865665dcc727fc332f4ddfc614e0ab79a"
    assert keys.rx.hex() == "e0f480d42cd0d8a95993dd50976fb24ef81a6788b7b5bc722fc258410ac723ed"
    binding: Binding = {"account": "alice.near", "epoch": 4}
    label = "quorumkeep/share-push"
    ad = associated_data(
        label, sender=sender.public_key, receiver=receiver.public_key, binding=binding
    )
    assert ad.hex() == (
        "71756f72756d6b656570207365616c206164207631"
        "0000001571756f72756d6b6565702f73686172652d70757368"
        "00000020ab2fca32898322c208fb2dab5048bd43c355c6430f588897cb574961cfa9806f"
        "00000020fc3b339367a5225d53a92d380323afd035d7817b6d1be47d946f6b09a9cbdc06"
        "00000002"
        "000000076163636f756e74730000000a616c6963652e6e656172"
        "0000000565706f6368690000000134"
    )
    sealed = seal_to(
        sender,
        receiver.public_key,
        b"share",
        label=label,
        binding=binding,
        random_bytes=lambda n: bytes([0x42]) * n,
    )
    assert sealed.hex() == "42" * 24 + "77445222b89c03fe3eeca331800ceefdb1d90403aa"

    params = PassphraseParams(bytes(range(16)), 1, 8192)
    assert passphrase_key(PASSPHRASE, params).hex() == (
        "d17ea6341ca93da6079ea2f64dc4aa31dd1aaf9caa67fb42ac4afd0714706f26"
    )
    blob = seal_with_passphrase(
        PASSPHRASE,
        b"share",
        associated_data=b"node-1",
        random_bytes=lambda n: bytes([0x24]) * n,
        params=params,
    )
    assert blob.hex() == (
        "514b5053"  # magic
        "01"  # version
        "01"  # algorithm
        "00000001"  # opslimit
        "0000000000002000"  # memlimit
        "000102030405060708090a0b0c0d0e0f"  # salt
        + "24" * 24  # nonce
        + "0ffc0e925cb239ea19398e7bdd658abe66e17f1a44"  # ciphertext ‖ tag
    )
