"""FROST(Ed25519, SHA-512): RFC 9591 vector, interoperability, derived keys, every rejection."""

from __future__ import annotations

import json
import random
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path

import pytest
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
from hypothesis import given, settings
from hypothesis import strategies as st
from nacl.exceptions import BadSignatureError
from nacl.signing import VerifyKey

from quorumkeep.crypto import frost, group
from quorumkeep.crypto.derive import derivation_tweak, derive_public_key
from quorumkeep.crypto.errors import CheaterDetected, InvalidEncoding, InvalidParameters
from quorumkeep.crypto.keys import KeyPackage, PublicKeyPackage, trusted_dealer_keygen

VECTOR = Path(__file__).parents[1] / "vectors" / "frost-ed25519-sha512-rfc9591.json"
L = group.ORDER
P = 2**255 - 19

# The eight canonical encodings of the points of order 1, 2, 4 and 8.
SMALL_ORDER = [
    bytes.fromhex(h)
    for h in (
        "0100000000000000000000000000000000000000000000000000000000000000",
        "ecffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff7f",
        "0000000000000000000000000000000000000000000000000000000000000000",
        "0000000000000000000000000000000000000000000000000000000000000080",
        "c7176a703d4dd84fba3c0b760d10670f2a2053fa2c39ccc64ec7fd7792ac037a",
        "c7176a703d4dd84fba3c0b760d10670f2a2053fa2c39ccc64ec7fd7792ac03fa",
        "26e8958fc2b227b045c3f489f2ef98f0d5dfac05d3c63339b13802886d53fc05",
        "26e8958fc2b227b045c3f489f2ef98f0d5dfac05d3c63339b13802886d53fc85",
    )
]
ORDER_8 = SMALL_ORDER[4]

# y >= p (y + p for small y still fits in 255 bits), and the identity with x's sign bit set.
NON_CANONICAL_POINTS = [(P + y).to_bytes(32, "little") for y in (0, 1, 2, 5, 18)] + [
    bytes.fromhex("0100000000000000000000000000000000000000000000000000000000000080")
]
NON_CANONICAL_SCALARS = [
    L.to_bytes(32, "little"),
    (L + 1).to_bytes(32, "little"),
    (2**256 - 1).to_bytes(32, "little"),
]


def rng_of(seed: int) -> Callable[[int], bytes]:
    return random.Random(seed).randbytes


def keygen(
    threshold: int, identifiers: Sequence[int], seed: int = 1
) -> tuple[dict[int, KeyPackage], PublicKeyPackage]:
    rng = rng_of(seed)
    packages, public, _ = trusted_dealer_keygen(
        group.random_scalar(rng), threshold, identifiers, rng
    )
    return packages, public


def run_signing(
    packages: Mapping[int, KeyPackage],
    signers: Sequence[int],
    msg: bytes,
    seed: int = 2,
    group_public_key: bytes | None = None,
) -> tuple[list[frost.CommitmentListEntry], dict[int, bytes]]:
    """Rounds one and two for ``signers``; returns the commitment list and the shares."""
    rng = rng_of(seed)
    nonces: dict[int, frost.SigningNonces] = {}
    commitments: dict[int, frost.SigningCommitments] = {}
    for i in signers:
        nonces[i], commitments[i] = frost.commit(packages[i].signing_share, rng)
    commitment_list = frost.commitment_list_from(commitments)
    shares = {
        i: frost.sign(
            i,
            packages[i].signing_share,
            group_public_key or packages[i].group_public_key,
            nonces[i],
            msg,
            commitment_list,
        )
        for i in signers
    }
    return commitment_list, shares


def assert_valid_ed25519(public_key: bytes, msg: bytes, signature: bytes) -> None:
    VerifyKey(public_key).verify(msg, signature)
    Ed25519PublicKey.from_public_bytes(public_key).verify(signature, msg)
    assert frost.verify_signature(public_key, msg, signature)


