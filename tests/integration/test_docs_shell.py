"""Every ``sh`` block in docs/ runs as written.

The operator guide's blocks are run by test_recovery.py (they need a devnet and take
minutes); here every other document's ``sh`` blocks run, each document as one bash script
in the repository, with its directories and ports pointed at fresh ones through the
variables the blocks document (QK, LEDGER_DIR, LEDGER_PORT). A document whose blocks are
not listed here fails the first test, so a new runnable block cannot go untested.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from process_helpers import ROOT, free_port, run_doc, sh_blocks

pytestmark = pytest.mark.slow

DOCS = ROOT / "docs"
RUN_ELSEWHERE = {"operator-guide.md": "tests/integration/test_recovery.py"}
EXPECTED_OUTPUT = {
    "devnet.md": ['"signature"', "stopped"],
    "ledger.md": ['"protocol_state": "Running"', '"epoch": 1'],
}
SCRIPT_TIMEOUT = 300.0


def test_every_document_with_sh_blocks_is_run_by_a_test() -> None:
    with_blocks = {p.name for p in DOCS.glob("*.md") if sh_blocks(p)}
    assert with_blocks == set(EXPECTED_OUTPUT) | set(RUN_ELSEWHERE)


@pytest.mark.parametrize("name", sorted(EXPECTED_OUTPUT))
def test_sh_blocks_run_as_written(name: str, tmp_path: Path) -> None:
    output = run_doc(
        DOCS / name,
        tmp_path,
        SCRIPT_TIMEOUT,
        QK=str(tmp_path / "qk"),
        LEDGER_DIR=str(tmp_path / "ledger"),
        LEDGER_PORT=str(free_port()),
    )
    for expected in EXPECTED_OUTPUT[name]:
        assert expected in output, output[-4000:]
