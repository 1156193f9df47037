"""`quorumkeep attest verify` / `tcb-status` on the real sample quotes (CLI subprocesses)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from process_helpers import run_cli

pytestmark = pytest.mark.slow

V = Path(__file__).resolve().parents[1] / "vectors" / "tdx"
Q, C = str(V / "tdx_quote"), str(V / "tdx_quote_collateral.json")


def test_verify_sample_quote_hex_too(tmp_path: Path) -> None:
    hexfile = tmp_path / "q.hex"
    hexfile.write_text((V / "tdx_quote").read_bytes().hex() + "\n")
    for quote in (Q, str(hexfile)):
        done = run_cli(
            "attest", "verify", "--quote", quote, "--collateral", C, "--now", "1750700000", "--json"
        )
        assert done.returncode == 0, done.stderr
        data = json.loads(done.stdout)
        assert data["verified"] is True
        assert data["tcb_status"] == "UpToDate"
        assert data["advisory_ids"] == []
        assert data["mrtd"].startswith("91eb2b44d141d4ec")
        assert data["report_data"].startswith("9a9d48e7f6799642")


def test_verify_refusals_have_their_codes(tmp_path: Path) -> None:
    tampered = bytearray((V / "tdx_quote").read_bytes())
    tampered[568] ^= 1
    bad = tmp_path / "bad"
    bad.write_bytes(bytes(tampered))
    cases = [
        ([str(bad), C, "1750700000"], "quote_invalid"),
        ([Q, C, "1790000000"], "collateral_expired"),
        (
            [
                str(V / "tdx_quote_outdated"),
                str(V / "tdx_quote_outdated_collateral.json"),
                "1773917931",
            ],
            "tcb_outdated",
        ),
    ]
    for (quote, collateral, now), code in cases:
        done = run_cli(
            "attest", "verify", "--quote", quote, "--collateral", collateral, "--now", now, "--json"
        )
        assert done.returncode == 1
        assert json.loads(done.stdout)["error"]["code"] == code


def test_tcb_status_early_warning_and_bad_input(tmp_path: Path) -> None:
    done = run_cli(
        "attest", "tcb-status", "--quote", Q, "--collateral", C, "--now", "1750700000", "--json"
    )
    assert done.returncode == 0
    assert json.loads(done.stdout)["accepted"] is True
    outdated = run_cli(
        "attest",
        "tcb-status",
        "--quote",
        str(V / "tdx_quote_outdated"),
        "--collateral",
        str(V / "tdx_quote_outdated_collateral.json"),
        "--now",
        "1773917931",
        "--json",
    )
    assert outdated.returncode == 1
    assert json.loads(outdated.stdout)["error"]["code"] == "tcb_outdated"
    missing = run_cli("attest", "verify", "--quote", str(tmp_path / "nope"), "--collateral", C)
    assert missing.returncode == 2
    assert missing.stderr.startswith("error: ") and missing.stderr.count("\n") == 1
