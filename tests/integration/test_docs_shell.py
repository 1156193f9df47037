"""Every ``sh`` block in docs/ runs as written.

The operator guide's blocks are run by test_recovery.py (they need a devnet and take
minutes); here every other document's ``sh`` blocks run, each document as one bash script
in the repository, with its directories and ports pointed at fresh ones through the
variables the blocks document (QK, LEDGER_DIR, LEDGER_PORT). A document whose blocks are
not listed here fails the first test, so a new runnable block cannot go untested.
"""

from __future__ import annotations

import contextlib
import os
import re
import signal
import subprocess
from pathlib import Path

import pytest

from process_helpers import free_port

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[2]
DOCS = ROOT / "docs"
RUN_ELSEWHERE = {"operator-guide.md": "tests/integration/test_recovery.py"}
EXPECTED_OUTPUT = {
    "devnet.md": ['"signature"', "stopped"],
    "ledger.md": ['"protocol_state": "Running"', '"epoch": 1'],
}
SCRIPT_TIMEOUT = 300.0


def sh_blocks(path: Path) -> list[str]:
    return re.findall(r"```sh\n(.*?)```", path.read_text("utf-8"), re.S)


def test_every_document_with_sh_blocks_is_run_by_a_test() -> None:
    with_blocks = {p.name for p in DOCS.glob("*.md") if sh_blocks(p)}
    assert with_blocks == set(EXPECTED_OUTPUT) | set(RUN_ELSEWHERE)


@pytest.mark.parametrize("name", sorted(EXPECTED_OUTPUT))
def test_sh_blocks_run_as_written(name: str, tmp_path: Path) -> None:
    script = tmp_path / f"{name}.sh"
    script.write_text("set -euo pipefail\n" + "\n".join(sh_blocks(DOCS / name)))
    env = {k: v for k, v in os.environ.items() if not k.startswith("QUORUMKEEP_")}
    env.update(
        QK=str(tmp_path / "qk"),
        LEDGER_DIR=str(tmp_path / "ledger"),
        LEDGER_PORT=str(free_port()),
    )
    run = subprocess.Popen(
        ["bash", str(script)],
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,  # its background jobs share this process group
    )
    try:
        output, _ = run.communicate(timeout=SCRIPT_TIMEOUT)
        assert run.returncode == 0, output[-4000:]
        for expected in EXPECTED_OUTPUT[name]:
            assert expected in output, output[-4000:]
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(run.pid, signal.SIGKILL)
        run.wait()
        if (tmp_path / "qk" / "devnet.json").exists():
            from quorumkeep.devnet.network import Devnet

            Devnet(tmp_path / "qk").down(grace=1.0)
