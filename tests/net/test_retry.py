"""The one backoff rule (net/retry.py): its delays, its bounds, and ``retry``'s endings.

Time is injected: sleeps are recorded, the clock is a counter, randomness a constant.
"""

from __future__ import annotations

import asyncio

import pytest

from quorumkeep.net.retry import Backoff, BackoffPolicy, retry


class Sleeps:
    """An injected sleep that advances an injected clock instead of waiting."""

    def __init__(self) -> None:
        self.now = 0.0
        self.slept: list[float] = []

    async def __call__(self, delay: float) -> None:
        self.slept.append(delay)
        self.now += delay

    def clock(self) -> float:
        return self.now


def test_delays_double_up_to_the_maximum() -> None:
    policy = BackoffPolicy(initial=0.1, maximum=1.0)
    assert [policy.delay(n) for n in range(6)] == pytest.approx([0.1, 0.2, 0.4, 0.8, 1.0, 1.0])


def test_jitter_only_shortens_and_follows_the_injected_draw() -> None:
    policy = BackoffPolicy(initial=1.0, maximum=4.0, jitter=0.5)
    assert policy.delay(0, 0.0) == 1.0
    assert policy.delay(0, 0.5) == pytest.approx(0.75)
    assert policy.delay(5, 0.999999) >= 2.0
    assert all(policy.delay(n, u / 10) <= 4.0 for n in range(10) for u in range(10))


def test_a_huge_retry_count_stays_at_the_maximum() -> None:
    assert BackoffPolicy(initial=0.1, maximum=5.0).delay(10_000) == 5.0


@pytest.mark.parametrize(
    "kwargs",
    [
        {"initial": 2.0, "maximum": 1.0},
        {"initial": -1.0, "maximum": 1.0},
        {"initial": 0.1, "maximum": 1.0, "factor": 0.5},
        {"initial": 0.1, "maximum": 1.0, "jitter": 1.5},
    ],
)
def test_a_policy_that_could_not_bound_its_waits_is_refused(kwargs: dict[str, float]) -> None:
    with pytest.raises(ValueError):
        BackoffPolicy(**kwargs)


def test_backoff_advances_on_wait_and_restarts_on_reset() -> None:
    sleeps = Sleeps()
    backoff = Backoff(BackoffPolicy(0.1, 0.4), uniform=lambda: 0.0, sleep=sleeps)

    async def run() -> None:
        for _ in range(4):
            await backoff.wait()
        backoff.reset()
        await backoff.wait()
        await backoff.wait(at_most=0.05)

    asyncio.run(run())
    assert sleeps.slept == pytest.approx([0.1, 0.2, 0.4, 0.4, 0.1, 0.05])


def test_retry_returns_the_first_success_after_transient_failures() -> None:
    sleeps = Sleeps()
    outcomes: list[Exception | str] = [OSError("down"), OSError("down"), "ok"]
    told: list[float] = []

    async def operation() -> str:
        item = outcomes.pop(0)
        if isinstance(item, Exception):
            raise item
        return item

    result = asyncio.run(
        retry(
            operation,
            policy=BackoffPolicy(0.1, 1.0),
            retryable=lambda exc: isinstance(exc, OSError),
            attempts=5,
            on_retry=lambda _exc, delay: told.append(delay),
            uniform=lambda: 0.0,
            sleep=sleeps,
        )
    )
    assert result == "ok"
    assert sleeps.slept == told == pytest.approx([0.1, 0.2])


def test_retry_raises_a_permanent_failure_at_once() -> None:
    sleeps = Sleeps()

    async def operation() -> None:
        raise ValueError("refused")

    with pytest.raises(ValueError):
        asyncio.run(
            retry(
                operation,
                policy=BackoffPolicy(0.1, 1.0),
                retryable=lambda exc: isinstance(exc, OSError),
                attempts=5,
                sleep=sleeps,
            )
        )
    assert sleeps.slept == []


def test_retry_gives_up_after_its_attempts() -> None:
    sleeps = Sleeps()
    calls = 0

    async def operation() -> None:
        nonlocal calls
        calls += 1
        raise OSError("down")

    with pytest.raises(OSError):
        asyncio.run(
            retry(
                operation,
                policy=BackoffPolicy(0.1, 1.0),
                retryable=lambda exc: True,
                attempts=3,
                uniform=lambda: 0.0,
                sleep=sleeps,
            )
        )
    assert calls == 3
    assert len(sleeps.slept) == 2


def test_retry_never_sleeps_past_its_deadline_then_gives_up() -> None:
    sleeps = Sleeps()

    async def operation() -> None:
        raise OSError("down")

    with pytest.raises(OSError):
        asyncio.run(
            retry(
                operation,
                policy=BackoffPolicy(0.1, 2.0),
                retryable=lambda exc: True,
                deadline=1.0,
                uniform=lambda: 0.0,
                sleep=sleeps,
                clock=sleeps.clock,
            )
        )
    assert sleeps.now == pytest.approx(1.0)
    assert sleeps.slept[-1] == pytest.approx(1.0 - sum(sleeps.slept[:-1]))


def test_retry_needs_a_bound() -> None:
    async def operation() -> None:
        return None

    with pytest.raises(ValueError):
        asyncio.run(retry(operation, policy=BackoffPolicy(0.1, 1.0), retryable=lambda e: True))
