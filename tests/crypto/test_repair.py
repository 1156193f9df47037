"""Share repair (Laing–Stinson with commitments): ZF vectors, round trips, every rejection."""

from __future__ import annotations

import json
import random
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from quorumkeep.crypto import group, repair
from quorumkeep.crypto.errors import CheaterDetected, InvalidEncoding, InvalidParameters
from quorumkeep.crypto.keys import KeyPackage, PublicKeyPackage, trusted_dealer_keygen

L = group.ORDER
ORDER_8 = bytes.fromhex("c7176a703d4dd84fba3c0b760d10670f2a2053fa2c39ccc64ec7fd7792ac037a")
# ZF FROST's repair-share vectors, vendored from ../shared/vectors (tests/vectors/README.md).
VECTOR = json.loads(
    (Path(__file__).parents[1] / "vectors" / "frost-ed25519-repair-share-zf.json").read_text()
)


def rng_of(seed: int) -> Callable[[int], bytes]:
    return random.Random(seed).randbytes


def keygen(
    t: int, ids: Sequence[int], seed: int = 1
) -> tuple[dict[int, KeyPackage], PublicKeyPackage]:
    rng = rng_of(seed)
    keys, public, _ = trusted_dealer_keygen(group.random_scalar(rng), t, ids, rng)
    return keys, public


Step1 = dict[int, tuple[repair.RepairCommitment, dict[int, repair.RepairDelta]]]


def step1_all(
    keys: Mapping[int, KeyPackage],
    public: PublicKeyPackage,
    helpers: Sequence[int],
    participant: int,
    seed: int = 3,
) -> Step1:
    rng = rng_of(seed)
    return {
        i: repair.repair_share_step_1(helpers, keys[i], public, participant, rng) for i in helpers
    }


def commitments_of(step1: Step1) -> dict[int, repair.RepairCommitment]:
    return {i: out[0] for i, out in step1.items()}


def deltas_for(step1: Step1, j: int) -> dict[int, repair.RepairDelta]:
    return {i: out[1][j] for i, out in step1.items()}


def step2_all(step1: Step1, helpers: Sequence[int]) -> dict[int, repair.RepairSigma]:
    commitments = commitments_of(step1)
    return {
        j: repair.repair_share_step_2(j, helpers, deltas_for(step1, j), commitments)
        for j in helpers
    }


def run_repair(
    keys: Mapping[int, KeyPackage],
    public: PublicKeyPackage,
    helpers: Sequence[int],
    participant: int,
    seed: int = 3,
) -> KeyPackage:
    step1 = step1_all(keys, public, helpers, participant, seed)
    sigmas = step2_all(step1, helpers)
    return repair.repair_share_step_3(participant, helpers, sigmas, commitments_of(step1), public)


def s(hex_value: str) -> group.Scalar:
    return group.scalar_decode(bytes.fromhex(hex_value))


# --- ZF vectors -------------------------------------------------------------------------


def test_step_2_sums_the_vector_deltas() -> None:
    v = VECTOR["scalar_generation"]
    helpers = [1, 2, 3]
    deltas = {i: s(v[f"random_scalar_{i}"]) for i in helpers}
    me = 2
    filler = group.base_mul(group.scalar_from_int(5))
    commitments = {
        i: repair.RepairCommitment(
            {j: group.base_mul(deltas[i]) if j == me else filler for j in helpers}
        )
        for i in helpers
    }
    sigma = repair.repair_share_step_2(
        me, helpers, {i: repair.RepairDelta(d) for i, d in deltas.items()}, commitments
    )
    assert sigma.value == s(v["random_scalar_sum"])


