"""PedPoP DKG: agreement, interpolation, FROST signing, every rejection, wire formats."""

from __future__ import annotations

import random
from collections.abc import Callable, Mapping, Sequence
from dataclasses import replace

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from nacl.signing import VerifyKey

from quorumkeep.crypto import dkg, frost, group
from quorumkeep.crypto.errors import CheaterDetected, InvalidEncoding, InvalidParameters
from quorumkeep.crypto.keys import KeyPackage, PublicKeyPackage

L = group.ORDER
CONTEXT = b"quorumkeep test dkg session 1"
ORDER_8 = bytes.fromhex("c7176a703d4dd84fba3c0b760d10670f2a2053fa2c39ccc64ec7fd7792ac037a")
NON_CANONICAL_POINT = (2**255 - 19 + 1).to_bytes(32, "little")  # y = p + 1


def rng_of(seed: int) -> Callable[[int], bytes]:
    return random.Random(seed).randbytes


def run_part1(
    ids: Sequence[int], t: int, seed: int = 1, context: bytes = CONTEXT
) -> tuple[dict[int, dkg.Round1SecretPackage], dict[int, dkg.Round1Package]]:
    rng = rng_of(seed)
    secrets: dict[int, dkg.Round1SecretPackage] = {}
    packages: dict[int, dkg.Round1Package] = {}
    for i in ids:
        secrets[i], packages[i] = dkg.part1(i, ids, t, rng, context=context)
    return secrets, packages


def run_part2(
    secrets: Mapping[int, dkg.Round1SecretPackage], packages: Mapping[int, dkg.Round1Package]
) -> tuple[dict[int, dkg.Round2SecretPackage], dict[int, dict[int, dkg.Round2Package]]]:
    secrets2: dict[int, dkg.Round2SecretPackage] = {}
    sent: dict[int, dict[int, dkg.Round2Package]] = {}
    for i, secret in secrets.items():
        others = {j: p for j, p in packages.items() if j != i}
        secrets2[i], sent[i] = dkg.part2(secret, others)
    return secrets2, sent


def inbox(
    sent: Mapping[int, Mapping[int, dkg.Round2Package]], me: int
) -> dict[int, dkg.Round2Package]:
    return {sender: out[me] for sender, out in sent.items() if sender != me}


def run_dkg(
    ids: Sequence[int], t: int, seed: int = 1
) -> tuple[dict[int, KeyPackage], dict[int, PublicKeyPackage]]:
    secrets, packages = run_part1(ids, t, seed)
    secrets2, sent = run_part2(secrets, packages)
    keys: dict[int, KeyPackage] = {}
    publics: dict[int, PublicKeyPackage] = {}
    for i in ids:
        keys[i], publics[i] = dkg.part3(secrets2[i], packages, inbox(sent, i))
    return keys, publics


def interpolate(keys: Mapping[int, KeyPackage], subset: Sequence[int]) -> group.Scalar:
    xs = [group.identifier_scalar(i) for i in subset]
    return group.scalar_sum(
        group.scalar_mul(group.lagrange_coefficient(x, xs), keys[i].signing_share)
        for i, x in zip(subset, xs, strict=True)
    )


def frost_sign(
    keys: Mapping[int, KeyPackage],
    public: PublicKeyPackage,
    signers: Sequence[int],
    msg: bytes,
    seed: int,
) -> bytes:
    rng = rng_of(seed)
    nonces = {}
    commitments = {}
    for i in signers:
        nonces[i], commitments[i] = frost.commit(keys[i].signing_share, rng)
    commitment_list = frost.commitment_list_from(commitments)
    shares = {
        i: frost.sign(
            i, keys[i].signing_share, public.group_public_key, nonces[i], msg, commitment_list
        )
        for i in signers
    }
    return frost.aggregate(
        commitment_list,
        msg,
        public.group_public_key,
        shares,
        verifying_shares=public.verifying_shares,
    )


identifier = st.one_of(st.integers(1, 300), st.integers(1, L - 1))


@st.composite
def groups(draw: st.DrawFn, max_n: int = 12) -> tuple[list[int], int]:
    n = draw(st.integers(2, max_n))
    t = draw(st.integers(2, n))
    ids = draw(st.lists(identifier, min_size=n, max_size=n, unique=True))
    return ids, t