def assert_invalid_ed25519(public_key: bytes, msg: bytes, signature: bytes) -> None:
    with pytest.raises(BadSignatureError):
        VerifyKey(public_key).verify(msg, signature)
    with pytest.raises(InvalidSignature):
        Ed25519PublicKey.from_public_bytes(public_key).verify(signature, msg)
    assert not frost.verify_signature(public_key, msg, signature)


@pytest.fixture(scope="module")
def setup_3_of_5() -> tuple[dict[int, KeyPackage], PublicKeyPackage]:
    return keygen(3, [7, 100, 250, 999, 2**32 - 5])


@pytest.fixture()
def session(
    setup_3_of_5: tuple[dict[int, KeyPackage], PublicKeyPackage],
) -> tuple[dict[int, KeyPackage], PublicKeyPackage, list[frost.CommitmentListEntry], dict]:
    packages, public = setup_3_of_5
    commitment_list, shares = run_signing(packages, [7, 250, 2**32 - 5], b"msg")
    return packages, public, commitment_list, shares


# --- RFC 9591 -------------------------------------------------------------------------


def test_rfc9591_vector_step_by_step() -> None:
    vector = json.loads(VECTOR.read_text())
    inputs = vector["inputs"]
    h = bytes.fromhex
    coefficients = [h(c) for c in inputs["share_polynomial_coefficients"]]
    identifiers = [p["identifier"] for p in inputs["participant_shares"]]
    packages, public, _ = trusted_dealer_keygen(
        h(inputs["group_secret_key"]), 2, identifiers, rng_of(0), coefficients=coefficients
    )
    assert public.group_public_key.hex() == inputs["group_public_key"]
    for p in inputs["participant_shares"]:
        assert packages[p["identifier"]].signing_share.hex() == p["participant_share"]
    msg = h(inputs["message"])

    nonces = {}
    commitments = {}
    for out in vector["round_one_outputs"]["outputs"]:
        i = out["identifier"]
        chunks = iter([h(out["hiding_nonce_randomness"]), h(out["binding_nonce_randomness"])])
        nonces[i], commitments[i] = frost.commit(
            packages[i].signing_share, lambda n, chunks=chunks: next(chunks)
        )
        assert nonces[i].hiding.hex() == out["hiding_nonce"]
        assert nonces[i].binding.hex() == out["binding_nonce"]
        assert commitments[i].hiding.hex() == out["hiding_nonce_commitment"]
        assert commitments[i].binding.hex() == out["binding_nonce_commitment"]
    commitment_list = frost.commitment_list_from(commitments)
    assert [e[0] for e in commitment_list] == inputs["participant_list"]

    rho_inputs = dict(
        frost.compute_binding_factor_inputs(public.group_public_key, commitment_list, msg)
    )
    binding_factors = frost.compute_binding_factors(public.group_public_key, commitment_list, msg)
    for out in vector["round_one_outputs"]["outputs"]:
        i = out["identifier"]
        assert rho_inputs[i].hex() == out["binding_factor_input"]
        assert (
            frost.binding_factor_for_participant(binding_factors, i).hex() == out["binding_factor"]
        )

    shares = {
        i: frost.sign(
            i, packages[i].signing_share, public.group_public_key, nonces[i], msg, commitment_list
        )
        for i in inputs["participant_list"]
    }
    for out in vector["round_two_outputs"]["outputs"]:
        assert shares[out["identifier"]].hex() == out["sig_share"]
        frost.verify_signature_share(
            out["identifier"],
            public.verifying_shares[out["identifier"]],
            shares[out["identifier"]],
            commitment_list,
            public.group_public_key,
            msg,
        )

    group_commitment = frost.compute_group_commitment(commitment_list, binding_factors)
    challenge = frost.compute_challenge(group_commitment, public.group_public_key, msg)
    assert challenge == group.h2(group_commitment + public.group_public_key + msg)
    signature = frost.aggregate(
        commitment_list,
        msg,
        public.group_public_key,
        shares,
        verifying_shares=public.verifying_shares,
    )
    assert signature.hex() == vector["final_output"]["sig"]
    assert signature[:32] == group_commitment
    # what tells which presignature a signature used: its R, from the commitments alone
    assert frost.group_commitment(public.group_public_key, commitment_list, msg) == signature[:32]
    assert (
        frost.group_commitment(public.group_public_key, commitment_list, msg + b"!")
        != (signature[:32])
    )
    assert_valid_ed25519(public.group_public_key, msg, signature)


