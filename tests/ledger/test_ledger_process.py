"""Durability, replay protection, tamper detection and long-poll of a real ledger process."""

from __future__ import annotations

import asyncio
import hashlib
import shutil
import sqlite3
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from ledger_helpers import (
    LedgerDir,
    LedgerProcess,
    backup_service_args,
    cli_command,
    init_args,
    make_ledger,
    new_signer,
)

from quorumkeep.crypto.group import (
    base_mul,
    identifier_scalar,
    polynomial_evaluate,
    scalar_from_int,
)
from quorumkeep.devnet import forkserver
from quorumkeep.ledger.blocks import BLOCK_DOMAIN
from quorumkeep.ledger.canonical import canonical_json, parse_json
from quorumkeep.ledger.client import AsyncLedgerClient, LedgerClient, TxOutcome
from quorumkeep.ledger.errors import LedgerError
from quorumkeep.ledger.transaction import FULL_ACCESS, Permission

pytestmark = pytest.mark.slow

ACCOUNTS = ("alice", "bob", "carol", "dave")


@pytest.fixture
def ledger(tmp_path: Path) -> LedgerDir:
    return make_ledger(tmp_path / "data", ACCOUNTS)


@pytest.fixture
def processes() -> Iterator[list[LedgerProcess]]:
    started: list[LedgerProcess] = []
    yield started
    for process in started:
        process.kill()


def serve(ledger: LedgerDir, processes: list[LedgerProcess], **kwargs: Any) -> LedgerProcess:
    process = LedgerProcess(ledger.path, **kwargs)
    processes.append(process)
    return process.start()


def init_contract(client: LedgerClient, ledger: LedgerDir) -> None:
    client.call(ledger.signers["alice"], "init", init_args(["alice", "bob", "carol"]))


def recorded(client: LedgerClient, outcome: TxOutcome) -> dict[str, Any]:
    return client.transaction(outcome.tx_hash)


