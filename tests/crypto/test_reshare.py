"""Resharing and refresh: same key under new sets and thresholds, every rejection."""

from __future__ import annotations

import random
from collections.abc import Callable, Mapping, Sequence

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from nacl.signing import VerifyKey

from quorumkeep.crypto import dkg, frost, group, reshare
from quorumkeep.crypto.errors import CheaterDetected, InvalidEncoding, InvalidParameters
from quorumkeep.crypto.keys import KeyPackage, PublicKeyPackage, trusted_dealer_keygen

L = group.ORDER
ORDER_8 = bytes.fromhex("c7176a703d4dd84fba3c0b760d10670f2a2053fa2c39ccc64ec7fd7792ac037a")


def rng_of(seed: int) -> Callable[[int], bytes]:
    return random.Random(seed).randbytes


def keygen(
    t: int, ids: Sequence[int], seed: int = 1
) -> tuple[group.Scalar, dict[int, KeyPackage], PublicKeyPackage]:
    rng = rng_of(seed)
    secret = group.random_scalar(rng)
    keys, public, _ = trusted_dealer_keygen(secret, t, ids, rng)
    return secret, keys, public


Dealt = dict[int, tuple[reshare.ResharePublicPackage, dict[int, reshare.SubShare]]]


def deal_all(
    keys: Mapping[int, KeyPackage],
    old_public: PublicKeyPackage,
    dealers: Sequence[int],
    new_ids: Sequence[int],
    t_new: int,
    seed: int = 2,
) -> Dealt:
    rng = rng_of(seed)
    return {d: reshare.deal(keys[d], old_public, dealers, new_ids, t_new, rng) for d in dealers}


def receive_all(
    dealt: Dealt,
    old_public: PublicKeyPackage,
    dealers: Sequence[int],
    new_ids: Sequence[int],
    t_new: int,
) -> tuple[dict[int, KeyPackage], PublicKeyPackage]:
    packages = {d: dealt[d][0] for d in dealers}
    keys: dict[int, KeyPackage] = {}
    publics: list[PublicKeyPackage] = []
    for j in new_ids:
        subs = {d: dealt[d][1][j] for d in dealers}
        keys[j], public = reshare.receive(j, old_public, dealers, new_ids, t_new, packages, subs)
        publics.append(public)
    assert all(p == publics[0] for p in publics), "receivers disagree on the new public package"
    return keys, publics[0]


def run_reshare(
    keys: Mapping[int, KeyPackage],
    old_public: PublicKeyPackage,
    dealers: Sequence[int],
    new_ids: Sequence[int],
    t_new: int,
    seed: int = 2,
) -> tuple[dict[int, KeyPackage], PublicKeyPackage]:
    dealt = deal_all(keys, old_public, dealers, new_ids, t_new, seed)
    return receive_all(dealt, old_public, dealers, new_ids, t_new)


def interpolate(keys: Mapping[int, KeyPackage], subset: Sequence[int]) -> group.Scalar:
    xs = [group.identifier_scalar(i) for i in subset]
    return group.scalar_sum(
        group.scalar_mul(group.lagrange_coefficient(x, xs), keys[i].signing_share)
        for i, x in zip(subset, xs, strict=True)
    )


def frost_sign(
    keys: Mapping[int, KeyPackage], public: PublicKeyPackage, signers: Sequence[int], msg: bytes
) -> bytes:
    rng = rng_of(len(msg) + 99)
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


def assert_holds_key(
    secret: group.Scalar,
    old_public: PublicKeyPackage,
    keys: Mapping[int, KeyPackage],
    public: PublicKeyPackage,
    t: int,
    rnd: random.Random,
) -> None:
    ids = sorted(keys)
    assert public.group_public_key == old_public.group_public_key
    assert public.threshold == t and public.identifiers == ids
    for j in ids:
        assert keys[j].threshold == t
        assert keys[j].group_public_key == old_public.group_public_key
        assert group.base_mul(keys[j].signing_share) == public.verifying_shares[j]
    assert interpolate(keys, rnd.sample(ids, t)) == secret
    if t > 2:
        assert interpolate(keys, rnd.sample(ids, t - 1)) != secret
    msg = rnd.randbytes(20)
    signature = frost_sign(keys, public, sorted(rnd.sample(ids, t)), msg)
    VerifyKey(public.group_public_key).verify(msg, signature)


