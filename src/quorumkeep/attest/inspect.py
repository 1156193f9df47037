"""What the `quorumkeep attest` commands compute, without reading files or the clock.

``quote_from_file_bytes`` accepts a quote file's raw bytes or its hex text.
``tcb_check`` is the early warning: a quote checked against a (newer) collateral set,
reporting the TCB status it would get and whether the policy still accepts it, so an
operator learns before Intel's next TCB recovery takes effect that the platform needs an
update.
"""

from __future__ import annotations

import string
from typing import Any

from quorumkeep.attest.errors import AttestationError, QuoteMalformed
from quorumkeep.attest.policy import STRICT, TcbPolicy
from quorumkeep.attest.tdx import TdxVerifier

_HEX_DIGITS = frozenset(string.hexdigits.encode())


def quote_from_file_bytes(data: bytes) -> bytes:
    """Raw quote bytes, or hex text of them (whitespace ignored, optional 0x prefix)."""
    text = b"".join(data.split())
    if text.startswith((b"0x", b"0X")):
        text = text[2:]
    if text and all(b in _HEX_DIGITS for b in text):
        if len(text) % 2:
            raise QuoteMalformed("the hex quote has an odd number of digits")
        return bytes.fromhex(text.decode())
    if not data:
        raise QuoteMalformed("the quote file is empty")
    return data


def tcb_check(
    quote: bytes, collateral: str, now: int, policy: TcbPolicy = STRICT
) -> dict[str, Any]:
    """The quote's TCB status under ``collateral`` at ``now`` and the policy's verdict.

    The quote's own validity is checked as in ``attest verify``; a quote whose TCB is
    below every level of the collateral is reported as ``tcb_outdated`` with no status.
    """
    result: dict[str, Any] = {
        "tcb_status": None,
        "advisory_ids": [],
        "accepted": False,
        "error": None,
        "collateral_expires_at": None,
        "policy": policy.to_json(),
        "now": now,
    }
    try:
        report = TdxVerifier().verify(quote, collateral, now)
    except AttestationError as exc:
        result["error"] = exc.to_json()
        return result
    result["tcb_status"] = report.tcb_status
    result["advisory_ids"] = list(report.advisory_ids)
    result["collateral_expires_at"] = report.collateral_expires_at
    try:
        policy.check(report.tcb_status, report.advisory_ids)
    except AttestationError as exc:
        result["error"] = exc.to_json()
        return result
    result["accepted"] = True
    return result