def test_signing_nonces_repr_hides_the_nonces() -> None:
    share = group.random_scalar(rng_of(3))
    nonces, commitments = frost.commit(share, rng_of(4))
    for text in (repr(nonces), str(nonces)):
        assert nonces.hiding.hex() not in text and nonces.binding.hex() not in text
        assert repr(nonces.hiding) not in text and repr(nonces.binding) not in text
        assert commitments.hiding.hex() in text


def test_nonce_generate_refuses_a_short_random_source() -> None:
    with pytest.raises(InvalidParameters):
        frost.nonce_generate(group.ONE, lambda n: bytes(n - 1))


# --- property tests --------------------------------------------------------------------

identifier_values = st.one_of(
    st.integers(1, 1000),
    st.integers(2**32 - 1000, 2**32 + 1000),
    st.integers(1, L - 1),
)


@st.composite
def signing_setups(draw: st.DrawFn) -> tuple[int, list[int], list[int], bytes, int]:
    n = draw(st.integers(2, 20))
    t = draw(st.integers(2, n))
    identifiers = draw(st.lists(identifier_values, min_size=n, max_size=n, unique=True))
    size = draw(st.integers(t, n))
    signers = draw(st.permutations(identifiers))[:size]
    msg = draw(st.binary(max_size=64))
    seed = draw(st.integers(0, 2**32))
    return t, identifiers, signers, msg, seed


@settings(max_examples=20, deadline=None)
@given(signing_setups())
def test_threshold_signatures_verify_with_pynacl_and_cryptography(
    setup: tuple[int, list[int], list[int], bytes, int],
) -> None:
    t, identifiers, signers, msg, seed = setup
    packages, public = keygen(t, identifiers, seed)
    commitment_list, shares = run_signing(packages, signers, msg, seed + 1)
    signature = frost.aggregate(
        commitment_list,
        msg,
        public.group_public_key,
        shares,
        verifying_shares=public.verifying_shares,
    )
    assert_valid_ed25519(public.group_public_key, msg, signature)
    assert_invalid_ed25519(public.group_public_key, msg + b"!", signature)


@settings(max_examples=8, deadline=None)
@given(
    account=st.text(max_size=20),
    path=st.text(max_size=20),
    msg=st.binary(max_size=32),
    seed=st.integers(0, 2**32),
)
def test_signing_under_a_derived_key(account: str, path: str, msg: bytes, seed: int) -> None:
    packages, public = keygen(3, [3, 40, 500, 2**32 + 1], seed)
    derived = derive_public_key(public.group_public_key, account, path)
    tweak = derivation_tweak(account, path)
    # signers use their ordinary shares; only the key they name changes
    commitment_list, shares = run_signing(packages, [40, 500, 2**32 + 1], msg, seed, derived)
    for i, share in shares.items():
        frost.verify_signature_share(
            i, public.verifying_shares[i], share, commitment_list, derived, msg
        )
    signature = frost.aggregate(
        commitment_list, msg, derived, shares, verifying_shares=public.verifying_shares, tweak=tweak
    )
    assert_valid_ed25519(derived, msg, signature)
    assert_invalid_ed25519(public.group_public_key, msg, signature)
    # without the tweak the shares still verify, but their sum is no signature under PK'
    with pytest.raises(InvalidParameters):
        frost.aggregate(
            commitment_list, msg, derived, shares, verifying_shares=public.verifying_shares
        )


def test_lagrange_batch_matches_the_one_by_one_formula() -> None:
    xs = [group.identifier_scalar(i) for i in (1, 2, 9, 1000, 2**32 - 1, L - 1, 77)]
    expected = [group.lagrange_coefficient(x, xs) for x in xs]
    assert frost._lagrange_coefficients(xs) == expected
    assert frost._lagrange_coefficients(xs[:1]) == [group.ONE]