# --- the protocol works ----------------------------------------------------------------


@settings(max_examples=25, deadline=None)
@given(groups(), st.integers(0, 2**32), st.randoms(use_true_random=False))
def test_dkg_agrees_interpolates_and_signs(
    group_: tuple[list[int], int], seed: int, rnd: random.Random
) -> None:
    ids, t = group_
    keys, publics = run_dkg(ids, t, seed)
    public = publics[ids[0]]
    assert all(p == public for p in publics.values())
    assert public.threshold == t and public.identifiers == sorted(ids)
    for i in ids:
        assert keys[i].group_public_key == public.group_public_key
        assert keys[i].threshold == t
        assert group.base_mul(keys[i].signing_share) == public.verifying_shares[i]
        assert keys[i].verifying_share == public.verifying_shares[i]
    subset = rnd.sample(ids, t)
    secret = interpolate(keys, subset)
    assert group.base_mul(secret) == public.group_public_key
    other = rnd.sample(ids, t)
    assert interpolate(keys, other) == secret
    if t > 2:  # t-1 shares interpolate to something else
        assert group.base_mul(interpolate(keys, subset[:-1])) != public.group_public_key
    msg = rnd.randbytes(rnd.randrange(0, 64))
    signature = frost_sign(keys, public, sorted(rnd.sample(ids, t)), msg, seed)
    VerifyKey(public.group_public_key).verify(msg, signature)


def test_own_round1_package_may_be_included() -> None:
    ids = [4, 9, 200]
    secrets, packages = run_part1(ids, 2)
    _, with_own = dkg.part2(secrets[4], packages)
    _, without = dkg.part2(secrets[4], {j: packages[j] for j in (9, 200)})
    assert with_own.keys() == without.keys() == {9, 200}
    assert with_own == without


def test_part1_is_a_pure_function_of_its_randomness() -> None:
    a = dkg.part1(3, [3, 5, 7], 2, rng_of(9), context=CONTEXT)[1]
    b = dkg.part1(3, [3, 5, 7], 2, rng_of(9), context=CONTEXT)[1]
    c = dkg.part1(3, [3, 5, 7], 2, rng_of(10), context=CONTEXT)[1]
    assert a == b and a != c
    assert len(a.commitment) == 2


# --- cheaters are named ----------------------------------------------------------------


def test_inconsistent_share_names_its_sender() -> None:
    ids = [1, 2, 3, 4, 5]
    secrets, packages = run_part1(ids, 3)
    secrets2, sent = run_part2(secrets, packages)
    honest = sent[5][1].signing_share
    sent[5][1] = dkg.Round2Package(group.scalar_add(honest, group.ONE))
    with pytest.raises(CheaterDetected) as caught:
        dkg.part3(secrets2[1], packages, inbox(sent, 1))
    assert caught.value.culprit == 5
    assert honest.hex() not in str(caught.value)
    # everyone else is unaffected
    key, public = dkg.part3(secrets2[2], packages, inbox(sent, 2))
    assert group.base_mul(key.signing_share) == public.verifying_shares[2]


def test_two_inconsistent_shares_name_the_lowest_sender() -> None:
    ids = [10, 20, 30, 40]
    secrets, packages = run_part1(ids, 2)
    secrets2, sent = run_part2(secrets, packages)
    for sender in (40, 30):
        sent[sender][10] = dkg.Round2Package(group.scalar_from_int(7))
    with pytest.raises(CheaterDetected) as caught:
        dkg.part3(secrets2[10], packages, inbox(sent, 10))
    assert caught.value.culprit == 30


def test_non_canonical_share_names_its_sender() -> None:
    ids = [1, 2, 3]
    secrets, packages = run_part1(ids, 2)
    secrets2, sent = run_part2(secrets, packages)
    sent[2][3] = dkg.Round2Package(L.to_bytes(32, "little"))
    with pytest.raises(CheaterDetected) as caught:
        dkg.part3(secrets2[3], packages, inbox(sent, 3))
    assert caught.value.culprit == 2


