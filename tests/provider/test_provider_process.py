"""Peer key providers end to end, on real processes: a ledger, one provider per operator,
alice's node with `--key-source peers` (dave's provider runs inside dave's backup service,
enabled by `key_provider` in backup.toml). The node starts from its providers, restarts
after every provider and the node were SIGKILLed at once, waits clearly while fewer than k
answer and starts when one more returns; `provider status --json` lists what each holds and
no file or log of any of them holds the storage key or a piece of it."""

from __future__ import annotations

import base64
import json
import os
import subprocess
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import nacl.signing
import pytest
import uvicorn
from fastapi import FastAPI
from provider_helpers import PROVIDER_PASSPHRASE, HostedProvider, Provider

from process_helpers import Ledger, Node, free_port, run_cli, wait_until
from quorumkeep.crypto.group import random_scalar
from quorumkeep.crypto.seal import KxKeyPair
from quorumkeep.crypto.storage_split import KeyPiece, StorageSecret, deal
from quorumkeep.daemon.service_identity import KEY_PROVIDER_IDENTITY, unlock
from quorumkeep.node.identity import NodeIdentity
from quorumkeep.node.key_provider_client import ProviderEndpoint
from quorumkeep.node.key_providers import PeersKeySource
from quorumkeep.provider.store import PieceStore
from quorumkeep.wire.backup.statements import Ed25519Signer
from quorumkeep.wire.key_provider import (
    PATH_CHALLENGE,
    PATH_DEPOSIT,
    PATH_RELEASE,
    ReleaseRequest,
    make_deposit,
    make_release_request,
    seal_release,
)

pytestmark = pytest.mark.slow

OPERATORS = ("alice", "bob", "carol", "dave")
OUTSIDER = "erin"
HOSTED = "dave"


def random_key() -> str:
    return bytes(nacl.signing.SigningKey.generate().verify_key).hex()


class PeersNode(Node):
    def env(self) -> dict[str, str]:
        env = dict(os.environ)
        env.pop("QUORUMKEEP_PASSPHRASE", None)
        return env

    def init_peers(self, *extra: str) -> subprocess.CompletedProcess[str]:
        self.p2p_port = free_port()
        self.web_port = free_port()
        return run_cli(
            "node",
            "init",
            "--account",
            self.account,
            "--dir",
            str(self.directory),
            "--ledger",
            self.ledger_url,
            "--p2p",
            f"127.0.0.1:{self.p2p_port}",
            "--web",
            f"127.0.0.1:{self.web_port}",
            "--key-source",
            "peers",
            *extra,
            env=self.env(),
        )


@dataclass
class Setup:
    tmp: Path
    ledger: Ledger
    providers: dict[str, Provider]
    node: PeersNode

    def close(self) -> None:
        self.node.close()
        for provider in self.providers.values():
            provider.close()
        self.ledger.close()

    def record(self) -> None:
        ledger = self.ledger
        assert ledger.passphrase_file is not None
        result = run_cli(
            "operator",
            "record-key-providers",
            "--account",
            "alice",
            "--key",
            str(ledger.key_files["alice"]),
            "--passphrase-file",
            str(ledger.passphrase_file),
            "--ledger",
            ledger.url,
            "--node",
            str(self.node.directory),
        )
        assert result.returncode == 0, result.stderr + result.stdout
        assert "recorded as 2-of-3 with bob, carol, dave" in result.stdout


def genesis(tmp: Path) -> Setup:
    """Providers register before init; alice's node deals at init; the contract is made."""
    ledger = Ledger(tmp / "ledger", (*OPERATORS, OUTSIDER)).create().start(idle_block_ms=100)
    providers: dict[str, Provider] = {}
    node = PeersNode("alice", tmp / "alice-node", ledger.url)
    setup = Setup(tmp, ledger, providers, node)
    try:
        assert ledger.passphrase_file is not None
        for account in OPERATORS:
            # dave's provider runs inside dave's backup service (one setting of backup.toml)
            kind = HostedProvider if account == HOSTED else Provider
            providers[account] = kind(
                account,
                tmp / f"provider-{account}",
                ledger.url,
                ledger.key_files[account],
                ledger.passphrase_file,
            ).init()
            providers[account].start()
        for provider in providers.values():
            provider.wait_healthy()
        result = node.init_peers("--provider-wait", "120")
        assert result.returncode == 0, result.stderr
        node.info = json.loads(result.stdout)
        assert "dealt 2-of-3 to bob, carol, dave" in result.stderr
        infos: list[dict[str, Any]] = [node.info]
        for account in OPERATORS[1:]:
            # Nobody listens at these, but the contract refuses two participants at one URL:
            # fixed numbers could equal a port the kernel gave alice's node.
            infos.append(
                {
                    "account": account,
                    "url": f"127.0.0.1:{free_port()}",
                    "web_url": f"https://127.0.0.1:{free_port()}",
                    "tls_public_key": random_key(),
                    "signer_public_key": random_key(),
                }
            )
        ledger.call("alice", "init", {"participants": infos, "threshold": 2})
        granted = run_cli(
            "operator",
            "add-node-key",
            "--account",
            "alice",
            "--key",
            str(ledger.key_files["alice"]),
            "--passphrase-file",
            str(ledger.passphrase_file),
            "--ledger",
            ledger.url,
            "--node-info",
            json.dumps(node.info),
        )
        assert granted.returncode == 0, granted.stderr
        setup.record()
        return setup
    except BaseException:
        setup.close()
        raise