# --- rejections: commitment lists ------------------------------------------------------


def _replace(
    commitment_list: list[frost.CommitmentListEntry],
    index: int,
    hiding: bytes | None = None,
    binding: bytes | None = None,
) -> list[frost.CommitmentListEntry]:
    entries = list(commitment_list)
    i, h, b = entries[index]
    entries[index] = (i, hiding if hiding is not None else h, binding if binding is not None else b)
    return entries


def _sign_as(
    packages: dict[int, KeyPackage], identifier: int, commitment_list: list, seed: int = 9
) -> bytes:
    """Sign as ``identifier`` with fresh nonces whose commitments are put in the list."""
    nonces, commitments = frost.commit(packages[identifier].signing_share, rng_of(seed))
    entries = [
        (i, commitments.hiding, commitments.binding) if i == identifier else (i, h, b)
        for i, h, b in commitment_list
    ]
    return frost.sign(
        identifier,
        packages[identifier].signing_share,
        packages[identifier].group_public_key,
        nonces,
        b"msg",
        entries,
    )


BAD_ELEMENTS = [pytest.param(p, id=f"small-order-{k}") for k, p in enumerate(SMALL_ORDER)] + [
    pytest.param(p, id=f"non-canonical-{k}") for k, p in enumerate(NON_CANONICAL_POINTS)
]


@pytest.mark.parametrize("bad", BAD_ELEMENTS)
@pytest.mark.parametrize("which", ["hiding", "binding"])
def test_bad_commitment_elements_are_refused_by_signers_and_aggregator(
    session, bad: bytes, which: str
) -> None:
    packages, public, commitment_list, shares = session
    entries = _replace(commitment_list, 2, **{which: bad})  # another signer's commitment
    with pytest.raises(InvalidEncoding, match=f"participant {2**32 - 5}"):
        _sign_as(packages, 7, entries)
    with pytest.raises(InvalidEncoding):
        frost.aggregate(
            entries,
            b"msg",
            public.group_public_key,
            shares,
            verifying_shares=public.verifying_shares,
        )
    with pytest.raises(InvalidEncoding):
        frost.verify_signature_share(
            7, public.verifying_shares[7], shares[7], entries, public.group_public_key, b"msg"
        )
    with pytest.raises(InvalidEncoding):
        frost.compute_binding_factors(public.group_public_key, entries, b"msg")


def test_identity_commitments_are_refused(session) -> None:
    packages, public, commitment_list, shares = session
    for which in ("hiding", "binding"):
        entries = _replace(commitment_list, 1, **{which: group.IDENTITY})
        with pytest.raises(InvalidEncoding):
            _sign_as(packages, 7, entries)
        with pytest.raises(InvalidEncoding):
            frost.aggregate(
                entries,
                b"msg",
                public.group_public_key,
                shares,
                verifying_shares=public.verifying_shares,
            )


def test_mixed_order_binding_commitment_is_refused(session) -> None:
    """A prime-order point plus a torsion point: canonical, on the curve, wrong subgroup."""
    packages, _public, commitment_list, _shares = session
    _, _, binding = commitment_list[1]
    mixed = group.element_add(binding, ORDER_8)
    entries = _replace(commitment_list, 1, binding=mixed)
    with pytest.raises(InvalidEncoding, match="participant 250"):
        _sign_as(packages, 7, entries)
    entries = _replace(commitment_list, 1, hiding=mixed)
    with pytest.raises(InvalidEncoding, match="participant 250"):
        _sign_as(packages, 7, entries)


def test_duplicate_identifiers_are_refused(session) -> None:
    packages, public, commitment_list, shares = session
    entries = [commitment_list[0], commitment_list[0], *commitment_list[1:]]
    with pytest.raises(InvalidParameters, match="duplicate"):
        _sign_as(packages, 7, entries)
    with pytest.raises(InvalidParameters, match="duplicate"):
        frost.aggregate(
            entries,
            b"msg",
            public.group_public_key,
            shares,
            verifying_shares=public.verifying_shares,
        )


