"""Every way a quote is refused: one exception class per stable error code.

The code never changes once published: the contract, the CLI (``--json``) and the node's
logs carry it so an operator can tell a tampered quote from stale collateral from an
outdated platform. Messages are one line and hold no secret (a quote holds none).
"""

from __future__ import annotations

from typing import ClassVar


class AttestationError(Exception):
    """A quote, its collateral, its event log or its binding did not verify."""

    code: ClassVar[str] = "attestation_error"

    def __init__(self, message: str) -> None:
        self.message = " ".join(message.split())
        super().__init__(self.message)

    def to_json(self) -> dict[str, str]:
        return {"code": self.code, "message": self.message}


class QuoteMalformed(AttestationError):
    """The quote bytes do not decode (wrong length, version, body type or encoding)."""

    code = "quote_malformed"


class QuoteInvalid(AttestationError):
    """A signature or hash inside the quote does not verify: the quote was altered."""

    code = "quote_invalid"


class NotTdx(AttestationError):
    """The quote verifies but is not a TDX quote (an SGX enclave quote, say)."""

    code = "not_tdx"


class CollateralMalformed(AttestationError):
    """The collateral is not the JSON that dcap-qvl reads."""

    code = "collateral_malformed"


class CollateralExpired(AttestationError):
    """The time is outside the collateral's validity (TCB info, QE identity, CRLs, certs)."""

    code = "collateral_expired"


class CollateralMismatch(AttestationError):
    """The collateral belongs to another platform (FMSPC) or its chain does not verify."""

    code = "collateral_mismatch"


class TcbOutdated(AttestationError):
    """The platform's TCB is out of date: below every level the collateral lists, or a
    status of OutOfDate that the policy does not accept."""

    code = "tcb_outdated"


class TcbNotAllowed(AttestationError):
    """The TCB status (or one of its advisories) is outside the accepted policy."""

    code = "tcb_not_allowed"


class ReportDataMismatch(AttestationError):
    """report_data does not commit to the keys the attestation is presented for."""

    code = "report_data_mismatch"


class EventLogInvalid(AttestationError):
    """The event log is malformed, an event's digest is wrong, its replay is not RTMR3,
    or the app compose hash event is missing or repeated."""

    code = "event_log_invalid"


class DevAttestationRefused(AttestationError):
    """A development quote where development attestation is not allowed."""

    code = "dev_attestation_refused"


class DevQuoteInvalid(AttestationError):
    """A development quote not signed by the allowed development platform key."""

    code = "dev_quote_invalid"


class UnknownQuoteKind(AttestationError):
    """The evidence names a quote kind no verifier handles."""

    code = "unknown_quote_kind"


ERRORS: dict[str, type[AttestationError]] = {
    cls.code: cls
    for cls in (
        QuoteMalformed,
        QuoteInvalid,
        NotTdx,
        CollateralMalformed,
        CollateralExpired,
        CollateralMismatch,
        TcbOutdated,
        TcbNotAllowed,
        ReportDataMismatch,
        EventLogInvalid,
        DevAttestationRefused,
        DevQuoteInvalid,
        UnknownQuoteKind,
    )
}
"""Every stable error code and its class."""
