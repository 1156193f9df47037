"""TDX DCAP verification on Intel's real sample quotes (dcap-qvl's, vendored with licence).

The clock is an argument: each test sets it inside (or outside) the collateral's window.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from quorumkeep.attest import errors
from quorumkeep.attest.evidence import Evidence, verify_quote
from quorumkeep.attest.policy import TcbPolicy
from quorumkeep.attest.tdx import TdxVerifier, collateral_window

VECTORS = Path(__file__).resolve().parents[1] / "vectors" / "tdx"
NOW = 1750700000  # 2025-06-23, inside tdx_quote_collateral.json's window
OUTDATED_NOW = 1773917931

MRTD = (
    "91eb2b44d141d4ece09f0c75c2c53d247a3c68edd7fafe8a3520c942a604a407"
    "de03ae6dc5f87f27428b2538873118b7"
)
REPORT_DATA = (
    "9a9d48e7f6799642d3d1b34e1e5e1742d4bb02dd6ddd551862c1211d35c304f9"
    "eca3efdbb481601c163cf52493d6e44aed55d51ec39b7e518fadb92c2b523f20"
)


def load(name: str) -> tuple[bytes, str]:
    return (VECTORS / name).read_bytes(), (VECTORS / f"{name}_collateral.json").read_text()


def test_sample_quote_verifies_up_to_date_with_its_measurements() -> None:
    quote, collateral = load("tdx_quote")
    report = TdxVerifier().verify(quote, collateral, NOW)
    assert report.kind == "tdx"
    assert report.tcb_status == "UpToDate"
    assert report.advisory_ids == ()
    assert report.mrtd.hex() == MRTD
    assert report.rtmr0.hex().startswith("44c0197b39157fdd")
    assert report.rtmr1.hex().startswith("0084452c01668329")
    assert report.rtmr2.hex().startswith("d833feef2cd94514")
    assert report.rtmr3 == bytes(48)
    assert report.report_data.hex() == REPORT_DATA
    assert report.collateral_expires_at == collateral_window(collateral)[1]


def test_sample_quote_with_empty_event_log_replays_rtmr3_and_has_no_app_hash() -> None:
    quote, collateral = load("tdx_quote")
    attested = verify_quote(Evidence("tdx", quote, collateral, ()), NOW)
    assert attested.app_hash is None
    assert attested.measurement.mrtd.hex() == MRTD


@pytest.mark.parametrize("offset", [48, 200, 568, 1000])
def test_tampered_quote_is_refused_as_quote_invalid(offset: int) -> None:
    # 48: TD report (MRTD region); 568: report_data; 1000: QE report.
    quote, collateral = load("tdx_quote")
    tampered = bytearray(quote)
    tampered[offset] ^= 0x01
    with pytest.raises(errors.QuoteInvalid):
        TdxVerifier().verify(bytes(tampered), collateral, NOW)


def test_truncated_quote_is_malformed() -> None:
    quote, collateral = load("tdx_quote")
    with pytest.raises(errors.QuoteMalformed):
        TdxVerifier().verify(quote[:100], collateral, NOW)


@pytest.mark.parametrize("now", [1700000000, 1752920163, 1790000000])
def test_outside_the_collateral_window_is_collateral_expired(now: int) -> None:
    # Before issue; exactly at tcb_info.nextUpdate (2025-07-19T10:16:03Z); long after.
    quote, collateral = load("tdx_quote")
    with pytest.raises(errors.CollateralExpired):
        TdxVerifier().verify(quote, collateral, now)


def test_outdated_tcb_is_refused_as_tcb_outdated() -> None:
    quote, collateral = load("tdx_quote_outdated")
    with pytest.raises(errors.TcbOutdated):
        TdxVerifier().verify(quote, collateral, OUTDATED_NOW)


def test_collateral_of_another_platform_is_a_mismatch() -> None:
    quote, _ = load("tdx_quote")
    _, other = load("tdx_quote_outdated")
    with pytest.raises(errors.CollateralMismatch):
        TdxVerifier().verify(quote, other, OUTDATED_NOW)


def test_malformed_collateral() -> None:
    quote, collateral = load("tdx_quote")
    with pytest.raises(errors.CollateralMalformed):
        TdxVerifier().verify(quote, "{}", NOW)
    obj = json.loads(collateral)
    obj["tcb_info_signature"] = "zz"
    with pytest.raises(errors.AttestationError):
        TdxVerifier().verify(quote, json.dumps(obj), NOW)


def test_sgx_quote_is_not_tdx() -> None:
    quote, collateral = load("sgx_quote")
    with pytest.raises(errors.NotTdx):
        TdxVerifier().verify(quote, collateral, 1752836171)


def test_default_policy_refuses_what_a_wider_voted_policy_accepts() -> None:
    # The SGX sample's real status and advisories (see tdx/README.md) against the policies.
    status, ids = "ConfigurationAndSWHardeningNeeded", ("INTEL-SA-00289", "INTEL-SA-00615")
    with pytest.raises(errors.TcbNotAllowed):
        TcbPolicy().check(status, ids)
    partial = TcbPolicy(frozenset({"UpToDate", status}), frozenset({"INTEL-SA-00289"}))
    with pytest.raises(errors.TcbNotAllowed, match="INTEL-SA-00615"):
        partial.check(status, ids)
    TcbPolicy(frozenset({"UpToDate", status}), frozenset(ids)).check(status, ids)
    with pytest.raises(errors.TcbOutdated):
        TcbPolicy().check("OutOfDate", ())


def test_policy_problems() -> None:
    assert TcbPolicy().problem() is None
    assert TcbPolicy(frozenset({"SWHardeningNeeded"})).problem() is not None
    assert TcbPolicy(frozenset({"UpToDate", "Revoked"})).problem() is not None
    assert TcbPolicy(frozenset({"UpToDate", "Nope"})).problem() is not None
    assert TcbPolicy(frozenset({"UpToDate"}), frozenset({"CVE-1"})).problem() is not None


def test_real_quote_presented_for_our_keys_is_a_report_data_mismatch() -> None:
    # The sample quote's report_data commits to something else: it cannot attest our keys.
    from quorumkeep.attest.binding import Role
    from quorumkeep.attest.evidence import verify_evidence

    quote, collateral = load("tdx_quote")
    ev = Evidence("tdx", quote, collateral, ())
    with pytest.raises(errors.ReportDataMismatch):
        verify_evidence(ev, Role.NODE, bytes(range(32)), bytes(range(32, 64)), NOW)


@settings(max_examples=60, deadline=None)
@given(st.data())
def test_any_mutation_is_refused_with_a_typed_error_never_another_exception(
    data: st.DataObject,
) -> None:
    # A contract call must never turn a malformed quote into an unexpected exception.
    quote, collateral = load("tdx_quote")
    mutated = bytearray(quote)
    for _ in range(data.draw(st.integers(1, 4))):
        i = data.draw(st.integers(0, len(mutated) - 1))
        mutated[i] = data.draw(st.integers(0, 255))
    cut = data.draw(st.integers(0, len(mutated)))
    candidate = bytes(mutated[: cut if data.draw(st.booleans()) else len(mutated)])
    try:
        report = TdxVerifier().verify(candidate, collateral, NOW)
    except errors.AttestationError:
        return
    # Only bytes outside the signed parts (the certification data's padding) may change.
    assert report.mrtd.hex() == MRTD and report.report_data.hex() == REPORT_DATA


@settings(max_examples=30, deadline=None)
@given(st.binary(max_size=6000))
def test_random_bytes_are_refused_with_a_typed_error(blob: bytes) -> None:
    _, collateral = load("tdx_quote")
    with pytest.raises(errors.AttestationError):
        TdxVerifier().verify(blob, collateral, NOW)
