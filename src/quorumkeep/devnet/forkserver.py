"""A fork server: quorumkeep processes started by forking one that has already imported them.

Most of the CPU a quorumkeep process spends before it serves goes into importing (FastAPI,
pydantic, uvicorn, cryptography and quorumkeep's own modules: 0.4 to 0.8 s per process). A
devnet, the demo and the test suite start hundreds of them. The fork server imports every
module once; each process it starts is a ``fork()`` of it that then runs
``python -m MODULE ARGS…`` as a fresh interpreter would (its own pid, session, working
directory, environment, standard streams and exit status). It is used only where
``QUORUMKEEP_FORKSERVER`` names its socket (the suite sets it; see :func:`serving`), and only
for ``sys.executable -m quorumkeep…`` argvs; anything else, or a server that does not answer,
starts the ordinary way.

Wire (a Unix stream socket in a directory only its owner may enter; the server serves only
connections from its own uid, checked with ``SO_PEERCRED``). One connection per process:

1. client → server: one frame, a 4-byte big-endian length then that many bytes of UTF-8 JSON
   ``{"argv": [str…], "cwd": str, "env": {str: str}, "new_session": bool}``; ``argv`` is
   ``[python, "-m", MODULE, ARGS…]``. The first ``sendmsg`` of the frame carries exactly three
   file descriptors (``SCM_RIGHTS``): the child's standard input, output and error.
2. server → client: a frame ``{"pid": int}`` once the child exists, then, when it has ended and
   been reaped, a frame ``{"status": int}`` (the raw ``waitpid`` status), then the server
   closes the connection. A request it cannot read is answered ``{"error": str}``.

The environment travels over that socket as it would through ``execve``: it may hold a devnet
passphrase, so the socket never leaves its private directory and nothing of a request is
logged. The child is a fork of a process that imported modules but started no thread, created
no event loop, SSL context or key, and read no secret: Python's ``random`` is reseeded at fork,
libsodium and OpenSSL draw from the kernel. What a fresh interpreter reads from its
environment at start (``PYTHONUNBUFFERED`` aside, which the child honours for its standard
streams) is the server's.
"""

from __future__ import annotations

import atexit
import contextlib
import gc
import importlib
import io
import json
import os
import runpy
import select
import selectors
import signal
import socket
import struct
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NoReturn

ENV = "QUORUMKEEP_FORKSERVER"
"""The environment variable that names the socket of the fork server to use."""
MODULE = "quorumkeep.devnet.forkserver"
PRELOAD = (
    "quorumkeep.node.process",
    "quorumkeep.backup.process",
    "quorumkeep.provider.process",
    "quorumkeep.ledger.server",
    "quorumkeep.devnet.demo",
    "quorumkeep.devnet.logwriter",
)
"""What the server imports before it serves, beside every command group of cli/main.py:
the modules those import only when a command runs."""
_HEADER = struct.Struct(">I")
_MAX_FRAME = 1 << 20
_READ_TIMEOUT = 5.0
START_TIMEOUT = 60.0


class ForkServerError(subprocess.SubprocessError):
    """A request the fork server refused, or a reply the client could not read."""


class _Unreachable(Exception):
    """No fork server answers (not configured, or gone): start the process the usual way."""


# --- frames -------------------------------------------------------------------------------


def _frame(value: Mapping[str, Any]) -> bytes:
    body = json.dumps(value, separators=(",", ":")).encode()
    return _HEADER.pack(len(body)) + body


def _read_exact(sock: socket.socket, size: int, first: bytes = b"") -> bytes:
    data = bytearray(first)
    while len(data) < size:
        chunk = sock.recv(size - len(data))
        if not chunk:
            raise ForkServerError("connection closed mid-frame")
        data += chunk
    return bytes(data)


def _read_frame(sock: socket.socket, first: bytes = b"") -> dict[str, Any]:
    head = _read_exact(sock, _HEADER.size, first[: _HEADER.size])
    (size,) = _HEADER.unpack(head)
    if size > _MAX_FRAME:
        raise ForkServerError("frame too large")
    value = json.loads(_read_exact(sock, size, first[_HEADER.size :]))
    if not isinstance(value, dict):
        raise ForkServerError("frame is not a JSON object")
    return value


# --- server -------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Request:
    module: str
    args: list[str]
    cwd: str
    env: dict[str, str]
    new_session: bool
    tied: bool
    fds: list[int]


