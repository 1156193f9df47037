"""Peer key providers end to end, on real processes: a ledger, one provider per operator,
alice's node with `--key-source peers`. The node starts from its providers, restarts
after every provider and the node were SIGKILLed at once, waits clearly while fewer than k
answer and starts when one more returns; `provider status --json` lists what each holds and
no file or log of any of them holds the storage key or a piece of it."""

from __future__ import annotations

import base64
import json
import os
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import nacl.signing
import pytest
from provider_helpers import PROVIDER_PASSPHRASE, Provider

from process_helpers import Ledger, Node, free_port, run_cli, wait_until
from quorumkeep.daemon.service_identity import KEY_PROVIDER_IDENTITY, unlock
from quorumkeep.node.key_providers import PeersKeySource
from quorumkeep.provider.store import PieceStore

pytestmark = pytest.mark.slow

OPERATORS = ("alice", "bob", "carol", "dave")


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
    ledger = Ledger(tmp / "ledger", OPERATORS).create().start(idle_block_ms=100)
    providers: dict[str, Provider] = {}
    node = PeersNode("alice", tmp / "alice-node", ledger.url)
    setup = Setup(tmp, ledger, providers, node)
    try:
        assert ledger.passphrase_file is not None
        for account in OPERATORS:
            providers[account] = Provider(
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
        for index, account in enumerate(OPERATORS[1:]):
            infos.append(
                {
                    "account": account,
                    "url": f"127.0.0.1:{40000 + index}",
                    "web_url": f"https://127.0.0.1:{41000 + index}",
                    "tls_public_key": random_key(),
                    "signer_public_key": random_key(),
                }
            )
        ledger.call("alice", "init", {"participants": infos, "threshold": 2})
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
    tls = node.info["tls_public_key"]

    # Every machine at once: the node and every provider SIGKILLed, then started together.
    node.close()
    for provider in setup.providers.values():
        provider.kill()
    for provider in setup.providers.values():
        provider.start()
    node.start().wait_healthy(90)
    assert node.status()["tls_public_key"] == tls
    assert "storage key recovered from" in node.log()


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
                found = store.get(held.account, held.epoch)
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