def test_step_3_sums_the_vector_sigmas() -> None:
    """A 3-of-5 key whose share 5 is sigma_sum, and deltas whose columns sum to sigma_1..4."""
    v = VECTOR["sigma_generation"]
    helpers, r = [1, 2, 3, 4], 5
    sigmas = {j: s(v[f"sigma_{j}"]) for j in helpers}
    target = s(v["sigma_sum"])
    rng = rng_of(7)
    a1, a2 = group.random_scalar(rng), group.random_scalar(rng)
    x = group.scalar_from_int(r)
    a0 = group.scalar_sub(
        group.scalar_sub(target, group.scalar_mul(a1, x)),
        group.scalar_mul(a2, group.scalar_mul(x, x)),
    )
    keys, public, _ = trusted_dealer_keygen(a0, 3, [1, 2, 3, 4, 5], rng, coefficients=[a1, a2])
    assert keys[r].signing_share == target
    rows = {
        i: group.scalar_mul(repair.lagrange_at(r, i, helpers), keys[i].signing_share)
        for i in helpers
    }
    # a 4x4 matrix of pieces with row sums `rows` and column sums `sigmas`
    first, last = helpers[:-1], helpers[-1]
    delta = {(i, j): group.random_scalar(rng) for i in first for j in first}
    for i in first:
        delta[i, last] = group.scalar_sub(rows[i], group.scalar_sum(delta[i, j] for j in first))
    for j in helpers:
        delta[last, j] = group.scalar_sub(sigmas[j], group.scalar_sum(delta[i, j] for i in first))
    assert group.scalar_sum(delta[last, j] for j in helpers) == rows[last]
    commitments = {
        i: repair.RepairCommitment({j: group.base_mul(delta[i, j]) for j in helpers})
        for i in helpers
    }
    for j in helpers:  # step 2 reproduces the vector's sigmas from those pieces
        pieces = {i: repair.RepairDelta(delta[i, j]) for i in helpers}
        assert repair.repair_share_step_2(j, helpers, pieces, commitments).value == sigmas[j]
    repaired = repair.repair_share_step_3(
        r, helpers, {j: repair.RepairSigma(sigmas[j]) for j in helpers}, commitments, public
    )
    assert repaired.signing_share == target
    assert repaired.verifying_share == public.verifying_shares[r]


# --- repair works -----------------------------------------------------------------------


identifier = st.one_of(st.integers(1, 300), st.integers(1, L - 1))


@st.composite
def repairs(draw: st.DrawFn) -> tuple[list[int], int, int, list[int]]:
    n = draw(st.integers(3, 10))
    t = draw(st.integers(2, n - 1))
    ids = draw(st.lists(identifier, min_size=n, max_size=n, unique=True))
    r = draw(st.sampled_from(ids))
    others = [i for i in ids if i != r]
    helpers = draw(st.lists(st.sampled_from(others), min_size=t, unique=True))
    return ids, t, r, helpers


@settings(max_examples=30, deadline=None)
@given(repairs(), st.integers(0, 2**32))
def test_repaired_share_equals_the_original(
    case: tuple[list[int], int, int, list[int]], seed: int
) -> None:
    ids, t, r, helpers = case
    keys, public = keygen(t, ids, seed)
    step1 = step1_all(keys, public, helpers, r, seed + 1)
    sigmas = step2_all(step1, helpers)
    repaired = repair.repair_share_step_3(r, helpers, sigmas, commitments_of(step1), public)
    assert repaired.signing_share == keys[r].signing_share
    assert repaired.verifying_share == keys[r].verifying_share
    assert repaired.group_public_key == public.group_public_key
    assert repaired.threshold == t
    # no single piece or partial sum a helper sees is the share
    secret = keys[r].signing_share
    assert all(sigma.value != secret for sigma in sigmas.values())
    for i in helpers:
        assert all(d.value != secret for d in step1[i][1].values())


def test_step_1_pieces_sum_to_the_helpers_contribution() -> None:
    keys, public = keygen(3, [2, 4, 6, 8, 10])
    helpers = [2, 6, 10]
    commitment, deltas = repair.repair_share_step_1(helpers, keys[6], public, 4, rng_of(1))
    assert sorted(deltas) == helpers
    total = group.scalar_sum(d.value for d in deltas.values())
    assert total == group.scalar_mul(repair.lagrange_at(4, 6, helpers), keys[6].signing_share)
    assert commitment.delta_commitments == {j: group.base_mul(deltas[j].value) for j in helpers}