def _parse_request(value: Mapping[str, Any], fds: list[int]) -> _Request:
    argv, cwd, env = value.get("argv"), value.get("cwd"), value.get("env")
    if not (
        isinstance(argv, list)
        and len(argv) >= 3
        and all(isinstance(a, str) for a in argv)
        and argv[1] == "-m"
        and argv[2].startswith("quorumkeep.")
    ):
        raise ForkServerError("argv must be [python, '-m', 'quorumkeep.…', args…]")
    if not isinstance(cwd, str) or not isinstance(env, dict):
        raise ForkServerError("cwd and env are required")
    if not all(isinstance(k, str) and isinstance(v, str) for k, v in env.items()):
        raise ForkServerError("env must map strings to strings")
    if len(fds) != 3:
        raise ForkServerError("exactly three file descriptors are required")
    new_session, tied = bool(value.get("new_session")), bool(value.get("tied"))
    return _Request(argv[2], argv[3:], cwd, env, new_session, tied, fds)


def _same_user(conn: socket.socket) -> bool:
    creds = conn.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, struct.calcsize("3i"))
    uid: int = struct.unpack("3i", creds)[1]
    return uid == os.getuid()


@dataclass
class _Child:
    pid: int
    pidfd: int
    conn: socket.socket
    tied: bool


class _Server:
    """The accept loop: forks a child per request, reaps each and reports its status."""

    def __init__(self, path: str) -> None:
        self.path = path
        self.listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.listener.bind(path)
        self.listener.listen(64)
        self.selector = selectors.DefaultSelector()
        self.selector.register(self.listener, selectors.EVENT_READ, ("accept", None))
        self.selector.register(sys.stdin.fileno(), selectors.EVENT_READ, ("stdin", None))
        self.children: dict[int, _Child] = {}  # by pidfd

    def serve(self) -> _Request:
        """Serve until standard input closes (then exit); returns only in a forked child."""
        print("ready", flush=True)
        while True:
            for key, _ in self.selector.select():
                what, child = key.data
                if what == "stdin" and not os.read(sys.stdin.fileno(), 4096):
                    with contextlib.suppress(OSError):
                        os.unlink(self.path)
                    raise SystemExit(0)
                if what == "accept":
                    request = self._accept()
                    if request is not None:
                        return request
                elif what == "ended":
                    self._reap(child)
                elif what == "client":
                    self.selector.unregister(child.conn)
                    child.tied = False
                    if not _still_open(child.conn):
                        # A tied client is gone (even SIGKILLed): its process goes with it.
                        with contextlib.suppress(ProcessLookupError):
                            os.kill(child.pid, signal.SIGKILL)

    def _accept(self) -> _Request | None:
        conn, _ = self.listener.accept()
        request = _receive(conn)
        if request is None:
            return None
        pid = os.fork()
        if pid == 0:
            self.selector.close()
            self.listener.close()
            conn.close()
            for other in self.children.values():
                os.close(other.pidfd)
                other.conn.close()
            return request
        for fd in request.fds:
            os.close(fd)
        child = _Child(pid, os.pidfd_open(pid), conn, request.tied)
        self.children[child.pidfd] = child
        self.selector.register(child.pidfd, selectors.EVENT_READ, ("ended", child))
        try:
            conn.sendall(_frame({"pid": pid}))
        except OSError:
            child.tied = False
        if child.tied:
            self.selector.register(conn, selectors.EVENT_READ, ("client", child))
        return None

    def _reap(self, child: _Child) -> None:
        del self.children[child.pidfd]
        self.selector.unregister(child.pidfd)
        os.close(child.pidfd)
        if child.tied:
            self.selector.unregister(child.conn)
        _, status = os.waitpid(child.pid, 0)
        with contextlib.suppress(OSError):
            child.conn.sendall(_frame({"status": status}))
        child.conn.close()


def _still_open(conn: socket.socket) -> bool:
    """Whether a readable connection is still open (a client sends nothing after its
    request: readable means closed, or a client that broke the protocol, no longer watched)."""
    try:
        return bool(conn.recv(1, socket.MSG_PEEK | socket.MSG_DONTWAIT))
    except BlockingIOError:
        return True
    except OSError:
        return False


def _receive(conn: socket.socket) -> _Request | None:
    """Read one request; answers an invalid one with an error frame and closes it."""
    fds: list[int] = []
    try:
        conn.settimeout(_READ_TIMEOUT)
        if not _same_user(conn):
            raise ForkServerError("connection from another user")
        first, fds, _flags, _addr = socket.recv_fds(conn, 65536, 3)
        request = _parse_request(_read_frame(conn, first), list(fds))
        conn.settimeout(None)
        return request
    except (ForkServerError, OSError, ValueError) as exc:
        for fd in fds:
            os.close(fd)
        with contextlib.suppress(OSError):
            conn.sendall(_frame({"error": str(exc) or type(exc).__name__}))
        conn.close()
        return None