@pytest.fixture
def setup(tmp_path: Path) -> Iterator[Setup]:
    s = genesis(tmp_path)
    try:
        yield s
    finally:
        s.close()


def key_source(node: Node) -> dict[str, Any]:
    status = node.status()
    source: dict[str, Any] = status["key_source"]
    return source


def test_start_every_reboot_and_the_status_of_providers(setup: Setup) -> None:
    node = setup.node
    node.start().wait_healthy(60)
    source = key_source(node)
    assert source["epoch"] == 1 and source["threshold"] == 2
    assert {p["provider"] for p in source["providers"] if p["ok"]} == {"bob", "carol", "dave"}
    held = setup.providers["bob"].status()
    assert held["accounts"] == ["alice"]
    assert [(h["account"], h["epoch"]) for h in held["held"]] == [("alice", 1)]
    assert setup.providers["alice"].status()["held"] == []
    hosted = setup.providers[HOSTED].log()
    assert "quorumkeep.backup" in hosted and "quorumkeep.provider: started" in hosted
    tls = node.info["tls_public_key"]

    # The node alone restarts: it asks its providers again.
    node.close()
    node.start().wait_healthy(60)
    assert node.status()["tls_public_key"] == tls
    assert node.log().count("storage key recovered from") == 2

    # Every machine at once: the node and every provider SIGKILLed, then started together.
    node.close()
    for provider in setup.providers.values():
        provider.kill()
    for provider in setup.providers.values():
        provider.start()
    node.start().wait_healthy(90)
    assert node.status()["tls_public_key"] == tls
    assert node.log().count("storage key recovered from") == 3

    # The backup service hosting a provider stops it with itself on SIGTERM.
    dave = setup.providers[HOSTED]
    assert dave.proc is not None
    dave.proc.terminate()
    assert dave.proc.wait(30) == 0
    assert "quorumkeep.provider: stopped" in dave.log()


def test_fewer_than_k_wait_clearly_then_start(setup: Setup) -> None:
    node = setup.node
    for name in ("carol", "dave"):
        setup.providers[name].kill()
    node.start()
    wait_until(
        lambda: "1 of 2 key providers answered" in node.log(),
        60,
        "the node to say it has 1 of 2 pieces",
    )
    log = node.log()
    assert "carol (provider_unreachable" in log and "dave (provider_unreachable" in log
    assert node.proc is not None and node.proc.poll() is None
    setup.providers["dave"].start()
    node.wait_healthy(90)
    source = key_source(node)
    assert {p["provider"]: p["ok"] for p in source["providers"]} == {
        "bob": True,
        "carol": False,
        "dave": True,
    }
    assert source["attempts"] >= 2


def test_no_storage_key_or_piece_in_any_file_or_log(setup: Setup) -> None:
    """Read the secret back the node's way (release key + providers), then scan every file."""
    node = setup.node
    node.start().wait_healthy(60)
    source = PeersKeySource(node.directory, account="alice", ledger_url=setup.ledger.url)
    key = source.load()
    assert source.secret is not None
    secrets = [key.key, source.secret.value]
    # the pieces, as the providers hold them
    for provider in setup.providers.values():
        identity, store_key = unlock(
            provider.directory,
            PROVIDER_PASSPHRASE.encode(),
            provider.account,
            KEY_PROVIDER_IDENTITY,
        )
        store = PieceStore.open(
            provider.directory, provider.account, identity.signer.public_key, store_key
        )
        try:
            for held in store.held():
                found = store.get(held.account, held.epoch, held.signer_public_key)
                assert found is not None
                secrets.append(found[1].value)
        finally:
            store.close()
    assert len(secrets) == 2 + 3
    forms = []
    for secret in secrets:
        forms += [secret, secret.hex().encode(), secret.hex().upper().encode()]
        forms += [base64.b64encode(secret), base64.urlsafe_b64encode(secret)]
    node.close()
    for provider in setup.providers.values():
        provider.kill()
    scanned = 0
    for path in setup.tmp.rglob("*"):
        if path.is_file():
            data = path.read_bytes()
            scanned += 1
            for form in forms:
                assert form not in data, f"a secret is in {path}"
    assert scanned > 20


