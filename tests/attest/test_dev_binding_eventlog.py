"""Development quotes, report_data binding and RTMR3 replay (golden bytes and rejections)."""

from __future__ import annotations

import hashlib

import pytest
from hypothesis import given
from hypothesis import strategies as st

from quorumkeep.attest import errors
from quorumkeep.attest.binding import Role, check_binding, report_data
from quorumkeep.attest.dev import (
    QUOTE_SIZE,
    DevMeasurements,
    DevVerifier,
    dev_platform_public_key,
    make_dev_quote,
)
from quorumkeep.attest.eventlog import (
    check_event_log,
    event_digest,
    parse_event_log,
    replay_rtmr3,
    runtime_event,
)
from quorumkeep.attest.evidence import Evidence, Measurement, verify_evidence

SEED = bytes(range(32))
TLS = bytes.fromhex("d75a980182b10ab7d54bfed3c964073a0ee172f3daa62325af021a68f707511a")
SIGNER = bytes.fromhex("3d4017c3e843895a92b70aa74d1b7ebc9c982ccf2ec4968cc0cd55f12af4660c")
APP = hashlib.sha256(b"quorumkeep app compose").digest()


def mr(tag: str) -> bytes:
    return hashlib.sha384(tag.encode()).digest()


def dev_evidence(role: Role = Role.NODE, keys: tuple[bytes, bytes] = (TLS, SIGNER)) -> Evidence:
    events = (runtime_event("compose-hash", APP),)
    m = DevMeasurements(mr("mrtd"), mr("r0"), mr("r1"), mr("r2"), replay_rtmr3(list(events)))
    quote = make_dev_quote(SEED, m, report_data(role, *keys))
    return Evidence("dev", quote, None, events)


def test_report_data_golden_bytes() -> None:
    rd = report_data(Role.NODE, TLS, SIGNER)
    digest = hashlib.sha384(b"quorumkeep/attest/report-data/v1" + b"\x01" + TLS + SIGNER)
    assert rd == b"\x00\x01\x01" + digest.digest() + bytes(13)
    assert len(rd) == 64


def test_binding_refuses_other_keys_other_role_other_version() -> None:
    rd = report_data(Role.NODE, TLS, SIGNER)
    check_binding(rd, Role.NODE, TLS, SIGNER)
    with pytest.raises(errors.ReportDataMismatch):
        check_binding(rd, Role.NODE, SIGNER, TLS)
    with pytest.raises(errors.ReportDataMismatch):
        check_binding(rd, Role.BACKUP_SERVICE, TLS, SIGNER)
    with pytest.raises(errors.ReportDataMismatch, match="version"):
        check_binding(b"\x00\x02" + rd[2:], Role.NODE, TLS, SIGNER)


def test_dev_quote_verifies_with_the_same_fields() -> None:
    attested = verify_evidence(
        dev_evidence(), Role.NODE, TLS, SIGNER, 0, dev_platform_public_key(SEED)
    )
    assert attested.report.kind == "dev"
    assert attested.report.tcb_status == "Development"
    assert attested.app_hash == APP
    assert attested.measurement == Measurement(mr("mrtd"), mr("r0"), mr("r1"), mr("r2"), APP)
    assert len(dev_evidence().quote) == QUOTE_SIZE == 408


def test_dev_quote_refused_without_a_dev_key() -> None:
    with pytest.raises(errors.DevAttestationRefused):
        verify_evidence(dev_evidence(), Role.NODE, TLS, SIGNER, 0, None)


def test_dev_quote_of_another_platform_or_tampered_is_invalid() -> None:
    ev = dev_evidence()
    with pytest.raises(errors.DevQuoteInvalid):
        DevVerifier(dev_platform_public_key(bytes(32))).verify(ev.quote, None, 0)
    tampered = bytearray(ev.quote)
    tampered[300] ^= 1  # report_data
    with pytest.raises(errors.DevQuoteInvalid):
        DevVerifier(dev_platform_public_key(SEED)).verify(bytes(tampered), None, 0)
    with pytest.raises(errors.QuoteMalformed):
        DevVerifier(dev_platform_public_key(SEED)).verify(ev.quote[:-1], None, 0)


def test_dev_quote_for_other_keys_is_a_report_data_mismatch() -> None:
    ev = dev_evidence(keys=(SIGNER, TLS))
    with pytest.raises(errors.ReportDataMismatch):
        verify_evidence(ev, Role.NODE, TLS, SIGNER, 0, dev_platform_public_key(SEED))


def test_event_log_rejections() -> None:
    ev = dev_evidence()
    rtmr3 = replay_rtmr3(list(ev.event_log))
    assert check_event_log(list(ev.event_log), rtmr3) == APP
    with pytest.raises(errors.EventLogInvalid, match="RTMR3"):
        check_event_log([], rtmr3)
    lying = [runtime_event("compose-hash", APP)]
    forged = type(lying[0])(3, lying[0].event_type, lying[0].digest, "compose-hash", bytes(32))
    with pytest.raises(errors.EventLogInvalid, match="digest"):
        check_event_log([forged], rtmr3)
    twice = [runtime_event("compose-hash", APP)] * 2
    with pytest.raises(errors.EventLogInvalid, match="more than one"):
        check_event_log(twice, replay_rtmr3(twice))
    with pytest.raises(errors.EventLogInvalid):
        parse_event_log([{"imr": 3}])


def test_event_digest_golden() -> None:
    expected = hashlib.sha384(b"\x01\x00\x00\x08:compose-hash:" + APP).digest()
    assert event_digest(0x08000001, "compose-hash", APP) == expected


@given(st.lists(st.tuples(st.text(max_size=20), st.binary(max_size=40)), max_size=8))
def test_event_log_json_round_trip_replays(items: list[tuple[str, bytes]]) -> None:
    events = [runtime_event(name, payload) for name, payload in items if name != "compose-hash"]
    parsed = parse_event_log([e.to_json() for e in events])
    assert parsed == events
    assert check_event_log(parsed, replay_rtmr3(events)) is None


def test_evidence_json_round_trip_and_rejections() -> None:
    ev = dev_evidence()
    assert Evidence.from_json(ev.to_json()) == ev
    with pytest.raises(errors.UnknownQuoteKind):
        Evidence.from_json({"kind": "sev", "quote": ""})
    with pytest.raises(errors.QuoteMalformed):
        Evidence.from_json({"kind": "dev", "quote": "zz"})
    with pytest.raises(errors.QuoteMalformed):
        Evidence.from_json({"kind": "dev", "quote": "", "collateral": {}})
    with pytest.raises(errors.CollateralMalformed):
        Evidence.from_json({"kind": "tdx", "quote": ""})


def test_measurement_json_and_id() -> None:
    m = Measurement(mr("a"), mr("b"), mr("c"), mr("d"), None)
    assert Measurement.from_json(m.to_json()) == m
    assert m.measurement_id != Measurement(mr("a"), mr("b"), mr("c"), mr("d"), APP).measurement_id
    with pytest.raises(ValueError):
        Measurement.from_json({**m.to_json(), "mrtd": "AB" * 48})
