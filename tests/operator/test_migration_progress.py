"""The migration progress model: steps, offsets, what a node's /status tells."""

from __future__ import annotations

from quorumkeep.operator.progress import (
    CANCELLED,
    CONCLUDED,
    OPEN,
    STEPS,
    MigrationProgress,
    all_done,
    holds_keyset,
    shares_received,
)

KEYSET = {"epoch": 2, "domains": [{"domain_id": 0}, {"domain_id": 3}]}


def test_seconds_is_ledger_time_between_start_and_conclusion() -> None:
    p = MigrationProgress("alice", state=OPEN, started_height=10, started_ms=1_000)
    assert p.seconds is None
    assert [p.step_reached(s) for s in STEPS] == [True, False, False, False]
    p.pushed_ms = 1_300
    assert p.step_reached("shares pushed") and not p.step_reached("imported")
    p.imported_ms = 1_400
    p.state, p.concluded_height, p.concluded_ms = CONCLUDED, 12, 1_350
    assert p.seconds == 0.35
    # seen on the node after the conclusion's block (another clock): capped at it
    assert p.step_offset("imported") == 0.35
    assert p.step_offset("shares pushed") == 0.3
    assert all(p.step_reached(s) for s in STEPS)
    body = p.to_json()
    assert body["seconds"] == 0.35 and body["concluded_height"] == 12
    assert body["steps"]["imported"] == {"reached": True, "after_seconds": 0.35}


def test_a_concluded_migration_went_through_every_step_even_unseen() -> None:
    p = MigrationProgress("alice", state=CONCLUDED, started_height=1, started_ms=0)
    p.concluded_ms = 500
    assert all(p.step_reached(s) for s in STEPS)
    assert p.step_offset("shares pushed") is None


def test_cancelled_reaches_nothing_past_the_start() -> None:
    p = MigrationProgress("alice", state=CANCELLED, started_height=1, started_ms=0)
    assert [p.step_reached(s) for s in STEPS] == [True, False, False, False]
    assert p.done and p.seconds is None
    assert all_done({"alice": p})
    assert not all_done({"alice": p, "bob": MigrationProgress("bob", state=OPEN)})


def test_node_status_reading() -> None:
    assert holds_keyset({"keysets": {"2": [0, 3]}}, KEYSET)
    assert holds_keyset({"keysets": {"1": [0], "2": [0, 3, 5]}}, KEYSET)
    assert not holds_keyset({"keysets": {"2": [0]}}, KEYSET)
    assert not holds_keyset({"keysets": {"1": [0, 3]}}, KEYSET)
    assert not holds_keyset({"keysets": {}}, KEYSET)
    assert not holds_keyset({}, KEYSET)
    assert not holds_keyset({"keysets": {"2": [0, 3]}}, None)
    assert shares_received({"migration": {"phase": "concluding", "started_height": 4}})
    assert not shares_received({"migration": {"phase": "waiting_for_shares"}})
    assert not shares_received({"migration": None})
    assert not shares_received({})