def test_unsorted_commitment_list_is_refused(session) -> None:
    packages, public, commitment_list, shares = session
    entries = [commitment_list[1], commitment_list[0], commitment_list[2]]
    with pytest.raises(InvalidParameters, match="not sorted"):
        _sign_as(packages, 7, entries)
    with pytest.raises(InvalidParameters, match="not sorted"):
        frost.aggregate(
            entries,
            b"msg",
            public.group_public_key,
            shares,
            verifying_shares=public.verifying_shares,
        )


def test_empty_list_and_bad_identifiers_are_refused(session) -> None:
    _packages, public, commitment_list, _shares = session
    with pytest.raises(InvalidParameters, match="empty"):
        frost.compute_binding_factors(public.group_public_key, [], b"msg")
    for bad_id in (0, -1, L):
        entries = [(bad_id, *commitment_list[0][1:]), *commitment_list[1:]]
        with pytest.raises((InvalidEncoding, InvalidParameters)):
            frost.compute_binding_factors(public.group_public_key, entries, b"msg")


def test_signer_outside_the_list_refuses(session) -> None:
    packages, public, commitment_list, shares = session
    nonces, _ = frost.commit(packages[100].signing_share, rng_of(5))
    with pytest.raises(InvalidParameters, match="participant 100 is not in the commitment list"):
        frost.sign(
            100,
            packages[100].signing_share,
            public.group_public_key,
            nonces,
            b"msg",
            commitment_list,
        )
    with pytest.raises(InvalidParameters, match="not in the commitment list"):
        frost.verify_signature_share(
            100,
            public.verifying_shares[100],
            shares[7],
            commitment_list,
            public.group_public_key,
            b"msg",
        )


def test_signer_refuses_a_list_without_its_own_commitments(session) -> None:
    packages, public, commitment_list, _shares = session
    nonces, _ = frost.commit(packages[7].signing_share, rng_of(6))  # not the listed ones
    with pytest.raises(InvalidParameters, match="round-one commitments"):
        frost.sign(
            7, packages[7].signing_share, public.group_public_key, nonces, b"msg", commitment_list
        )


def test_binding_factor_list_must_match_the_commitment_list(session) -> None:
    _packages, public, commitment_list, _shares = session
    factors = frost.compute_binding_factors(public.group_public_key, commitment_list, b"msg")
    with pytest.raises(InvalidParameters):
        frost.compute_group_commitment(commitment_list, factors[:-1])
    with pytest.raises(InvalidParameters):
        frost.binding_factor_for_participant(factors, 100)


# --- rejections: scalars ---------------------------------------------------------------


@pytest.mark.parametrize("bad", NON_CANONICAL_SCALARS)
def test_non_canonical_signature_share_names_its_sender(session, bad: bytes) -> None:
    _packages, public, commitment_list, shares = session
    forged = {**shares, 250: bad}
    with pytest.raises(CheaterDetected) as caught:
        frost.aggregate(
            commitment_list,
            b"msg",
            public.group_public_key,
            forged,
            verifying_shares=public.verifying_shares,
        )
    assert caught.value.culprit == 250
    with pytest.raises(CheaterDetected) as caught:
        frost.verify_signature_share(
            250, public.verifying_shares[250], bad, commitment_list, public.group_public_key, b"msg"
        )
    assert caught.value.culprit == 250


def test_share_plus_order_is_refused_although_equal_mod_l(session) -> None:
    _packages, public, commitment_list, shares = session
    value = group.scalar_to_int(shares[7]) + L
    if value >= 2**256:
        pytest.skip("share too large to alias")
    forged = {**shares, 7: value.to_bytes(32, "little")}
    with pytest.raises(CheaterDetected) as caught:
        frost.aggregate(
            commitment_list,
            b"msg",
            public.group_public_key,
            forged,
            verifying_shares=public.verifying_shares,
        )
    assert caught.value.culprit == 7


