"""The fork server (devnet/forkserver.py): a forked quorumkeep process behaves as one started
the ordinary way (arguments, directory, environment, streams, exit status, signals), every
malformed request is refused, and a start without a server falls back to an ordinary one.

Each test uses a server of its own (not the suite's), so what it checks holds by itself."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
from collections.abc import Iterator
from functools import partial
from pathlib import Path
from typing import Any

import httpx
import pytest

from process_helpers import Ledger, free_port, wait_until
from quorumkeep.devnet import forkserver, processes
from quorumkeep.devnet.processes import ProcessRecord

pytestmark = pytest.mark.slow

CLI = [sys.executable, "-m", "quorumkeep.cli.main"]
WRITER = [sys.executable, "-m", "quorumkeep.devnet.logwriter"]


@pytest.fixture
def server(monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    monkeypatch.delenv(forkserver.ENV, raising=False)
    with forkserver.serving() as path:
        assert path is not None
        yield path


def parent_of(pid: int) -> int:
    stat = Path(f"/proc/{pid}/stat").read_bytes()
    return int(stat[stat.rfind(b")") + 2 :].split()[1])


def crypto_help(columns: str) -> subprocess.CompletedProcess[str]:
    """``quorumkeep crypto --help`` at a terminal width the child reads from its environment."""
    env = {**os.environ, "COLUMNS": columns}
    argv = [*CLI, "crypto", "--help"]
    return forkserver.run(argv, capture_output=True, text=True, timeout=60, env=env)


def test_a_forked_command_has_its_arguments_environment_streams_and_status(server: str) -> None:
    narrow, wide = (crypto_help(columns) for columns in ("50", "120"))
    assert narrow.returncode == wide.returncode == 0
    assert "Usage:" in narrow.stdout and narrow.stderr == ""
    assert max(map(len, narrow.stdout.splitlines())) <= 50 < max(map(len, wide.stdout.splitlines()))
    refused = forkserver.run([*CLI, "nosuch"], capture_output=True, text=True, timeout=60)
    assert refused.returncode == 2
    assert refused.stderr == "error: No such command 'nosuch'.\n"
    with pytest.raises(subprocess.CalledProcessError):
        forkserver.run([*CLI, "nosuch"], capture_output=True, timeout=60, check=True)


def test_a_forked_process_reads_its_stdin_in_its_directory_and_is_the_servers_child(
    server: str, tmp_path: Path
) -> None:
    child = forkserver.popen([*WRITER, "out.log"], cwd=tmp_path, stdin=subprocess.PIPE)
    assert isinstance(child, forkserver.ForkedPopen)
    try:
        assert child.poll() is None
        with pytest.raises(subprocess.TimeoutExpired):
            child.wait(timeout=0.05)
        server_pid = parent_of(child.pid)
        assert server_pid != os.getpid()
        assert processes.process_cmdline(child.pid) == processes.process_cmdline(server_pid)
        assert child.stdin is not None
        child.stdin.write(b"first line\nsecond line\n")
        child.stdin.close()
        assert child.wait(timeout=30) == 0
    finally:
        child.kill()
    assert (tmp_path / "out.log").read_text() == "first line\nsecond line\n"


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGKILL])
def test_a_signal_ends_a_forked_process_with_that_signal(server: str, signum: int) -> None:
    child = forkserver.popen([*WRITER, os.devnull], stdin=subprocess.PIPE)
    child.send_signal(signum)
    assert child.wait(timeout=30) == -signum
    child.send_signal(signum)  # a process known to be gone is not signalled again
    assert child.stdin is not None
    child.stdin.close()


def raw_request(path: str, frame: bytes, fds: list[int]) -> dict[str, Any]:
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
        sock.settimeout(30)
        sock.connect(path)
        sent = socket.send_fds(sock, [frame], fds) if fds else sock.send(frame)
        if sent < len(frame):
            sock.sendall(frame[sent:])
        return forkserver._read_frame(sock)


REQUEST = {"argv": [*WRITER, os.devnull], "cwd": "/", "env": {}, "new_session": False}


@pytest.mark.parametrize(
    ("change", "fds", "error"),
    [
        ({"argv": [sys.executable, "-c", "pass"]}, 3, "argv must be"),
        ({"argv": [sys.executable, "-m", "os"]}, 3, "argv must be"),
        ({"argv": "quorumkeep.cli.main"}, 3, "argv must be"),
        ({"cwd": None}, 3, "cwd and env are required"),
        ({"env": {"A": 1}}, 3, "env must map strings to strings"),
        ({}, 2, "exactly three file descriptors"),
        ({}, 0, "exactly three file descriptors"),
    ],
)
def test_the_server_refuses_a_malformed_request_and_keeps_serving(
    server: str, change: dict[str, Any], fds: int, error: str
) -> None:
    frame = forkserver._frame({**REQUEST, **change})
    null = os.open(os.devnull, os.O_RDWR)
    try:
        assert error in raw_request(server, frame, [null] * fds)["error"]
    finally:
        os.close(null)
    assert forkserver.run([*CLI, "nosuch"], capture_output=True, timeout=60).returncode == 2


@pytest.mark.parametrize(
    ("frame", "error"),
    [
        (forkserver._HEADER.pack(2 << 20) + b"{}", "frame too large"),
        (forkserver._HEADER.pack(2) + b"[]", "not a JSON object"),
        (forkserver._HEADER.pack(3) + b"{x}", "Expecting property name"),
    ],
)
def test_the_server_refuses_an_unreadable_frame(server: str, frame: bytes, error: str) -> None:
    null = os.open(os.devnull, os.O_RDWR)
    try:
        assert error in raw_request(server, frame, [null] * 3)["error"]
    finally:
        os.close(null)


def test_a_refused_start_is_a_fork_server_error(server: str) -> None:
    with pytest.raises(forkserver.ForkServerError, match="refused to start"):
        forkserver._request(server, [sys.executable, "-m", "os"], "/", {}, False, (0, 1, 2))


def test_without_a_server_a_start_falls_back_to_an_ordinary_one(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(forkserver.ENV, str(tmp_path / "no-such-socket"))
    child = forkserver.popen([*WRITER, os.devnull], stdin=subprocess.PIPE)
    assert isinstance(child, forkserver.ForkedPopen)
    try:
        assert parent_of(child.pid) == os.getpid()  # our own child, not a server's
    finally:
        child.kill()
        assert child.wait(timeout=30) == -signal.SIGKILL
    monkeypatch.delenv(forkserver.ENV)
    assert type(forkserver.popen([*CLI, "nosuch"], stderr=subprocess.DEVNULL)) is subprocess.Popen


def test_only_quorumkeep_modules_of_this_interpreter_go_through_the_server(server: str) -> None:
    for argv in ([sys.executable, "-c", "pass"], ["python3", "-m", "quorumkeep.cli.main"]):
        child = forkserver.popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        assert type(child) is subprocess.Popen
        child.wait(timeout=60)
    with forkserver.popen([*CLI, "nosuch"], preexec_fn=os.getpid, stderr=subprocess.PIPE) as own:
        assert type(own) is subprocess.Popen
        own.communicate(timeout=60)


def test_a_devnet_process_started_by_the_server_is_recognised_as_ours(
    server: str, tmp_path: Path
) -> None:
    ledger = Ledger(tmp_path / "ledger", ("alice",)).create()
    listen = f"127.0.0.1:{free_port()}"
    argv = [*CLI, "ledger", "serve", "--data", str(ledger.directory), "--listen", listen]
    record = ProcessRecord(name="ledger", kind="test", argv=argv, log="ledger.log")
    processes.spawn(record, tmp_path, {})
    try:
        assert record.pid is not None and parent_of(record.pid) != os.getpid()
        assert processes.is_running(record)
        other = ProcessRecord(**{**record.to_json(), "argv": [sys.executable, "-c", "pass"]})
        assert not processes.is_running(other)  # not an argv a fork server starts
    finally:
        assert processes.kill(record)
    assert not processes.is_running(record)


def test_the_shim_is_the_command_tied_to_its_life_and_signals(server: str, tmp_path: Path) -> None:
    shim = forkserver.write_shim(tmp_path / "bin")
    refused = subprocess.run(
        [str(shim), "nosuch"], capture_output=True, text=True, timeout=60, cwd=tmp_path
    )
    assert refused.returncode == 2
    assert refused.stderr == "error: No such command 'nosuch'.\n"

    ledger = Ledger(tmp_path / "ledger", ("alice",)).create()
    for ending in (signal.SIGTERM, signal.SIGKILL):
        port = free_port()
        url = f"http://127.0.0.1:{port}/health"
        command = [str(shim), "ledger", "serve", "--data", str(ledger.directory)]
        serving = subprocess.Popen(
            [*command, "--listen", f"127.0.0.1:{port}"],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        try:
            wait_until(partial(answers, url), 60, "the ledger behind the shim to serve")
            serving.send_signal(ending)
            # SIGTERM is forwarded (a clean stop, exit 0); SIGKILL ends the shim, and the
            # server then kills the ledger it started.
            assert serving.wait(timeout=60) == (0 if ending == signal.SIGTERM else -ending)
            wait_until(partial(gone, url), 30, "the ledger to be gone")
        finally:
            serving.kill()
            serving.wait()


def answers(url: str) -> bool:
    try:
        return httpx.get(url, timeout=1.0).status_code == 200
    except httpx.HTTPError:
        return False


def gone(url: str) -> bool:
    return not answers(url)


def test_the_server_ends_with_its_starter_and_its_children_live_on(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv(forkserver.ENV, raising=False)
    with forkserver.serving() as path:
        assert path is not None
        child = forkserver.popen([*WRITER, os.devnull], stdin=subprocess.PIPE)
        server_pid = parent_of(child.pid)
    try:
        assert forkserver.ENV not in os.environ
        assert not os.path.exists(path)
        wait_until(lambda: not Path(f"/proc/{server_pid}").exists(), 30, "the server to exit")
        assert child.poll() is None  # still running: a devnet's nodes outlive `devnet up`
    finally:
        child.kill()
    assert child.wait(timeout=30) == 255  # its status went with the server


def test_a_server_that_cannot_start_leaves_processes_to_start_the_usual_way(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.delenv(forkserver.ENV, raising=False)
    monkeypatch.setattr(forkserver, "MODULE", "quorumkeep.devnet.no_such_module")
    with forkserver.serving() as path:
        assert path is None
        assert forkserver.ENV not in os.environ
        child = forkserver.popen([*CLI, "nosuch"], stderr=subprocess.DEVNULL)
        assert type(child) is subprocess.Popen
        assert child.wait(timeout=60) == 2
    assert "fork server did not start" in capsys.readouterr().err


def test_exit_codes_are_the_interpreters() -> None:
    assert forkserver._exit_code(None) == 0
    assert forkserver._exit_code(3) == 3
    assert forkserver._exit_code(256 + 7) == 7
    assert forkserver._exit_code("a message") == 1