identifier = st.one_of(st.integers(1, 300), st.integers(1, L - 1))


@st.composite
def resharings(draw: st.DrawFn) -> tuple[list[int], int, list[int], list[int], int]:
    n_old = draw(st.integers(2, 9))
    t_old = draw(st.integers(2, n_old))
    ids = draw(st.lists(identifier, min_size=n_old + 4, max_size=n_old + 4, unique=True))
    old_ids, fresh = ids[:n_old], ids[n_old:]
    dealers = draw(st.lists(st.sampled_from(old_ids), min_size=t_old, unique=True))
    staying = draw(st.lists(st.sampled_from(old_ids), min_size=t_old, unique=True))
    joining = draw(st.lists(st.sampled_from(fresh), unique=True))
    new_ids = staying + joining
    t_new = draw(st.integers(2, len(new_ids)))
    return old_ids, t_old, dealers, new_ids, t_new


# --- the key survives ------------------------------------------------------------------


@settings(max_examples=25, deadline=None)
@given(resharings(), st.integers(0, 2**32), st.randoms(use_true_random=False))
def test_reshare_keeps_the_key(
    case: tuple[list[int], int, list[int], list[int], int], seed: int, rnd: random.Random
) -> None:
    old_ids, t_old, dealers, new_ids, t_new = case
    secret, keys, old_public = keygen(t_old, old_ids, seed)
    new_keys, new_public = run_reshare(keys, old_public, dealers, new_ids, t_new, seed + 1)
    assert_holds_key(secret, old_public, new_keys, new_public, t_new, rnd)


SCENARIOS = {
    # name: (old ids, t_old, dealers, new ids, t_new)
    "grow": ([1, 2, 3, 4, 5], 3, [1, 3, 5], [1, 2, 3, 4, 5, 6, 7, 8], 3),
    "grow and raise": ([1, 2, 3, 4, 5], 3, [2, 3, 4, 5], [1, 2, 3, 4, 5, 6, 7, 8], 6),
    "shrink": ([1, 2, 3, 4, 5], 3, [1, 2, 3], [1, 2, 3], 2),
    "threshold up": ([1, 2, 3, 4, 5], 2, [4, 5], [1, 2, 3, 4, 5], 5),
    "threshold down": ([1, 2, 3, 4, 5], 4, [1, 2, 3, 4, 5], [1, 2, 3, 4, 5], 2),
    "replace members": ([1, 2, 3, 4, 5], 3, [1, 4, 5], [1, 2, 3, 101, 102], 3),
    "departing dealers": ([10, 20, 30, 40], 2, [30, 40], [10, 20, 50], 2),
    "large ids": ([L - 1, 2**128, 7], 2, [L - 1, 7], [7, 2**128, L - 2, 2**250], 3),
}


@pytest.mark.parametrize("name", list(SCENARIOS))
def test_reshare_scenarios(name: str) -> None:
    old_ids, t_old, dealers, new_ids, t_new = SCENARIOS[name]
    secret, keys, old_public = keygen(t_old, old_ids, seed=len(name))
    new_keys, new_public = run_reshare(keys, old_public, dealers, new_ids, t_new)
    assert_holds_key(secret, old_public, new_keys, new_public, t_new, random.Random(name))


