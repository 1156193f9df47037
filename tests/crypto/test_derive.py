"""Key derivation: the tweak's formula, PK' = PK + ε·G, and signatures under PK'.

The threshold part follows docs/key-derivation.md: signers use PK' for their binding
factors and the challenge and their unchanged shares; the aggregator adds c·ε to z. It is
written here from RFC 9591 directly (and first checked against the RFC's own vector), so
it pins the documented recipe independently of ``quorumkeep.crypto.frost``.
"""

from __future__ import annotations

import hashlib
import json
import random
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
from hypothesis import given, settings
from hypothesis import strategies as st
from nacl.exceptions import BadSignatureError
from nacl.signing import VerifyKey

from quorumkeep.crypto import frost
from quorumkeep.crypto.derive import DERIVE_DOMAIN, derivation_tweak, derive_public_key
from quorumkeep.crypto.group import (
    ORDER,
    Element,
    Scalar,
    base_mul,
    element_add,
    element_mul,
    element_sum,
    h1,
    h2,
    h4,
    h5,
    identifier_scalar,
    lagrange_coefficient,
    scalar_add,
    scalar_from_int,
    scalar_mul,
    scalar_to_int,
)
from quorumkeep.crypto.keys import trusted_dealer_keygen

RFC_VECTOR = Path(__file__).parents[1] / "vectors" / "frost-ed25519-sha512-rfc9591.json"

# The worked example of docs/key-derivation.md (RFC 9591 E.1 inputs, account/path below).
EXAMPLE_ACCOUNT = "alice.near"
EXAMPLE_PATH = "ethereum-1"
EXAMPLE = {
    "tweak": "e6b4abda973bc8194a74560cc59b481b2159bf0a2e88a49190e3ecae30e0a303",
    "derived_public_key": "a7871bcac068bee056a018ee44d0ec8d1cd07ef39a1b8619404b0386e025976c",
    "binding_factor_1": "3c39e1275298897af71bbcd5237c417ffd0f084b8cf9d8a63b9dad5b1fe73702",
    "binding_factor_3": "37b61e716f77bf755eb7c27105eec35b861cc767a118ce21eb86eb2358393d0c",
    "group_commitment": "cca62dc456531442235dc7b5601e3d8570421ed6e81049206b5c81a0a7e5da6b",
    "challenge": "585287647ccb82a64a9b7674fec9b001867e2a44f936054526b20d62c917cc0a",
    "sig_share_1": "864870a6f0aab3aac940a25819ec1b5412d26f7377fd4e9377c53300840de300",
    "sig_share_3": "232cc0bdcefa9ff3798282df7e5eb212d425e0404acb69bd92fcc33f71bc9300",
    "sig": "cca62dc456531442235dc7b5601e3d8570421ed6e81049206b5c81a0a7e5da6b"
    "508ce9b91d938a686e18f97c9e6e8f292056306bed8ed630a8699b57c8471c08",
}

accounts = st.text(max_size=40)
paths = st.text(max_size=40)


def _rng(seed: int) -> random.Random:
    return random.Random(seed)


def _reference_tweak(account: str, path: str) -> int:
    """The documented formula in plain integers, independent of the module under test."""
    a = account.encode()
    p = path.encode()
    data = b"quorumkeep derive v1" + len(a).to_bytes(4, "big") + a + len(p).to_bytes(4, "big") + p
    return int.from_bytes(hashlib.sha512(data).digest(), "little") % ORDER


# --- the tweak -------------------------------------------------------------------------


def test_domain_is_the_documented_one() -> None:
    assert DERIVE_DOMAIN == b"quorumkeep derive v1"


@settings(max_examples=50, deadline=None)
@given(account=accounts, path=paths)
def test_tweak_matches_the_formula_and_is_deterministic(account: str, path: str) -> None:
    tweak = derivation_tweak(account, path)
    assert tweak == derivation_tweak(account, path)
    assert len(tweak) == 32
    assert scalar_to_int(tweak) == _reference_tweak(account, path)