def test_refusals_each_with_its_code(setup: Setup) -> None:
    """Every refusal of a provider, over HTTP, against the contract as it is."""
    node = setup.node
    source = PeersKeySource(node.directory, account="alice", ledger_url=setup.ledger.url)
    key = source.load()
    identity = NodeIdentity.load(node.directory, "alice", key)
    release = source.release_signer
    assert release is not None
    bob = setup.providers["bob"]
    registered = {
        a: ProviderEndpoint.from_view(a, p) for a, p in setup.ledger.view("key_providers").items()
    }
    endpoint = registered["bob"]

    def post(path: str, body: Any) -> httpx.Response:
        return httpx.post(bob.url + path, json=body, timeout=10.0)

    def release_request(
        account: str = "alice", signer: Ed25519Signer = release, epoch: int = 1
    ) -> dict[str, Any]:
        challenge = post(PATH_CHALLENGE, {"account": account})
        assert challenge.status_code == 200, challenge.text
        return make_release_request(
            account=account,
            epoch=epoch,
            release_signer=signer,
            requester=KxKeyPair.generate(os.urandom),
            nonce=bytes.fromhex(challenge.json()["nonce"]),
            provider_identity=endpoint.identity_public_key,
        ).to_json()

    def code(response: httpx.Response) -> tuple[int, str]:
        return response.status_code, response.json()["code"]

    good = release_request()
    assert post(PATH_RELEASE, good).status_code == 200
    assert code(post(PATH_RELEASE, good)) == (409, "replay")
    forged = {**release_request(), "signature": "00" * 64}
    assert code(post(PATH_RELEASE, forged)) == (401, "bad_signature")
    assert code(post(PATH_RELEASE, {**good, "nonce": "11" * 32})) == (409, "replay")
    other = Ed25519Signer(os.urandom(32))
    assert code(post(PATH_RELEASE, release_request(signer=other))) == (403, "wrong_release_key")
    assert code(post(PATH_RELEASE, release_request(epoch=2))) == (409, "stale_epoch")
    assert code(post(PATH_RELEASE, release_request("bob"))) == (404, "unknown_account")
    # a deal its operator recorded for a node the contract does not list
    deal_args = {
        **source.recorded_deal(),
        "signer_public_key": Ed25519Signer(os.urandom(32)).public_key.hex(),
    }
    setup.ledger.call("erin", "record_key_providers", deal_args)
    assert code(post(PATH_RELEASE, release_request("erin"))) == (403, "not_participant")
    assert code(post(PATH_RELEASE, {"account": "alice"})) == (400, "malformed_request")
    assert httpx.post(bob.url + PATH_RELEASE, content=b"{}", timeout=5).status_code == 400

    # deposits
    split = deal(source.secret or StorageSecret.generate(os.urandom), 2, 3, os.urandom)

    def deposit_body(**overrides: Any) -> dict[str, Any]:
        args: dict[str, Any] = {
            "account": "alice",
            "epoch": 2,
            "threshold": 2,
            "commitment": split.commitment,
            "piece": split.pieces[1],
            "signer": Ed25519Signer(identity.signer_seed),
            "release_public_key": release.public_key,
            "provider_identity": endpoint.identity_public_key,
            "provider_encryption": endpoint.encryption_public_key,
            "now_ms": int(time.time() * 1000),
            "random_bytes": os.urandom,
        }
        args.update(overrides)
        return make_deposit(**args).to_json()

    assert post(PATH_DEPOSIT, deposit_body()).json()["stored"] is True
    assert post(PATH_DEPOSIT, deposit_body(now_ms=1000)).json()["code"] == "stale_timestamp"
    # a deposit by any other key is kept apart (inert until a recorded deal names that key):
    # it can neither replace nor be mistaken for the node's own
    intruder = Ed25519Signer(os.urandom(32))
    assert post(PATH_DEPOSIT, deposit_body(signer=intruder)).json()["stored"] is True
    wrong = KeyPiece(1, split.pieces[2].value)
    assert code(post(PATH_DEPOSIT, deposit_body(piece=wrong))) == (422, "piece_invalid")
    assert code(post(PATH_DEPOSIT, deposit_body(epoch=1))) == (409, "not_holder")
    assert code(post(PATH_DEPOSIT, {**deposit_body(), "signature": "00" * 64})) == (
        401,
        "bad_signature",
    )
    # rate limit: releases per account and minute
    codes = [post(PATH_RELEASE, release_request()).status_code for _ in range(14)]
    assert 429 in codes
    status = bob.status()
    held = [(h["account"], h["epoch"], h["signer_public_key"]) for h in status["held"]]
    signer_hex = identity.signer_public_key.hex()
    assert held == [
        ("alice", 1, signer_hex),
        ("alice", 2, signer_hex),
        ("alice", 2, intruder.public_key.hex()),
    ]
    assert post(PATH_RELEASE, release_request()).status_code in (200, 429)
    text = json.dumps(status)
    assert key.key.hex() not in text and split.pieces[1].value.hex() not in text


