"""The `quorumkeep` command's error contract: one readable line, a non-zero exit, no traceback."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

QUORUMKEEP = Path(sys.executable).with_name("quorumkeep")


@pytest.mark.parametrize(
    "argv",
    [["bogus-command"], ["contract", "view", "state"], ["crypto", "frost-vector"]],
)
@pytest.mark.slow
def test_usage_errors_are_one_line(argv: list[str]) -> None:
    done = subprocess.run(
        [str(QUORUMKEEP), *argv], capture_output=True, text=True, timeout=60, check=False
    )
    assert done.returncode == 2
    assert done.stderr.startswith("error: ")
    assert done.stderr.count("\n") == 1
    assert "Traceback" not in done.stderr


@pytest.mark.slow
def test_no_arguments_shows_help() -> None:
    done = subprocess.run(
        [str(QUORUMKEEP)], capture_output=True, text=True, timeout=60, check=False
    )
    assert "Usage: quorumkeep" in done.stdout
    assert "Traceback" not in done.stderr