def test_length_prefixes_make_the_split_unambiguous() -> None:
    assert derivation_tweak("ab", "c") != derivation_tweak("a", "bc")
    assert derivation_tweak("", "abc") != derivation_tweak("abc", "")
    assert derivation_tweak("a", "") != derivation_tweak("", "a")
    # A path that mimics a length prefix cannot collide with a shorter account.
    forged_path = "\x00\x00\x00\x01b"
    assert derivation_tweak("a", forged_path) != derivation_tweak("a\x00\x00\x00\x01", "b")


def test_distinct_accounts_and_paths_give_distinct_tweaks() -> None:
    tweaks = {
        derivation_tweak(account, path)
        for account in ("alice.near", "bob.near", "Alice.near", "")
        for path in ("", "0", "ethereum-1", "ethereum-2", "é")
    }
    assert len(tweaks) == 20


def test_utf8_is_the_encoding() -> None:
    assert scalar_to_int(derivation_tweak("ünï", "路径")) == _reference_tweak("ünï", "路径")


def test_example_tweak_value() -> None:
    assert derivation_tweak(EXAMPLE_ACCOUNT, EXAMPLE_PATH).hex() == EXAMPLE["tweak"]


# --- the derived key -------------------------------------------------------------------


@settings(max_examples=30, deadline=None)
@given(seed=st.integers(0, 2**32), account=accounts, path=paths)
def test_derived_key_is_pk_plus_tweak_times_g(seed: int, account: str, path: str) -> None:
    x = scalar_from_int(_rng(seed).randrange(1, ORDER))
    pk = base_mul(x)
    eps = derivation_tweak(account, path)
    derived = derive_public_key(pk, account, path)
    assert derived == element_add(pk, base_mul(eps))
    # Equivalently, the key of the secret x + ε, which nobody ever assembles in practice.
    assert derived == base_mul(scalar_add(x, eps))


def test_different_paths_give_different_keys() -> None:
    pk = base_mul(scalar_from_int(12345))
    assert derive_public_key(pk, "alice.near", "a") != derive_public_key(pk, "alice.near", "b")
    assert derive_public_key(pk, "alice.near", "a") != pk


# --- a single-key Ed25519 signature under the derived key ------------------------------


def _ed25519_sign_with_scalar(x: Scalar, public_key: Element, message: bytes, r: Scalar) -> bytes:
    """RFC 8032 signing from a raw scalar: R = r·G, k = H(R ‖ A ‖ M), S = r + k·x."""
    big_r = base_mul(r)
    k = h2(big_r + public_key + message)
    s = scalar_add(r, scalar_mul(k, x))
    return big_r + s


@settings(max_examples=30, deadline=None)
@given(seed=st.integers(0, 2**32), account=accounts, path=paths, message=st.binary(max_size=200))
def test_signature_with_x_plus_tweak_verifies_under_derived_key(
    seed: int, account: str, path: str, message: bytes
) -> None:
    rng = _rng(seed)
    x = scalar_from_int(rng.randrange(1, ORDER))
    r = scalar_from_int(rng.randrange(1, ORDER))
    derived = derive_public_key(base_mul(x), account, path)
    x_derived = scalar_add(x, derivation_tweak(account, path))
    sig = _ed25519_sign_with_scalar(x_derived, derived, message, r)

    assert VerifyKey(derived).verify(message, sig) == message
    Ed25519PublicKey.from_public_bytes(derived).verify(sig, message)
    # And it is not a signature under the underived key.
    with pytest.raises(BadSignatureError):
        VerifyKey(base_mul(x)).verify(message, sig)


# --- FROST under a derived key (docs/key-derivation.md) --------------------------------