def test_restart_keeps_everything_acknowledged(
    ledger: LedgerDir, processes: list[LedgerProcess]
) -> None:
    server = serve(ledger, processes)
    node_key = new_signer("dave")
    with LedgerClient(server.url) as client:
        init_contract(client, ledger)
        outcomes = [
            client.call(ledger.signers[a], "register_backup_service", backup_service_args())
            for a in ("alice", "bob", "carol", "bob")
        ]
        outcomes.append(
            client.add_key(ledger.signers["dave"], node_key.public_key, Permission(("respond",)))
        )
        before = {
            "accounts": {a: client.account(a)["keys"] for a in ACCOUNTS},
            "state": client.view("state"),
            "backup": client.view("backup_service_info", {"account": "bob"}),
            "blocks": {o.block_height: client.block(o.block_height) for o in outcomes},
            "txs": [recorded(client, o) for o in outcomes],
        }
    replay = {
        "transaction": before["txs"][1]["transaction"],
        "signature": before["txs"][1]["signature"],
    }
    # While it runs, no second ledger may open the same data (it would fork the chain).
    second = forkserver.run(
        cli_command("ledger", "serve", "--data", str(ledger.path), "--listen", "127.0.0.1:1"),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert second.returncode == 1
    assert second.stderr.strip().splitlines() == [
        f"error: {ledger.path} is in use by another ledger process"
    ]
    assert server.terminate() == 0

    server = serve(ledger, processes)
    with LedgerClient(server.url) as client:
        after = {
            "accounts": {a: client.account(a)["keys"] for a in ACCOUNTS},
            "state": client.view("state"),
            "backup": client.view("backup_service_info", {"account": "bob"}),
            "blocks": {h: client.block(h) for h in before["blocks"]},
            "txs": [recorded(client, o) for o in outcomes],
        }
        assert after == before
        # The replay protection survives the restart: it is rebuilt from the blocks.
        response = httpx.post(f"{server.url}/v1/transactions", json=replay, timeout=10)
        assert response.status_code == 409
        assert response.json()["error"]["code"] == "DuplicateTransaction"
        # The ledger carries on from where it stopped, with the same keys and nonces.
        again = client.call(ledger.signers["bob"], "register_backup_service", backup_service_args())
        assert again.block_height > max(o.block_height for o in outcomes)


def test_sigkill_during_a_stream_loses_nothing_acknowledged(
    ledger: LedgerDir, processes: list[LedgerProcess]
) -> None:
    server = serve(ledger, processes, idle_block_ms=50)
    with LedgerClient(server.url) as client:
        init_contract(client, ledger)
    acknowledged: list[TxOutcome] = []
    enough = asyncio.Event()

    async def stream(account: str) -> None:
        async with AsyncLedgerClient(server.url, timeout=10.0) as client:
            while True:
                try:
                    outcome = await client.call(
                        ledger.signers[account], "register_backup_service", backup_service_args()
                    )
                except LedgerError:
                    return  # the ledger is gone: whatever was not answered is not promised
                acknowledged.append(outcome)
                if len(acknowledged) >= 60:
                    enough.set()

    async def run() -> None:
        tasks = [asyncio.create_task(stream(a)) for a in ("alice", "bob", "carol")]
        await asyncio.wait_for(enough.wait(), 60)
        server.kill()  # SIGKILL while the streams are still submitting
        await asyncio.wait_for(asyncio.gather(*tasks), 60)

    asyncio.run(run())
    assert len(acknowledged) >= 60

    server = serve(ledger, processes)
    with LedgerClient(server.url) as client:
        for outcome in acknowledged:
            stored = client.transaction(outcome.tx_hash)
            assert stored["block_height"] == outcome.block_height
            assert stored["outcome"]["status"] == outcome.status == "success"
            assert stored["outcome"]["events"] == outcome.events
        for account in ("alice", "bob", "carol"):
            highest = max(
                (
                    client.transaction(o.tx_hash)["transaction"]["nonce"]
                    for o in acknowledged
                    if o.events and o.events[0]["data"]["account"] == account
                ),
                default=0,
            )
            (key,) = client.account(account)["keys"]
            assert key["nonce"] >= highest


def _tamper(db: Path, height: int, what: str, rehash: bool) -> None:
    conn = sqlite3.connect(db)
    try:
        (body,) = conn.execute("SELECT body FROM blocks WHERE height = ?", (height,)).fetchone()
        block = parse_json(bytes(body))
        if what == "event":
            value = block["transactions"][0]["outcome"]["events"][0]["data"]
            value["identity_public_key"] = "00" * 32
        else:  # a field the replay cannot check by itself: only the next block's link can
            block["timestamp_ms"] += 1
        new_body = canonical_json(block)
        conn.execute("UPDATE blocks SET body = ? WHERE height = ?", (new_body, height))
        if rehash:  # a careful forger also fixes the stored hash of the block it edited
            new_hash = hashlib.sha256(BLOCK_DOMAIN + new_body).digest()
            conn.execute("UPDATE blocks SET hash = ? WHERE height = ?", (new_hash, height))
        conn.commit()
    finally:
        conn.close()


@pytest.fixture(scope="module")
def tamper_template(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, int]:
    """A stopped ledger with a block holding one transaction (edited by each test's copy)."""
    ledger = make_ledger(tmp_path_factory.mktemp("tamper") / "data", ACCOUNTS)
    server = LedgerProcess(ledger.path)
    try:
        server.start()
        with LedgerClient(server.url) as client:
            init_contract(client, ledger)
            outcome = client.call(
                ledger.signers["bob"], "register_backup_service", backup_service_args()
            )
            client.call(ledger.signers["carol"], "register_backup_service", backup_service_args())
        assert server.terminate() == 0
    finally:
        server.kill()
    return ledger.path, outcome.block_height


@pytest.mark.parametrize(
    ("what", "rehash", "named"),
    [("event", False, 0), ("event", True, 0), ("timestamp", True, 1)],
)
def test_tampered_block_is_detected_at_start(
    tamper_template: tuple[Path, int], tmp_path: Path, what: str, rehash: bool, named: int
) -> None:
    """`ledger verify` finds it behind the snapshot the clean stop took; start-up (which
    checks from the newest snapshot on) finds it once there is no snapshot to start from."""
    template, height = tamper_template
    data = tmp_path / "data"
    shutil.copytree(template, data)
    _tamper(data / "ledger.sqlite", height, what, rehash)

    def refused(*args: str) -> None:
        result = forkserver.run(cli_command(*args), capture_output=True, text=True, timeout=60)
        assert result.returncode == 1
        lines = result.stderr.strip().splitlines()
        assert len(lines) == 1, result.stderr
        assert f"corrupt at block {height + named}:" in lines[0]
        assert "Traceback" not in result.stderr

    refused("ledger", "verify", "--data", str(data))
    conn = sqlite3.connect(data / "ledger.sqlite")
    with conn:
        conn.execute("DELETE FROM snapshots")
        conn.execute("DELETE FROM meta WHERE key = 'snapshot_height'")
    conn.close()
    refused("ledger", "serve", "--data", str(data), "--listen", "127.0.0.1:1")


def test_follow_events_resumes_across_a_restart(
    ledger: LedgerDir, processes: list[LedgerProcess]
) -> None:
    server = serve(ledger, processes)
    with LedgerClient(server.url) as client:
        init_contract(client, ledger)
    seen: list[Any] = []

    async def run() -> None:
        init_seen = asyncio.Event()

        async def follow() -> None:
            async with AsyncLedgerClient(server.url) as client:
                async for event in client.follow_events(-1, poll_timeout=2.0, max_backoff=0.2):
                    seen.append(event)
                    if len(seen) == 2:  # init's two events
                        init_seen.set()
                    if event.kind == "backup_service_registered":
                        return

        follower = asyncio.create_task(follow())
        await asyncio.wait_for(init_seen.wait(), 30)
        await asyncio.to_thread(server.terminate)
        await asyncio.sleep(0.3)  # the follower is now reconnecting
        await asyncio.to_thread(server.start)
        async with AsyncLedgerClient(server.url) as client:
            await client.call(
                ledger.signers["bob"], "register_backup_service", backup_service_args()
            )
        await asyncio.wait_for(follower, 30)

    asyncio.run(asyncio.wait_for(run(), 60))
    assert [e.kind for e in seen] == [
        "protocol_state_changed",
        "participants_changed",
        "backup_service_registered",
    ]
    assert len({(e.height, e.index) for e in seen}) == len(seen)


# --- one running ledger, Running with a generated domain ------------------------------


@dataclass
class Running:
    ledger: LedgerDir
    server: LedgerProcess


def key_package(ids: list[int], threshold: int) -> tuple[str, dict[str, str]]:
    """A group key and verifying shares of a fixed test polynomial, which interpolate to it."""
    coefficients = [scalar_from_int(1000 + k) for k in range(threshold)]
    shares = {
        str(i): base_mul(polynomial_evaluate(identifier_scalar(i), coefficients)).hex() for i in ids
    }
    return base_mul(coefficients[0]).hex(), shares


def _start_running(directory: Path, config: dict[str, int], idle_block_ms: int | None) -> Running:
    ledger = make_ledger(directory / "data", ACCOUNTS)
    server = LedgerProcess(ledger.path, idle_block_ms=idle_block_ms)
    try:
        server.start()
        alice, bob = ledger.signers["alice"], ledger.signers["bob"]
        with LedgerClient(server.url) as client:
            client.call(alice, "init", {**init_args(["alice", "bob"]), "config": config})
            for operator in (alice, bob):
                client.call(
                    operator,
                    "vote_add_domains",
                    {"domains": [{"scheme": "Ed25519", "backups_required": 0}]},
                )
            group_key, shares = key_package([1, 2], 2)
            vote = {
                "key_event_id": {"domain_id": 0, "epoch": 0, "attempt": 0},
                "public_key": group_key,
                "verifying_shares": shares,
            }
            for operator in (alice, bob):
                client.call(operator, "vote_pk", vote)
    except BaseException:
        server.kill()
        raise
    return Running(ledger, server)


@pytest.fixture(scope="module")
def running(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Running]:
    """A ledger whose contract runs with domain 0 and a 5-block sign timeout; idle 50 ms."""
    started = _start_running(
        tmp_path_factory.mktemp("running"), {"sign_timeout_blocks": 5}, idle_block_ms=50
    )
    try:
        yield started
    finally:
        started.server.kill()


@pytest.fixture(scope="module")
def quiet(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Running]:
    """The same with the default heartbeat (no idle blocks) and a 2 s sign timeout."""
    started = _start_running(
        tmp_path_factory.mktemp("quiet"), {"sign_timeout_ms": 2000}, idle_block_ms=None
    )
    try:
        yield started
    finally:
        started.server.kill()


def test_an_idle_ledger_makes_no_block(quiet: Running) -> None:
    with LedgerClient(quiet.server.url) as client:
        before = client.status()
        time.sleep(1.5)  # ~7 idle blocks before; none now (a slow machine changes nothing)
        after = client.status()
    assert after["height"] == before["height"]
    assert after["idle_block_ms"] == 600_000


def test_a_sign_timeout_fires_on_time_without_idle_blocks(quiet: Running) -> None:
    """The ledger makes a block when the request falls due, and only then."""
    dave = quiet.ledger.signers["dave"]
    with LedgerClient(quiet.server.url) as client:
        request = client.call(
            dave, "sign", {"payload": "cd" * 32, "path": "wallet/2", "domain_id": 0}
        )
        deadline_ms = request.value["deadline_ms"]
        made = client.block(request.block_height)["timestamp_ms"]
        assert deadline_ms == made + 2000
        cursor, failed = request.block_height, None
        for _ in range(12):  # each long-poll waits at most 5 s
            events, cursor = client.events(cursor, timeout=5, kinds=["sign_failed"])
            failed = next(
                (e for e in events if e.data["request_id"] == request.value["request_id"]), None
            )
            if failed is not None:
                break
        assert failed is not None, "the request never timed out"
        assert failed.tx_hash is None and failed.data["reason"] == "not answered in time"
        assert failed.height == request.block_height + 1  # the one block made for it
        assert client.block(failed.height)["timestamp_ms"] >= deadline_ms


def test_long_poll_returns_on_a_new_event(running: Running) -> None:
    server, alice = running.server, running.ledger.signers["alice"]
    with LedgerClient(server.url) as client:
        head = client.status()["height"]
        result: dict[str, Any] = {}
        started = threading.Event()

        def poll() -> None:
            with httpx.Client(timeout=60) as http:
                started.set()
                response = http.get(
                    f"{server.url}/v1/events", params={"since": head, "timeout": 50}
                )
                result["body"] = response.json()

        poller = threading.Thread(target=poll, daemon=True)
        poller.start()
        assert started.wait(10)
        outcome = client.call(alice, "register_backup_service", backup_service_args())
        # A 50 s long-poll that returns within this (shorter) bound was woken by the event.
        poller.join(20)
        assert not poller.is_alive(), "the long-poll did not return on the new event"
    events = result["body"]["events"]
    assert [(e["kind"], e["tx_hash"]) for e in events] == [
        ("backup_service_registered", outcome.tx_hash)
    ]
    assert events[0]["height"] == outcome.block_height
    assert result["body"]["next"] >= outcome.block_height


def test_idle_blocks_advance_contract_timeouts(running: Running) -> None:
    """A sign request nobody answers fails by itself: empty blocks keep coming."""
    dave = running.ledger.signers["dave"]
    with LedgerClient(running.server.url) as client:
        request = client.call(
            dave, "sign", {"payload": "ab" * 32, "path": "wallet/1", "domain_id": 0}
        )
        request_id = request.value["request_id"]
        deadline = request.value["deadline_height"]
        # No transaction from here on: only idle blocks can reach the deadline.
        cursor = request.block_height
        failed = None
        for _ in range(20):  # each long-poll waits at most 5 s
            events, cursor = client.events(cursor, timeout=5)
            failed = next((e for e in events if e.kind == "sign_failed"), None)
            if failed is not None:
                break
        assert failed is not None, "the request never timed out"
        assert failed.tx_hash is None  # emitted by on_block, not by a transaction
        assert failed.height >= deadline
        assert failed.data["request_id"] == request_id
        pending = client.view("pending_requests")
        assert request_id not in {r["request_id"] for r in pending}


def test_deleted_and_readded_key_cannot_replay(running: Running) -> None:
    dave = running.ledger.signers["dave"]
    extra = new_signer("dave")
    url = running.server.url
    with LedgerClient(url) as client:
        client.add_key(dave, extra.public_key, FULL_ACCESS)
        first = client.add_key(extra, new_signer("dave").public_key, FULL_ACCESS)
        body = client.transaction(first.tx_hash)
        client.delete_key(dave, extra.public_key)
        client.add_key(dave, extra.public_key, FULL_ACCESS)  # its nonce starts at 0 again
    signed = {"transaction": body["transaction"], "signature": body["signature"]}
    response = httpx.post(f"{url}/v1/transactions", json=signed, timeout=10)
    assert response.status_code == 409
    assert response.json()["error"]["code"] == "DuplicateTransaction"


# --- the kind filter of /v1/events, on the real server ----------------------------------

SIGN_KINDS = ["sign_requested", "sign_responded", "sign_failed"]


def _sign_request(client: LedgerClient, running: Running) -> TxOutcome:
    """A request nobody answers: sign_requested now, sign_failed ~5 blocks later."""
    args = {"payload": "cd" * 32, "path": "filter/1", "domain_id": 0}
    return client.call(running.ledger.signers["dave"], "sign", args)


def test_filtered_long_poll_waits_through_non_matching_blocks(running: Running) -> None:
    server, bob = running.server, running.ledger.signers["bob"]
    with LedgerClient(server.url) as client:
        head = client.status()["height"]
        result: dict[str, Any] = {}
        started = threading.Event()

        def poll() -> None:
            with httpx.Client(timeout=60) as http:
                started.set()
                params = {"since": head, "timeout": 50, "kinds": "backup_service_registered"}
                result["body"] = http.get(f"{server.url}/v1/events", params=params).json()

        poller = threading.Thread(target=poll, daemon=True)
        poller.start()
        assert started.wait(10)
        request = _sign_request(client, running)
        # Long enough for the sign_failed block too (5 blocks of 50 ms).
        poller.join(1.5)
        assert poller.is_alive(), "blocks with only non-matching events ended the long-poll"
        outcome = client.call(bob, "register_backup_service", backup_service_args())
        poller.join(20)
        assert not poller.is_alive(), "the long-poll did not return on the matching event"
        everything, _ = client.events(head, timeout=0)  # unfiltered: unchanged
    assert [(e["kind"], e["tx_hash"]) for e in result["body"]["events"]] == [
        ("backup_service_registered", outcome.tx_hash)
    ]
    assert result["body"]["next"] >= outcome.block_height
    kinds = [e.kind for e in everything]
    assert kinds.count("sign_requested") == 1 and "backup_service_registered" in kinds
    assert any(e.height == request.block_height for e in everything)


def test_filtered_poll_times_out_past_filtered_blocks(running: Running) -> None:
    with LedgerClient(running.server.url) as client:
        head = client.status()["height"]
        request = _sign_request(client, running)
        started = time.monotonic()
        events, cursor = client.events(head, timeout=1, kinds=["backup_service_registered"])
        assert events == [] and time.monotonic() - started >= 0.9
        assert cursor >= request.block_height  # the cursor passed the filtered-out blocks
        # ...so a follower never reads them again, with any filter.
        assert client.events(cursor, timeout=0, kinds=["sign_requested"])[0] == []
        # Only the wanted kinds, and an unknown kind is not an error.
        wanted = ["sign_requested", "no_such_kind"]
        events, _ = client.events(head, timeout=0, kinds=wanted)
        assert [(e.kind, e.height) for e in events] == [("sign_requested", request.block_height)]
        with pytest.raises(TypeError):
            client.events(head, timeout=0, kinds="sign_requested")
        with pytest.raises(LedgerError) as both:
            client.events(head, timeout=0, kinds=["sign_failed"], exclude_kinds=["sign_failed"])
        assert (both.value.status, both.value.code) == (400, "InvalidRequest")


def test_follow_events_with_a_kind_filter(running: Running) -> None:
    url, alice = running.server.url, running.ledger.signers["alice"]

    async def run() -> tuple[list[str], list[str]]:
        async with AsyncLedgerClient(url) as client:
            head = int((await client.status())["height"])

            async def first(**kinds: Any) -> list[str]:
                async for event in client.follow_events(head, poll_timeout=2.0, **kinds):
                    return [event.kind]
                raise AssertionError("unreachable")

            not_sign = asyncio.create_task(first(exclude_kinds=SIGN_KINDS))
            only_failed = asyncio.create_task(first(kinds=iter(["sign_failed"])))
            await asyncio.sleep(0.2)
            await asyncio.to_thread(_sign_request_in_new_client, running)
            failed_seen = await asyncio.wait_for(only_failed, 30)
            assert not not_sign.done()  # the sign events did not reach it
            await client.call(alice, "register_backup_service", backup_service_args())
            return await asyncio.wait_for(not_sign, 30), failed_seen

    not_sign, failed = asyncio.run(asyncio.wait_for(run(), 60))
    assert not_sign == ["backup_service_registered"]
    assert failed == ["sign_failed"]


def _sign_request_in_new_client(running: Running) -> TxOutcome:
    with LedgerClient(running.server.url) as client:
        return _sign_request(client, running)


def _closed_by_server(port: int, send: bytes, dribble: bytes, seconds: float) -> bool:
    """Connect, send ``send``, then one byte of ``dribble`` every 0.5 s; True if the server
    closed the connection within ``seconds``."""
    import socket

    with socket.create_connection(("127.0.0.1", port), timeout=seconds) as sock:
        if send:
            sock.sendall(send)
        sock.settimeout(0.5)
        deadline = time.monotonic() + seconds
        rest = dribble
        while time.monotonic() < deadline:
            try:
                if sock.recv(4096) == b"":
                    return True
            except TimeoutError:
                pass
            except OSError:
                return True
            if rest:
                try:
                    sock.sendall(rest[:1])
                except OSError:
                    return True
                rest = rest[1:]
    return False


def test_connections_that_never_complete_a_request_are_closed(running: Running) -> None:
    """Nothing sent, or a request head dribbled a byte at a time: the ledger closes the
    connection after its header timeout (10 s) instead of keeping it forever."""
    port = int(running.server.url.rsplit(":", 1)[1])
    head = b"GET /v1/status HTTP/1.1\r\nHost: x\r\n" + b"X-Slow: " + b"a" * 200 + b"\r\n\r\n"
    results: dict[str, bool] = {}
    threads = [
        threading.Thread(
            target=lambda: results.__setitem__("silent", _closed_by_server(port, b"", b"", 60))
        ),
        threading.Thread(
            target=lambda: results.__setitem__(
                "dribble", _closed_by_server(port, head[:10], head[10:], 60)
            )
        ),
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert results == {"silent": True, "dribble": True}
    with LedgerClient(running.server.url) as client:
        assert client.status()["height"] >= 0  # the server still serves
