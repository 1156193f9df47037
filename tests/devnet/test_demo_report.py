"""The demo's `--only` parsing and its JSON report, without processes."""

from __future__ import annotations

import pytest

from quorumkeep.devnet.demo import SCENARIOS, DemoError, DemoReport, ScenarioResult, parse_only
from quorumkeep.ledger.signing import Signature


def test_only_keeps_the_story_order_and_drops_repeats() -> None:
    last, first = SCENARIOS[-1], SCENARIOS[0]
    assert parse_only(f"{last}, {first},{last}") == (first, last)


@pytest.mark.parametrize("text", ["", " , ", "single-node-loss,meteor-strike", "Quorum-Loss"])
def test_only_refuses_unknown_or_empty_names(text: str) -> None:
    with pytest.raises(DemoError) as refused:
        parse_only(text)
    assert "known: " + ", ".join(SCENARIOS) in str(refused.value)


def test_report_lists_scenarios_and_labels_each_signature() -> None:
    report = DemoReport(group_public_key="ab" * 32)
    signature = Signature(
        payload=b"\x01" * 32,
        path="p/0",
        public_key=b"\x02" * 32,
        signature=b"\x03" * 64,
        request_id=1,
        domain_id=0,
        latency_s=0.01,
        submit_latency_s=0.005,
        request_height=7,
        response_height=9,
        responder="op1",
    )
    report.add_signature(signature, "setup")
    report.add_signature(signature, "quorum-loss")
    report.scenarios.append(ScenarioResult("quorum-loss", True, 1.23456))
    report.scenarios.append(ScenarioResult("full-cluster-loss", False, 0.5))
    document = report.to_json()
    assert document["scenarios"] == [
        {"name": "quorum-loss", "passed": True, "seconds": 1.235},
        {"name": "full-cluster-loss", "passed": False, "seconds": 0.5},
    ]
    assert [s["scenario"] for s in document["signatures"]] == ["setup", "quorum-loss"]
    assert document["backup_gates"] == []
    report.backup_gates.append({"scenario": "setup", "epoch": 0, "seconds": 0.5})
    assert report.to_json()["backup_gates"] == [{"scenario": "setup", "epoch": 0, "seconds": 0.5}]
    assert report.scenario_seconds == {"quorum-loss": 1.23456, "full-cluster-loss": 0.5}
