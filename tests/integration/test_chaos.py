"""Chaos: a devnet signs a stream of requests while nodes and backup services are SIGKILLed
and restarted at random moments, one operator's migration included (its destination node
or its backup service killed while the shares are in flight).

Afterwards, from the ledger's own record: every request the ledger acknowledged was answered
exactly once, every signature verifies under the key the contract derived for it, no FROST
nonce commitment R (the signature's first 32 bytes) appears twice in the whole run, every
migration concluded or was cancelled, and no node that is not a participant holds a share.
Bounded: about 40 s of chaos; the seed is printed so a failure can be replayed.
"""

from __future__ import annotations

import concurrent.futures
import os
import random
import threading
import time
from pathlib import Path
from typing import Any

import pytest
from nacl.exceptions import BadSignatureError
from nacl.signing import VerifyKey

from quorumkeep.contract.events import (
    MIGRATION_CANCELLED,
    MIGRATION_CONCLUDED,
    MIGRATION_STARTED,
    SIGN_FAILED,
    SIGN_REQUESTED,
    SIGN_RESPONDED,
)
from quorumkeep.devnet import backups, processes
from quorumkeep.devnet.demo import SignSession
from quorumkeep.devnet.network import USER, Devnet
from quorumkeep.ledger.client import LedgerClient
from quorumkeep.ledger.signing import Signature
from quorumkeep.operator.actions import start_migration
from quorumkeep.operator.inputs import read_node_info

pytestmark = pytest.mark.slow

CHAOS_SECONDS = 40.0
REQUEST_EVERY = 0.3
SIGN_TIMEOUT = 120.0


def _events(url: str, kinds: tuple[str, ...]) -> list[Any]:
    out: list[Any] = []
    with LedgerClient(url) as client:
        head = int(client.status()["height"])
        cursor = -1
        while cursor < head:
            events, following = client.events(cursor, timeout=0, kinds=kinds)
            out += events
            if following <= cursor:
                break
            cursor = following
    return out


def _restart_everything(devnet: Devnet, retired: set[str]) -> None:
    for name, record in devnet.record.processes.items():
        if name in retired or record.kind == "ledger":
            continue
        if not devnet.alive(name):
            devnet.start(name)


def test_signing_survives_sigkills_of_nodes_and_backup_services_mid_migration(
    tmp_path: Path,
) -> None:
    seed = int.from_bytes(os.urandom(4), "big")
    print(f"chaos seed {seed}")
    rng = random.Random(seed)
    devnet = Devnet.up(tmp_path / "net", nodes=4, threshold=3, timeout=180)
    session: SignSession | None = None
    retired: set[str] = set()
    try:
        backups.wait_for_backups(
            devnet,
            devnet.backup_names(),
            backups.covers_epoch(0),
            timeout=90,
            what="the first backups",
        )
        session = SignSession(devnet.ledger_url, devnet.signer(USER))
        futures: list[concurrent.futures.Future[Signature]] = []
        migrated = False
        started = time.monotonic()
        stream = threading.Thread(target=_stream, args=(session, futures, started))
        stream.start()  # requests keep coming while the chaos loop blocks on restarts
        next_action = started + 2.0
        down: tuple[str, float] | None = None
        while time.monotonic() - started < CHAOS_SECONDS:
            now = time.monotonic()
            if down is not None and now >= down[1]:
                devnet.start(down[0])
                down = None
            if down is None and now >= next_action:
                if not migrated and now - started > 8:
                    migrated = True
                    _migrate_with_a_kill(devnet, rng, retired)
                else:
                    nodes = [devnet.node_of(a) for a in ("op1", "op2", "op3", "op4")]
                    victim = rng.choice([n for n in nodes if n is not None] + devnet.backup_names())
                    devnet.kill(victim)
                    down = (victim, time.monotonic() + rng.uniform(0.5, 3.0))
                next_action = time.monotonic() + rng.uniform(1.0, 3.0)
            time.sleep(0.05)
        if down is not None:
            devnet.start(down[0])
        stream.join()
        _restart_everything(devnet, retired)
        signatures = [f.result(timeout=SIGN_TIMEOUT + 30) for f in futures]
    finally:
        if session is not None:
            session.close()

    try:
        _check_the_record(devnet, signatures)
    finally:
        devnet.down(grace=1.0)
        left = [n for n, p in devnet.record.processes.items() if processes.is_running(p)]
        assert not left, f"the devnet left {left} running"


