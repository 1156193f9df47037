"""The demo's last scenario, ``company-gone``, on its own devnet (see test_demo's docstring):
the offline recovery signs under the network's key after every directory was deleted."""

from __future__ import annotations

from pathlib import Path

import pytest
from test_demo import LAST, check_nothing_left_running, run_demo

pytestmark = pytest.mark.slow


def test_devnet_demo_company_gone(tmp_path: Path) -> None:
    try:
        run_demo(tmp_path, [LAST])
    finally:
        check_nothing_left_running(tmp_path / "demo")
