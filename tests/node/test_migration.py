"""Node migration with real processes: a ledger and `node run` processes on 127.0.0.1.

Three operators (alice, bob, carol; t = 2) generate two domains' keys. alice's backup
service is played by this test process with the backup protocol's own client
(:class:`quorumkeep.backup.client.NodeClient`) and a backup identity registered with the
operator's key: it fetches alice's shares from her node (``GET /backup/keyshares``) and
pushes them to a migration's destination (``PUT /backup/keyshares``). What is checked:

- every refused push (no open migration, another epoch, a tampered or re-signed
  ciphertext, shares that do not match the contract, another account's backup service)
  leaves the destination unchanged;
- a migration to a fresh node imports, concludes and signs; the replaced node wipes every
  share and presignature and stays up as a stand-by; a migration back to it (A → B → A)
  works with the same process;
- a resharing started mid-migration cancels it: shares already imported are deleted, a
  later push is refused, nothing is concluded;
- a destination restarted between import and conclusion resumes concluding with the shares
  it stored, and concludes by itself once the operator adds its signer key.

Timings (start_node_migration → migration_concluded) are printed (`pytest -s`).
"""

from __future__ import annotations

import asyncio
import os
import time
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, TypeVar

import nacl.signing
import pytest

from process_helpers import NODE_PASSPHRASE, Ledger, Node, wait_until
from quorumkeep.backup.client import FetchedBackup, NodeClient, NodeEndpoint, NodeRefused
from quorumkeep.backup.identity import BackupIdentity
from quorumkeep.contract import NODE_METHODS
from quorumkeep.crypto.derive import derive_public_key
from quorumkeep.crypto.group import random_scalar
from quorumkeep.crypto.seal import KxKeyPair
from quorumkeep.ledger.transaction import Permission
from quorumkeep.node.identity import NodeIdentity
from quorumkeep.node.keystore import Keystore
from quorumkeep.node.storage_key import PassphraseKeySource
from quorumkeep.wire.backup import (
    PATH_KEYSHARES,
    PATH_RECOVERY_SESSION,
    Ed25519Signer,
    Keyset,
    KeyShare,
    RecoveryAck,
    RecoverySession,
    make_hello,
    seal_recovery,
)

pytestmark = pytest.mark.slow  # every test here uses a module-wide network of processes


T = TypeVar("T")

WAIT = 30.0
DOMAINS = 2
TIMINGS: list[tuple[str, float]] = []


# --- helpers -----------------------------------------------------------------------------


def run(factory: Callable[[NodeClient], Awaitable[T]], timeout: float = 30.0) -> T:
    """Run one backup-protocol exchange with a fresh client (bounded)."""

    async def bounded() -> T:
        client = NodeClient(timeout=10.0)
        try:
            async with asyncio.timeout(timeout):
                return await factory(client)
        finally:
            await client.aclose()

    return asyncio.run(bounded())


def endpoint(node: Node) -> NodeEndpoint:
    return NodeEndpoint(node.web_url, bytes.fromhex(node.info["tls_public_key"]))


def new_identity(account: str) -> BackupIdentity:
    return BackupIdentity(account, Ed25519Signer(os.urandom(32)), KxKeyPair.generate(os.urandom))


def fetch(node: Node, identity: BackupIdentity) -> FetchedBackup:
    return run(lambda c: c.fetch_backup(endpoint(node), identity))


def push(
    node: Node, identity: BackupIdentity, keyset: Keyset, shares: list[KeyShare]
) -> RecoveryAck:
    return run(lambda c: c.push_recovery(endpoint(node), identity, keyset, shares))


def push_refused(
    node: Node, identity: BackupIdentity, keyset: Keyset, shares: list[KeyShare]
) -> tuple[str, int]:
    """(error code, HTTP status) of a push the node must refuse."""
    try:
        push(node, identity, keyset, shares)
    except NodeRefused as exc:
        return exc.remote_code, exc.http_status
    raise AssertionError("the node accepted a push it had to refuse")


