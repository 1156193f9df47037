"""`quorumkeep node init` / `node run` / `operator add-node-key` as real processes.

A ledger (`ledger serve`) and node processes on free 127.0.0.1 ports: start-up failures, a
clean stop on SIGTERM, and a 3-node network (t = 2) that generates a key, signs under a
derived key (checked with PyNaCl), reports itself over HTTPS, and decommissions a node
whose key a migration replaced.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import time
import tomllib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import nacl.signing
import pytest

from process_helpers import (
    NODE_PASSPHRASE,
    Ledger,
    Node,
    free_port,
    run_cli,
    wait_until,
)
from quorumkeep.contract import NODE_METHODS
from quorumkeep.crypto.derive import derive_public_key
from quorumkeep.ledger.client import AccountSigner, LedgerClient
from quorumkeep.ledger.transaction import Permission
from quorumkeep.node.identity import NodeIdentity
from quorumkeep.node.keystore import Keystore
from quorumkeep.node.storage_key import PassphraseKeySource

STOP_BOUND = 10.0


@pytest.fixture(scope="module")
def ledger(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Ledger]:
    base = tmp_path_factory.mktemp("ledger")
    served = Ledger(base / "data", ("alice", "bob", "carol", "dave", "user")).create()
    try:
        yield served.start()
    finally:
        served.close()


@pytest.fixture
def nodes() -> Iterator[list[Node]]:
    started: list[Node] = []
    try:
        yield started
    finally:
        for node in started:
            node.close()


def add_node_key(ledger: Ledger, node: Node) -> None:
    assert ledger.passphrase_file is not None
    result = run_cli(
        "operator",
        "add-node-key",
        "--account",
        node.account,
        "--key",
        str(ledger.key_files[node.account]),
        "--node-info",
        json.dumps(node.info),
        "--ledger",
        ledger.url,
        "--passphrase-file",
        str(ledger.passphrase_file),
    )
    assert result.returncode == 0, result.stderr


# --- node init ----------------------------------------------------------------------------


@pytest.mark.slow
def test_node_init_prints_the_participant_info_and_writes_node_toml(tmp_path: Path) -> None:
    node = Node("alice", tmp_path / "alice", "http://127.0.0.1:9").init()
    identity = json.loads((node.directory / "identity.json").read_text())
    assert node.info == {
        "account": "alice",
        "url": f"127.0.0.1:{node.p2p_port}",
        "web_url": f"https://127.0.0.1:{node.web_port}",
        "tls_public_key": identity["tls_public_key"],
        "signer_public_key": identity["signer_public_key"],
    }
    config = tomllib.loads(node.config_path.read_text())
    assert config["account"] == "alice"
    assert config["data_dir"] == "."
    assert config["ledger_url"] == "http://127.0.0.1:9"
    assert config["storage_key"] == {
        "source": "passphrase",
        "passphrase_env": "QUORUMKEEP_PASSPHRASE",
    }
    # Nothing in the directory holds the passphrase.
    for path in node.directory.iterdir():
        assert NODE_PASSPHRASE.encode() not in path.read_bytes(), path.name

    again = run_cli(
        "node", "init", "--account", "alice", "--dir", str(node.directory),
        "--ledger", "http://127.0.0.1:9", "--kdf-cost", "minimum", env=node.env(),
    )  # fmt: skip
    assert again.returncode != 0
    assert again.stderr.startswith("error: ") and len(again.stderr.strip().splitlines()) == 1


@pytest.mark.slow
def test_node_init_refuses_bad_input(tmp_path: Path) -> None:
    env = {**os.environ, "QUORUMKEEP_PASSPHRASE": NODE_PASSPHRASE}
    base = ["node", "init", "--dir", str(tmp_path / "n"), "--kdf-cost", "minimum"]
    cases = [
        [*base, "--account", "alice", "--ledger", "ftp://x"],
        [*base, "--account", "alice", "--ledger", "http://x", "--p2p", "nohost"],
        [*base, "--account", "alice", "--ledger", "http://x", "--p2p", "0.0.0.0:7000"],
        [*base, "--account", "alice", "--ledger", "http://x", "--kdf-cost", "none"],
    ]
    for args in cases:
        result = run_cli(*args, env=env)
        assert result.returncode == 2, (args, result.stderr)
        assert result.stderr.startswith("error: "), result.stderr
    no_passphrase = {k: v for k, v in os.environ.items() if k != "QUORUMKEEP_PASSPHRASE"}
    result = run_cli(*base, "--account", "alice", "--ledger", "http://x", env=no_passphrase)
    assert result.returncode == 2
    assert "QUORUMKEEP_PASSPHRASE" in result.stderr
    assert not (tmp_path / "n" / "node.toml").exists()


@pytest.mark.slow
def test_node_run_refuses_a_missing_config_a_bad_one_and_a_bad_log_level(tmp_path: Path) -> None:
    missing = run_cli("node", "run", "--config", str(tmp_path / "none.toml"))
    assert missing.returncode == 2
    assert "startup failed:" in missing.stderr and "config_not_found" in missing.stderr
    bad = tmp_path / "node.toml"
    bad.write_text('account = "alice"\nsurprise = 1\n')
    invalid = run_cli("node", "run", "--config", str(bad))
    assert invalid.returncode == 2
    assert len([x for x in invalid.stderr.splitlines() if "startup failed" in x]) == 1
    loud = run_cli("node", "run", "--config", str(bad), "--log-level", "loud")
    assert loud.returncode == 2
    assert loud.stderr.startswith("error: log level")


# --- operator add-node-key ----------------------------------------------------------------


@pytest.mark.slow
def test_operator_adds_a_function_call_key_for_node_methods(ledger: Ledger, tmp_path: Path) -> None:
    node = Node("dave", tmp_path / "dave", ledger.url).init()
    add_node_key(ledger, node)
    with ledger.client() as client:
        keys = {k["public_key"]: k for k in client.account("dave")["keys"]}
    entry = keys[node.info["signer_public_key"]]
    assert entry["permission"] == Permission(tuple(NODE_METHODS)).to_json()
    add_node_key(ledger, node)  # a second run is a no-op, not an error

    # The node info must be for the account named.
    assert ledger.passphrase_file is not None
    wrong = run_cli(
        "operator", "add-node-key", "--account", "carol", "--key", str(ledger.key_files["carol"]),
        "--node-info", json.dumps(node.info), "--ledger", ledger.url,
        "--passphrase-file", str(ledger.passphrase_file),
    )  # fmt: skip
    assert wrong.returncode == 2
    assert "for account 'dave', not 'carol'" in wrong.stderr
    garbage = run_cli(
        "operator", "add-node-key", "--account", "dave", "--key", str(ledger.key_files["dave"]),
        "--node-info", "{\"account\": \"dave\"}", "--ledger", ledger.url,
        "--passphrase-file", str(ledger.passphrase_file),
    )  # fmt: skip
    assert garbage.returncode == 2
    assert garbage.stderr.startswith("error: --node-info")


# --- start-up failures and stop -------------------------------------------------------------


def startup_failure(node: Node, *extra: str, env: dict[str, str] | None = None) -> str:
    node.start(*extra, env=env)
    assert node.proc is not None
    code = node.proc.wait(30)
    assert code == 2, node.log()
    failures = [line for line in node.log().splitlines() if "startup failed" in line]
    assert len(failures) == 1, node.log()
    return failures[0]


@pytest.mark.slow
def test_wrong_passphrase_is_one_line_and_exit_2(
    ledger: Ledger, tmp_path: Path, nodes: list[Node]
) -> None:
    node = Node("alice", tmp_path / "alice", ledger.url).init()
    nodes.append(node)
    line = startup_failure(node, env={**os.environ, "QUORUMKEEP_PASSPHRASE": "not it"})
    assert "wrong passphrase" in line
    assert "not it" not in node.log()


@pytest.mark.slow
def test_unreachable_ledger_gives_up_after_the_bound(tmp_path: Path, nodes: list[Node]) -> None:
    node = Node("alice", tmp_path / "alice", f"http://127.0.0.1:{free_port()}").init()
    nodes.append(node)
    started = time.monotonic()
    line = startup_failure(node, "--ledger-wait", "1")
    assert time.monotonic() - started < 20
    assert "unreachable" in line and "ledger_unreachable" in line


@pytest.mark.slow
def test_port_in_use_is_reported(ledger: Ledger, tmp_path: Path, nodes: list[Node]) -> None:
    node = Node("alice", tmp_path / "alice", ledger.url).init()
    nodes.append(node)
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", node.p2p_port))
        taken.listen()
        line = startup_failure(node)
    assert f"p2p address 127.0.0.1:{node.p2p_port}" in line
    assert "address already in use" in line


@pytest.mark.slow
def test_sigterm_stops_the_node_cleanly(ledger: Ledger, tmp_path: Path, nodes: list[Node]) -> None:
    node = Node("carol", tmp_path / "carol", ledger.url).init()
    nodes.append(node)
    node.start()
    node.wait_healthy()
    # /health is served before start-up finishes (the coordinator starts last); a signal in
    # that window is the other, separately logged path.
    wait_until(lambda: "started account=" in node.log(), 30, "carol to finish start-up")
    started = time.monotonic()
    assert node.terminate(STOP_BOUND) == 0
    assert time.monotonic() - started < STOP_BOUND
    log = node.log()
    assert "stopping on signal" in log and log.rstrip().endswith("stopped")
    # The ports are free again.
    for port in (node.p2p_port, node.web_port):
        with socket.socket() as sock:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            sock.bind(("127.0.0.1", port))
    # SIGINT too.
    node.start()
    node.wait_healthy()
    assert node.proc is not None
    node.proc.send_signal(signal.SIGINT)
    assert node.proc.wait(STOP_BOUND) == 0


# --- a 3-node network ----------------------------------------------------------------------


def wait_state(ledger: Ledger, predicate: Any, timeout: float, what: str) -> dict[str, Any]:
    found: dict[str, Any] = {}

    def check() -> bool:
        state = ledger.view("state")
        if predicate(state):
            found.update(state)
            return True
        return False

    wait_until(check, timeout, what, step=0.1)
    return found


def sign(ledger: Ledger, payload: bytes, path: str) -> tuple[bytes, bytes]:
    """Submit a request as `user`; return (derived public key, signature) once answered."""
    with ledger.client() as client:
        height = client.status()["height"]
        value = client.call(
            ledger.signers["user"], "sign", {"payload": payload.hex(), "path": path, "domain_id": 0}
        ).value
    request_id = value["request_id"]
    event = ledger.wait_event(
        lambda e: (
            e.kind in ("sign_responded", "sign_failed") and e.data.get("request_id") == request_id
        ),
        timeout=30,
        since=height - 1,
    )
    assert event.kind == "sign_responded", event.data
    return bytes.fromhex(value["public_key"]), bytes.fromhex(event.data["signature"])


def metric(node: Node, name: str) -> float:
    """Sum of every sample of ``name`` (all label sets) in the node's /metrics."""
    total = 0.0
    for line in node.get("/metrics").text.splitlines():
        if line.startswith(name + "{") or line.startswith(name + " "):
            total += float(line.split()[-1])
    return total