def test_reshare_after_dkg_and_again() -> None:
    """DKG output feeds a resharing, whose output feeds the next one."""
    ids = [5, 6, 7, 8]
    rng = rng_of(3)
    r1 = {i: dkg.part1(i, ids, 3, rng, context=b"ctx") for i in ids}
    r1_packages = {i: r1[i][1] for i in ids}
    r2 = {i: dkg.part2(r1[i][0], r1_packages) for i in ids}
    keys: dict[int, KeyPackage] = {}
    publics = {}
    for i in ids:
        inbox = {j: r2[j][1][i] for j in ids if j != i}
        keys[i], publics[i] = dkg.part3(r2[i][0], r1_packages, inbox)
    public = publics[5]
    secret = interpolate(keys, [5, 6, 7])
    rnd = random.Random(1)
    keys2, public2 = run_reshare(keys, public, [6, 7, 8], [5, 6, 7, 9, 10], 4)
    assert_holds_key(secret, public, keys2, public2, 4, rnd)
    keys3, public3 = run_reshare(keys2, public2, [5, 9, 10, 6], [9, 10, 6, 7], 2)
    assert_holds_key(secret, public2, keys3, public3, 2, rnd)


def test_old_and_new_shares_do_not_mix() -> None:
    secret, keys, old_public = keygen(3, [1, 2, 3, 4, 5])
    new_keys, _ = run_reshare(keys, old_public, [1, 2, 3], [1, 2, 3, 4, 5], 3)
    mixed = {1: keys[1], 2: keys[2], 3: new_keys[3]}
    assert interpolate(mixed, [1, 2, 3]) != secret


# --- refresh ---------------------------------------------------------------------------


def test_refresh_gives_new_shares_under_the_same_key() -> None:
    ids = [3, 9, 27, 81]
    secret, keys, public = keygen(3, ids)
    dealers = [3, 27, 81]
    rng = rng_of(5)
    dealt = {d: reshare.refresh_deal(keys[d], public, dealers, ids, 3, rng) for d in dealers}
    packages = {d: dealt[d][0] for d in dealers}
    new_keys: dict[int, KeyPackage] = {}
    new_publics = []
    for j in ids:
        subs = {d: dealt[d][1][j] for d in dealers}
        new_keys[j], p = reshare.refresh_receive(j, public, dealers, ids, 3, packages, subs)
        new_publics.append(p)
    new_public = new_publics[0]
    assert all(p == new_public for p in new_publics)
    for j in ids:
        assert new_keys[j].signing_share != keys[j].signing_share
        assert new_public.verifying_shares[j] != public.verifying_shares[j]
    assert_holds_key(secret, public, new_keys, new_public, 3, random.Random(2))
    assert interpolate({3: keys[3], 9: keys[9], 27: new_keys[27]}, [3, 9, 27]) != secret


@pytest.mark.parametrize("threshold", [2, 4])
def test_refresh_refuses_a_threshold_change(threshold: int) -> None:
    ids = [1, 2, 3, 4]
    _, keys, public = keygen(3, ids)
    with pytest.raises(InvalidParameters, match="keeps the threshold"):
        reshare.refresh_deal(keys[1], public, [1, 2, 3], ids, threshold, rng_of(1))
    package, subs = reshare.deal(keys[1], public, [1, 2, 3], ids, threshold, rng_of(1))
    with pytest.raises(InvalidParameters, match="keeps the threshold"):
        reshare.refresh_receive(2, public, [1, 2, 3], ids, threshold, {1: package}, {1: subs[2]})


@pytest.mark.parametrize("participants", [[1, 2, 3], [1, 2, 3, 4, 5], [1, 2, 3, 5]])
def test_refresh_refuses_a_set_change(participants: list[int]) -> None:
    _, keys, public = keygen(3, [1, 2, 3, 4])
    with pytest.raises(InvalidParameters, match="keeps the participant set"):
        reshare.refresh_deal(keys[1], public, [1, 2, 3], participants, 3, rng_of(1))
    with pytest.raises(InvalidParameters, match="keeps the participant set"):
        reshare.refresh_receive(1, public, [1, 2, 3], participants, 3, {}, {})


