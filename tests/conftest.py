"""Suite-wide rules.

The fast loop (``make test-fast``: ``pytest -m "not slow"``) must start no process, so a test
that starts one without the ``slow`` marker fails here with a message saying so: the marker is
checked, not remembered. Every way the suite starts a process (``subprocess``, asyncio's
subprocess transports, ``multiprocessing``) goes through ``subprocess.Popen`` or ``os.fork``.

The longest files are collected first, so the workers of ``make test`` finish together, and a
run with ``-n N`` keeps every file on one worker.
"""

from __future__ import annotations

import contextlib
import os
import subprocess
from collections.abc import Iterator
from typing import Any

import pytest

from quorumkeep.devnet import forkserver

_current: list[pytest.Item] = []
_spawned: list[str] = []
_original_popen_init = subprocess.Popen.__init__
_original_fork = os.fork


def _note(what: str) -> None:
    if _current and _current[-1].get_closest_marker("slow") is None:
        _spawned.append(what)


def _popen_init(self: subprocess.Popen[Any], *args: Any, **kwargs: Any) -> None:
    command = args[0] if args else kwargs.get("args")
    _note(f"subprocess {command!r:.120}")
    _original_popen_init(self, *args, **kwargs)


def _fork() -> int:
    _note("os.fork()")
    return _original_fork()


subprocess.Popen.__init__ = _popen_init  # type: ignore[method-assign]
os.fork = _fork

LONGEST_FIRST = (
    "integration/test_demo.py",
    "integration/test_recovery.py",
    "provider/test_provider_process.py",
    "integration/test_chaos.py",
    "contract/test_contract_machine.py",  # the longest without a process: first in test-fast
    "integration/test_devnet_network.py",
    "integration/test_docs_shell.py",
    "backup/test_api_fuzz.py",
    "integration/test_demo_company_gone.py",
)
"""The files that take longest (measured with ``--durations``), in that order. pytest-xdist
hands whole files (``--dist loadfile``) to whichever worker is free, in collection order:
starting the longest first leaves the short ones to even out the workers' ends, instead of a
long file starting last on one worker while the other sits idle. Order only: a stale list
costs time, never a check."""


def _rank(item: pytest.Item) -> int:
    path = item.path.as_posix()
    for rank, suffix in enumerate(LONGEST_FIRST):
        if path.endswith(suffix):
            return rank
    return len(LONGEST_FIRST)


def pytest_configure(config: pytest.Config) -> None:
    """``-n N`` alone means ``--dist load`` (tests of one file spread over workers), which
    breaks the files whose tests share a module-scoped network and run in file order: such a
    run keeps each file on one worker (``loadfile``), as ``make test`` asks.

    pytest-xdist would also reorder the files by their number of tests (most first), which
    puts the one-test demo file last: the order of LONGEST_FIRST is kept instead."""
    if getattr(config.option, "dist", "no") == "load":
        config.option.dist = "loadfile"
    if hasattr(config.option, "loadscopereorder"):
        config.option.loadscopereorder = False


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Longest files first; every file's tests stay together and in their order."""
    items.sort(key=_rank)  # stable


_session_resources = contextlib.ExitStack()


def pytest_collection_finish(session: pytest.Session) -> None:
    """A fork server (devnet/forkserver.py) for this run's processes, when it starts any:
    each quorumkeep process the suite starts, directly or through a devnet, is then a fork of
    one that has already imported every module (most of a process's start-up CPU). Started
    here, outside any test, so no test is charged with it."""
    if any(item.get_closest_marker("slow") for item in session.items):
        _session_resources.enter_context(forkserver.serving())


def pytest_sessionfinish() -> None:
    _session_resources.close()


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_protocol(item: pytest.Item, nextitem: pytest.Item | None) -> Iterator[None]:
    _current.append(item)
    _spawned.clear()
    try:
        yield
    finally:
        _current.pop()


@pytest.fixture(autouse=True)
def _slow_marker_checked(request: pytest.FixtureRequest) -> Iterator[None]:
    yield
    if _spawned:
        started = _spawned[0]
        _spawned.clear()
        pytest.fail(
            f"{request.node.nodeid} started a process ({started}) but is not marked "
            "@pytest.mark.slow: the fast loop (make test-fast) must start none",
            pytrace=False,
        )
