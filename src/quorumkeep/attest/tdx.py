"""Intel TDX quotes verified with Intel DCAP collateral through ``dcap-qvl``.

``dcap-qvl`` (Phala Network's Rust quote verification library) checks, for a quote, its
collateral and a time: the PCK certificate chain up to Intel's SGX root CA and the CRLs;
the QE report's signature by the PCK key and its hash over the attestation key; the TD
report's ECDSA-P256 signature by that key; the TCB info's and QE identity's signatures
and validity windows; and matches the platform's TCB SVNs to a TCB level, giving the TCB
status and Intel advisory ids. It reads no clock and no network (the fetching helpers of
the package are never called here), so this module stays pure: time is an argument.

On top of it this module checks the quote is TDX, and that the time is before the
collateral's ``nextUpdate`` (Intel's QVL reports collateral past it as expired; dcap-qvl
only checks the CRLs' and certificates'), and maps the library's refusals to stable codes.
"""

from __future__ import annotations

import json
from datetime import datetime
from typing import Any

import dcap_qvl

from quorumkeep.attest.errors import (
    AttestationError,
    CollateralExpired,
    CollateralMalformed,
    CollateralMismatch,
    NotTdx,
    QuoteInvalid,
    QuoteMalformed,
    TcbOutdated,
)
from quorumkeep.attest.report import MR_SIZE, REPORT_DATA_SIZE, QuoteReport

KIND = "tdx"
MAX_QUOTE = 16 * 1024
MAX_COLLATERAL = 48 * 1024

# dcap-qvl reports every refusal as ValueError("Verification failed: …"); the first
# matching phrase decides the code. Order matters: specific phrases first.
_REFUSALS: tuple[tuple[tuple[str, ...], type[AttestationError]], ...] = (
    (("No matching TCB level",), TcbOutdated),
    (
        (
            "Expired",
            "expired",
            "NotValidYet",
            "in the future",
            "issue date",
            "next update",
            "nextUpdate",
        ),
        CollateralExpired,
    ),
    (
        ("Fmspc mismatch", "certificate chain", "TCB Info", "TCBInfo", "QE Identity"),
        CollateralMismatch,
    ),
    (("Failed to decode quote", "Unsupported", "Not enough data"), QuoteMalformed),
)


def _refusal(exc: Exception) -> AttestationError:
    text = " ".join(str(exc).split())
    for phrases, cls in _REFUSALS:
        if any(p in text for p in phrases):
            return cls(f"dcap-qvl: {text}")
    return QuoteInvalid(f"dcap-qvl: {text}")


def _unix(value: Any, name: str) -> int:
    if not isinstance(value, str):
        raise CollateralMalformed(f"collateral {name} is missing")
    try:
        return int(datetime.fromisoformat(value.replace("Z", "+00:00")).timestamp())
    except ValueError as exc:
        raise CollateralMalformed(f"collateral {name} is not an ISO 8601 time") from exc


def collateral_window(collateral_json: str) -> tuple[int, int]:
    """(latest issueDate, earliest nextUpdate) of the TCB info and QE identity, Unix s."""
    try:
        obj = json.loads(collateral_json)
        tcb_info = json.loads(obj["tcb_info"])
        qe_identity = json.loads(obj["qe_identity"])
    except (ValueError, TypeError, KeyError) as exc:
        raise CollateralMalformed("the collateral is not dcap-qvl's collateral JSON") from exc
    if not isinstance(tcb_info, dict) or not isinstance(qe_identity, dict):
        raise CollateralMalformed("tcb_info and qe_identity must be JSON objects")
    issued = max(
        _unix(tcb_info.get("issueDate"), "tcb_info.issueDate"),
        _unix(qe_identity.get("issueDate"), "qe_identity.issueDate"),
    )
    next_update = min(
        _unix(tcb_info.get("nextUpdate"), "tcb_info.nextUpdate"),
        _unix(qe_identity.get("nextUpdate"), "qe_identity.nextUpdate"),
    )
    return issued, next_update


def _bytes(value: Any, size: int, name: str) -> bytes:
    if not isinstance(value, bytes | bytearray) or len(value) != size:
        raise QuoteMalformed(f"the quote's {name} is not {size} bytes")
    return bytes(value)


class TdxVerifier:
    """``QuoteVerifier`` for Intel TDX DCAP quotes (v4 and v5, TD report 1.0/1.5)."""

    kind = KIND

    def verify(self, quote: bytes, collateral: str | None, now: int) -> QuoteReport:
        if collateral is None:
            raise CollateralMalformed("a TDX quote is verified against its collateral")
        if len(quote) > MAX_QUOTE:
            raise QuoteMalformed(f"the quote is longer than {MAX_QUOTE} bytes")
        if len(collateral) > MAX_COLLATERAL:
            raise CollateralMalformed(f"the collateral is longer than {MAX_COLLATERAL} bytes")
        issued, next_update = collateral_window(collateral)
        if now < issued:
            raise CollateralExpired(f"the collateral is issued after the time {now}")
        if now >= next_update:
            raise CollateralExpired(
                f"the collateral's nextUpdate {next_update} is not after the time {now}"
            )
        try:
            parsed_collateral = dcap_qvl.QuoteCollateralV3.from_json(collateral)
        except (ValueError, TypeError) as exc:
            raise CollateralMalformed(f"dcap-qvl cannot read the collateral: {exc}") from exc
        try:
            parsed = dcap_qvl.parse_quote(quote)
        except (ValueError, TypeError) as exc:
            raise QuoteMalformed(f"dcap-qvl cannot decode the quote: {exc}") from exc
        if not parsed.is_tdx():
            raise NotTdx(f"the quote is a {parsed.quote_type()} quote, not TDX")
        try:
            verified = dcap_qvl.verify(quote, parsed_collateral, now)
        except (ValueError, TypeError, RuntimeError) as exc:
            raise _refusal(exc) from exc
        # The same bytes dcap-qvl just verified: their TD report is the verified one.
        td = parsed.report
        if not hasattr(td, "mr_td"):
            raise NotTdx("the verified report is not a TD report")
        return QuoteReport(
            kind=KIND,
            tcb_status=str(verified.status),
            advisory_ids=tuple(str(a) for a in verified.advisory_ids),
            mrtd=_bytes(td.mr_td, MR_SIZE, "MRTD"),
            rtmr0=_bytes(td.rt_mr0, MR_SIZE, "RTMR0"),
            rtmr1=_bytes(td.rt_mr1, MR_SIZE, "RTMR1"),
            rtmr2=_bytes(td.rt_mr2, MR_SIZE, "RTMR2"),
            rtmr3=_bytes(td.rt_mr3, MR_SIZE, "RTMR3"),
            report_data=_bytes(td.report_data, REPORT_DATA_SIZE, "report_data"),
            collateral_expires_at=next_update,
        )