def metric(node: Node, name: str) -> float:
    total = 0.0
    for line in node.get("/metrics").text.splitlines():
        if line.startswith(name + "{") or line.startswith(name + " "):
            total += float(line.split()[-1])
    return total


def open_keystore(node: Node) -> Keystore:
    key = PassphraseKeySource(node.directory, lambda: NODE_PASSPHRASE.encode()).load()
    identity = NodeIdentity.load(node.directory, node.account, key)
    return Keystore.open(node.directory, key, identity.owner)


def assert_no_share_bytes(node: Node, shares: list[KeyShare]) -> None:
    """No file in the node's directory holds a share, raw or hex (sealed or wiped)."""
    secrets = [s.signing_share for s in shares] + [s.signing_share.hex().encode() for s in shares]
    for path in node.directory.rglob("*"):
        if path.is_file():
            data = path.read_bytes()
            assert not any(secret in data for secret in secrets), path.name


def sign(ledger: Ledger, payload: bytes, path: str, domain_id: int) -> tuple[bytes, bytes]:
    """Submit a request as `user`; (derived public key, signature) once answered."""
    with ledger.client() as client:
        height = client.status()["height"]
        value = client.call(
            ledger.signers["user"],
            "sign",
            {"payload": payload.hex(), "path": path, "domain_id": domain_id},
        ).value
    request_id = value["request_id"]
    event = ledger.wait_event(
        lambda e: (
            e.kind in ("sign_responded", "sign_failed") and e.data.get("request_id") == request_id
        ),
        timeout=WAIT,
        since=height - 1,
    )
    assert event.kind == "sign_responded", event.data
    return bytes.fromhex(value["public_key"]), bytes.fromhex(event.data["signature"])


def wait_state(ledger: Ledger, predicate: Callable[[dict[str, Any]], bool], what: str) -> None:
    wait_until(lambda: predicate(ledger.view("state")), WAIT, what, step=0.05)


def alice_tls_key(ledger: Ledger) -> str:
    view = ledger.view("participants")
    return next(p["tls_public_key"] for p in view["participants"] if p["account"] == "alice")


def migration_open(ledger: Ledger) -> bool:
    return ledger.view("migration_info", {"account": "alice"}) is not None


# --- the network ---------------------------------------------------------------------------


@dataclass
class Cluster:
    ledger: Ledger
    a: Node
    """alice's original node."""
    b: Node
    """A second machine of alice's, waiting."""
    bob: Node
    carol: Node
    service: BackupIdentity
    group_keys: list[bytes]
    base: Path
    extra: list[Node] = field(default_factory=list)
    signed: int = 0

    def add_node_key(self, node: Node) -> None:
        with self.ledger.client() as client:
            client.add_key(
                self.ledger.signers[node.account],
                bytes.fromhex(node.info["signer_public_key"]),
                Permission(tuple(NODE_METHODS)),
            ).raise_for_failure()

    def signs(self, tag: str) -> None:
        """Every domain signs under a derived key; checked with PyNaCl."""
        for domain_id, group_key in enumerate(self.group_keys):
            self.signed += 1
            payload = f"{tag}/{self.signed}".encode().ljust(32, b".")
            public_key, signature = sign(self.ledger, payload, f"m/{tag}", domain_id)
            assert public_key == derive_public_key(group_key, "user", f"m/{tag}")
            nacl.signing.VerifyKey(public_key).verify(payload, signature)

    def backup(self, node: Node) -> FetchedBackup:
        """alice's current shares, fetched from her node like her backup service does."""
        return fetch(node, self.service)

    def start_migration(self, destination: Node) -> float:
        started = time.monotonic()
        self.ledger.call(
            "alice",
            "start_node_migration",
            {"destination": destination.info},
        )
        return started


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    base = tmp_path_factory.mktemp("migration")
    ledger = Ledger(base / "ledger", ("alice", "bob", "carol", "user")).create()
    nodes: list[Node] = []
    made: Cluster | None = None
    try:
        ledger.start(idle_block_ms=100)
        a, b, bob, carol = (
            Node(account, base / name, ledger.url).init()
            for account, name in (
                ("alice", "alice-a"),
                ("alice", "alice-b"),
                ("bob", "bob"),
                ("carol", "carol"),
            )
        )
        nodes.extend([a, b, bob, carol])
        made = Cluster(ledger, a, b, bob, carol, new_identity("alice"), [], base, extra=nodes)
        for node in nodes:
            made.add_node_key(node)
            node.start()
        for node in nodes:
            node.wait_healthy()
        first = [a, bob, carol]
        ledger.call("alice", "init", {"participants": [n.info for n in first], "threshold": 2})
        for node in first:
            ledger.call(
                node.account,
                "vote_add_domains",
                {"domains": [{"scheme": "Ed25519", "backups_required": 0}] * DOMAINS},
            )
        wait_state(
            ledger,
            lambda s: (
                s["protocol_state"]["state"] == "Running"
                and len(s["protocol_state"]["domains"]) == DOMAINS
            ),
            "both domains' keys",
        )
        keyset = ledger.view("keyset")
        made.group_keys = [bytes.fromhex(d["public_key"]) for d in keyset["domains"]]
        for node in first:
            node.wait_status(lambda s: s["keysets"] == {"0": [0, 1]}, WAIT, "shares stored")
        b.wait_status(lambda s: s["role"] == "waiting", WAIT, "b waits")
        ledger.call("alice", "register_backup_service", made.service.public.registration())
        yield made
    finally:
        for node in made.extra if made is not None else nodes:
            node.close()
        ledger.close()
        if TIMINGS:
            print("\nmigration timings (start_node_migration → concluded):")
            for what, seconds in TIMINGS:
                print(f"  {what}: {seconds:.3f} s")


