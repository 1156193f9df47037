"""The one interface: evidence in, verified measurements out.

Evidence is what a node, backup service or key provider presents (JSON):

    {"kind": "tdx", "quote": hex, "collateral": {dcap-qvl collateral}, "event_log": [...]}
    {"kind": "dev", "quote": hex, "event_log": [...]}

``verify_evidence`` runs, in order: the kind's verifier (quote signature chain and
collateral at ``now``), the TCB policy (TDX only), the RTMR3 replay and app compose hash
(``eventlog``), and the binding of report_data to the presenter's keys (``binding``).
The first failure raises its typed error; nothing here reads a clock or does I/O.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Protocol

from quorumkeep.attest import dev, tdx
from quorumkeep.attest.binding import Role, check_binding
from quorumkeep.attest.errors import (
    CollateralMalformed,
    QuoteMalformed,
    UnknownQuoteKind,
)
from quorumkeep.attest.eventlog import RuntimeEvent, check_event_log, parse_event_log
from quorumkeep.attest.policy import STRICT, TcbPolicy
from quorumkeep.attest.report import MR_SIZE, QuoteReport

KINDS = (tdx.KIND, dev.KIND)
_MEASUREMENT_TAG = b"quorumkeep/attest/measurement/v1"


class QuoteVerifier(Protocol):
    """Verifies one kind of quote at a given time and returns its content."""

    kind: str

    def verify(self, quote: bytes, collateral: str | None, now: int) -> QuoteReport: ...


@dataclass(frozen=True)
class Evidence:
    kind: str
    quote: bytes
    collateral: str | None
    event_log: tuple[RuntimeEvent, ...]

    def to_json(self) -> dict[str, Any]:
        data: dict[str, Any] = {
            "kind": self.kind,
            "quote": self.quote.hex(),
            "event_log": [e.to_json() for e in self.event_log],
        }
        if self.collateral is not None:
            data["collateral"] = json.loads(self.collateral)
        return data

    @classmethod
    def from_json(cls, value: Any) -> Evidence:
        """Strict reader; raises the attest error of the part that is malformed."""
        if not isinstance(value, dict):
            raise QuoteMalformed("the attestation must be a JSON object")
        kind = value.get("kind")
        if kind not in KINDS:
            raise UnknownQuoteKind(f"attestation kind must be one of {', '.join(KINDS)}")
        allowed = {"kind", "quote", "event_log"} | ({"collateral"} if kind == tdx.KIND else set())
        if not set(value) <= allowed or not {"kind", "quote"} <= set(value):
            raise QuoteMalformed(f"a {kind} attestation has exactly the fields {sorted(allowed)}")
        quote_hex = value["quote"]
        if not isinstance(quote_hex, str) or len(quote_hex) > 2 * tdx.MAX_QUOTE:
            raise QuoteMalformed(f"quote must be hex of at most {tdx.MAX_QUOTE} bytes")
        try:
            quote = bytes.fromhex(quote_hex)
        except ValueError as exc:
            raise QuoteMalformed("quote is not hex") from exc
        collateral = None
        if kind == tdx.KIND:
            if not isinstance(value.get("collateral"), dict):
                raise CollateralMalformed("a tdx attestation carries its collateral object")
            collateral = json.dumps(value["collateral"], sort_keys=True)
        events = parse_event_log(value.get("event_log", []))
        return cls(kind, quote, collateral, tuple(events))


@dataclass(frozen=True)
class Measurement:
    """What an allow-list names: the TD's build (MRTD, RTMR0–2) and the app it runs.

    RTMR3 is not listed itself: it is replayed from the event log, and ``app_hash`` (the
    compose hash event's payload; None when the log has none) is what it attests.
    """

    mrtd: bytes
    rtmr0: bytes
    rtmr1: bytes
    rtmr2: bytes
    app_hash: bytes | None

    @property
    def measurement_id(self) -> str:
        """SHA-256 over the tag and the fields (app_hash prefixed by a presence byte), hex."""
        app = b"\x00" if self.app_hash is None else b"\x01" + self.app_hash
        data = _MEASUREMENT_TAG + self.mrtd + self.rtmr0 + self.rtmr1 + self.rtmr2 + app
        return hashlib.sha256(data).hexdigest()

    def to_json(self) -> dict[str, Any]:
        return {
            "mrtd": self.mrtd.hex(),
            "rtmr0": self.rtmr0.hex(),
            "rtmr1": self.rtmr1.hex(),
            "rtmr2": self.rtmr2.hex(),
            "app_hash": None if self.app_hash is None else self.app_hash.hex(),
        }

    @classmethod
    def from_json(cls, value: Any) -> Measurement:
        """Strict reader; ValueError with a one-line reason."""
        fields = {"mrtd", "rtmr0", "rtmr1", "rtmr2", "app_hash"}
        if not isinstance(value, dict) or set(value) != fields:
            raise ValueError(f"a measurement has exactly the fields {sorted(fields)}")
        app = value["app_hash"]
        return cls(
            mrtd=_lower_hex(value["mrtd"], "mrtd", MR_SIZE),
            rtmr0=_lower_hex(value["rtmr0"], "rtmr0", MR_SIZE),
            rtmr1=_lower_hex(value["rtmr1"], "rtmr1", MR_SIZE),
            rtmr2=_lower_hex(value["rtmr2"], "rtmr2", MR_SIZE),
            app_hash=None if app is None else _lower_hex(app, "app_hash", 32),
        )


def _lower_hex(value: Any, name: str, size: int) -> bytes:
    if not isinstance(value, str) or len(value) != 2 * size or value.lower() != value:
        raise ValueError(f"{name} must be {size} bytes of lowercase hex")
    try:
        return bytes.fromhex(value)
    except ValueError as exc:
        raise ValueError(f"{name} must be {size} bytes of lowercase hex") from exc


@dataclass(frozen=True)
class Attested:
    """A verified quote and what its event log attests."""

    report: QuoteReport
    app_hash: bytes | None

    @property
    def measurement(self) -> Measurement:
        r = self.report
        return Measurement(r.mrtd, r.rtmr0, r.rtmr1, r.rtmr2, self.app_hash)

    def to_json(self) -> dict[str, Any]:
        return {
            **self.report.to_json(),
            "app_hash": None if self.app_hash is None else self.app_hash.hex(),
            "measurement_id": self.measurement.measurement_id,
        }


def verifiers(dev_platform_public_key: bytes | None) -> Mapping[str, QuoteVerifier]:
    """The verifiers of a deployment: TDX always, development quotes only with a key."""
    return {tdx.KIND: tdx.TdxVerifier(), dev.KIND: dev.DevVerifier(dev_platform_public_key)}


def verify_quote(
    evidence: Evidence,
    now: int,
    dev_platform_public_key: bytes | None = None,
    policy: TcbPolicy = STRICT,
) -> Attested:
    """Verify the quote at ``now`` (Unix seconds), its TCB status and its event log."""
    verifier = verifiers(dev_platform_public_key).get(evidence.kind)
    if verifier is None:
        raise UnknownQuoteKind(f"no verifier for quote kind {evidence.kind!r}")
    report = verifier.verify(evidence.quote, evidence.collateral, now)
    if report.kind == tdx.KIND:
        policy.check(report.tcb_status, report.advisory_ids)
    app_hash = check_event_log(list(evidence.event_log), report.rtmr3)
    return Attested(report, app_hash)


def verify_evidence(
    evidence: Evidence,
    role: Role,
    key_a: bytes,
    key_b: bytes,
    now: int,
    dev_platform_public_key: bytes | None = None,
    policy: TcbPolicy = STRICT,
) -> Attested:
    """``verify_quote``, then check report_data binds ``role`` and its two public keys."""
    attested = verify_quote(evidence, now, dev_platform_public_key, policy)
    check_binding(attested.report.report_data, role, key_a, key_b)
    return attested
