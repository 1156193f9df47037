"""A devnet process's log is rotated by size: its disk use is bounded whatever it prints."""

from __future__ import annotations

import sys
import time
from pathlib import Path

import pytest

from quorumkeep.devnet import processes
from quorumkeep.devnet.processes import ProcessRecord

pytestmark = pytest.mark.slow


def test_a_chatty_process_keeps_at_most_keep_plus_one_files_of_max_bytes(tmp_path: Path) -> None:
    script = (
        "import sys\n"
        "for i in range(2000): sys.stdout.write(f'line {i:05d} ' + 'x' * 40 + chr(10))\n"
    )
    record = ProcessRecord(
        name="chatty", kind="test", argv=[sys.executable, "-c", script], log="logs/chatty.log"
    )
    processes.spawn(record, tmp_path, {}, log_max_bytes=10_000)
    log = tmp_path / "logs" / "chatty.log"
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if processes._WRITERS and all(w.poll() is not None for w in processes._WRITERS):
            break
        time.sleep(0.05)
    files = sorted(p.name for p in log.parent.iterdir())
    assert files == ["chatty.log", "chatty.log.1", "chatty.log.2", "chatty.log.3"]
    assert all(p.stat().st_size <= 10_000 for p in log.parent.iterdir())
    assert "line 01999" in log.read_text()  # the newest lines are in the current file
    assert "line 00000" not in "".join(p.read_text() for p in log.parent.iterdir())
    processes._reap(record.pid or 0)