def test_bad_proof_of_knowledge_is_named() -> None:
    ids = [1, 2, 3, 4]
    secrets, packages = run_part1(ids, 3)
    bad = packages[3]
    packages[3] = replace(bad, proof_mu=group.scalar_add(bad.proof_mu, group.ONE))
    with pytest.raises(CheaterDetected) as caught:
        dkg.part2(secrets[1], {j: packages[j] for j in (2, 3, 4)})
    assert caught.value.culprit == 3
    assert "proof of knowledge" in caught.value.reason


def test_proof_for_another_commitment_is_named() -> None:
    """A rogue key: a commitment whose constant term the sender cannot prove it knows."""
    ids = [1, 2, 3]
    secrets, packages = run_part1(ids, 2)
    rogue = group.element_sub(packages[2].commitment[0], packages[1].commitment[0])
    packages[2] = replace(packages[2], commitment=(rogue, *packages[2].commitment[1:]))
    with pytest.raises(CheaterDetected) as caught:
        dkg.part2(secrets[1], {j: packages[j] for j in (2, 3)})
    assert caught.value.culprit == 2


def test_proof_replayed_from_another_context_is_named() -> None:
    ids = [1, 2, 3]
    _, earlier = run_part1(ids, 2, seed=5, context=b"session A")
    secrets, packages = run_part1(ids, 2, seed=6, context=b"session B")
    packages[2] = earlier[2]
    with pytest.raises(CheaterDetected) as caught:
        dkg.part2(secrets[1], {j: packages[j] for j in (2, 3)})
    assert caught.value.culprit == 2
    # the same package is accepted in the session it was made for
    secrets_a, packages_a = run_part1(ids, 2, seed=5, context=b"session A")
    dkg.part2(secrets_a[1], {j: packages_a[j] for j in (2, 3)})


def test_proof_replayed_under_another_identifier_is_named() -> None:
    ids = [1, 2, 3]
    secrets, packages = run_part1(ids, 2)
    packages[3] = packages[2]  # 3 copies 2's package (and so its key contribution)
    with pytest.raises(CheaterDetected) as caught:
        dkg.part2(secrets[1], {j: packages[j] for j in (2, 3)})
    assert caught.value.culprit == 3


@pytest.mark.parametrize("length", [1, 2, 4])
def test_commitment_of_wrong_length_is_named(length: int) -> None:
    ids = [1, 2, 3, 4]
    secrets, packages = run_part1(ids, 3)
    commitment = packages[4].commitment
    padded = (commitment + commitment)[:length]
    packages[4] = replace(packages[4], commitment=padded)
    with pytest.raises(CheaterDetected) as caught:
        dkg.part2(secrets[1], {j: packages[j] for j in (2, 3, 4)})
    assert caught.value.culprit == 4


@pytest.mark.parametrize(
    "element",
    [group.IDENTITY, ORDER_8, NON_CANONICAL_POINT, b"\x05" * 31],
    ids=["identity", "order-8", "non-canonical", "short"],
)
def test_invalid_constant_term_built_in_process_is_named(element: bytes) -> None:
    ids = [1, 2, 3]
    secrets, packages = run_part1(ids, 2)
    packages[2] = replace(packages[2], commitment=(element, packages[2].commitment[1]))
    with pytest.raises(CheaterDetected) as caught:
        dkg.part2(secrets[3], {j: packages[j] for j in (1, 2)})
    assert caught.value.culprit == 2


def test_non_canonical_proof_scalar_built_in_process_is_named() -> None:
    ids = [1, 2, 3]
    secrets, packages = run_part1(ids, 2)
    mu = group.scalar_to_int(packages[1].proof_mu) + L
    packages[1] = replace(packages[1], proof_mu=mu.to_bytes(32, "little"))
    with pytest.raises(CheaterDetected) as caught:
        dkg.part2(secrets[2], {j: packages[j] for j in (1, 3)})
    assert caught.value.culprit == 1


# --- bad parameters and mismatched inputs are refused -----------------------------------


