"""Child processes of a devnet: started detached, logged to a file, recognised by pid.

A pid alone proves nothing once its process is gone (the kernel reuses pids), so a
recorded process counts as *ours* only while ``/proc/PID/cmdline`` is exactly the argv we
started (or, for a process a fork server started, that server's argv: see
devnet/forkserver.py) and ``/proc/PID/stat`` shows the same start time. Every signal the
devnet sends goes through that check: it never signals a process it did not start.
"""

from __future__ import annotations

import contextlib
import os
import select
import signal
import subprocess
import sys
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from quorumkeep.devnet import forkserver, logwriter
from quorumkeep.devnet.errors import DevnetError
from quorumkeep.net import address

# Children started by this Python process, so they can be reaped (a dead child stays a
# zombie, and visible in /proc, until its parent waits for it).
_CHILDREN: dict[int, subprocess.Popen[bytes]] = {}
# The log writers of those children (each ends when its child's output closes).
_WRITERS: list[subprocess.Popen[bytes]] = []
_ENV_DROPPED_PREFIX = "QUORUMKEEP_"


def cli_argv(*args: str) -> list[str]:
    """The argv that runs ``quorumkeep ARGS…`` with this interpreter."""
    return [sys.executable, "-m", "quorumkeep.cli.main", *args]


def free_port(taken: Iterable[int] = ()) -> int:
    """:func:`quorumkeep.net.address.free_port`, refused as ``DevnetError`` ``no_free_port``."""
    try:
        return address.free_port(taken)
    except address.NoFreePort as exc:
        raise DevnetError("no_free_port", str(exc)) from None


@dataclass
class ProcessRecord:
    """One process of the devnet as recorded in devnet.json (paths relative to DIR).

    ``env_secrets`` maps an environment variable to the name of a devnet secret: the value
    is read from ``DIR/secrets`` when the process is (re)started and never recorded here.
    """

    name: str
    kind: str
    argv: list[str]
    log: str
    ports: dict[str, int] = field(default_factory=dict)
    env_secrets: dict[str, str] = field(default_factory=dict)
    account: str | None = None
    directory: str | None = None
    pid: int | None = None
    start_time: int | None = None
    retired: bool = False
    """Never started again (a replaced or decommissioned node); kept for its log."""

    def to_json(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "kind": self.kind,
            "argv": list(self.argv),
            "log": self.log,
            "ports": dict(self.ports),
            "env_secrets": dict(self.env_secrets),
            "account": self.account,
            "directory": self.directory,
            "pid": self.pid,
            "start_time": self.start_time,
            "retired": self.retired,
        }

    @classmethod
    def from_json(cls, value: Mapping[str, Any]) -> ProcessRecord:
        try:
            return cls(
                name=str(value["name"]),
                kind=str(value["kind"]),
                argv=[str(a) for a in value["argv"]],
                log=str(value["log"]),
                ports={str(k): int(v) for k, v in dict(value.get("ports") or {}).items()},
                env_secrets={
                    str(k): str(v) for k, v in dict(value.get("env_secrets") or {}).items()
                },
                account=None if value.get("account") is None else str(value["account"]),
                directory=None if value.get("directory") is None else str(value["directory"]),
                pid=None if value.get("pid") is None else int(value["pid"]),
                start_time=None if value.get("start_time") is None else int(value["start_time"]),
                retired=bool(value.get("retired", False)),
            )
        except (KeyError, TypeError, ValueError):
            raise DevnetError(
                "devnet_file_invalid", "a process record in devnet.json is invalid"
            ) from None


# --- /proc -------------------------------------------------------------------------------


def _stat_fields(pid: int) -> list[str] | None:
    """Fields of /proc/PID/stat from field 3 (state) on; None if there is no such process."""
    try:
        raw = Path(f"/proc/{pid}/stat").read_bytes()
    except OSError:
        return None
    # The command name (field 2) is parenthesised and may itself hold ")" or spaces.
    return raw[raw.rfind(b")") + 2 :].decode("ascii", "replace").split()


def process_start_time(pid: int) -> int | None:
    """Start time of ``pid`` in clock ticks after boot (field 22 of /proc/PID/stat)."""
    fields = _stat_fields(pid)
    if fields is None or len(fields) < 20:
        return None
    return int(fields[19])