def _reopen_stdio(unbuffered: bool) -> None:
    """Standard streams over the child's descriptors 0-2, buffered as a fresh interpreter's."""
    for fd, name in ((0, "stdin"), (1, "stdout"), (2, "stderr")):
        old = getattr(sys, name)
        stream: io.TextIOWrapper
        if fd == 0:
            reader = io.FileIO(fd, "rb", closefd=False)
            stream = io.TextIOWrapper(io.BufferedReader(reader), encoding=old.encoding)
        else:
            raw = io.FileIO(fd, "wb", closefd=False)
            line = fd == 2 or (raw.isatty() and not unbuffered)
            binary: Any = raw if unbuffered else io.BufferedWriter(raw)
            stream = io.TextIOWrapper(
                binary,
                encoding=old.encoding,
                errors=old.errors,
                line_buffering=line,
                write_through=unbuffered,
            )
        setattr(sys, name, stream)
        setattr(sys, f"__{name}__", stream)


def _become(request: _Request) -> None:
    """In the forked child: take the request's session, streams, directory and environment,
    then run its module as ``python -m`` would."""
    if request.new_session:
        os.setsid()
    for target, fd in enumerate(request.fds):
        os.dup2(fd, target)
    for fd in set(request.fds) - {0, 1, 2}:
        os.close(fd)
    os.chdir(request.cwd)
    os.environ.clear()
    os.environ.update(request.env)
    _reopen_stdio(bool(request.env.get("PYTHONUNBUFFERED")))
    sys.argv = [request.module, *request.args]
    # Run as __main__ from a fresh copy, as `python -m` does (the preloaded one stays cached).
    sys.modules.pop(request.module, None)
    code = 0
    try:
        runpy.run_module(request.module, run_name="__main__", alter_sys=True)
    except SystemExit as exc:
        code = _exit_code(exc.code)
    except BaseException:  # what the interpreter does with an uncaught exception
        sys.excepthook(*sys.exc_info())
        code = 1
    _exit(code)


def _exit_code(value: object) -> int:
    """``SystemExit.code`` as the interpreter turns it into an exit status."""
    if value is None:
        return 0
    if isinstance(value, int):
        return value & 0xFF
    print(value, file=sys.stderr)
    return 1


def _exit(code: int) -> None:
    """End the child as the interpreter would (non-daemon threads joined, ``atexit`` run,
    streams flushed) but without tearing down the preloaded modules one by one: that
    teardown touches every page the child shares with the server and costs more than the
    fork saved."""
    threading._shutdown()  # type: ignore[attr-defined]
    atexit._run_exitfuncs()
    for stream in (sys.stdout, sys.stderr):
        with contextlib.suppress(Exception):
            stream.flush()
    os._exit(code)


def main(argv: list[str]) -> None:
    """``python -m quorumkeep.devnet.forkserver SOCKET``: import, say ``ready``, serve."""
    try:  # the server reaps its children through pidfds (Linux 5.3 and later)
        os.close(os.pidfd_open(os.getpid()))
    except (AttributeError, OSError) as exc:
        raise SystemExit(f"fork server: pidfd_open is not available here ({exc})") from None
    from quorumkeep.cli.main import GROUPS

    for module in (*(f"quorumkeep.cli.{group}" for group in GROUPS), *PRELOAD):
        importlib.import_module(module)
    if threading.active_count() != 1:
        raise SystemExit("fork server: an import started a thread; refusing to fork")
    # What the imports allocated stays out of every child's garbage collections (which would
    # otherwise walk, and so copy, the pages the child shares with the server).
    gc.collect()
    gc.freeze()
    _become(_Server(argv[0]).serve())


# --- client -------------------------------------------------------------------------------


def _eligible(args: Any, kwargs: Mapping[str, Any]) -> bool:
    unsupported = ("preexec_fn", "pass_fds", "user", "group", "extra_groups", "umask")
    return (
        isinstance(args, (list, tuple))
        and len(args) >= 3
        and args[0] == sys.executable
        and args[1] == "-m"
        and str(args[2]).startswith("quorumkeep.")
        and not kwargs.get("shell")
        and kwargs.get("executable") is None
        and not any(kwargs.get(name) not in (None, (), -1) for name in unsupported)
    )