# --- tests ---------------------------------------------------------------------------------


def test_the_backup_endpoint_serves_the_registered_service_and_counts_it(cluster: Cluster) -> None:
    a = cluster.a
    assert metric(a, "quorumkeep_last_backup_served_epoch") == -1
    before = time.time()
    backup = cluster.backup(a)
    assert backup.keyset.epoch == 0 and list(backup.keyset.domain_ids) == [0, 1]
    assert {s.participant_id for s in backup.shares} == {1}
    assert metric(a, "quorumkeep_last_backup_served_epoch") == 0
    assert metric(a, "quorumkeep_last_backup_served_timestamp_seconds") >= int(before)
    # Another account's backup service gets nothing from alice's node.
    bob_service = new_identity("bob")
    cluster.ledger.call("bob", "register_backup_service", bob_service.public.registration())
    impostor = BackupIdentity("alice", bob_service.signer, bob_service.encryption)
    with pytest.raises(NodeRefused) as refused:
        fetch(a, impostor)
    assert refused.value.remote_code == "unregistered_caller"


def test_refused_pushes_leave_the_destination_unchanged(cluster: Cluster) -> None:
    ledger, a, b = cluster.ledger, cluster.a, cluster.b
    backup = cluster.backup(a)
    keyset, shares = backup.keyset, backup.shares

    def unchanged(role: str) -> None:
        status = b.status()
        assert status["role"] == role
        assert status["keysets"] == {} and status["presignatures"] == {}
        assert alice_tls_key(ledger) == a.info["tls_public_key"]
        assert a.status()["role"] == "participant"

    # No migration open: the recovery session is refused before any share is sent.
    assert push_refused(b, cluster.service, keyset, shares) == ("no_open_migration", 409)
    unchanged("waiting")

    # A migration to b's TLS key but another signer key: b could never conclude it, so its
    # own check against the contract refuses the shares the endpoint let through.
    destination = {k: b.info[k] for k in ("url", "web_url", "tls_public_key")}
    other_signer = bytes(nacl.signing.SigningKey.generate().verify_key).hex()
    ledger.call(
        "alice",
        "start_node_migration",
        {"destination": destination, "destination_signer_public_key": other_signer},
    )
    b.wait_status(lambda s: s["role"] == "wait_for_migration", WAIT, "b sees the migration")
    assert push_refused(b, cluster.service, keyset, shares) == ("no_open_migration", 409)
    assert "migration shares refused" in b.log()
    unchanged("wait_for_migration")

    cluster.start_migration(b)  # last call wins: now with b's own signer key
    wait_until(
        lambda: (
            ledger.view("migration_info", {"account": "alice"})["destination_signer_public_key"]
            == b.info["signer_public_key"]
        ),
        WAIT,
        "the migration replaced",
    )
    assert b.status()["migration"]["phase"] == "waiting_for_shares"

    # Shares of another epoch.
    later = Keyset(keyset.epoch + 1, keyset.domains)
    stale = [replace(s, epoch=keyset.epoch + 1) for s in shares]
    assert push_refused(b, cluster.service, later, stale) == ("wrong_epoch", 409)
    unchanged("wait_for_migration")

    # Shares that do not reproduce the contract's verifying shares.
    forged = [replace(s, signing_share=random_scalar(os.urandom)) for s in shares]
    assert push_refused(b, cluster.service, keyset, forged) == ("shares_mismatch", 422)
    # Not every domain.
    assert push_refused(b, cluster.service, keyset, shares[:1]) == ("shares_mismatch", 422)
    unchanged("wait_for_migration")

    # A tampered ciphertext: as sent (the signature breaks) and re-signed (the AEAD breaks).
    for resign, expected in ((False, ("bad_signature", 401)), (True, ("decryption_failed", 400))):
        with b.https() as http:
            ephemeral = KxKeyPair.generate(os.urandom)
            hello = make_hello(
                "recovery",
                account="alice",
                node_tls_public_key=endpoint(b).tls_public_key,
                identity=cluster.service.signer,
                ephemeral=ephemeral,
                now_ms=int(time.time() * 1000),
                random_bytes=os.urandom,
            )
            answer = http.post(PATH_RECOVERY_SESSION, headers=hello.to_headers())
            assert answer.status_code == 200, answer.text
            session = RecoverySession.from_json(answer.json())
            sealed = seal_recovery(
                session,
                identity=cluster.service.signer,
                service_ephemeral=ephemeral,
                service_encryption=cluster.service.encryption,
                keyset=keyset,
                shares=shares,
                now_ms=int(time.time() * 1000),
                random_bytes=os.urandom,
            )
            flipped = bytearray(sealed.ciphertext)
            flipped[len(flipped) // 2] ^= 0x01
            tampered = replace(sealed, ciphertext=bytes(flipped))
            if resign:
                tampered = replace(
                    tampered, signature=cluster.service.signer.sign(tampered.statement())
                )
            answer = http.put(PATH_KEYSHARES, json=tampered.to_json())
            code = answer.json()["error"]["code"]
            assert (code, answer.status_code) == expected
        unchanged("wait_for_migration")

    # Another account's backup service: under its own account it is not this node's ...
    bob_service = new_identity("bob")
    ledger.call("bob", "register_backup_service", bob_service.public.registration())
    assert push_refused(b, bob_service, keyset, shares) == ("wrong_node", 421)
    # ... and claiming alice's account, its key is not the one alice registered.
    impostor = BackupIdentity("alice", bob_service.signer, bob_service.encryption)
    assert push_refused(b, impostor, keyset, shares) == ("unregistered_caller", 403)
    unchanged("wait_for_migration")

    # Nothing was imported, so nothing concluded; the operator cancels.
    assert metric(b, "quorumkeep_migration_imports_total") == 0
    assert migration_open(ledger)
    ledger.call("alice", "cancel_node_migration", {})
    b.wait_status(lambda s: s["role"] == "waiting", WAIT, "b back to waiting")
    unchanged("waiting")


def test_migration_to_a_fresh_node_and_back_without_restarts(cluster: Cluster) -> None:
    ledger, a, b, bob, carol = cluster.ledger, cluster.a, cluster.b, cluster.bob, cluster.carol
    cluster.signs("before")
    backup = cluster.backup(a)
    a_purged = metric(bob, "quorumkeep_presignatures_purged_total") + metric(
        carol, "quorumkeep_presignatures_purged_total"
    )

    # A → B: the backup service pushes, B verifies, stores and concludes by itself.
    started = cluster.start_migration(b)
    b.wait_status(lambda s: s["role"] == "wait_for_migration", WAIT, "b sees the migration")
    ack = push(b, cluster.service, backup.keyset, backup.shares)
    assert ack.keyset_hash == backup.keyset.hash and ack.epoch == backup.keyset.epoch
    wait_until(
        lambda: alice_tls_key(ledger) == b.info["tls_public_key"], WAIT, "A → B concluded", 0.02
    )
    TIMINGS.append(("A → B", time.monotonic() - started))
    assert not migration_open(ledger)
    b.wait_status(
        lambda s: s["role"] == "participant" and s["keysets"] == {"0": [0, 1]},
        WAIT,
        "b takes part",
    )
    assert b.status()["participant_id"] == 1
    assert metric(b, "quorumkeep_migrations_concluded_total") == 1

    # The old node wiped every share and presignature and stands by (still serving its API).
    a.wait_status(lambda s: s["role"] == "decommissioned", WAIT, "a decommissioned")
    status = a.status()
    assert status["keysets"] == {} and status["presignatures"] == {}
    assert status["participant_id"] is None and status["connected_peers"] == []
    assert a.proc is not None and a.proc.poll() is None
    assert "decommissioned: " in a.log() and "standing by" in a.log()
    assert_no_share_bytes(a, backup.shares)
    with open_keystore(a) as store:
        assert store.key_shares() == [] and store.presignature_counts() == {}
    # bob and carol reconnected to participant 1's new node and purged what involved it.
    for node in (bob, carol):
        node.wait_status(lambda s: 1 in s["connected_peers"], WAIT, "peers reach the new node")
    assert (
        metric(bob, "quorumkeep_presignatures_purged_total")
        + metric(carol, "quorumkeep_presignatures_purged_total")
        > a_purged
    )
    cluster.signs("on-b")

    # B → A: the same process, untouched since, takes the shares back.
    started = cluster.start_migration(a)
    a.wait_status(lambda s: s["role"] == "wait_for_migration", WAIT, "a sees the migration")
    push(a, cluster.service, backup.keyset, backup.shares)
    wait_until(
        lambda: alice_tls_key(ledger) == a.info["tls_public_key"], WAIT, "B → A concluded", 0.02
    )
    TIMINGS.append(("B → A", time.monotonic() - started))
    a.wait_status(
        lambda s: s["role"] == "participant" and s["keysets"] == {"0": [0, 1]},
        WAIT,
        "a takes part again",
    )
    b.wait_status(
        lambda s: s["role"] == "decommissioned" and s["keysets"] == {} and not s["presignatures"],
        WAIT,
        "b wiped",
    )
    assert b.proc is not None and b.proc.poll() is None
    for node in (bob, carol):
        node.wait_status(lambda s: 1 in s["connected_peers"], WAIT, "peers reach a again")
    cluster.signs("back-on-a")
    # A stand-by serves no backup: it is not the account's node any more.
    with pytest.raises(NodeRefused) as refused:
        fetch(b, cluster.service)
    assert refused.value.remote_code == "not_participant"


def test_a_resharing_mid_migration_cancels_it_and_nothing_stays_imported(
    cluster: Cluster,
) -> None:
    ledger, a = cluster.ledger, cluster.a
    # A fresh node whose signer key the operator has not added: it can import, not conclude.
    c = Node("alice", cluster.base / "alice-c", ledger.url).init()
    cluster.extra.append(c)
    c.start()
    c.wait_healthy()
    c.wait_status(lambda s: s["role"] == "waiting", WAIT, "c waits")
    backup = cluster.backup(a)

    cluster.start_migration(c)
    c.wait_status(lambda s: s["role"] == "wait_for_migration", WAIT, "c sees the migration")
    push(c, cluster.service, backup.keyset, backup.shares)
    status = c.wait_status(
        lambda s: s["keysets"] == {"0": [0, 1]}, WAIT, "c stored the imported shares"
    )
    assert status["migration"]["phase"] == "concluding" and status["role"] != "participant"
    wait_until(lambda: "conclude_node_migration failed" in c.log(), WAIT, "c's conclude refused")
    assert alice_tls_key(ledger) == a.info["tls_public_key"]

    # A resharing (same participants, epoch 1) starts: the contract cancels the migration.
    view = ledger.view("participants")
    proposal = {"participants": view["participants"], "threshold": view["threshold"]}
    for account in ("alice", "bob", "carol"):
        value = ledger.call(account, "vote_new_parameters", {"epoch": 1, "proposal": proposal})
        if value["protocol_state"] == "Resharing":
            break
    assert not migration_open(ledger)
    c.wait_status(
        lambda s: s["keysets"] == {} and s["migration"] is None and s["role"] == "waiting",
        WAIT,
        "c deletes the imported shares",
    )
    assert "deleted 2 imported key shares" in c.log()
    # A push now is refused: nothing is imported.
    assert push_refused(c, cluster.service, backup.keyset, backup.shares) == (
        "no_open_migration",
        409,
    )
    assert c.status()["keysets"] == {}

    wait_state(
        ledger,
        lambda s: s["protocol_state"]["state"] == "Running" and s["protocol_state"]["epoch"] == 1,
        "the resharing to complete",
    )
    assert alice_tls_key(ledger) == a.info["tls_public_key"]
    for node in (a, cluster.bob, cluster.carol):
        node.wait_status(lambda s: s["keysets"] == {"1": [0, 1]}, WAIT, "epoch 1 shares")
    cluster.signs("after-resharing")

    # A migration at epoch 1 refuses the epoch-0 backup: the contract moved on.
    cluster.start_migration(c)
    c.wait_status(lambda s: s["role"] == "wait_for_migration", WAIT, "c sees the new migration")
    assert push_refused(c, cluster.service, backup.keyset, backup.shares) == ("wrong_epoch", 409)
    assert c.status()["keysets"] == {}
    ledger.call("alice", "cancel_node_migration", {})
    c.wait_status(lambda s: s["role"] == "waiting", WAIT, "c waits again")
    assert_no_share_bytes(c, backup.shares)


def test_a_restarted_destination_resumes_concluding_with_its_imported_shares(
    cluster: Cluster,
) -> None:
    ledger, a = cluster.ledger, cluster.a
    d = Node("alice", cluster.base / "alice-d", ledger.url).init()
    cluster.extra.append(d)
    d.start()
    d.wait_healthy()
    backup = cluster.backup(a)
    started = cluster.start_migration(d)
    d.wait_status(lambda s: s["role"] == "wait_for_migration", WAIT, "d sees the migration")
    push(d, cluster.service, backup.keyset, backup.shares)
    wait_until(lambda: "conclude_node_migration failed" in d.log(), WAIT, "d's conclude refused")

    # Restarted before it could conclude: it finds the imported shares and goes on.
    assert d.terminate() == 0
    d.start()
    d.wait_healthy()
    status = d.wait_status(
        lambda s: (s["migration"] or {}).get("phase") == "concluding", WAIT, "d resumes"
    )
    assert status["keysets"] == {str(backup.keyset.epoch): [0, 1]}
    assert "stored shares match the open migration" in d.log()
    # The operator adds the node's signer key late: the retries conclude by themselves.
    cluster.add_node_key(d)
    wait_until(
        lambda: alice_tls_key(ledger) == d.info["tls_public_key"], WAIT, "A → D concluded", 0.02
    )
    TIMINGS.append(("A → D (key added late, restart)", time.monotonic() - started))
    d.wait_status(lambda s: s["role"] == "participant", WAIT, "d takes part")
    a.wait_status(
        lambda s: s["role"] == "decommissioned" and s["keysets"] == {}, WAIT, "a wiped again"
    )
    cluster.signs("on-d")
