"""RefusalLog: a bounded number of lines per kind of refusal, the rest counted."""

from __future__ import annotations

import logging

import pytest

from quorumkeep.daemon.logs import RefusalLog


def test_at_most_burst_lines_per_interval_and_the_rest_reported_later(
    caplog: pytest.LogCaptureFixture,
) -> None:
    now = [0.0]
    log = RefusalLog(logging.getLogger("test.refusals"), burst=3, interval=60, clock=lambda: now[0])
    with caplog.at_level(logging.INFO, "test.refusals"):
        written = [log.log(logging.WARNING, "bad_signature", "refused %s", i) for i in range(100)]
        assert written.count(True) == 3
        assert log.log(logging.WARNING, "replay", "refused replay") is True  # its own budget
        now[0] = 61.0
        assert log.log(logging.WARNING, "bad_signature", "refused %s", "late") is True
    lines = [r.getMessage() for r in caplog.records]
    assert lines == [
        "refused 0",
        "refused 1",
        "refused 2",
        "refused replay",
        "refused late (97 more like this suppressed since the last one)",
    ]


def test_the_number_of_keys_is_bounded() -> None:
    log = RefusalLog(logging.getLogger("test.refusals"), max_keys=4)
    for i in range(100):
        log.log(logging.INFO, f"k{i}", "x")
    assert len(log._windows) <= 4