def process_cmdline(pid: int) -> list[str] | None:
    try:
        raw = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return None
    return [part.decode("utf-8", "surrogateescape") for part in raw.split(b"\0")[:-1]]


def _reap(pid: int) -> None:
    child = _CHILDREN.get(pid)
    if child is not None and child.poll() is not None:
        del _CHILDREN[pid]


def _runs(cmdline: list[str] | None, argv: list[str]) -> bool:
    """Whether a process with ``cmdline`` runs ``argv``: it is ``argv``, or it is a fork of a
    fork server (which keeps the server's cmdline) and ``argv`` is one such a server starts."""
    if cmdline == argv:
        return True
    return (
        cmdline is not None
        and cmdline[:3] == [sys.executable, "-m", forkserver.MODULE]
        and argv[:2] == [sys.executable, "-m"]
    )


def is_running(record: ProcessRecord) -> bool:
    """Whether the recorded process is alive and is still the one we started."""
    if record.pid is None or record.start_time is None:
        return False
    _reap(record.pid)
    fields = _stat_fields(record.pid)
    if fields is None or fields[0] in ("Z", "X"):
        return False
    if len(fields) < 20 or int(fields[19]) != record.start_time:
        return False
    return _runs(process_cmdline(record.pid), record.argv)


# --- starting and stopping -----------------------------------------------------------------


