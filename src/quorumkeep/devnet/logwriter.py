"""A devnet process's log file, rotated by size.

The daemons log to stderr, as a service manager (systemd's journal) expects; whoever starts
them owns rotation. The devnet starts each daemon with its stdout and stderr on a pipe read by
this small process (``python -m quorumkeep.devnet.logwriter PATH``), which appends to ``PATH``
and, once the file holds ``--max-bytes`` (default 10 MiB), renames ``PATH`` to ``PATH.1``
(``PATH.1`` to ``PATH.2``, …, keeping ``--keep`` old files, default 3) and starts a new
``PATH``. A daemon's logs thus take at most (keep + 1) × max-bytes on disk, whatever is
sent to its ports. The writer ends when the daemon's end of the pipe closes (the daemon
exited or was killed). Standard library only: it starts in a few milliseconds.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

MAX_BYTES = 10 * 1024 * 1024
KEEP = 3
CHUNK = 64 * 1024


def rotate(path: Path, keep: int) -> None:
    """PATH → PATH.1 → … → PATH.keep (the oldest dropped)."""
    for index in range(keep - 1, 0, -1):
        older = path.with_name(f"{path.name}.{index}")
        if older.exists():
            older.replace(path.with_name(f"{path.name}.{index + 1}"))
    if keep > 0 and path.exists():
        path.replace(path.with_name(f"{path.name}.1"))
    elif path.exists():
        path.unlink()


def copy(source: int, path: Path, max_bytes: int, keep: int) -> None:
    """Append what arrives on ``source`` to ``path`` until end of file, rotating by size."""
    out = open(path, "ab")  # noqa: SIM115 (reopened on each rotation)
    try:
        size = out.tell()
        while True:
            data = os.read(source, CHUNK)
            if not data:
                return
            while data:
                if size >= max_bytes:
                    out.close()
                    rotate(path, keep)
                    out = open(path, "ab")  # noqa: SIM115
                    size = 0
                part, data = data[: max_bytes - size], data[max_bytes - size :]
                out.write(part)
                size += len(part)
            out.flush()
    finally:
        out.close()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m quorumkeep.devnet.logwriter")
    parser.add_argument("path", type=Path)
    parser.add_argument("--max-bytes", type=int, default=MAX_BYTES)
    parser.add_argument("--keep", type=int, default=KEEP)
    args = parser.parse_args(argv)
    copy(sys.stdin.fileno(), args.path, max(1, args.max_bytes), max(0, args.keep))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