class ForkedPopen(subprocess.Popen):  # type: ignore[type-arg]
    """A :class:`subprocess.Popen` whose child the fork server starts and reaps: the same
    pipes, ``communicate``, ``wait``, ``poll`` and signals; its exit status arrives over the
    server connection. Falls back to an ordinary start if the server does not answer."""

    _forked = False
    _server: socket.socket | None = None

    def _execute_child(
        self,
        args: Any,
        executable: Any,
        preexec_fn: Any,
        close_fds: bool,
        pass_fds: Any,
        cwd: Any,
        env: Any,
        startupinfo: Any,
        creationflags: int,
        shell: bool,
        p2cread: int,
        p2cwrite: int,
        c2pread: int,
        c2pwrite: int,
        errread: int,
        errwrite: int,
        restore_signals: bool,
        gid: Any,
        gids: Any,
        uid: Any,
        umask: int,
        start_new_session: bool,
        process_group: Any,
    ) -> None:
        path = os.environ.get(ENV, "")
        try:
            self._server, self.pid = _request(
                path,
                [str(a) for a in args],
                os.fspath(cwd) if cwd is not None else os.getcwd(),
                dict(os.environ if env is None else env),
                bool(start_new_session),
                (
                    p2cread if p2cread != -1 else 0,
                    c2pwrite if c2pwrite != -1 else 1,
                    errwrite if errwrite != -1 else 2,
                ),
            )
        except _Unreachable:
            super()._execute_child(  # type: ignore[misc]
                args, executable, preexec_fn, close_fds, pass_fds, cwd, env, startupinfo,
                creationflags, shell, p2cread, p2cwrite, c2pread, c2pwrite, errread, errwrite,
                restore_signals, gid, gids, uid, umask, start_new_session, process_group,
            )  # fmt: skip
            return
        self._forked = self._child_created = True
        self._close_pipe_fds(p2cread, p2cwrite, c2pread, c2pwrite, errread, errwrite)  # type: ignore[attr-defined]

    def _status(self, block: bool) -> int | None:
        """The raw wait status once the server reports it; None while the child runs."""
        server = self._server
        if server is not None and server.fileno() != -1:
            if not block and not select.select([server], [], [], 0)[0]:
                return None
            try:
                value = _read_frame(server)
            except (ForkServerError, OSError, ValueError):
                value = {}
            server.close()
            status = value.get("status")
            if isinstance(status, int):
                return status
        # The server went away without a status: it can no longer be known.
        return _wait_gone_status(self.pid, block)

    def _try_wait(self, wait_flags: int) -> tuple[int, int]:
        if not self._forked:
            return super()._try_wait(wait_flags)  # type: ignore[misc,no-any-return]
        status = self._status(block=not (wait_flags & os.WNOHANG))
        return (0, 0) if status is None else (self.pid, status)

    def _internal_poll(self, _deadstate: int | None = None, **_: Any) -> int | None:
        if not self._forked:
            return super()._internal_poll(_deadstate)  # type: ignore[misc,no-any-return]
        if self.returncode is None and self._waitpid_lock.acquire(False):  # type: ignore[attr-defined]
            try:
                if self.returncode is None:
                    status = self._status(block=False)
                    if status is not None:
                        self._handle_exitstatus(status)  # type: ignore[attr-defined]
            finally:
                self._waitpid_lock.release()  # type: ignore[attr-defined]
        return self.returncode


def _wait_gone_status(pid: int, block: bool) -> int | None:
    """Status of a child whose server went away: 255 once it is gone (unknowable)."""
    while True:
        try:
            state = Path(f"/proc/{pid}/stat").read_bytes().rsplit(b")", 1)[1].split()[0]
        except OSError:
            state = b"X"
        if state in (b"Z", b"X"):
            return 255 << 8
        if not block:
            return None
        time.sleep(0.05)


def _request(
    path: str,
    argv: list[str],
    cwd: str,
    env: dict[str, str],
    new_session: bool,
    fds: tuple[int, int, int],
    *,
    tied: bool = False,
) -> tuple[socket.socket, int]:
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        sock.settimeout(START_TIMEOUT)
        try:
            sock.connect(path)
        except OSError:
            raise _Unreachable(path) from None
        frame = _frame(
            {"argv": argv, "cwd": cwd, "env": env, "new_session": new_session, "tied": tied}
        )
        sent = socket.send_fds(sock, [frame], list(fds))
        if sent < len(frame):
            sock.sendall(frame[sent:])
        reply = _read_frame(sock)
        pid = reply.get("pid")
        if not isinstance(pid, int):
            message = str(reply.get("error", "no pid in the reply"))
            raise ForkServerError(f"the fork server refused to start {argv[2]}: {message}")
        sock.settimeout(None)
        return sock, pid
    except BaseException:
        sock.close()
        raise