# --- refused parameters ----------------------------------------------------------------


@pytest.mark.parametrize(
    ("helpers", "participant", "message"),
    [
        ([1, 2], 5, "2 helpers cannot repair"),
        ([1, 2, 5], 5, "cannot help repair its own share"),
        ([1, 2, 9], 5, r"helpers \[9\] hold no share"),
        ([1, 2, 2, 3], 5, "duplicate helper"),
        ([1, 2, 3], 9, "participant 9 holds no share"),
    ],
)
def test_bad_repair_parameters_are_refused(
    helpers: list[int], participant: int, message: str
) -> None:
    keys, public = keygen(3, [1, 2, 3, 4, 5])
    with pytest.raises(InvalidParameters, match=message):
        repair.repair_share_step_1(helpers, keys[1], public, participant, rng_of(1))
    with pytest.raises(InvalidParameters, match=message):
        repair.repair_share_step_3(participant, helpers, {}, {}, public)


def test_step_1_refuses_a_non_helper_and_a_foreign_key_package() -> None:
    keys, public = keygen(2, [1, 2, 3, 4])
    with pytest.raises(InvalidParameters, match="not one of the helpers"):
        repair.repair_share_step_1([1, 2], keys[3], public, 4, rng_of(1))
    other_keys, _ = keygen(2, [1, 2, 3, 4], seed=9)
    with pytest.raises(InvalidParameters, match="does not belong"):
        repair.repair_share_step_1([1, 2], other_keys[1], public, 4, rng_of(1))


def test_step_2_refuses_a_non_helper_and_incomplete_inputs() -> None:
    keys, public = keygen(2, [1, 2, 3, 4])
    helpers = [1, 2, 3]
    step1 = step1_all(keys, public, helpers, 4)
    commitments = commitments_of(step1)
    deltas = deltas_for(step1, 2)
    with pytest.raises(InvalidParameters, match="not one of the helpers"):
        repair.repair_share_step_2(4, helpers, deltas, commitments)
    with pytest.raises(InvalidParameters, match=r"repair deltas: missing from \[3\]"):
        repair.repair_share_step_2(2, helpers, {1: deltas[1], 2: deltas[2]}, commitments)
    with pytest.raises(InvalidParameters, match=r"repair commitments: .*unexpected from \[4\]"):
        repair.repair_share_step_2(2, helpers, deltas, {**commitments, 4: commitments[1]})


# --- cheating helpers are named ---------------------------------------------------------


def test_wrong_delta_is_named_by_its_receiver() -> None:
    keys, public = keygen(3, [1, 2, 3, 4, 5])
    helpers = [1, 2, 4, 5]
    step1 = step1_all(keys, public, helpers, 3)
    deltas = step1[4][1]
    deltas[2] = repair.RepairDelta(group.scalar_add(deltas[2].value, group.ONE))
    with pytest.raises(CheaterDetected) as caught:
        repair.repair_share_step_2(2, helpers, deltas_for(step1, 2), commitments_of(step1))
    assert caught.value.culprit == 4
    # the other helpers, whose pieces from 4 are right, go on
    repair.repair_share_step_2(1, helpers, deltas_for(step1, 1), commitments_of(step1))


def test_wrong_delta_forwarded_by_a_colluding_helper_is_caught_by_the_participant() -> None:
    """Helper 2 skips its check and sums a wrong piece: its sigma no longer matches."""
    keys, public = keygen(3, [1, 2, 3, 4, 5])
    helpers = [1, 2, 4, 5]
    step1 = step1_all(keys, public, helpers, 3)
    sigmas = step2_all(step1, helpers)
    sigmas[2] = repair.RepairSigma(group.scalar_add(sigmas[2].value, group.ONE))
    with pytest.raises(CheaterDetected) as caught:
        repair.repair_share_step_3(3, helpers, sigmas, commitments_of(step1), public)
    assert caught.value.culprit == 2


