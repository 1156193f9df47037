"""The backup service's attestation rules (pure) and its evidence's binding."""

from __future__ import annotations

import asyncio
import hashlib
from typing import Any

from quorumkeep.attest.binding import Role, check_binding
from quorumkeep.attest.evidence import Evidence
from quorumkeep.backup.attestation import own_entry, reattest_reason, summary_from_view
from quorumkeep.daemon.attestation import DevQuoteSource

KEY = bytes(range(32))
WEEK = 7 * 24 * 3600


def view(record: Any, expires_in: int | None, enforced: bool = True) -> dict[str, Any]:
    entry = {
        "role": "backup_service",
        "account": "op1",
        "what": "backup_service",
        "key": KEY.hex(),
        "marked": None,
        "record": record,
        "status": "valid" if record else "no attestation",
        "expires_in": expires_in,
    }
    return {"enforced": enforced, "validity_seconds": WEEK, "entries": [entry]}


def test_reattest_reasons() -> None:
    assert reattest_reason(view(None, None, enforced=False), KEY, False) is None
    assert reattest_reason({"enforced": True, "entries": []}, KEY, False) is None  # unregistered
    assert "no attestation" in str(reattest_reason(view(None, None), KEY, True))
    assert reattest_reason(view({"tcb_status": "Development"}, WEEK - 10), KEY, True) is None
    assert "first" in str(reattest_reason(view({"x": 1}, WEEK - 10), KEY, False))
    due = reattest_reason(view({"x": 1}, WEEK // 2), KEY, True)
    assert due is not None and "expires in" in due


def test_summary_and_entry() -> None:
    v = view({"tcb_status": "Development"}, 100)
    assert own_entry(v, KEY) is not None and own_entry(v, bytes(32)) is None
    summary = summary_from_view(v, KEY)
    assert summary["status"] == "valid" and summary["expires_in"] == 100
    assert summary_from_view({"enforced": False}, KEY) == {"enforced": False}


def test_dev_evidence_binds_the_service_keys() -> None:
    source = DevQuoteSource(hashlib.sha256(b"p").digest(), "quorumkeep-backup test")
    encryption = bytes(range(32, 64))
    from quorumkeep.attest.binding import report_data

    evidence = asyncio.run(source.evidence(report_data(Role.BACKUP_SERVICE, KEY, encryption)))
    quote = Evidence.from_json(evidence).quote
    check_binding(quote[248:312], Role.BACKUP_SERVICE, KEY, encryption)
