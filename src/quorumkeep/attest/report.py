"""What a verified quote says: the platform's TCB status and the TD's measurements.

Both verifiers return a ``QuoteReport`` with the same fields, so everything after
verification (event log replay, binding, allow-lists, the contract's records) treats a
TDX quote and a development quote alike; only ``kind`` tells them apart.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

MR_SIZE = 48
"""MRTD and each RTMR are SHA-384 values (Intel TDX Module ABI, TDREPORT)."""

REPORT_DATA_SIZE = 64

TCB_UP_TO_DATE = "UpToDate"
TCB_DEVELOPMENT = "Development"
"""The status a development quote reports: no hardware, no TCB."""

TCB_STATUSES = frozenset(
    {
        "UpToDate",
        "SWHardeningNeeded",
        "ConfigurationNeeded",
        "ConfigurationAndSWHardeningNeeded",
        "OutOfDate",
        "OutOfDateConfigurationNeeded",
        "Revoked",
    }
)
"""The TCB statuses of Intel's TCB info (TDX/SGX PCS API, tcbLevels[].tcbStatus)."""


@dataclass(frozen=True)
class QuoteReport:
    """The verified content of one quote.

    ``collateral_expires_at`` is the earliest ``nextUpdate`` of the collateral's TCB info
    and QE identity (Unix seconds; None for development quotes): after it, the same quote
    and collateral no longer verify, so it bounds how long the result can be trusted.
    """

    kind: str
    tcb_status: str
    advisory_ids: tuple[str, ...]
    mrtd: bytes
    rtmr0: bytes
    rtmr1: bytes
    rtmr2: bytes
    rtmr3: bytes
    report_data: bytes
    collateral_expires_at: int | None = None

    def to_json(self) -> dict[str, Any]:
        return {
            "kind": self.kind,
            "tcb_status": self.tcb_status,
            "advisory_ids": list(self.advisory_ids),
            "mrtd": self.mrtd.hex(),
            "rtmr0": self.rtmr0.hex(),
            "rtmr1": self.rtmr1.hex(),
            "rtmr2": self.rtmr2.hex(),
            "rtmr3": self.rtmr3.hex(),
            "report_data": self.report_data.hex(),
            "collateral_expires_at": self.collateral_expires_at,
        }