def test_helper_contributing_the_wrong_amount_is_named() -> None:
    """Helper 5 splits a wrong value but commits consistently: its pieces pass step 2."""
    keys, public = keygen(3, [1, 2, 3, 4, 5])
    helpers = [1, 2, 4, 5]
    step1 = step1_all(keys, public, helpers, 3)
    forged_share = group.scalar_add(keys[5].signing_share, group.ONE)
    forged_public = PublicKeyPackage(
        public.group_public_key,
        {**public.verifying_shares, 5: group.base_mul(forged_share)},
        3,
    )
    forged_key = KeyPackage(
        5, forged_share, forged_public.verifying_shares[5], public.group_public_key, 3
    )
    step1[5] = repair.repair_share_step_1(helpers, forged_key, forged_public, 3, rng_of(8))
    sigmas = step2_all(step1, helpers)  # every piece matches its commitment
    with pytest.raises(CheaterDetected) as caught:
        repair.repair_share_step_3(3, helpers, sigmas, commitments_of(step1), public)
    assert caught.value.culprit == 5
    assert "contribution" in caught.value.reason


def test_commitment_not_covering_the_helpers_is_named() -> None:
    keys, public = keygen(2, [1, 2, 3, 4])
    helpers = [1, 2, 3]
    step1 = step1_all(keys, public, helpers, 4)
    commitment, deltas = step1[3]
    partial = dict(commitment.delta_commitments)
    del partial[1]
    step1[3] = (repair.RepairCommitment(partial), deltas)
    with pytest.raises(CheaterDetected) as caught:
        repair.repair_share_step_2(2, helpers, deltas_for(step1, 2), commitments_of(step1))
    assert caught.value.culprit == 3
    sigmas = {j: repair.RepairSigma(group.ONE) for j in helpers}
    with pytest.raises(CheaterDetected) as caught:
        repair.repair_share_step_3(4, helpers, sigmas, commitments_of(step1), public)
    assert caught.value.culprit == 3


def test_non_canonical_delta_and_sigma_are_named() -> None:
    keys, public = keygen(2, [1, 2, 3, 4])
    helpers = [1, 2, 3]
    step1 = step1_all(keys, public, helpers, 4)
    bad = repair.RepairDelta(L.to_bytes(32, "little"))
    deltas = {**deltas_for(step1, 3), 1: bad}
    with pytest.raises(CheaterDetected) as caught:
        repair.repair_share_step_2(3, helpers, deltas, commitments_of(step1))
    assert caught.value.culprit == 1
    sigmas = step2_all(step1, helpers)
    sigmas[3] = repair.RepairSigma(L.to_bytes(32, "little"))
    with pytest.raises(CheaterDetected) as caught:
        repair.repair_share_step_3(4, helpers, sigmas, commitments_of(step1), public)
    assert caught.value.culprit == 3


def test_repaired_share_failing_verification_is_rejected() -> None:
    """The final check: r's verifying share in the public package is not what the helpers'
    shares interpolate to, so the rebuilt share is refused."""
    keys, public = keygen(3, [1, 2, 3, 4, 5])
    helpers = [1, 2, 4]
    step1 = step1_all(keys, public, helpers, 3)
    sigmas = step2_all(step1, helpers)
    wrong = PublicKeyPackage(
        public.group_public_key,
        {**public.verifying_shares, 3: group.base_mul(group.scalar_from_int(42))},
        3,
    )
    with pytest.raises(InvalidParameters, match="does not match participant 3's verifying share"):
        repair.repair_share_step_3(3, helpers, sigmas, commitments_of(step1), wrong)
    repaired = repair.repair_share_step_3(3, helpers, sigmas, commitments_of(step1), public)
    assert repaired.signing_share == keys[3].signing_share


# --- wire formats and reprs ------------------------------------------------------------


