"""The devnet's own machinery, without nodes: secrets, process ownership, refusals."""

from __future__ import annotations

import json
import os
import signal
import stat
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from nacl.signing import SigningKey

from process_helpers import run_cli
from quorumkeep.crypto.seal import MIN_MEMLIMIT, MIN_OPSLIMIT, PassphraseParams
from quorumkeep.devnet import processes
from quorumkeep.devnet.demo import SCENARIOS
from quorumkeep.devnet.errors import DevnetError
from quorumkeep.devnet.layout import DevnetDir, DevnetRecord
from quorumkeep.devnet.network import Devnet
from quorumkeep.devnet.processes import ProcessRecord
from quorumkeep.devnet.secrets import Secrets
from quorumkeep.ledger.genesis import init_ledger
from quorumkeep.ledger.keyfile import seal_key, write_key_file

SLEEPER = "import signal, time; signal.signal(signal.SIGTERM, signal.SIG_IGN); time.sleep(60)"
POLITE = "import time; time.sleep(60)"


def cli(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return run_cli(*args, env=env)


@pytest.fixture
def started() -> Iterator[list[ProcessRecord]]:
    records: list[ProcessRecord] = []
    yield records
    for record in records:
        processes.kill(record)


def sleeper(tmp_path: Path, name: str, code: str) -> ProcessRecord:
    return ProcessRecord(
        name=name, kind="test", argv=[sys.executable, "-c", code], log=f"logs/{name}.log"
    )


def test_secrets_are_private_files_never_replaced(tmp_path: Path) -> None:
    secrets = Secrets(tmp_path)
    first = secrets.create("node-op1")
    assert len(first) >= 40
    assert secrets.get("node-op1") == first
    assert stat.S_IMODE(os.stat(secrets.path("node-op1")).st_mode) == 0o600
    assert stat.S_IMODE(os.stat(secrets.directory).st_mode) == 0o700
    assert secrets.create("node-op2") != first
    with pytest.raises(DevnetError) as refused:
        secrets.create("node-op1")
    assert refused.value.code == "secret_exists"
    assert secrets.get("node-op1") == first
    with pytest.raises(DevnetError):
        secrets.path("../escape")
    with pytest.raises(DevnetError) as missing:
        secrets.get("nobody")
    assert missing.value.code == "secret_missing"


def test_child_environment_drops_inherited_quorumkeep_values(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("QUORUMKEEP_PASSPHRASE", "inherited secret")
    monkeypatch.setenv("QUORUMKEEP_OTHER", "x")
    env = processes.child_environment({"QUORUMKEEP_PASSPHRASE": b"mine"})
    assert env["QUORUMKEEP_PASSPHRASE"] == "mine"
    assert "QUORUMKEEP_OTHER" not in env


@pytest.mark.slow
def test_process_is_ours_only_with_same_argv_and_start_time(
    tmp_path: Path, started: list[ProcessRecord]
) -> None:
    record = sleeper(tmp_path, "sleeper", POLITE)
    processes.spawn(record, tmp_path, {})
    started.append(record)
    assert record.pid is not None and record.start_time is not None
    assert processes.is_running(record)
    assert (tmp_path / "logs/sleeper.log").read_text().startswith("=== devnet: starting sleeper")

    # Same pid, other start time: a reused pid is not ours.
    reused = ProcessRecord(**{**record.to_json(), "start_time": record.start_time + 1})
    assert not processes.is_running(reused)
    assert not processes.send_signal(reused, signal.SIGTERM)
    # Same pid, other argv.
    other = ProcessRecord(**{**record.to_json(), "argv": [sys.executable, "-c", "pass"]})
    assert not processes.is_running(other)
    assert not processes.kill(other)
    assert processes.is_running(record)  # untouched by the refused signals

    # A foreign process (this test's own interpreter) is never ours either.
    me = ProcessRecord(
        name="me",
        kind="test",
        argv=["not", "my", "argv"],
        log="logs/me.log",
        pid=os.getpid(),
        start_time=processes.process_start_time(os.getpid()),
    )
    assert not processes.send_signal(me, signal.SIGKILL)

    assert processes.kill(record)
    assert not processes.is_running(record)
    assert not processes.kill(record)


@pytest.mark.slow
def test_stop_escalates_to_sigkill_after_the_grace_period(
    tmp_path: Path, started: list[ProcessRecord]
) -> None:
    stubborn = sleeper(tmp_path, "stubborn", SLEEPER)
    polite = sleeper(tmp_path, "polite", POLITE)
    for record in (stubborn, polite):
        processes.spawn(record, tmp_path, {})
        started.append(record)
    stopped = processes.stop([stubborn, polite], grace=0.5)
    assert {r.name for r in stopped} == {"stubborn", "polite"}
    assert not processes.is_running(stubborn)
    assert not processes.is_running(polite)
    assert processes.stop([stubborn, polite], grace=0.5) == []


def test_devnet_file_round_trips_and_rejects_garbage(tmp_path: Path) -> None:
    directory = DevnetDir(tmp_path)
    record = DevnetRecord(threshold=2, nodes=3, ledger_url="http://127.0.0.1:1")
    record.processes["x"] = ProcessRecord(
        name="x", kind="node", argv=["a"], log="logs/x.log", ports={"p2p": 5}
    )
    directory.save(record)
    assert directory.load().to_json() == record.to_json()
    directory.record_path.write_text(json.dumps({"format": "other"}))
    with pytest.raises(DevnetError) as invalid:
        directory.load()
    assert invalid.value.code == "devnet_file_invalid"
    directory.record_path.write_text("{not json")
    with pytest.raises(DevnetError):
        directory.load()


def test_up_refuses_a_directory_it_did_not_create(tmp_path: Path) -> None:
    (tmp_path / "precious.txt").write_text("keep me")
    with pytest.raises(DevnetError) as refused:
        Devnet.up(tmp_path, nodes=3, threshold=2)
    assert refused.value.code == "directory_not_empty"
    assert (tmp_path / "precious.txt").read_text() == "keep me"
    assert not (tmp_path / "devnet.json").exists()
    with pytest.raises(DevnetError) as nothing:
        Devnet.up(tmp_path / "new", nodes=3, threshold=2, resume=True)
    assert nothing.value.code == "no_devnet"


@pytest.mark.parametrize(
    ("nodes", "threshold"), [(3, 4), (3, 1), (0, 2)], ids=["t>n", "t<2", "no nodes"]
)
def test_up_rejects_impossible_parameters(tmp_path: Path, nodes: int, threshold: int) -> None:
    with pytest.raises(DevnetError) as refused:
        Devnet.up(tmp_path / "d", nodes=nodes, threshold=threshold)
    assert refused.value.code == "invalid_arguments"
    assert not (tmp_path / "d" / "devnet.json").exists()


def test_existing_devnet_is_refused_and_an_unfinished_one_cannot_resume(tmp_path: Path) -> None:
    DevnetDir(tmp_path).save(DevnetRecord(threshold=2, nodes=3))
    with pytest.raises(DevnetError) as refused:
        Devnet.up(tmp_path, nodes=3, threshold=2)
    assert refused.value.code == "devnet_exists"
    assert "--resume" in str(refused.value)
    with pytest.raises(DevnetError) as unfinished:
        Devnet.up(tmp_path, nodes=3, threshold=2, resume=True)
    assert unfinished.value.code == "devnet_incomplete"


@pytest.mark.slow
def test_cli_errors_are_one_line(tmp_path: Path) -> None:
    missing = cli("devnet", "status", "--dir", str(tmp_path / "none"))
    assert missing.returncode == 1
    assert missing.stderr.strip().splitlines() == [
        f"error: {tmp_path / 'none'} holds no devnet (devnet.json missing)"
    ]
    unknown = cli("devnet", "demo", "--only", "single-node-loss,meteor-strike")
    assert unknown.returncode == 2
    assert unknown.stderr.strip().splitlines() == [
        "error: unknown scenario 'meteor-strike' (known: " + ", ".join(SCENARIOS) + ")"
    ]
    bad_payload = cli("sign", "--devnet", str(tmp_path), "--payload", "xyz", "--path", "p")
    assert bad_payload.returncode == 2
    assert bad_payload.stderr.strip().splitlines() == [
        "error: --payload must be hex (e.g. 32 bytes: 64 hex digits)"
    ]
    both = cli(
        "sign", "--devnet", str(tmp_path), "--ledger", "http://127.0.0.1:1",
        "--payload", "00" * 32, "--path", "p",
    )  # fmt: skip
    assert both.returncode == 2
    assert len(both.stderr.strip().splitlines()) == 1
    unreachable_key = tmp_path / "nokey.json"
    neither = cli("sign", "--payload", "00" * 32, "--path", "p")
    assert neither.returncode == 2
    assert len(neither.stderr.strip().splitlines()) == 1
    no_key = cli(
        "sign", "--ledger", "http://127.0.0.1:1", "--signer", "user", "--key",
        str(unreachable_key), "--payload", "00" * 32, "--path", "p",
    )  # fmt: skip
    assert no_key.returncode == 2
    assert len(no_key.stderr.strip().splitlines()) == 1


@pytest.mark.slow
def test_added_process_is_started_killed_restarted_and_stopped(tmp_path: Path) -> None:
    """A process added with add_process (as a backup service will be) is driven like the
    devnet's own; a real `ledger serve` stands in for any long-running command."""
    DevnetDir(tmp_path).save(DevnetRecord(threshold=2, nodes=3, phase="ready"))
    init_ledger(tmp_path / "extra", ["alice"], b"pass", passphrase_cost=(1, 8192))
    devnet = Devnet(tmp_path)
    port = devnet.free_port()
    devnet.add_process(
        "extra",
        "service",
        ["ledger", "serve", "--data", str(tmp_path / "extra"), "--listen", f"127.0.0.1:{port}"],
        ports={"http": port},
        env_secrets={"QUORUMKEEP_PASSPHRASE": "extra-service"},
    )
    try:
        assert devnet.alive("extra")
        assert Devnet(tmp_path).alive("extra")  # another Devnet reads the same record
        assert (tmp_path / "secrets" / "extra-service.passphrase").exists()
        with pytest.raises(DevnetError) as twice:
            devnet.add_process("extra", "service", ["ledger", "status"])
        assert twice.value.code == "process_exists"
        assert devnet.kill("extra")
        assert not devnet.alive("extra")
        assert devnet.start("extra", wait=False)
        assert not devnet.start("extra", wait=False)  # already running
        assert devnet.alive("extra")
        assert devnet.down(grace=5.0) == ["extra"]
        assert not devnet.alive("extra")
        devnet.retire("extra")
        with pytest.raises(DevnetError) as retired:
            devnet.start("extra")
        assert retired.value.code == "process_retired"
    finally:
        Devnet(tmp_path).down(grace=1.0)


def test_a_stalled_key_generation_names_the_missing_voters_and_their_logs(
    tmp_path: Path,
) -> None:
    record = DevnetRecord(threshold=2, nodes=3, phase="ready")
    members = []
    for i in (1, 2, 3):
        name = f"op{i}"
        tls_key = SigningKey(bytes([i]) * 32).verify_key.encode().hex()
        node = tmp_path / "nodes" / name
        node.mkdir(parents=True)
        (node / "identity.json").write_text(
            json.dumps({"tls_public_key": tls_key, "signer_public_key": tls_key})
        )
        record.processes[name] = ProcessRecord(
            name=name,
            kind="node",
            argv=["x"],
            log=f"logs/{name}.log",
            ports={"p2p": 1000 + i, "web": 2000 + i},
            account=name,
            directory=f"nodes/{name}",
        )
        members.append({"account": name, "participant_id": i, "tls_public_key": tls_key})
    DevnetDir(tmp_path).save(record)
    devnet = Devnet(tmp_path)
    key = "ab" * 32
    state = {
        "protocol_state": {
            "state": "Initializing",
            "running": {"participants": members, "domains": [], "epoch": 0, "threshold": 2},
            "generating": [{"domain_id": 0, "votes": {"op1": key, "op2": key}, "public_key": None}],
        }
    }
    message = devnet.explain_stall(state)
    assert "waiting for votes of op3" in message
    assert f"read {tmp_path / 'logs' / 'op3.log'}" in message
    assert "op1.log" not in message
    assert "stopped: op1, op2, op3" in message  # none of them was ever started here


@pytest.mark.slow
def test_unknown_names_and_busy_devnets_are_refused(tmp_path: Path) -> None:
    record = DevnetRecord(threshold=2, nodes=3, phase="ready")
    record.processes["op1"] = ProcessRecord(
        name="op1", kind="node", argv=["x"], log="logs/op1.log", account="op1",
        directory="nodes/op1", pid=None,
    )  # fmt: skip
    DevnetDir(tmp_path).save(record)
    devnet = Devnet(tmp_path)
    for action in (devnet.kill, devnet.start, devnet.stop, devnet.retire, devnet.wipe):
        with pytest.raises(DevnetError) as unknown:
            action("nosuch")
        assert unknown.value.code == "unknown_process"
        assert "op1" in str(unknown.value)  # lists what exists
    with pytest.raises(DevnetError) as account:
        devnet.signer("nobody")
    assert account.value.code == "unknown_account"
    with pytest.raises(DevnetError) as no_account:
        devnet.add_node("nobody")
    assert no_account.value.code == "unknown_account"
    (tmp_path / "nodes/op1").mkdir(parents=True)
    devnet.wipe("op1")  # not running: its directory goes
    assert not (tmp_path / "nodes/op1").exists()

    with (
        DevnetDir(tmp_path).locked(),
        pytest.raises(DevnetError) as busy,
        DevnetDir(tmp_path).locked(wait=0.2),
    ):
        pass
    assert busy.value.code == "devnet_busy"
    with DevnetDir(tmp_path).locked(wait=0.2):  # released again
        pass

    killed = cli("devnet", "kill", "--dir", str(tmp_path), "nosuch")
    assert killed.returncode == 1
    assert killed.stderr.strip().splitlines() == ["error: no process 'nosuch' in this devnet (op1)"]


@pytest.mark.slow
def test_sign_against_an_unreachable_ledger_is_one_line(tmp_path: Path) -> None:
    key = tmp_path / "user.json"
    write_key_file(
        key,
        seal_key(
            SigningKey(os.urandom(32)),
            b"pw",
            account="user",
            params=PassphraseParams.new(os.urandom, MIN_OPSLIMIT, MIN_MEMLIMIT),
        ),
    )
    (tmp_path / "pw").write_text("pw\n")
    port = processes.free_port()
    result = cli(
        "sign", "--ledger", f"http://127.0.0.1:{port}", "--key", str(key),
        "--passphrase-file", str(tmp_path / "pw"), "--payload", "00" * 32, "--path", "p",
        "--timeout", "2",
    )  # fmt: skip
    assert result.returncode == 1
    [line] = result.stderr.strip().splitlines()
    # an unreachable ledger is waited for (it may be restarting), within --timeout
    assert line.startswith("error: timeout: could not reach the ledger"), line
    assert f"cannot reach the ledger at http://127.0.0.1:{port}" in line