def test_refresh_still_needs_enough_dealers() -> None:
    ids = [1, 2, 3, 4]
    _, keys, public = keygen(3, ids)
    with pytest.raises(InvalidParameters, match="at least 3 old holders"):
        reshare.refresh_deal(keys[1], public, [1, 2], ids, 3, rng_of(1))


# --- refused parameters ----------------------------------------------------------------


@pytest.mark.parametrize(
    ("dealers", "new_ids", "t_new", "message"),
    [
        ([1, 2], [1, 2, 3, 4, 5], 3, "at least 3 old holders must deal"),
        ([1, 2, 9], [1, 2, 3, 4, 5], 3, r"dealers \[9\] hold no share"),
        ([1, 2, 2, 3], [1, 2, 3, 4, 5], 3, "duplicate dealer"),
        ([1, 2, 3], [1, 2, 6, 7, 8], 3, "only 2 old participants stay"),
        ([1, 2, 3], [6, 7, 8], 2, "only 0 old participants stay"),
        ([1, 2, 3], [1, 2, 3, 4], 1, "threshold"),
        ([1, 2, 3], [1, 2, 3, 4], 5, "threshold"),
        ([1, 2, 3], [1, 2, 3, 3], 2, "duplicate participant"),
    ],
)
def test_resharing_refuses_bad_parameters(
    dealers: list[int], new_ids: list[int], t_new: int, message: str
) -> None:
    _, keys, public = keygen(3, [1, 2, 3, 4, 5])
    with pytest.raises(InvalidParameters, match=message):
        reshare.deal(keys[1], public, dealers, new_ids, t_new, rng_of(1))
    with pytest.raises(InvalidParameters, match=message):
        reshare.receive(new_ids[0], public, dealers, new_ids, t_new, {}, {})


def test_deal_refuses_a_non_dealer_and_a_foreign_key_package() -> None:
    _, keys, public = keygen(2, [1, 2, 3])
    with pytest.raises(InvalidParameters, match="not one of the dealers"):
        reshare.deal(keys[3], public, [1, 2], [1, 2, 3], 2, rng_of(1))
    _, other_keys, _ = keygen(2, [1, 2, 3], seed=8)
    with pytest.raises(InvalidParameters, match="does not belong"):
        reshare.deal(other_keys[1], public, [1, 2], [1, 2, 3], 2, rng_of(1))


def test_receive_refuses_a_stranger_and_incomplete_inputs() -> None:
    _, keys, public = keygen(2, [1, 2, 3])
    dealt = deal_all(keys, public, [1, 2], [1, 2, 3], 2)
    packages = {d: dealt[d][0] for d in (1, 2)}
    subs = {d: dealt[d][1][3] for d in (1, 2)}
    with pytest.raises(InvalidParameters, match="not in the new participant set"):
        reshare.receive(4, public, [1, 2], [1, 2, 3], 2, packages, subs)
    with pytest.raises(InvalidParameters, match=r"reshare packages: missing from \[2\]"):
        reshare.receive(3, public, [1, 2], [1, 2, 3], 2, {1: packages[1]}, subs)
    with pytest.raises(InvalidParameters, match=r"sub-shares: missing from \[\], unexpected"):
        reshare.receive(3, public, [1, 2], [1, 2, 3], 2, packages, {**subs, 3: subs[1]})


def test_receive_refuses_an_inconsistent_old_public_package() -> None:
    _, keys, public = keygen(2, [1, 2, 3])
    dealt = deal_all(keys, public, [1, 2], [1, 2, 3], 2)
    packages = {d: dealt[d][0] for d in (1, 2)}
    subs = {d: dealt[d][1][3] for d in (1, 2)}
    wrong_key = PublicKeyPackage(group.base_mul(group.ONE), public.verifying_shares, 2)
    with pytest.raises(InvalidParameters, match="do not interpolate to the old group key"):
        reshare.receive(3, wrong_key, [1, 2], [1, 2, 3], 2, packages, subs)


# --- cheating dealers are named ----------------------------------------------------------