def test_packages_round_trip() -> None:
    keys, public = keygen(2, [1, 2**200, L - 1])
    helpers = [2**200, L - 1]
    commitment, deltas = repair.repair_share_step_1(helpers, keys[L - 1], public, 1, rng_of(2))
    data = commitment.to_bytes()
    assert len(data) == 2 + 2 * 64
    assert repair.RepairCommitment.from_bytes(data) == commitment
    as_dict = commitment.to_dict()
    entries = as_dict["delta_commitments"]
    assert isinstance(entries, dict) and list(entries) == [str(2**200), str(L - 1)]
    assert repair.RepairCommitment.from_dict(json.loads(json.dumps(as_dict))) == commitment
    for delta in deltas.values():
        assert repair.RepairDelta.from_bytes(delta.to_bytes()) == delta
        assert repair.RepairDelta.from_dict(delta.to_dict()) == delta
    sigma = repair.RepairSigma(group.scalar_from_int(77))
    assert repair.RepairSigma.from_bytes(sigma.to_bytes()) == sigma
    assert repair.RepairSigma.from_dict(sigma.to_dict()) == sigma


def _entry(j: int, point: bytes) -> bytes:
    return j.to_bytes(32, "little") + point


G2 = group.base_mul(group.scalar_from_int(2))


@pytest.mark.parametrize(
    "data",
    [
        b"",
        b"\x00\x01" + _entry(1, G2)[:-1],
        b"\x00\x01" + _entry(1, G2) + b"\x00",
        b"\x00\x02" + _entry(2, G2) + _entry(1, G2),  # not ascending
        b"\x00\x02" + _entry(1, G2) + _entry(1, G2),  # duplicate
        b"\x00\x01" + _entry(0, G2),  # identifier 0
        b"\x00\x01" + L.to_bytes(32, "little") + G2,  # identifier >= L
        b"\x00\x01" + _entry(1, ORDER_8),
        b"\x00\x01" + _entry(1, group.IDENTITY),
    ],
)
def test_commitment_decoding_refuses_malformed_bytes(data: bytes) -> None:
    with pytest.raises(InvalidEncoding):
        repair.RepairCommitment.from_bytes(data)


@pytest.mark.parametrize(
    "obj",
    [
        {},
        {"delta_commitments": []},
        {"delta_commitments": {"1": ORDER_8.hex()}},
        {"delta_commitments": {"01": G2.hex()}},
        {"delta_commitments": {"0": G2.hex()}},
        {"delta_commitments": {"x": G2.hex()}},
        {"delta_commitments": {str(L): G2.hex()}},
        {"delta_commitments": {}, "helper": "1"},
    ],
)
def test_commitment_decoding_refuses_malformed_dicts(obj: object) -> None:
    with pytest.raises(InvalidEncoding):
        repair.RepairCommitment.from_dict(obj)


@pytest.mark.parametrize("data", [b"", b"\x00" * 31, L.to_bytes(32, "little")])
def test_delta_and_sigma_decoding_refuse_malformed_bytes(data: bytes) -> None:
    with pytest.raises(InvalidEncoding):
        repair.RepairDelta.from_bytes(data)
    with pytest.raises(InvalidEncoding):
        repair.RepairSigma.from_bytes(data)
    with pytest.raises(InvalidEncoding):
        repair.RepairDelta.from_dict({"delta": data.hex()})
    with pytest.raises(InvalidEncoding):
        repair.RepairSigma.from_dict({"sigma": data.hex()})


def test_reprs_hide_deltas_and_sigmas() -> None:
    keys, public = keygen(2, [1, 2, 3])
    step1 = step1_all(keys, public, [1, 2], 3)
    sigmas = step2_all(step1, [1, 2])
    shown = repr(step1) + repr(sigmas)
    secrets = [d.value for out in step1.values() for d in out[1].values()]
    secrets += [sg.value for sg in sigmas.values()]
    for secret in secrets:
        assert secret.hex() not in shown and repr(secret) not in shown
