"""Reading the contract's state JSON, and waiting for it to reach a condition.

Waiting follows the ledger's long-poll event stream: the state is re-read after every
batch of contract events, never on a timer, and every wait has a deadline.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any, TypeVar

from quorumkeep.devnet.errors import DevnetError
from quorumkeep.ledger.client import LedgerClient

T = TypeVar("T")
State = dict[str, Any]

POLL_SLICE = 2.0
"""Longest single long-poll, so liveness checks (``on_tick``) run at least this often."""


def protocol(state: State) -> State:
    value: State = state["protocol_state"]
    return value


def protocol_name(state: State) -> str:
    return str(protocol(state)["state"])


def serving(state: State) -> State | None:
    """The Running record whose participants sign now (None before init)."""
    p = protocol(state)
    kind = p["state"]
    if kind == "Running":
        return p
    if kind == "Initializing":
        running: State = p["running"]
        return running
    if kind == "Resharing":
        previous: State = p["previous_running"]
        return previous
    return None


def epoch(state: State) -> int | None:
    running = serving(state)
    return None if running is None else int(running["epoch"])


def domain_keys(state: State) -> dict[int, str]:
    """domain id -> group public key (hex) of every domain with a key in force."""
    running = serving(state)
    if running is None:
        return {}
    return {int(d["domain_id"]): str(d["public_key"]) for d in running["domains"]}


def participants(state: State) -> list[State]:
    running = serving(state)
    return [] if running is None else list(running["participants"])


def threshold(state: State) -> int | None:
    running = serving(state)
    return None if running is None else int(running["threshold"])


def running_with_domain(domain_id: int, min_epoch: int = 0) -> Callable[[State], bool]:
    """Predicate: Running at ``min_epoch`` or later, with a key for ``domain_id``."""

    def check(state: State) -> bool:
        return (
            protocol_name(state) == "Running"
            and domain_id in domain_keys(state)
            and (epoch(state) or 0) >= min_epoch
        )

    return check


def wait_for(
    client: LedgerClient,
    predicate: Callable[[State], T],
    *,
    timeout: float,
    on_tick: Callable[[State], None] | None = None,
    on_timeout: Callable[[State], str] | None = None,
) -> T:
    """Return ``predicate(state)`` once it is truthy; DevnetError after ``timeout`` s.

    ``on_tick(state)`` runs after each unsuccessful check (raise there to give up early,
    e.g. when a process died); ``on_timeout(state)`` words the timeout error.
    """
    deadline = time.monotonic() + timeout
    cursor = int(client.status()["height"])
    while True:
        state: State = client.view("state")
        result = predicate(state)
        if result:
            return result
        if on_tick is not None:
            on_tick(state)
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            message = on_timeout(state) if on_timeout is not None else "condition not reached"
            raise DevnetError("timeout", f"{message} (waited {timeout:g} s)")
        _, cursor = client.events(cursor, timeout=min(remaining, POLL_SLICE))