def _malicious_deal(
    constant: group.Scalar, new_ids: Sequence[int], t_new: int, seed: int
) -> tuple[reshare.ResharePublicPackage, dict[int, reshare.SubShare]]:
    """A dealer that follows the protocol except for its constant term."""
    rng = rng_of(seed)
    polynomial = [constant, *(group.random_scalar(rng) for _ in range(t_new - 1))]
    package = reshare.ResharePublicPackage(tuple(group.vss_commit(polynomial)))
    subs = {
        j: reshare.SubShare(group.polynomial_evaluate(group.identifier_scalar(j), polynomial))
        for j in new_ids
    }
    return package, subs


def test_dealer_changing_the_key_is_named() -> None:
    old_ids, dealers, new_ids = [1, 2, 3, 4], [1, 2, 4], [1, 2, 3, 4, 5]
    _, keys, public = keygen(3, old_ids)
    dealt = deal_all(keys, public, dealers, new_ids, 3)
    # dealer 4 shifts its contribution: the new key would be PK + G
    lam = group.lagrange_coefficient(
        group.identifier_scalar(4), [group.identifier_scalar(d) for d in dealers]
    )
    shifted = group.scalar_add(group.scalar_mul(lam, keys[4].signing_share), group.ONE)
    dealt[4] = _malicious_deal(shifted, new_ids, 3, seed=11)
    for j in new_ids:
        with pytest.raises(CheaterDetected) as caught:
            reshare.receive(
                j,
                public,
                dealers,
                new_ids,
                3,
                {d: dealt[d][0] for d in dealers},
                {d: dealt[d][1][j] for d in dealers},
            )
        assert caught.value.culprit == 4
        assert "constant term" in caught.value.reason


def test_dealers_shifting_the_key_together_are_named() -> None:
    """Two dealers whose shifts cancel keep the key, but still deal off their shares."""
    old_ids, dealers, new_ids = [1, 2, 3], [1, 2, 3], [1, 2, 3]
    _, keys, public = keygen(2, old_ids)
    dealt = deal_all(keys, public, dealers, new_ids, 2)
    xs = [group.identifier_scalar(d) for d in dealers]
    for d, delta in ((2, group.ONE), (3, group.scalar_neg(group.ONE))):
        lam = group.lagrange_coefficient(group.identifier_scalar(d), xs)
        constant = group.scalar_add(group.scalar_mul(lam, keys[d].signing_share), delta)
        dealt[d] = _malicious_deal(constant, new_ids, 2, seed=d)
    with pytest.raises(CheaterDetected) as caught:
        reshare.receive(
            1,
            public,
            dealers,
            new_ids,
            2,
            {d: dealt[d][0] for d in dealers},
            {d: dealt[d][1][1] for d in dealers},
        )
    assert caught.value.culprit == 2


def test_bad_sub_share_is_named() -> None:
    old_ids, dealers, new_ids = [1, 2, 3, 4, 5], [2, 3, 5], [1, 2, 3, 6]
    _, keys, public = keygen(3, old_ids)
    dealt = deal_all(keys, public, dealers, new_ids, 2)
    honest = dealt[3][1][6].value
    dealt[3][1][6] = reshare.SubShare(group.scalar_add(honest, group.ONE))
    packages = {d: dealt[d][0] for d in dealers}
    with pytest.raises(CheaterDetected) as caught:
        reshare.receive(
            6, public, dealers, new_ids, 2, packages, {d: dealt[d][1][6] for d in dealers}
        )
    assert caught.value.culprit == 3
    assert honest.hex() not in str(caught.value)
    # the other receivers are unaffected
    reshare.receive(1, public, dealers, new_ids, 2, packages, {d: dealt[d][1][1] for d in dealers})