def _frost_sign(
    shares: dict[int, Scalar],
    nonces: dict[int, tuple[Scalar, Scalar]],
    verifying_shares: dict[int, Element],
    signing_key: Element,
    tweak: Scalar,
    message: bytes,
) -> dict[str, bytes]:
    """RFC 9591 signing with ``signing_key`` (PK or PK') in the binding factors and the
    challenge, and ``tweak`` added by the aggregator as c·ε. Signers see no tweak."""
    ids = sorted(shares)
    commitments = {i: (base_mul(d), base_mul(e)) for i, (d, e) in nonces.items()}
    encoded = b"".join(identifier_scalar(i) + commitments[i][0] + commitments[i][1] for i in ids)
    prefix = signing_key + h4(message) + h5(encoded)
    rho = {i: h1(prefix + identifier_scalar(i)) for i in ids}
    group_commitment = element_sum(
        element_add(commitments[i][0], element_mul(commitments[i][1], rho[i])) for i in ids
    )
    c = h2(group_commitment + signing_key + message)
    xs = [identifier_scalar(i) for i in ids]
    out: dict[str, bytes] = {"group_commitment": group_commitment, "challenge": c}
    z = scalar_mul(c, tweak)  # the aggregator's c·ε, before the shares are summed in
    for i in ids:
        d, e = nonces[i]
        lam = lagrange_coefficient(identifier_scalar(i), xs)
        z_i = scalar_add(
            scalar_add(d, scalar_mul(e, rho[i])), scalar_mul(lam, scalar_mul(shares[i], c))
        )
        # Each share still verifies against the signer's ordinary verifying share.
        expected = element_add(
            element_add(commitments[i][0], element_mul(commitments[i][1], rho[i])),
            element_mul(verifying_shares[i], scalar_mul(c, lam)),
        )
        assert base_mul(z_i) == expected
        out[f"binding_factor_{i}"] = rho[i]
        out[f"sig_share_{i}"] = z_i
        z = scalar_add(z, z_i)
    out["sig"] = group_commitment + z
    return out


def _rfc_inputs() -> tuple[dict[int, Scalar], dict[int, tuple[Scalar, Scalar]], bytes, bytes]:
    vector = json.loads(RFC_VECTOR.read_text())
    wanted = vector["inputs"]["participant_list"]
    shares = {
        s["identifier"]: bytes.fromhex(s["participant_share"])
        for s in vector["inputs"]["participant_shares"]
        if s["identifier"] in wanted
    }
    nonces = {
        o["identifier"]: (bytes.fromhex(o["hiding_nonce"]), bytes.fromhex(o["binding_nonce"]))
        for o in vector["round_one_outputs"]["outputs"]
    }
    return (
        shares,
        nonces,
        bytes.fromhex(vector["inputs"]["group_public_key"]),
        bytes.fromhex(vector["inputs"]["message"]),
    )


def test_reference_signing_reproduces_rfc_9591_without_a_tweak() -> None:
    vector = json.loads(RFC_VECTOR.read_text())
    shares, nonces, pk, message = _rfc_inputs()
    verifying = {i: base_mul(s) for i, s in shares.items()}
    out = _frost_sign(shares, nonces, verifying, pk, bytes(32), message)
    for o in vector["round_one_outputs"]["outputs"]:
        assert out[f"binding_factor_{o['identifier']}"].hex() == o["binding_factor"]
    for o in vector["round_two_outputs"]["outputs"]:
        assert out[f"sig_share_{o['identifier']}"].hex() == o["sig_share"]
    assert out["sig"].hex() == vector["final_output"]["sig"]


