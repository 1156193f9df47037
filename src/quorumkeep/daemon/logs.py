"""Bounded logging of refusals that anyone on the network can provoke.

Every unauthenticated request that a daemon refuses (a garbage-signed backup request, a TLS
handshake that fails, a certificate that is not a peer's) used to write one log line, so a
client able to reach a port could fill the disk with them. :class:`RefusalLog` writes at most
``burst`` lines per ``interval`` seconds for each kind of refusal; the refusals it leaves out
are counted and reported with the next line written for that kind (``… (N more like this
suppressed since the last one)``). Counters and metrics still see every refusal.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass


@dataclass
class _Window:
    started: float
    written: int = 0
    suppressed: int = 0


class RefusalLog:
    """At most ``burst`` lines per ``interval`` seconds per key; the rest counted."""

    def __init__(
        self,
        logger: logging.Logger,
        *,
        burst: int = 10,
        interval: float = 60.0,
        max_keys: int = 256,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.logger = logger
        self.burst = burst
        self.interval = interval
        self.max_keys = max_keys
        self._clock = clock
        self._windows: dict[str, _Window] = {}

    def log(self, level: int, key: str, message: str, *args: object) -> bool:
        """Log ``message % args`` unless ``key`` used its burst in this interval; True if
        written."""
        now = self._clock()
        window = self._windows.get(key)
        if window is None or now - window.started >= self.interval:
            carried = 0 if window is None else window.suppressed
            if window is None and len(self._windows) >= self.max_keys:
                self._windows.pop(next(iter(self._windows)))
            window = self._windows[key] = _Window(now, 0, carried)
        if window.written >= self.burst:
            window.suppressed += 1
            return False
        window.written += 1
        if window.suppressed:
            message += " (%d more like this suppressed since the last one)"
            args = (*args, window.suppressed)
            window.suppressed = 0
        self.logger.log(level, message, *args)
        return True