@pytest.mark.parametrize(
    ("identifier", "participants", "threshold"),
    [
        (9, [1, 2, 3], 2),  # not a participant
        (1, [1, 2, 3], 1),  # threshold 1
        (1, [1, 2, 3], 4),  # threshold > n
        (1, [1, 1, 2], 2),  # duplicates
        (1, [1], 1),
    ],
)
def test_part1_refuses_bad_parameters(
    identifier: int, participants: list[int], threshold: int
) -> None:
    with pytest.raises(InvalidParameters):
        dkg.part1(identifier, participants, threshold, rng_of(1), context=CONTEXT)


@pytest.mark.parametrize("bad_id", [0, -1, L])
def test_part1_refuses_identifiers_outside_the_field(bad_id: int) -> None:
    with pytest.raises(InvalidEncoding):
        dkg.part1(1, [1, bad_id, 3], 2, rng_of(1), context=CONTEXT)


def test_part1_refuses_an_empty_context() -> None:
    with pytest.raises(InvalidParameters, match="context"):
        dkg.part1(1, [1, 2], 2, rng_of(1), context=b"")


def test_part2_refuses_missing_and_unexpected_packages() -> None:
    ids = [1, 2, 3]
    secrets, packages = run_part1(ids, 2)
    with pytest.raises(InvalidParameters, match=r"missing from \[3\]"):
        dkg.part2(secrets[1], {2: packages[2]})
    stranger = dkg.part1(8, [8, 9], 2, rng_of(3), context=CONTEXT)[1]
    with pytest.raises(InvalidParameters, match=r"unexpected from \[8\]"):
        dkg.part2(secrets[1], {2: packages[2], 3: packages[3], 8: stranger})


def test_part2_refuses_a_foreign_package_under_our_identifier() -> None:
    ids = [1, 2, 3]
    secrets, packages = run_part1(ids, 2)
    with pytest.raises(InvalidParameters, match="own identifier"):
        dkg.part2(secrets[1], {1: packages[2], 2: packages[2], 3: packages[3]})


def test_part3_refuses_round1_packages_other_than_part2_verified() -> None:
    ids = [1, 2, 3]
    secrets, packages = run_part1(ids, 2)
    secrets2, sent = run_part2(secrets, packages)
    _, other_run = run_part1(ids, 2, seed=77)
    swapped = {**packages, 2: other_run[2]}
    with pytest.raises(InvalidParameters, match="differs from the one part2 verified"):
        dkg.part3(secrets2[1], swapped, inbox(sent, 1))


def test_part3_refuses_missing_and_unexpected_shares() -> None:
    ids = [1, 2, 3]
    secrets, packages = run_part1(ids, 2)
    secrets2, sent = run_part2(secrets, packages)
    received = inbox(sent, 1)
    with pytest.raises(InvalidParameters, match=r"missing from \[3\]"):
        dkg.part3(secrets2[1], packages, {2: received[2]})
    with pytest.raises(InvalidParameters, match=r"unexpected from \[1\]"):
        dkg.part3(secrets2[1], packages, {**received, 1: received[2]})


# --- secrets stay out of reprs ----------------------------------------------------------


def test_reprs_hide_secrets() -> None:
    ids = [1, 2, 3]
    secrets, packages = run_part1(ids, 2)
    secrets2, sent = run_part2(secrets, packages)
    key, _ = dkg.part3(secrets2[1], packages, inbox(sent, 1))
    hidden = [
        *(c.hex() for c in secrets[1].coefficients),
        secrets2[1].own_share.hex(),
        sent[1][2].signing_share.hex(),
        key.signing_share.hex(),
    ]
    shown = " ".join(repr(x) + str(x) for x in (secrets[1], secrets2[1], sent[1][2], sent[1], key))
    for secret in hidden:
        assert secret not in shown
        assert repr(bytes.fromhex(secret)) not in shown


# --- wire formats -----------------------------------------------------------------------


def _package() -> dkg.Round1Package:
    return dkg.part1(7, [7, 2**130, 12], 3, rng_of(4), context=CONTEXT)[1]


