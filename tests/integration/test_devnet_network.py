"""A real 3-of-4 network: ledger and four node processes on 127.0.0.1.

One devnet serves the whole module (started and stopped with the CLI); the tests run in
file order, the ones that change the participant set last. Every wait is bounded.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import socket
import ssl
from collections.abc import Iterator
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from devnet_helpers import (
    check_signature,
    cli,
    group_key,
    metric,
    node_dir,
    presignatures,
    sign_all,
)
from nacl.signing import SigningKey, VerifyKey

from process_helpers import wait_until
from quorumkeep.contract import NODE_METHODS
from quorumkeep.devnet import processes, watch
from quorumkeep.devnet.attestation import node_evidence
from quorumkeep.devnet.errors import DevnetError
from quorumkeep.devnet.network import USER, Devnet
from quorumkeep.ledger.client import AccountSigner
from quorumkeep.ledger.signing import SignClient, SignError
from quorumkeep.ledger.transaction import Permission
from quorumkeep.node.mesh_frames import HELLO_BODY
from quorumkeep.wire import tls

pytestmark = pytest.mark.slow

PATHS = ["", "wallet/0", "wallet/1", "m/44'/501'/0'", "ünïcode ✓", "x" * 256]


@pytest.fixture(scope="module")
def devnet(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Devnet]:
    path = tmp_path_factory.mktemp("devnet") / "net"
    try:
        up = cli(
            "devnet", "up", "--nodes", "4", "--threshold", "3", "--dir", str(path),
            "--timeout", "120", "--no-backup",  # backup services: see test_recovery.py
        )  # fmt: skip
        assert up.returncode == 0, up.stderr
        assert f"devnet ready in {path}" in up.stdout
        yield Devnet(path)
    finally:
        if (path / "devnet.json").exists():
            down = cli("devnet", "down", "--dir", str(path), "--grace", "5", timeout=60)
            left = Devnet(path)
            running = [n for n, p in left.record.processes.items() if processes.is_running(p)]
            if running:  # never leave a process behind, whatever the CLI did
                left.down(grace=1.0)
            assert down.returncode == 0, down.stderr
            assert not running, f"devnet down left {running} running"


def test_status_and_sign_on_the_command_line(devnet: Devnet) -> None:
    status = cli("devnet", "status", "--dir", str(devnet.path), "--json")
    assert status.returncode == 0, status.stderr
    snapshot = json.loads(status.stdout)
    assert {p["name"]: p["alive"] for p in snapshot["processes"]} == {
        "ledger": True,
        "op1": True,
        "op2": True,
        "op3": True,
        "op4": True,
    }
    contract = snapshot["contract"]
    assert contract["protocol_state"] == "Running"
    assert contract["epoch"] == 0
    assert contract["threshold"] == 3
    assert [(m["participant_id"], m["account"], m["node"]) for m in contract["participants"]] == [
        (1, "op1", "op1"),
        (2, "op2", "op2"),
        (3, "op3", "op3"),
        (4, "op4", "op4"),
    ]
    assert [d["domain_id"] for d in contract["domains"]] == [0]
    for name in ("op1", "op2", "op3", "op4"):
        assert snapshot["nodes"][name]["role"] == "participant"
        assert snapshot["nodes"][name]["epoch"] == 0
    # Every participant attested with a development quote; the network says it is insecure.
    assert contract["attestation"]["insecure_dev_attestation"] is True
    for m in contract["participants"]:
        assert m["attestation"]["status"] == "valid", m
        assert m["attestation"]["kind"] == "dev"
        assert m["attestation"]["tcb_status"] == "Development"
    for name in ("op1", "op2", "op3", "op4"):
        assert snapshot["nodes"][name]["attestation"]["problem"] is None
        assert snapshot["nodes"][name]["attestation"]["insecure_dev_attestation"] is True

    table = cli("devnet", "status", "--dir", str(devnet.path))
    assert table.returncode == 0, table.stderr
    assert "Running" in table.stdout
    assert "INSECURE" in table.stdout

    again = cli("devnet", "up", "--nodes", "4", "--threshold", "3", "--dir", str(devnet.path))
    assert again.returncode == 1
    [line] = again.stderr.strip().splitlines()
    assert line.startswith(f"error: a devnet is running in {devnet.path} (ledger, op1,")

    payload = os.urandom(48)
    signed = cli(
        "sign", "--devnet", str(devnet.path), "--payload", payload.hex(), "--path", "cli/0",
        "--json", "--timeout", "60",
    )  # fmt: skip
    assert signed.returncode == 0, signed.stderr
    result = json.loads(signed.stdout)
    assert set(result) == {"payload", "path", "public_key", "signature", "latency_ms"}
    assert result["payload"] == payload.hex()
    assert result["path"] == "cli/0"
    with devnet.client() as client:
        derived = client.view("public_key", {"domain_id": 0, "account": USER, "path": "cli/0"})
    assert result["public_key"] == derived
    VerifyKey(bytes.fromhex(derived)).verify(payload, bytes.fromhex(result["signature"]))
    assert result["latency_ms"] > 0


def test_no_passphrase_in_logs_records_or_command_lines(devnet: Devnet) -> None:
    secrets = [p.read_bytes() for p in (devnet.path / "secrets").iterdir()]
    # four nodes; op1..op5 and user; the emergency recovery key (DIR/ers)
    assert len(secrets) == 4 + 6 + 1
    for path in devnet.path.rglob("*"):
        if path.is_file() and path.parent.name != "secrets":
            data = path.read_bytes()
            assert not any(secret in data for secret in secrets), path
    for record in devnet.record.processes.values():
        assert record.pid is not None
        cmdline = Path(f"/proc/{record.pid}/cmdline").read_bytes()
        assert not any(secret in cmdline for secret in secrets), record.name


def test_sign_rejections_are_one_line(devnet: Devnet) -> None:
    short = cli("sign", "--devnet", str(devnet.path), "--payload", "00" * 31, "--path", "p")
    assert short.returncode == 1
    [line] = short.stderr.strip().splitlines()
    assert line.startswith("error: PayloadSize:")
    no_domain = cli(
        "sign", "--devnet", str(devnet.path), "--payload", "00" * 32, "--path", "p",
        "--domain", "7",
    )  # fmt: skip
    assert no_domain.returncode == 1
    [line] = no_domain.stderr.strip().splitlines()
    assert line.startswith("error: DomainNotFound:")


def test_twenty_requests_under_several_paths(devnet: Devnet) -> None:
    paths = [PATHS[i % len(PATHS)] for i in range(20)]
    results = sign_all(devnet, paths)
    assert len(results) == 20
    assert len({r.request_id for r in results}) == 20
    by_path = {r.path: r.public_key for r in results}
    assert len(set(by_path.values())) == len(PATHS)  # one derived key per path
    assert group_key(devnet) not in by_path.values()  # never the undervived key itself


def test_garbage_on_the_p2p_port_does_not_disturb_signing(devnet: Devnet) -> None:
    port = devnet.process("op1").ports["p2p"]
    junk = [
        b"\x00" * 64,
        b"GET / HTTP/1.1\r\nHost: x\r\n\r\n",
        b"\x16\x03\x01\xff\xff" + os.urandom(300),  # a TLS record header with nonsense
        (2**31).to_bytes(4, "big") + b"\x02",  # a huge frame length, in the clear
    ]
    open_sockets = []
    for blob in junk:
        sock = socket.create_connection(("127.0.0.1", port), timeout=5)
        sock.sendall(blob)
        open_sockets.append(sock)
    idle = socket.create_connection(("127.0.0.1", port), timeout=5)  # says nothing at all
    try:
        sign_all(devnet, ["garbage/0", "garbage/1", "garbage/2"])
    finally:
        for sock in [*open_sockets, idle]:
            sock.close()
    assert devnet.alive("op1")
    sign_all(devnet, ["garbage/3"])


def test_a_peer_whose_key_is_not_in_the_contract_is_refused(devnet: Devnet, tmp_path: Path) -> None:
    stranger = Ed25519PrivateKey.generate()
    cert = tmp_path / "stranger-cert.pem"
    key = tmp_path / "stranger-key.pem"
    cert.write_bytes(tls.make_certificate(stranger))
    key.write_bytes(tls.encrypted_private_key_pem(stranger, b"test password"))
    node_cert = (node_dir(devnet, "op2") / "tls-cert.pem").read_bytes()
    context = tls.client_context(cert, key, b"test password", [node_cert])
    port = devnet.process("op2").ports["p2p"]

    async def knock() -> bytes:
        reader, writer = await asyncio.wait_for(
            asyncio.open_connection("127.0.0.1", port, ssl=context, server_hostname=""), 10
        )
        try:
            # A peer is accepted with a HELLO frame; anything else is a refusal.
            return await asyncio.wait_for(reader.read(64), 10)
        except (ssl.SSLError, ConnectionError):
            return b""
        finally:
            writer.close()
            with contextlib.suppress(ssl.SSLError, ConnectionError, TimeoutError):
                await asyncio.wait_for(writer.wait_closed(), 5)

    try:
        answer = asyncio.run(knock())
    except (ssl.SSLError, ConnectionError):
        answer = b""
    assert HELLO_BODY not in answer
    assert answer == b""
    assert devnet.alive("op2")
    sign_all(devnet, ["stranger/0"])


def test_one_node_down_still_signs(devnet: Devnet) -> None:
    killed = cli("devnet", "kill", "--dir", str(devnet.path), "op4")
    assert killed.returncode == 0, killed.stderr
    assert killed.stdout.strip() == "killed op4"
    assert not devnet.alive("op4")
    try:
        results = sign_all(devnet, ["one-down/0", "one-down/1", "one-down/2"])
        assert all(r.responder != "op4" for r in results)
    finally:
        started = cli("devnet", "start", "--dir", str(devnet.path), "op4")
    assert started.returncode == 0, started.stderr
    assert started.stdout.strip() == "started op4"
    devnet.reload()
    assert devnet.alive("op4")
    sign_all(devnet, ["one-down/3"])


def test_two_nodes_down_requests_wait_then_complete_when_one_returns(devnet: Devnet) -> None:
    assert devnet.kill("op3")
    assert devnet.kill("op4")
    restarted = False

    async def scenario() -> list[object]:
        nonlocal restarted
        async with SignClient(devnet.ledger_url, [devnet.signer(USER)]) as client:
            payloads = [os.urandom(32) for _ in range(2)]
            ids = [await client.submit(p, f"quorum-lost/{i}") for i, p in enumerate(payloads)]
            # Two of four nodes with threshold 3: nobody can answer.
            waited = await asyncio.gather(
                *(client.wait_answer(request_id, 3.0) for request_id, _ in ids),
                return_exceptions=True,
            )
            for outcome in waited:
                assert isinstance(outcome, SignError), outcome
                assert outcome.code == "timeout"
            pending = {r["request_id"] for r in await client.client.view("pending_requests")}
            assert {request_id for request_id, _ in ids} <= pending
            await asyncio.to_thread(devnet.start, "op3")
            restarted = True
            answers = [await client.wait_answer(request_id, 60.0) for request_id, _ in ids]
            for payload, answer in zip(payloads, answers, strict=True):
                assert answer.kind == "sign_responded"
                key = bytes.fromhex(answer.data["public_key"])
                VerifyKey(key).verify(payload, bytes.fromhex(answer.data["signature"]))
            return answers

    try:
        asyncio.run(scenario())
    finally:
        if not restarted:
            devnet.start("op3")
        devnet.start("op4")
    sign_all(devnet, ["quorum-back/0"])


def test_resharing_to_five_nodes_keeps_the_group_key(devnet: Devnet) -> None:
    before_key = group_key(devnet)
    [before] = sign_all(devnet, ["reshare/same-path"], keys=1)
    name = devnet.add_node("op5")
    devnet.wait_node_healthy(name)
    # Not in the contract yet: it submits its info and waits to be added.
    wait_until(
        lambda: devnet.node_get(name, "/status")["role"] == "not_participant",
        timeout=30,
        what="op5 to see it is not a participant",
    )

    epoch = devnet.reshare(threshold=4, add=[name], timeout=120)
    state = devnet.contract_state()
    assert watch.protocol_name(state) == "Running"
    assert watch.epoch(state) == epoch == 1
    assert watch.threshold(state) == 4
    assert [m["account"] for m in watch.participants(state)] == [
        "op1",
        "op2",
        "op3",
        "op4",
        "op5",
    ]
    assert group_key(devnet) == before_key
    wait_until(
        lambda: devnet.node_get(name, "/status")["role"] == "participant",
        timeout=30,
        what="op5 to take part",
    )

    [after] = sign_all(devnet, ["reshare/same-path"], keys=1)
    assert after.public_key == before.public_key  # same group key, same derived key
    # With op1 down the only signing set left is {op2, op3, op4, op5}: the newcomer's
    # share must be a valid share of the unchanged key.
    assert devnet.kill("op1")
    try:
        results = sign_all(devnet, ["reshare/0", "reshare/1"])
        assert all(r.responder != "op1" for r in results)
    finally:
        devnet.start("op1")
    sign_all(devnet, ["reshare/2"])


def test_a_changed_participant_loses_exactly_its_presignatures(devnet: Devnet) -> None:
    """op5's TLS key is replaced (a concluded migration to a machine that never shows up):
    every other node drops the presignatures op5 takes part in and keeps all others."""
    state = devnet.contract_state()
    ids = {m["account"]: m["participant_id"] for m in watch.participants(state)}
    changed = ids["op5"]
    # Only the epoch in force: a restarted node deletes older epochs' presignatures whenever
    # its pool gets to them, which is no loss this test is about.
    in_force = watch.epoch(state)
    others = ["op1", "op2", "op3", "op4"]
    sign_all(devnet, ["warm/0", "warm/1"])  # everyone has been through the signing path

    def pools_ready() -> bool:
        for node in others:
            held = presignatures(devnet, node, in_force).values()
            if not any(changed in p for p in held) or not any(changed not in p for p in held):
                return False
        return True

    wait_until(pools_ready, timeout=60, what="presignatures with and without op5")
    before = {node: presignatures(devnet, node, in_force) for node in others}
    purged_before = {
        node: metric(devnet.node_metrics(node), "quorumkeep_presignatures_purged_total")
        for node in others
    }

    # The migration: a new TLS key and signer key for op5, concluded by that signer key.
    destination_signer = AccountSigner("op5", SigningKey(os.urandom(32)))
    new_tls_key = tls.raw_public_key(Ed25519PrivateKey.generate())
    operator = devnet.signer("op5")
    with devnet.client() as client:
        client.call(
            operator,
            "start_node_migration",
            {
                "destination": {
                    "url": "127.0.0.1:9",
                    "web_url": "https://127.0.0.1:9",
                    "tls_public_key": new_tls_key.hex(),
                },
                "destination_signer_public_key": destination_signer.public_key_hex,
            },
        )
        assert client.add_key(
            operator, destination_signer.public_key, Permission(tuple(sorted(NODE_METHODS)))
        ).ok
        keyset = client.view("keyset")
        evidence = node_evidence(
            devnet.dev_platform_key, new_tls_key, destination_signer.public_key
        )
        client.call(
            destination_signer,
            "conclude_node_migration",
            {"keyset": keyset, "attestation": evidence},
        )

    for node in others:
        involving = {p for p, members in before[node].items() if changed in members}
        kept = {p for p, members in before[node].items() if changed not in members}
        assert involving and kept
        wait_until(
            lambda node=node, involving=involving: (
                not involving & presignatures(devnet, node, in_force).keys()
            ),
            timeout=30,
            what=f"{node} to purge the presignatures involving participant {changed}",
        )
        after = presignatures(devnet, node, in_force)
        assert kept <= after.keys(), f"{node} lost presignatures not involving {changed}"
        assert not any(changed in members for members in after.values())
        purged = metric(devnet.node_metrics(node), "quorumkeep_presignatures_purged_total")
        assert purged - purged_before[node] >= len(involving)

    # Four of five remain with threshold 4: the network still signs without op5.
    results = sign_all(devnet, ["after-change/0", "after-change/1"])
    assert all(r.responder != "op5" for r in results)
    for result in results:
        check_signature(devnet, result)


def test_down_then_resume_restarts_everything_but_the_replaced_node(devnet: Devnet) -> None:
    # op5's node was replaced by the migration above: it must not come back.
    devnet.retire("op5")
    stopped = devnet.down(grace=5.0)
    assert set(stopped) <= {"ledger", "op1", "op2", "op3", "op4"}
    assert not any(devnet.alive(name) for name in devnet.record.processes)
    status = cli("devnet", "status", "--dir", str(devnet.path), "--json")
    assert status.returncode == 0, status.stderr
    snapshot = json.loads(status.stdout)
    assert not any(p["alive"] for p in snapshot["processes"])
    assert "LedgerUnavailable" in snapshot["contract"]["error"]
    assert snapshot["nodes"] == {}
    refused = cli("devnet", "up", "--nodes", "4", "--threshold", "3", "--dir", str(devnet.path))
    assert refused.returncode == 1
    assert "devnet up --resume" in refused.stderr

    resumed = cli("devnet", "up", "--resume", "--dir", str(devnet.path), "--timeout", "60")
    assert resumed.returncode == 0, resumed.stderr
    devnet.reload()
    alive = {name for name in devnet.record.processes if devnet.alive(name)}
    assert alive == {"ledger", "op1", "op2", "op3", "op4"}
    with pytest.raises(DevnetError) as retired:
        devnet.start("op5")
    assert retired.value.code == "process_retired"
    sign_all(devnet, ["resumed/0", "resumed/1"])