FORWARDED = (
    signal.SIGTERM,
    signal.SIGINT,
    signal.SIGHUP,
    signal.SIGQUIT,
    signal.SIGUSR1,
    signal.SIGUSR2,
)


def delegate(args: list[str]) -> NoReturn:
    """Be ``quorumkeep ARGS`` through the fork server: the child gets this process's
    standard streams, directory and environment; signals sent here are forwarded to it; its
    exit status becomes this process's; and if this process dies, even by SIGKILL, the
    server kills the child (a *tied* request). Without a server, exec the command."""
    argv = [sys.executable, "-m", "quorumkeep.cli.main", *args]
    try:
        server, pid = _request(
            os.environ.get(ENV, ""), argv, os.getcwd(), dict(os.environ), False, (0, 1, 2),
            tied=True,
        )  # fmt: skip
    except _Unreachable:
        os.execv(sys.executable, argv)

    def forward(signum: int, _frame: object) -> None:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signum)

    for signum in FORWARDED:
        signal.signal(signum, forward)
    try:
        status = _read_frame(server).get("status")
    except (ForkServerError, OSError, ValueError):
        status = None
    code = os.waitstatus_to_exitcode(status) if isinstance(status, int) else 255
    if code < 0:  # ended by a signal: end the same way, as the shell expects
        signal.signal(-code, signal.SIG_DFL)
        os.kill(os.getpid(), -code)
    os._exit(code if code >= 0 else 128 - code)


def write_shim(directory: Path) -> Path:
    """An executable ``DIRECTORY/quorumkeep`` that runs :func:`delegate` with its arguments:
    put first on ``PATH``, shell scripts' ``quorumkeep`` commands (the documentation's,
    run as tests) start as forks of the server named in their environment."""
    directory.mkdir(parents=True, exist_ok=True)
    shim = directory / "quorumkeep"
    shim.write_text(
        f"#!{sys.executable}\nimport sys\nfrom {MODULE} import delegate\ndelegate(sys.argv[1:])\n"
    )
    shim.chmod(0o755)
    return shim


def popen(args: Any, **kwargs: Any) -> subprocess.Popen[Any]:
    """:class:`subprocess.Popen`, through the fork server when one is configured and ``args``
    runs a quorumkeep module with this interpreter."""
    if os.environ.get(ENV) and _eligible(args, kwargs):
        return ForkedPopen(args, **kwargs)
    return subprocess.Popen(args, **kwargs)


def run(
    args: Any, *, timeout: float | None = None, check: bool = False, **kwargs: Any
) -> subprocess.CompletedProcess[Any]:
    """:func:`subprocess.run` (``capture_output``, ``text``, ``timeout``, ``check``) through
    :func:`popen`."""
    if kwargs.pop("capture_output", False):
        kwargs["stdout"] = kwargs["stderr"] = subprocess.PIPE
    with popen(args, **kwargs) as process:
        try:
            out, err = process.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            process.kill()
            process.communicate()
            raise
    if check and process.returncode:
        raise subprocess.CalledProcessError(process.returncode, process.args, out, err)
    return subprocess.CompletedProcess(process.args, process.returncode, out, err)


@contextlib.contextmanager
def serving() -> Iterator[str | None]:
    """A fork server for the duration of the block, named in ``os.environ[ENV]`` (restored
    after); it exits when the block ends or this process does (its standard input closes).
    If it cannot start (its stderr says why), one line says so and the block runs without
    one (None): every process then starts the ordinary way."""
    directory = tempfile.mkdtemp(prefix="quorumkeep-forkserver-")  # mode 0700
    path = os.path.join(directory, "socket")
    server = subprocess.Popen(
        [sys.executable, "-m", MODULE, path],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        env={k: v for k, v in os.environ.items() if k != ENV},
    )
    previous = os.environ.get(ENV)
    try:
        assert server.stdout is not None
        ready = select.select([server.stdout], [], [], START_TIMEOUT)[0]
        if not ready or server.stdout.readline().strip() != b"ready":
            print("fork server did not start: processes start the usual way", file=sys.stderr)
            yield None
            return
        os.environ[ENV] = path
        yield path
    finally:
        if previous is None:
            os.environ.pop(ENV, None)
        else:
            os.environ[ENV] = previous
        assert server.stdin is not None
        server.stdin.close()
        try:
            server.wait(timeout=10.0)
        except subprocess.TimeoutExpired:
            server.kill()
            server.wait()
        if server.stdout is not None:
            server.stdout.close()
        with contextlib.suppress(OSError):
            os.unlink(path)
        with contextlib.suppress(OSError):
            os.rmdir(directory)


if __name__ == "__main__":
    main(sys.argv[1:])