def test_non_canonical_sub_share_is_named() -> None:
    _, keys, public = keygen(2, [1, 2, 3])
    dealt = deal_all(keys, public, [1, 2], [1, 2, 3], 2)
    dealt[1][1][2] = reshare.SubShare(L.to_bytes(32, "little"))
    with pytest.raises(CheaterDetected) as caught:
        reshare.receive(
            2,
            public,
            [1, 2],
            [1, 2, 3],
            2,
            {d: dealt[d][0] for d in (1, 2)},
            {d: dealt[d][1][2] for d in (1, 2)},
        )
    assert caught.value.culprit == 1


@pytest.mark.parametrize("length", [1, 3])
def test_commitment_of_wrong_length_is_named(length: int) -> None:
    _, keys, public = keygen(2, [1, 2, 3])
    dealt = deal_all(keys, public, [1, 2], [1, 2, 3], 2)
    commitment = dealt[2][0].commitment
    dealt[2] = (reshare.ResharePublicPackage((commitment * 2)[:length]), dealt[2][1])
    with pytest.raises(CheaterDetected) as caught:
        reshare.receive(
            3,
            public,
            [1, 2],
            [1, 2, 3],
            2,
            {d: dealt[d][0] for d in (1, 2)},
            {d: dealt[d][1][3] for d in (1, 2)},
        )
    assert caught.value.culprit == 2


# --- wire formats and reprs ------------------------------------------------------------


def test_public_package_and_sub_share_round_trip() -> None:
    _, keys, public = keygen(3, [1, 2, 3, 4])
    package, subs = reshare.deal(keys[2], public, [1, 2, 3], [1, 2, 3, 4], 3, rng_of(4))
    data = package.to_bytes()
    assert len(data) == 2 + 3 * 32
    assert reshare.ResharePublicPackage.from_bytes(data) == package
    assert reshare.ResharePublicPackage.from_dict(package.to_dict()) == package
    for sub in subs.values():
        assert reshare.SubShare.from_bytes(sub.to_bytes()) == sub
        assert reshare.SubShare.from_dict(sub.to_dict()) == sub


def _bad_packages() -> list[tuple[str, bytes]]:
    _, keys, public = keygen(2, [1, 2, 3])
    data = reshare.deal(keys[1], public, [1, 2], [1, 2, 3], 2, rng_of(4))[0].to_bytes()
    return [
        ("empty", b""),
        ("truncated", data[:-1]),
        ("trailing", data + b"\x00"),
        ("count too large", b"\x00\x03" + data[2:]),
        ("small-order coefficient", data[:34] + ORDER_8),
        ("identity coefficient", data[:2] + group.IDENTITY + data[34:]),
    ]


@pytest.mark.parametrize(("case", "data"), _bad_packages(), ids=[c for c, _ in _bad_packages()])
def test_public_package_decoding_refuses_malformed_bytes(case: str, data: bytes) -> None:
    with pytest.raises(InvalidEncoding):
        reshare.ResharePublicPackage.from_bytes(data)


@pytest.mark.parametrize(
    "obj",
    [
        {},
        {"commitment": "00"},
        {"commitment": [ORDER_8.hex()]},
        {"commitment": [], "dealer": 1},
        {"commitment": ["xy" * 32]},
    ],
)
def test_public_package_decoding_refuses_malformed_dicts(obj: object) -> None:
    with pytest.raises(InvalidEncoding):
        reshare.ResharePublicPackage.from_dict(obj)


@pytest.mark.parametrize("data", [b"", b"\x00" * 33, L.to_bytes(32, "little")])
def test_sub_share_decoding_refuses_malformed_bytes(data: bytes) -> None:
    with pytest.raises(InvalidEncoding):
        reshare.SubShare.from_bytes(data)
    with pytest.raises(InvalidEncoding):
        reshare.SubShare.from_dict({"sub_share": data.hex()})


def test_sub_shares_repr_hides_them() -> None:
    _, keys, public = keygen(2, [1, 2, 3])
    _, subs = reshare.deal(keys[1], public, [1, 2], [1, 2, 3], 2, rng_of(4))
    shown = repr(subs) + str(subs)
    for sub in subs.values():
        assert sub.value.hex() not in shown
        assert repr(sub.value) not in shown
