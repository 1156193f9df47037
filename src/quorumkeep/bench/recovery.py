"""Recovery time objective: seconds from ``start_node_migration`` to ``conclude_node_migration``.

``run`` plays the demo's scenarios (:mod:`quorumkeep.devnet.demo`) on a fresh devnet in a
temporary directory — a 4-node, 3-of-4 network with a backup service per operator — and
reports, per scenario, the ledger time of every migration: from the timestamp of the block
holding the operator's ``start_node_migration`` to that of the block holding the new node's
``conclude_node_migration``. In between, the backup service sees the migration on the
contract's event stream, pushes the sealed shares, and the new node verifies, stores and
concludes; the operator's own steps (starting the new machine) come before the start and
are not counted. The goal is at most ``GOAL_SECONDS`` each (the reference design's tool
polls every 60 s), and ``FAILOVER_GOAL_SECONDS`` for ``failover-to-standby``, where the
warm standby concludes from the shares it already holds (no backup service round trip).
A migration cancelled by a resharing has no such time and is counted apart. Numbers are one
run's, on whatever machine runs it; nothing here asserts on them.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from quorumkeep.devnet.demo import (
    FAILOVER_GOAL_SECONDS,
    RTO_GOAL_SECONDS,
    SCENARIOS,
    DemoReport,
    Narrator,
    goal_seconds,
    run_demo,
)

GOAL_SECONDS = RTO_GOAL_SECONDS
__all__ = ["FAILOVER_GOAL_SECONDS", "GOAL_SECONDS", "run", "summarize"]


def summarize(report: DemoReport, *, wall_seconds: float | None = None) -> dict[str, Any]:
    """The benchmark's JSON from a demo report."""
    scenarios: dict[str, Any] = {}
    for name in SCENARIOS:
        done = [m for m in report.migrations if m.scenario == name]
        if not done and name not in report.scenario_seconds:
            continue
        seconds = [m.seconds for m in done if m.seconds is not None]
        goal = goal_seconds(name)
        scenarios[name] = {
            "goal_seconds": goal,
            "migrations": len(done),
            "concluded": sum(m.concluded for m in done),
            "cancelled": sum(not m.concluded for m in done),
            "seconds": [round(s, 3) for s in seconds],
            "max_seconds": round(max(seconds), 3) if seconds else None,
            "median_seconds": round(statistics.median(seconds), 3) if seconds else None,
            "meets_goal": all(s <= goal for s in seconds) if seconds else None,
            "scenario_seconds": round(report.scenario_seconds.get(name, 0.0), 3),
        }
    timed = [s for entry in scenarios.values() for s in entry["seconds"]]
    return {
        "goal_seconds": GOAL_SECONDS,
        "scenarios": scenarios,
        "max_seconds": round(max(timed), 3) if timed else None,
        "meets_goal": bool(timed) and all(e["meets_goal"] is not False for e in scenarios.values()),
        "signatures": len(report.signatures),
        "wall_seconds": None if wall_seconds is None else round(wall_seconds, 1),
    }


def run(
    *,
    narrator: Narrator | None = None,
    directory: Path | None = None,
    scenarios: Sequence[str] = SCENARIOS,
) -> dict[str, Any]:
    """Run the scenarios once and summarize (DemoError if a step fails)."""
    started = time.monotonic()
    report = run_demo(directory, narrator or Narrator(quiet=True), scenarios)
    return summarize(report, wall_seconds=time.monotonic() - started)
