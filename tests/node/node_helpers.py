"""Helpers for the node tests: bounded event-loop runs, fast Argon2 cost, identities.

Imported by module name (pytest puts this directory on sys.path); the name is unique so it
cannot collide with another test directory's helpers.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import Awaitable, Callable, Coroutine
from pathlib import Path
from typing import Any, TypeVar

from quorumkeep.crypto.seal import MIN_MEMLIMIT, MIN_OPSLIMIT
from quorumkeep.node.identity import NodeIdentity
from quorumkeep.node.storage_key import PassphraseKeySource, StorageKey

T = TypeVar("T")

# Tests pay Argon2id's minimum cost; the defaults are exercised by their own module's tests.
FAST = {"opslimit": MIN_OPSLIMIT, "memlimit": MIN_MEMLIMIT}


def run(coro: Coroutine[Any, Any, T], timeout: float = 30.0) -> T:
    """Run a coroutine in a fresh event loop with a hard bound on its duration."""

    async def bounded() -> T:
        async with asyncio.timeout(timeout):
            return await coro

    return asyncio.run(bounded())


async def eventually(
    predicate: Callable[[], bool | Awaitable[bool]], timeout: float = 10.0, step: float = 0.02
) -> None:
    """Wait until ``predicate`` holds, failing the test after ``timeout`` seconds."""
    async with asyncio.timeout(timeout):
        while True:
            result = predicate()
            if not isinstance(result, bool):
                result = await result
            if result:
                return
            await asyncio.sleep(step)


def fast_source(directory: Path, passphrase: bytes = b"correct horse") -> PassphraseKeySource:
    return PassphraseKeySource(directory, lambda: passphrase, **FAST)


def make_identity(directory: Path, account: str) -> tuple[NodeIdentity, StorageKey]:
    directory.mkdir(parents=True, exist_ok=True)
    key = fast_source(directory).create(os.urandom)
    return NodeIdentity.create(directory, account, key), key