def evil_provider_app(kx: KxKeyPair) -> FastAPI:
    """A provider that answers every release with a wrong piece, correctly sealed: what a
    malicious or broken provider could send. The node must name it and go on without it."""
    app = FastAPI()

    @app.post(PATH_CHALLENGE)
    async def challenge(body: dict[str, Any]) -> dict[str, Any]:
        return {"account": body["account"], "nonce": os.urandom(32).hex(), "expires_at_ms": 0}

    @app.post(PATH_RELEASE)
    async def release(body: dict[str, Any]) -> dict[str, Any]:
        request = ReleaseRequest.from_json(body)
        wrong = KeyPiece(2, random_scalar(os.urandom))
        return seal_release(request, wrong, kx, os.urandom).to_json()

    return app


def test_a_provider_returning_a_wrong_piece_is_named_and_left_out(setup: Setup) -> None:
    kx = KxKeyPair.generate(os.urandom)
    port = free_port()
    server = uvicorn.Server(
        uvicorn.Config(evil_provider_app(kx), host="127.0.0.1", port=port, log_level="warning")
    )
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    try:
        wait_until(lambda: server.started, 30, "the wrong-piece provider to serve")
        setup.ledger.call(
            "carol",
            "register_key_provider",
            {
                "identity_public_key": Ed25519Signer(os.urandom(32)).public_key.hex(),
                "encryption_public_key": kx.public_key.hex(),
                "url": f"http://127.0.0.1:{port}",
            },
        )
        node = setup.node
        node.start().wait_healthy(60)
        outcomes = {p["provider"]: p for p in key_source(node)["providers"]}
        assert outcomes["carol"]["ok"] is False
        assert outcomes["carol"]["code"] == "piece_mismatch"
        assert outcomes["bob"]["ok"] and outcomes["dave"]["ok"]
        assert "key provider carol (index 2) failed: piece_mismatch" in node.log()
        with node.https() as client:
            metrics = client.get("/metrics").text
        assert 'quorumkeep_key_provider_ok{provider="carol"} 0.0' in metrics
        assert 'quorumkeep_key_provider_ok{provider="bob"} 1.0' in metrics
    finally:
        server.should_exit = True
        thread.join(10)


def test_rotation_when_a_provider_leaves(setup: Setup) -> None:
    node = setup.node
    node.start().wait_healthy(60)
    tls = node.status()["tls_public_key"]
    height = setup.ledger.view("key_provider_deal", {"account": "alice"})["deal"]["recorded_height"]
    setup.ledger.call("dave", "deregister_key_provider", {})
    event = setup.ledger.wait_event(lambda e: e.kind == "key_providers_recorded", 60, height)
    assert event.data["epoch"] == 2 and event.data["released_by"] == ["dave"]
    assert [h["provider"] for h in event.data["holders"]] == ["bob", "carol"]
    # the old holder deletes its piece, the continuing ones keep only the new epoch
    wait_until(lambda: setup.providers["dave"].status()["held"] == [], 30, "dave to delete")
    wait_until(
        lambda: [h["epoch"] for h in setup.providers["bob"].status()["held"]] == [2],
        30,
        "bob to keep only epoch 2",
    )
    # the same storage key: the node restarts from the new deal, its keys unchanged
    node.close()
    node.start().wait_healthy(60)
    assert node.status()["tls_public_key"] == tls
    assert key_source(node)["epoch"] == 2