@pytest.mark.parametrize("bad", NON_CANONICAL_SCALARS)
def test_non_canonical_tweak_and_signing_share_are_refused(session, bad: bytes) -> None:
    packages, public, commitment_list, shares = session
    with pytest.raises(InvalidEncoding):
        frost.aggregate(
            commitment_list,
            b"msg",
            public.group_public_key,
            shares,
            verifying_shares=public.verifying_shares,
            tweak=bad,
        )
    with pytest.raises(InvalidEncoding):
        frost.commit(bad, rng_of(1))
    nonces, commitments = frost.commit(packages[7].signing_share, rng_of(7))
    entries = [(7, *commitments), *commitment_list[1:]]
    with pytest.raises(InvalidEncoding):
        frost.sign(7, bad, public.group_public_key, nonces, b"msg", entries)


# --- cheaters and wrong signer sets ----------------------------------------------------


@pytest.mark.parametrize("verify_shares_first", [True, False])
def test_wrong_signature_share_names_the_culprit(session, verify_shares_first: bool) -> None:
    packages, public, commitment_list, shares = session
    forged = {**shares, 250: group.scalar_add(shares[250], group.ONE)}
    with pytest.raises(CheaterDetected) as caught:
        frost.aggregate(
            commitment_list,
            b"msg",
            public.group_public_key,
            forged,
            verifying_shares=public.verifying_shares,
            verify_shares_first=verify_shares_first,
        )
    assert caught.value.culprit == 250
    with pytest.raises(CheaterDetected) as caught:
        frost.verify_signature_share(
            250,
            public.verifying_shares[250],
            forged[250],
            commitment_list,
            public.group_public_key,
            b"msg",
        )
    assert caught.value.culprit == 250
    for i in (7, 2**32 - 5):  # the honest ones pass
        frost.verify_signature_share(
            i,
            public.verifying_shares[i],
            shares[i],
            commitment_list,
            public.group_public_key,
            b"msg",
        )
    # a share sent for another message is as wrong
    _, other_shares = run_signing(packages, [7, 250, 2**32 - 5], b"other")
    with pytest.raises(CheaterDetected):
        frost.verify_signature_share(
            7,
            public.verifying_shares[7],
            other_shares[7],
            commitment_list,
            public.group_public_key,
            b"msg",
        )


def test_secret_values_stay_out_of_error_messages(session) -> None:
    packages, public, commitment_list, shares = session
    forged = {**shares, 250: group.scalar_add(shares[250], group.ONE)}
    with pytest.raises(CheaterDetected) as caught:
        frost.aggregate(
            commitment_list,
            b"msg",
            public.group_public_key,
            forged,
            verifying_shares=public.verifying_shares,
        )
    text = str(caught.value)
    for package in packages.values():
        assert package.signing_share.hex() not in text


@pytest.mark.parametrize("verify_shares_first", [True, False])
def test_fewer_than_threshold_signers_is_rejected_by_aggregate(
    session, verify_shares_first: bool
) -> None:
    """Explicit policy: with t-1 signers each share verifies (against that set's Lagrange
    coefficients), but the sum is no signature; aggregate refuses instead of returning it."""
    packages, public, _, _ = session
    commitment_list, shares = run_signing(packages, [100, 999], b"msg")
    for i, share in shares.items():
        frost.verify_signature_share(
            i, public.verifying_shares[i], share, commitment_list, public.group_public_key, b"msg"
        )
    with pytest.raises(InvalidParameters, match="fewer signers than the threshold"):
        frost.aggregate(
            commitment_list,
            b"msg",
            public.group_public_key,
            shares,
            verifying_shares=public.verifying_shares,
            verify_shares_first=verify_shares_first,
        )
    raw = commitment_list_signature(commitment_list, shares, public.group_public_key)
    assert_invalid_ed25519(public.group_public_key, b"msg", raw)


def commitment_list_signature(
    commitment_list: list, shares: dict[int, bytes], group_public_key: bytes
) -> bytes:
    """RFC 9591's aggregate without any check: (R, Σ z_i)."""
    factors = frost.compute_binding_factors(group_public_key, commitment_list, b"msg")
    return frost.compute_group_commitment(commitment_list, factors) + group.scalar_sum(
        shares.values()
    )