def _stream(
    session: SignSession, futures: list[concurrent.futures.Future[Signature]], started: float
) -> None:
    while time.monotonic() - started < CHAOS_SECONDS:
        payload = os.urandom(32)
        futures.append(session.start(payload, f"chaos/{len(futures)}", SIGN_TIMEOUT))
        time.sleep(REQUEST_EVERY)


def _migrate_with_a_kill(devnet: Devnet, rng: random.Random, retired: set[str]) -> None:
    """op2 moves to a fresh node; its destination or its backup service is SIGKILLed at a
    random moment while the shares are in flight, then restarted."""
    old = devnet.node_of("op2")
    (new,) = devnet.add_nodes(["op2"])
    devnet.wait_node_healthy(new)
    directory = devnet.dir.resolve(devnet.process(new).directory or "")
    with devnet.client() as client:
        start_migration(client, devnet.signer("op2"), read_node_info(str(directory)))
    time.sleep(rng.uniform(0.0, 1.0))
    victim = rng.choice([new, backups.backup_name("op2")])
    devnet.kill(victim)
    time.sleep(rng.uniform(0.2, 1.5))
    devnet.start(victim)
    deadline = time.monotonic() + 90
    while devnet.node_of("op2") != new:
        assert time.monotonic() < deadline, "op2's migration did not conclude"
        time.sleep(0.2)
    if old is not None:
        retired.add(old)  # decommissioned: it wiped itself and stands by


def _check_the_record(devnet: Devnet, signatures: list[Signature]) -> None:
    url = devnet.ledger_url
    requested = {
        e.data["request_id"]: e.data
        for e in _events(url, (SIGN_REQUESTED,))
        if e.data.get("account") == USER
    }
    answers: dict[int, list[Any]] = {}
    for event in _events(url, (SIGN_RESPONDED, SIGN_FAILED)):
        if event.data.get("account") == USER:
            answers.setdefault(event.data["request_id"], []).append(event)
    assert len(requested) >= len(signatures) > 40, (len(requested), len(signatures))
    commitments: set[bytes] = set()
    for request_id, request in requested.items():
        got = answers.get(request_id, [])
        assert [e.kind for e in got] == [SIGN_RESPONDED], f"request {request_id}: {got}"
        signature = bytes.fromhex(got[0].data["signature"])
        try:
            VerifyKey(bytes.fromhex(request["public_key"])).verify(
                bytes.fromhex(request["payload"]), signature
            )
        except BadSignatureError:
            raise AssertionError(f"request {request_id}: the signature does not verify") from None
        assert signature[:32] not in commitments, f"request {request_id}: R used twice"
        commitments.add(signature[:32])
    assert {s.request_id for s in signatures} <= set(requested)

    started = [e for e in _events(url, (MIGRATION_STARTED,))]
    ended = _events(url, (MIGRATION_CONCLUDED, MIGRATION_CANCELLED))
    assert started and len(ended) == len(started), (started, ended)
    with devnet.client() as client:
        assert client.view("migration_info") == {}
    participants = {devnet.node_of(a) for a in ("op1", "op2", "op3", "op4")}
    for name, record in devnet.record.processes.items():
        if record.kind != "node" or not devnet.alive(name):
            continue
        status = devnet.node_get(name, "/status")
        if name not in participants:
            assert status["keysets"] == {}, f"{name} is no participant but holds {status}"
