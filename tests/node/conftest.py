"""Fixtures for the node tests."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest
from node_helpers import make_identity

from quorumkeep.node.identity import NodeIdentity


@pytest.fixture
def identity_factory(tmp_path: Path) -> Callable[[str], NodeIdentity]:
    def factory(account: str) -> NodeIdentity:
        index = len(list(tmp_path.iterdir()))
        return make_identity(tmp_path / f"{index}-{account}", account)[0]

    return factory