def test_round1_package_round_trips() -> None:
    package = _package()
    data = package.to_bytes()
    assert len(data) == 2 + 3 * 32 + 64
    assert data[:2] == b"\x00\x03"
    assert dkg.Round1Package.from_bytes(data) == package
    assert dkg.Round1Package.from_dict(package.to_dict()) == package
    assert package.to_dict()["proof"] == {"R": package.proof_r.hex(), "mu": package.proof_mu.hex()}


def test_round2_package_round_trips() -> None:
    share = dkg.Round2Package(group.scalar_from_int(123456789))
    assert dkg.Round2Package.from_bytes(share.to_bytes()) == share
    assert dkg.Round2Package.from_dict(share.to_dict()) == share


def _mutations() -> list[tuple[str, bytes]]:
    data = _package().to_bytes()
    mu_at = len(data) - 32
    r_at = mu_at - 32
    return [
        ("empty", b""),
        ("truncated", data[:-1]),
        ("trailing byte", data + b"\x00"),
        ("count too large", b"\x00\x04" + data[2:]),
        ("count too small", b"\x00\x02" + data[2:]),
        ("non-canonical mu", data[:mu_at] + L.to_bytes(32, "little")),
        ("small-order R", data[:r_at] + ORDER_8 + data[mu_at:]),
        ("identity R", data[:r_at] + group.IDENTITY + data[mu_at:]),
        ("identity coefficient", data[:2] + group.IDENTITY + data[34:]),
        ("non-canonical coefficient", data[:34] + NON_CANONICAL_POINT + data[66:]),
    ]


@pytest.mark.parametrize(("case", "data"), _mutations(), ids=[m[0] for m in _mutations()])
def test_round1_decoding_refuses_malformed_bytes(case: str, data: bytes) -> None:
    with pytest.raises(InvalidEncoding):
        dkg.Round1Package.from_bytes(data)


def _dict_mutations() -> list[tuple[str, object]]:
    good = _package().to_dict()
    proof = good["proof"]
    assert isinstance(proof, dict)
    commitment = good["commitment"]
    assert isinstance(commitment, list)
    return [
        ("not a dict", []),
        ("missing proof", {"commitment": commitment}),
        ("extra key", {**good, "sender": "7"}),
        ("commitment not a list", {**good, "commitment": "00"}),
        ("bad hex", {**good, "proof": {**proof, "R": "zz" * 32}}),
        ("short hex", {**good, "proof": {**proof, "mu": proof["mu"][:-2]}}),
        ("number instead of hex", {**good, "proof": {**proof, "mu": 5}}),
        ("small-order coefficient", {**good, "commitment": [ORDER_8.hex(), *commitment[1:]]}),
        ("non-canonical mu", {**good, "proof": {**proof, "mu": L.to_bytes(32, "little").hex()}}),
        ("proof missing mu", {**good, "proof": {"R": proof["R"]}}),
    ]


@pytest.mark.parametrize(("case", "obj"), _dict_mutations(), ids=[m[0] for m in _dict_mutations()])
def test_round1_decoding_refuses_malformed_dicts(case: str, obj: object) -> None:
    with pytest.raises(InvalidEncoding):
        dkg.Round1Package.from_dict(obj)


@pytest.mark.parametrize(
    "data",
    [
        b"",
        b"\x01" * 31,
        b"\x01" * 33,
        L.to_bytes(32, "little"),
        (2**256 - 1).to_bytes(32, "little"),
    ],
)
def test_round2_decoding_refuses_malformed_bytes(data: bytes) -> None:
    with pytest.raises(InvalidEncoding):
        dkg.Round2Package.from_bytes(data)


@pytest.mark.parametrize(
    "obj",
    [{}, {"signing_share": 1}, {"signing_share": "ab"}, {"share": "00" * 32}, "00" * 32],
)
def test_round2_decoding_refuses_malformed_dicts(obj: object) -> None:
    with pytest.raises(InvalidEncoding):
        dkg.Round2Package.from_dict(obj)


def test_decoding_errors_do_not_echo_share_values() -> None:
    secret_hex = group.scalar_from_int(2**200 + 12345).hex()
    with pytest.raises(InvalidEncoding) as caught:
        dkg.Round2Package.from_dict({"signing_share": secret_hex[:-2]})
    assert secret_hex[:-2] not in str(caught.value)