def test_shares_must_match_the_signers(session) -> None:
    _packages, public, commitment_list, shares = session
    missing = {i: s for i, s in shares.items() if i != 250}
    with pytest.raises(InvalidParameters, match="missing \\[250\\]"):
        frost.aggregate(
            commitment_list,
            b"msg",
            public.group_public_key,
            missing,
            verifying_shares=public.verifying_shares,
        )
    extra = {**shares, 100: shares[7]}
    with pytest.raises(InvalidParameters, match="unexpected \\[100\\]"):
        frost.aggregate(
            commitment_list,
            b"msg",
            public.group_public_key,
            extra,
            verifying_shares=public.verifying_shares,
        )
    partial = {i: v for i, v in public.verifying_shares.items() if i != 7}
    with pytest.raises(InvalidParameters, match="no verifying share for participant 7"):
        frost.aggregate(
            commitment_list, b"msg", public.group_public_key, shares, verifying_shares=partial
        )


@pytest.mark.parametrize("bad", [*SMALL_ORDER, *NON_CANONICAL_POINTS])
def test_bad_verifying_share_or_group_key_is_refused(session, bad: bytes) -> None:
    _packages, public, commitment_list, shares = session
    with pytest.raises(InvalidEncoding):
        frost.aggregate(
            commitment_list,
            b"msg",
            public.group_public_key,
            shares,
            verifying_shares={**public.verifying_shares, 7: bad},
        )
    with pytest.raises(InvalidEncoding):
        frost.verify_signature_share(
            7, bad, shares[7], commitment_list, public.group_public_key, b"msg"
        )
    with pytest.raises(InvalidEncoding, match="group public key"):
        frost.aggregate(
            commitment_list, b"msg", bad, shares, verifying_shares=public.verifying_shares
        )
    assert not frost.verify_signature(bad, b"msg", bytes(64))


# --- verify_signature ------------------------------------------------------------------


def test_verify_signature_rejects_malformed_signatures(session) -> None:
    _packages, public, commitment_list, shares = session
    pk = public.group_public_key
    signature = frost.aggregate(
        commitment_list, b"msg", pk, shares, verifying_shares=public.verifying_shares
    )
    assert frost.verify_signature(pk, b"msg", signature)
    assert not frost.verify_signature(pk, b"msg", signature[:-1])
    z = group.scalar_to_int(signature[32:])
    if z + L < 2**256:  # z + L is the same scalar, non-canonically: RFC 8032 refuses it
        assert not frost.verify_signature(
            pk, b"msg", signature[:32] + (z + L).to_bytes(32, "little")
        )
    for k in range(64):
        tampered = bytearray(signature)
        tampered[k] ^= 0x01
        assert not frost.verify_signature(pk, b"msg", bytes(tampered))
    for bad_r in NON_CANONICAL_POINTS:
        assert not frost.verify_signature(pk, b"msg", bad_r + signature[32:])


def test_verify_signature_is_cofactored() -> None:
    """R = r·G + T with T of order 8 passes [8]zB = [8]R + [8]cPK but not zB = R + cPK."""
    rng = rng_of(11)
    secret = group.random_scalar(rng)
    pk = group.base_mul(secret)
    r = group.random_scalar(rng)
    big_r = group.element_add(group.base_mul(r), ORDER_8)
    c = frost.compute_challenge(big_r, pk, b"m")
    signature = big_r + group.scalar_add(r, group.scalar_mul(c, secret))
    assert frost.verify_signature(pk, b"m", signature)
    assert not frost.verify_signature(pk, b"m!", signature)


def test_optimistic_aggregation_gives_the_same_signature(session) -> None:
    _, public, commitment_list, shares = session
    both = [
        frost.aggregate(
            commitment_list,
            b"msg",
            public.group_public_key,
            shares,
            verifying_shares=public.verifying_shares,
            verify_shares_first=first,
        )
        for first in (True, False)
    ]
    assert both[0] == both[1]
    assert frost.verify_signature(public.group_public_key, b"msg", both[0])