def test_worked_example_of_the_docs() -> None:
    shares, nonces, pk, message = _rfc_inputs()
    verifying = {i: base_mul(s) for i, s in shares.items()}
    eps = derivation_tweak(EXAMPLE_ACCOUNT, EXAMPLE_PATH)
    derived = derive_public_key(pk, EXAMPLE_ACCOUNT, EXAMPLE_PATH)
    out = _frost_sign(shares, nonces, verifying, derived, eps, message)
    got = {"tweak": eps.hex(), "derived_public_key": derived.hex()}
    got.update({k: v.hex() for k, v in out.items()})
    assert got == EXAMPLE
    # The intermediate values printed in the docs.
    assert (
        hashlib.sha512(b"quorumkeep derive v1\x00\x00\x00\x0aalice.near\x00\x00\x00\x0aethereum-1")
        .hexdigest()
        .startswith("38e24c6069dbc70b7627a08700b9c177")
    )
    c_eps = scalar_mul(out["challenge"], eps)
    assert c_eps.hex() == "a717b9555eed36ca2a55d4440624c1c2395ee0b62bc61de09da7a317d37da506"
    sum_z = scalar_add(out["sig_share_1"], out["sig_share_3"])
    assert sum_z.hex() == "a9743064bfa5539e43c32438984ace66e6f74fb4c1c8b8500ac2f73ff5c97601"
    with pytest.raises(BadSignatureError):
        VerifyKey(derived).verify(message, out["group_commitment"] + sum_z)
    VerifyKey(derived).verify(message, out["sig"])
    Ed25519PublicKey.from_public_bytes(derived).verify(out["sig"], message)


@settings(max_examples=15, deadline=None)
@given(
    seed=st.integers(0, 2**32),
    t_n=st.tuples(st.integers(2, 6), st.integers(0, 4)),
    account=accounts,
    path=paths,
    message=st.binary(max_size=64),
)
def test_threshold_signature_under_derived_key_verifies(
    seed: int, t_n: tuple[int, int], account: str, path: str, message: bytes
) -> None:
    rng = _rng(seed)
    t, extra = t_n
    identifiers = rng.sample(range(1, 300), t + extra)
    secret = scalar_from_int(rng.randrange(1, ORDER))
    packages, public, _ = trusted_dealer_keygen(secret, t, identifiers, rng.randbytes)
    signers = rng.sample(identifiers, t)
    shares = {i: packages[i].signing_share for i in signers}
    nonces = {
        i: (scalar_from_int(rng.randrange(1, ORDER)), scalar_from_int(rng.randrange(1, ORDER)))
        for i in signers
    }
    eps = derivation_tweak(account, path)
    derived = derive_public_key(public.group_public_key, account, path)
    out = _frost_sign(shares, nonces, dict(public.verifying_shares), derived, eps, message)
    VerifyKey(derived).verify(message, out["sig"])
    Ed25519PublicKey.from_public_bytes(derived).verify(out["sig"], message)
    # Without the aggregator's c·ε the same shares do not make a valid signature.
    bad = _frost_sign(shares, nonces, dict(public.verifying_shares), derived, bytes(32), message)
    with pytest.raises(BadSignatureError):
        VerifyKey(derived).verify(message, bad["sig"])


def test_frost_module_reproduces_the_worked_example() -> None:
    """quorumkeep.crypto.frost, used as documented, gives the documented signature."""
    shares, nonces, pk, message = _rfc_inputs()
    eps = derivation_tweak(EXAMPLE_ACCOUNT, EXAMPLE_PATH)
    derived = derive_public_key(pk, EXAMPLE_ACCOUNT, EXAMPLE_PATH)
    signing_nonces = {
        i: frost.SigningNonces(d, e, frost.SigningCommitments(base_mul(d), base_mul(e)))
        for i, (d, e) in nonces.items()
    }
    commitment_list = frost.commitment_list_from(
        {i: n.commitments for i, n in signing_nonces.items()}
    )
    sig_shares = {
        i: frost.sign(i, shares[i], derived, signing_nonces[i], message, commitment_list)
        for i in shares
    }
    assert {i: z.hex() for i, z in sig_shares.items()} == {
        1: EXAMPLE["sig_share_1"],
        3: EXAMPLE["sig_share_3"],
    }
    sig = frost.aggregate(
        commitment_list,
        message,
        derived,
        sig_shares,
        verifying_shares={i: base_mul(x) for i, x in shares.items()},
        tweak=eps,
    )
    assert sig.hex() == EXAMPLE["sig"]
    VerifyKey(derived).verify(message, sig)
