"""Bounded exponential backoff with jitter: the one retry rule of every long-running loop.

A loop that retries (the node's contract calls and reads, the ledger client's event stream,
waiting for the ledger at start-up, the mesh's reconnects) waits before its n-th retry

    delay(n) = min(initial · factor^n, maximum) · (1 − jitter · u),   u ∈ [0, 1)

where ``u`` comes from an injected source of uniform randomness (tests pass a constant).
Jitter only ever shortens a wait, so ``maximum`` bounds every wait; it keeps many processes
restarted together from retrying in lockstep. A success resets the sequence.

:class:`Backoff` is the stateful sequence a hand-written loop uses (``await backoff.wait()``
after a failure, ``backoff.reset()`` after a success); :func:`retry` runs one operation until
it succeeds, fails for good, runs out of attempts or passes its deadline. This module imports
nothing from the project: any layer may use it.
"""

from __future__ import annotations

import asyncio
import random
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import TypeVar

T = TypeVar("T")

Uniform = Callable[[], float]
"""A source of uniform randomness in [0, 1) (``random.random``; tests inject a constant)."""
Sleep = Callable[[float], Awaitable[None]]
Clock = Callable[[], float]


@dataclass(frozen=True)
class BackoffPolicy:
    """The shape of a backoff sequence (see the module docstring for the formula)."""

    initial: float
    maximum: float
    factor: float = 2.0
    jitter: float = 0.0
    """Fraction of each delay that randomness may take off, in [0, 1]."""

    def __post_init__(self) -> None:
        if not 0 <= self.initial <= self.maximum:
            raise ValueError("backoff needs 0 <= initial <= maximum")
        if self.factor < 1:
            raise ValueError("backoff factor must be at least 1")
        if not 0 <= self.jitter <= 1:
            raise ValueError("backoff jitter must be in [0, 1]")

    def delay(self, retry: int, u: float = 0.0) -> float:
        """The wait before retry number ``retry`` (0-based), for a uniform draw ``u``."""
        base = min(self.initial * self.factor ** min(retry, 64), self.maximum)
        return base * (1.0 - self.jitter * min(max(u, 0.0), 1.0))


class Backoff:
    """One loop's position in a :class:`BackoffPolicy` sequence."""

    def __init__(
        self,
        policy: BackoffPolicy,
        *,
        uniform: Uniform = random.random,
        sleep: Sleep = asyncio.sleep,
    ) -> None:
        self.policy = policy
        self._uniform = uniform
        self._sleep = sleep
        self.retries = 0
        """Failures since the last :meth:`reset`."""

    def next_delay(self) -> float:
        """The wait before the next retry; advances the sequence."""
        delay = self.policy.delay(self.retries, self._uniform())
        self.retries += 1
        return delay

    async def wait(self, at_most: float | None = None) -> float:
        """Sleep the next delay (no longer than ``at_most``); returns the seconds slept."""
        delay = self.next_delay()
        if at_most is not None:
            delay = max(0.0, min(delay, at_most))
        await self._sleep(delay)
        return delay

    def reset(self) -> None:
        self.retries = 0


async def retry(
    operation: Callable[[], Awaitable[T]],
    *,
    policy: BackoffPolicy,
    retryable: Callable[[Exception], bool],
    attempts: int | None = None,
    deadline: float | None = None,
    on_retry: Callable[[Exception, float], None] | None = None,
    uniform: Uniform = random.random,
    sleep: Sleep = asyncio.sleep,
    clock: Clock = time.monotonic,
) -> T:
    """``await operation()`` until it returns. An exception that is not ``retryable``
    propagates at once; a retryable one propagates once ``attempts`` calls were made or the
    ``deadline`` (a ``clock()`` value) has passed — at least one bound is required, so the
    loop always ends. ``on_retry(exc, delay)`` is told before each wait."""
    if attempts is None and deadline is None:
        raise ValueError("retry needs attempts or a deadline")
    if attempts is not None and attempts < 1:
        raise ValueError("retry needs at least one attempt")
    backoff = Backoff(policy, uniform=uniform, sleep=sleep)
    made = 0
    while True:
        try:
            return await operation()
        except Exception as exc:
            made += 1
            if not retryable(exc) or (attempts is not None and made >= attempts):
                raise
            remaining = None if deadline is None else deadline - clock()
            if remaining is not None and remaining <= 0:
                raise
            delay = backoff.next_delay()
            if remaining is not None:
                delay = min(delay, remaining)
            if on_retry is not None:
                on_retry(exc, delay)
            await sleep(delay)