def child_environment(secrets: Mapping[str, bytes]) -> dict[str, str]:
    """Our environment without any inherited QUORUMKEEP_* value, plus ``secrets``."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(_ENV_DROPPED_PREFIX)}
    env["PYTHONUNBUFFERED"] = "1"
    for name, value in secrets.items():
        env[name] = value.decode("utf-8")
    return env


def start_setup(
    argv: list[str], devnet_dir: Path, secrets: Mapping[str, bytes]
) -> subprocess.Popen[bytes]:
    """Start a one-shot set-up command (``node init``, ``backup init``) with its output piped,
    so several run at once (each pays its Argon2id cost) and :func:`finish_setup` reads them."""
    return forkserver.popen(
        argv,
        cwd=devnet_dir,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env=child_environment(secrets),
    )


def finish_setup(
    child: subprocess.Popen[bytes],
    log: Path,
    *,
    command: str,
    subject: str,
    code: str,
    timeout: float,
) -> bytes:
    """Wait for a set-up ``command`` run for ``subject``; its stderr is appended to ``log``.

    Returns its stdout; DevnetError ``code`` if it fails or outlasts ``timeout``.
    """
    try:
        out, err = child.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        child.kill()
        child.communicate()
        raise DevnetError(
            code, f"`{command}` for {subject} did not finish in {timeout:g} s"
        ) from None
    log.parent.mkdir(parents=True, exist_ok=True)
    with open(log, "ab") as handle:
        handle.write(f"=== devnet: {command}\n".encode() + err)
    if child.returncode != 0:
        last = err.decode("utf-8", "replace").strip().splitlines()[-1:] or ["?"]
        raise DevnetError(code, f"`{command}` for {subject} failed: {last[0]} (log: {log})")
    return out


def kill_unfinished(children: Iterable[subprocess.Popen[bytes]]) -> None:
    """Kill and reap the set-up commands still running (after a failure of another one)."""
    for child in children:
        if child.poll() is None:
            child.kill()
            child.wait()


def spawn(
    record: ProcessRecord,
    devnet_dir: Path,
    secrets: Mapping[str, bytes],
    *,
    log_max_bytes: int = logwriter.MAX_BYTES,
) -> None:
    """Start ``record.argv`` detached (own session), its output going to its log through a
    rotating log writer (devnet/logwriter.py); fills pid/start."""
    log_path = devnet_dir / record.log
    log_path.parent.mkdir(parents=True, exist_ok=True)
    with open(log_path, "ab") as log:
        stamp = time.strftime("%Y-%m-%d %H:%M:%S")
        log.write(f"=== devnet: starting {record.name} at {stamp}\n".encode())
    read_end, write_end = os.pipe()
    try:
        writer = forkserver.popen(
            [
                sys.executable,
                "-m",
                "quorumkeep.devnet.logwriter",
                str(log_path),
                "--max-bytes",
                str(log_max_bytes),
            ],
            cwd=devnet_dir,
            stdin=read_end,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,
        )
        _WRITERS.append(writer)
        child = forkserver.popen(
            record.argv,
            cwd=devnet_dir,
            stdin=subprocess.DEVNULL,
            stdout=write_end,
            stderr=subprocess.STDOUT,
            env=child_environment(secrets),
            start_new_session=True,  # a Ctrl-C in the caller's terminal does not reach it
        )
    except OSError as exc:
        raise DevnetError("spawn_failed", f"cannot start {record.name}: {exc.strerror}") from None
    except forkserver.ForkServerError as exc:
        raise DevnetError("spawn_failed", f"cannot start {record.name}: {exc}") from None
    finally:
        os.close(read_end)
        os.close(write_end)  # the writer sees end of file once the child's copy closes too
    _WRITERS[:] = [w for w in _WRITERS if w.poll() is None]
    _CHILDREN[child.pid] = child
    start_time = None
    for _ in range(100):  # /proc/PID/stat appears with the process; bounded just in case
        start_time = process_start_time(child.pid)
        if start_time is not None:
            break
        time.sleep(0.001)
    record.pid = child.pid
    record.start_time = start_time
    # The child may still be the forked interpreter for an instant: wait (bounded) until
    # its cmdline is the argv we asked for, so is_running() is true from now on.
    deadline = time.monotonic() + 5.0
    while time.monotonic() < deadline and child.poll() is None:
        if _runs(process_cmdline(child.pid), record.argv):
            return
        time.sleep(0.002)


def _wait_gone(records: list[ProcessRecord], timeout: float) -> list[ProcessRecord]:
    """Wait up to ``timeout`` s until none of ``records`` runs; returns those still running."""
    deadline = time.monotonic() + timeout
    fds: dict[int, ProcessRecord] = {}
    try:
        for record in records:
            if record.pid is None:
                continue
            try:
                fds[os.pidfd_open(record.pid)] = record
            except (OSError, AttributeError):
                continue
        while True:
            alive = [r for r in records if is_running(r)]
            remaining = deadline - time.monotonic()
            if not alive or remaining <= 0:
                return alive
            if fds:
                poller = select.poll()
                for fd in fds:
                    poller.register(fd, select.POLLIN)
                # A pidfd becomes readable when its process exits; re-check then, or soon
                # anyway (a zombie child stays "running" to /proc until reaped).
                poller.poll(min(remaining, 0.05) * 1000)
            else:
                time.sleep(min(remaining, 0.02))
    finally:
        for fd in fds:
            os.close(fd)


def send_signal(record: ProcessRecord, signum: int) -> bool:
    """Signal the recorded process if it is ours and running; False if it was not."""
    if not is_running(record):
        return False
    assert record.pid is not None
    try:
        os.kill(record.pid, signum)
    except ProcessLookupError:
        return False
    return True


def stop(records: list[ProcessRecord], *, grace: float) -> list[ProcessRecord]:
    """SIGTERM each running record, SIGKILL what is left after ``grace`` s; returns the ones
    that were running."""
    running = [r for r in records if send_signal(r, signal.SIGTERM)]
    left = _wait_gone(running, grace)
    for record in left:
        send_signal(record, signal.SIGKILL)
    still = _wait_gone(left, 5.0)
    if still:
        names = ", ".join(r.name for r in still)
        raise DevnetError("stop_failed", f"{names} did not exit even after SIGKILL")
    for record in running:
        _reap_record(record)
    return running


def kill(record: ProcessRecord) -> bool:
    """SIGKILL (no clean shutdown: the crash case); waits until it is gone."""
    if not send_signal(record, signal.SIGKILL):
        return False
    if _wait_gone([record], 5.0):
        raise DevnetError("stop_failed", f"{record.name} did not exit after SIGKILL")
    _reap_record(record)
    return True


def _reap_record(record: ProcessRecord) -> None:
    if record.pid is not None:
        child = _CHILDREN.pop(record.pid, None)
        if child is not None:
            with contextlib.suppress(subprocess.TimeoutExpired):
                child.wait(timeout=1.0)


def log_tail(path: Path, lines: int = 5) -> str:
    """The last lines of a log, for an error message pointing at it."""
    try:
        with open(path, "rb") as handle:
            handle.seek(0, os.SEEK_END)
            size = handle.tell()
            handle.seek(max(0, size - 4096))
            text = handle.read().decode("utf-8", "replace")
    except OSError:
        return ""
    return " | ".join(line.strip() for line in text.strip().splitlines()[-lines:])