def open_keystore(node: Node) -> Keystore:
    source = PassphraseKeySource(node.directory, lambda: NODE_PASSPHRASE.encode())
    key = source.load()
    identity = NodeIdentity.load(node.directory, node.account, key)
    return Keystore.open(node.directory, key, identity.owner)


def check_signatures(ledger: Ledger, group_key: bytes, tag: int, paths: list[str]) -> None:
    for k, path in enumerate(paths):
        payload = bytes([tag, k]) * 16
        public_key, signature = sign(ledger, payload, path)
        assert public_key == derive_public_key(group_key, "user", path)
        nacl.signing.VerifyKey(public_key).verify(payload, signature)


@pytest.mark.slow
def test_a_network_generates_signs_reshares_and_decommissions(
    ledger: Ledger, tmp_path: Path, nodes: list[Node]
) -> None:
    """3 nodes (t=2) generate domain 0's key and sign; a resharing lets dave join and carol
    leave (t stays 2); a migration then replaces alice's node, which wipes itself."""
    accounts = ["alice", "bob", "carol", "dave"]
    network = {a: Node(a, tmp_path / f"net-{a}", ledger.url).init() for a in accounts}
    nodes.extend(network.values())
    for node in network.values():
        add_node_key(ledger, node)
        # alice's node is replaced at the end: with this option it exits instead of standing by
        node.start(*(["--exit-on-decommission"] if node.account == "alice" else []))
    for node in network.values():
        node.wait_healthy()
        node.wait_status(lambda s: s["role"] == "not_participant", 10, "the first state read")
    alice, bob, carol, dave = (network[a] for a in accounts)
    first = [alice, bob, carol]

    # Key generation, then signing under derived keys.
    ledger.call("alice", "init", {"participants": [n.info for n in first], "threshold": 2})
    for node in first:
        ledger.call(
            node.account,
            "vote_add_domains",
            {"domains": [{"scheme": "Ed25519", "backups_required": 0}]},
        )
    state = wait_state(
        ledger,
        lambda s: s["protocol_state"]["state"] == "Running" and s["protocol_state"]["domains"],
        60,
        "domain 0's key",
    )
    group_key = bytes.fromhex(state["protocol_state"]["domains"][0]["public_key"])
    for node in first:
        node.wait_status(lambda s: s["keysets"] == {"0": [0]}, 10, "the share stored")
        status = node.status()
        assert status["role"] == "participant"
        assert status["participant_id"] == accounts.index(node.account) + 1
        assert status["protocol_state"] == "Running" and status["epoch"] == 0
    check_signatures(ledger, group_key, 1, ["", "m/0", "wallet/ünïcode"])

    # Metrics and status over HTTPS, pinned to each node's certificate.
    for node in first:
        status = node.status()
        assert sorted(status["connected_peers"]) == sorted({1, 2, 3} - {status["participant_id"]})
        text = node.get("/metrics").text
        assert 'quorumkeep_protocol_state{state="Running"} 1.0' in text
        assert "quorumkeep_peers_connected 2.0" in text
    assert sum(metric(n, "quorumkeep_signatures_total") for n in first) == 3
    # dave is no participant: it offered itself as a candidate with its signer key.
    wait_until(lambda: "dave" in ledger.view("candidates"), 10, "dave's candidacy")
    assert ledger.view("candidates")["dave"]["tls_public_key"] == dave.info["tls_public_key"]

    # Resharing: dave joins, carol leaves, the group key stays.
    proposal = {"participants": [alice.info, bob.info, dave.info], "threshold": 2}
    for account in ("alice", "bob", "dave"):
        ledger.call(account, "vote_new_parameters", {"epoch": 1, "proposal": proposal})
    wait_state(
        ledger,
        lambda s: s["protocol_state"]["state"] == "Running" and s["protocol_state"]["epoch"] == 1,
        60,
        "the resharing to complete",
    )
    for node in (alice, bob, dave):
        node.wait_status(lambda s: s["keysets"] == {"1": [0]}, 10, "old shares deleted")
    wait_until(lambda: carol.status()["keysets"] == {}, 10, "carol to delete her shares")
    assert carol.status()["role"] == "not_participant"
    assert dave.status()["participant_id"] == 4
    check_signatures(ledger, group_key, 2, ["m/1", "after-resharing"])

    # A migration replaces alice's node: the old process (--exit-on-decommission) wipes its
    # shares and exits 0.
    new_signer = AccountSigner("alice", nacl.signing.SigningKey(os.urandom(32)))
    destination = {
        "url": f"127.0.0.1:{free_port()}",
        "web_url": f"https://127.0.0.1:{free_port()}",
        "tls_public_key": bytes(nacl.signing.SigningKey(os.urandom(32)).verify_key).hex(),
    }
    purged_before = sum(metric(n, "quorumkeep_presignatures_purged_total") for n in (bob, dave))
    ledger.call(
        "alice",
        "start_node_migration",
        {"destination": destination, "destination_signer_public_key": new_signer.public_key_hex},
    )
    with LedgerClient(ledger.url) as client:
        permission = Permission(tuple(NODE_METHODS))
        client.add_key(ledger.signers["alice"], new_signer.public_key, permission)
        client.call(new_signer, "conclude_node_migration", {"keyset": client.view("keyset")})
    assert alice.proc is not None
    assert alice.proc.wait(30) == 0
    assert "decommissioned:" in alice.log()
    with open_keystore(alice) as store:
        assert store.key_shares() == []
        assert store.presignature_counts() == {}
    # The others dropped alice's old node and every presignature involving participant 1.
    wait_until(
        lambda: all(1 not in n.status()["connected_peers"] for n in (bob, dave)),
        15,
        "the others to drop alice's old node",
    )
    purged = sum(metric(n, "quorumkeep_presignatures_purged_total") for n in (bob, dave))
    assert purged > purged_before
    for node in (bob, dave):
        with open_keystore(node) as store:
            for info in store.presignatures(0):
                assert 1 not in info.participants
    check_signatures(ledger, group_key, 3, ["after-migration"])
