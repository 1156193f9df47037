"""Timeouts of the devnet commands (light: the CLI reads them without importing the rest)."""

from __future__ import annotations

DEFAULT_UP_TIMEOUT = 120.0
"""Seconds `devnet up` waits for domain 0's key (and `--resume` for health)."""
STOP_GRACE = 10.0
"""Seconds between SIGTERM and SIGKILL when stopping a process."""
START_TIMEOUT = 60.0
"""Seconds a started process has to answer its health endpoint."""
