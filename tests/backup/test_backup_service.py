"""The backup service as a real process (`backup init`, `backup run`) against a real ledger and
the node's /backup endpoints on real HTTPS servers: it backs up by itself, resumes from its
store after a restart, refreshes after a resharing, pushes the shares to a migration's
destination by itself, and stops pushing when the migration is cancelled."""

from __future__ import annotations

import asyncio
import json
import os
import signal
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import nacl.signing
import pytest
from backup_helpers import (
    BACKUP_PASSPHRASE,
    LEDGER_PASSPHRASE,
    Network,
    NodeServer,
    backup_cli,
    eventually,
    free_port,
    make_node_identity,
    reshare,
    run,
    serving,
    start_network,
    store_node_shares,
)

from quorumkeep.contract import NODE_METHODS
from quorumkeep.ledger.client import AccountSigner, LedgerClient
from quorumkeep.ledger.transaction import Permission
from quorumkeep.node.identity import NodeIdentity
from quorumkeep.wire.backup import VerifiedShares

pytestmark = pytest.mark.slow


@pytest.fixture
def network(tmp_path: Path) -> Iterator[Network]:
    net = start_network(tmp_path, domains=2)
    store_node_shares(net)
    try:
        yield net
    finally:
        net.close()


def service_env() -> dict[str, str]:
    return {**os.environ, "QUORUMKEEP_BACKUP_PASSPHRASE": BACKUP_PASSPHRASE}


async def cli(*args: str, env: dict[str, str] | None = None) -> tuple[int, str, str]:
    proc = await asyncio.create_subprocess_exec(
        *backup_cli(*args),
        env=env or service_env(),
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    try:
        async with asyncio.timeout(60):
            out, err = await proc.communicate()
    except TimeoutError:
        proc.kill()
        await proc.wait()
        raise
    return int(proc.returncode or 0), out.decode(), err.decode()


class ServiceProcess:
    """`backup run` as a child process with its status endpoint on a free port."""

    def __init__(self, directory: Path, port: int) -> None:
        self.directory = directory
        self.port = port
        self.proc: asyncio.subprocess.Process | None = None
        self.log_path = directory / "service.log"

    async def start(self) -> ServiceProcess:
        with open(self.log_path, "ab") as log:
            self.proc = await asyncio.create_subprocess_exec(
                *backup_cli("run", "--config", str(self.directory / "backup.toml")),
                env=service_env(),
                stdout=asyncio.subprocess.DEVNULL,
                stderr=log,
            )
        await eventually(lambda: self._alive(), 5, "the service process to start")
        return self

    def _alive(self) -> bool:
        assert self.proc is not None
        if self.proc.returncode is not None:
            raise AssertionError(f"backup service exited: {self.log()}")
        return True

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    async def status(self) -> dict[str, Any] | None:
        self._alive()
        try:
            async with httpx.AsyncClient(timeout=2.0) as http:
                response = await http.get(f"http://127.0.0.1:{self.port}/status")
        except httpx.HTTPError:
            return None
        result: dict[str, Any] = response.json()
        return result

    async def metrics(self) -> str:
        async with httpx.AsyncClient(timeout=2.0) as http:
            return (await http.get(f"http://127.0.0.1:{self.port}/metrics")).text

    async def wait_status(self, predicate: Any, timeout: float, what: str) -> dict[str, Any]:
        found: dict[str, Any] = {}

        async def check() -> bool:
            status = await self.status()
            if status is not None and predicate(status):
                found.update(status)
                return True
            return False

        async with asyncio.timeout(timeout):
            while not await check():
                await asyncio.sleep(0.05)
        return found

    async def stop(self) -> int:
        if self.proc is None or self.proc.returncode is not None:
            return 0 if self.proc is None else int(self.proc.returncode)
        self.proc.send_signal(signal.SIGTERM)
        try:
            async with asyncio.timeout(15):
                return int(await self.proc.wait())
        except TimeoutError:
            self.proc.kill()
            await self.proc.wait()
            raise

    def kill(self) -> None:
        if self.proc is not None and self.proc.returncode is None:
            self.proc.kill()


async def init_service(network: Network, directory: Path, port: int) -> dict[str, str]:
    passphrase_file = directory.parent / "ledger-passphrase"
    passphrase_file.write_bytes(LEDGER_PASSPHRASE + b"\n")
    code, out, err = await cli(
        "init",
        "--account",
        "alice",
        "--dir",
        str(directory),
        "--ledger",
        network.ledger.url,
        "--listen",
        f"127.0.0.1:{port}",
        "--kdf-cost",
        "minimum",
        "--register",
        "--operator-key",
        str(network.ledger.key_files["alice"]),
        "--operator-passphrase-file",
        str(passphrase_file),
    )
    assert code == 0, err
    registration: dict[str, str] = json.loads(out[: out.index("}") + 1])
    assert network.ledger.view("backup_service_info", {"account": "alice"}) == registration
    # Quicker retries than an operator would want; the defaults are checked in test_cli.
    config = directory / "backup.toml"
    config.write_text(config.read_text().replace("max_backoff = 5.0", "max_backoff = 0.5"))
    return registration


def current(status: dict[str, Any]) -> bool:
    return bool(status.get("covers_current_keyset"))


def conclude_as(network: Network, identity: NodeIdentity) -> None:
    """What the destination node's coordinator does once it imported the shares."""
    with LedgerClient(network.ledger.url) as client:
        client.add_key(
            network.ledger.signers["alice"],
            identity.signer_public_key,
            Permission(tuple(sorted(NODE_METHODS))),
        ).raise_for_failure()
        signer = AccountSigner("alice", nacl.signing.SigningKey(identity.signer_seed))
        client.call(signer, "conclude_node_migration", {"keyset": client.view("keyset")})


def test_service_backs_up_resumes_refreshes_and_recovers(network: Network, tmp_path: Path) -> None:
    directory = tmp_path / "backup"
    port = free_port()
    dest_identity, dest_keystore = make_node_identity(tmp_path / "alice-new", "alice")

    async def scenario() -> None:
        node = NodeServer(network.node, network.keystore, network.ledger.url, port=network.web_port)
        async with serving(node):
            await init_service(network, directory, port)
            service = await ServiceProcess(directory, port).start()
            try:
                # 1. It backs up the current keyset by itself.
                status = await service.wait_status(current, 20, "the first backup")
                assert status["newest_epoch"] == 0 and status["registered"] is True
                assert [b["domains"] for b in status["backups"]] == [[0, 1]]
                assert len(node.served) == 1
                assert "quorumkeep_backup_epoch 0.0" in await service.metrics()
                # ... verifies it and confirms it in the contract with its identity key (the
                # confirm_backup access key `backup init --register` gave it).
                status = await service.wait_status(
                    lambda s: s.get("confirmed_current") is True, 20, "the backup confirmation"
                )
                assert status["confirmation"]["epoch"] == 0
                assert status["last_confirm"]["result"] == "confirmed"
                gate = network.ledger.view("backup_status")
                assert gate["operators"]["alice"]["current"] is True
                assert gate["domains"][0]["confirmed"] == ["alice"]
                metrics = await service.metrics()
                assert "quorumkeep_backup_confirmed_epoch 0.0" in metrics
                assert "quorumkeep_backup_confirmed_current 1.0" in metrics
                assert 'quorumkeep_backup_operator_confirmed_epoch{account="alice"} 0.0' in metrics
                assert 'quorumkeep_backup_operator_confirmed_epoch{account="bob"} -1.0' in metrics
                assert 'quorumkeep_backup_operator_confirmation_age_seconds{account="alice"}' in (
                    metrics
                )
                # 2. `status` and `verify` from the command line, next to the running daemon.
                code, out, _ = await cli(
                    "status", "--config", str(directory / "backup.toml"), "--json"
                )
                assert code == 0 and json.loads(out)["newest_epoch"] == 0
                code, out, err = await cli("verify", "--config", str(directory / "backup.toml"))
                assert code == 0, out + err
                assert out.startswith("valid: epoch 0")
                # 3. Restarted, it resumes from its store: no new request to the node.
                assert await service.stop() == 0
                service = await ServiceProcess(directory, port).start()
                status = await service.wait_status(
                    lambda s: current(s) and s["confirmed_current"], 20, "the restarted service"
                )
                assert status["last_fetch"] is None and len(node.served) == 1
                assert status["last_confirm"] is None  # the contract holds it: nothing to send
                # 4. A resharing to epoch 1: the new epoch is backed up, the previous deleted.
                await asyncio.to_thread(reshare, network, 1)
                status = await service.wait_status(
                    lambda s: current(s) and s["newest_epoch"] == 1, 20, "the epoch-1 backup"
                )
                assert [b["epoch"] for b in status["backups"]] == [1]
                assert len(node.served) == 2
                status = await service.wait_status(
                    lambda s: s["confirmed_current"], 20, "the epoch-1 confirmation"
                )
                assert status["confirmation"]["epoch"] == 1
                # 5. A migration: the service pushes to the destination by itself.
                dest = NodeServer(dest_identity, dest_keystore, network.ledger.url)
                imported: list[VerifiedShares] = dest.imported
                async with serving(dest):
                    await asyncio.to_thread(
                        network.ledger.call,
                        "alice",
                        "start_node_migration",
                        {
                            "destination": {
                                "url": "127.0.0.1:39998",
                                "web_url": dest.url,
                                "tls_public_key": dest_identity.tls_public_key.hex(),
                            },
                            "destination_signer_public_key": dest_identity.signer_public_key.hex(),
                        },
                    )
                    await eventually(lambda: len(imported) == 1, 20, "the recovery push")
                    assert imported[0].keyset.epoch == 1
                    assert [s.signing_share for s in imported[0].shares] == [
                        d.packages[1].signing_share for d in network.domains
                    ]
                    await asyncio.to_thread(conclude_as, network, dest_identity)
                    status = await service.wait_status(
                        lambda s: s["migration"] is None and s["last_push"] is not None,
                        20,
                        "the migration to conclude",
                    )
                    assert status["last_push"]["result"] == "imported"
                    assert current(status)
                assert len(imported) == 1
                # Secrets never reach the directory or the log in the clear.
                secrets = [s.signing_share for s in imported[0].shares]
                for path in [p for p in directory.rglob("*") if p.is_file()]:
                    data = path.read_bytes()
                    for secret in secrets:
                        assert secret not in data and secret.hex().encode() not in data
                assert BACKUP_PASSPHRASE not in service.log()
                assert await service.stop() == 0
            finally:
                service.kill()

    try:
        run(scenario(), timeout=90)
    finally:
        dest_keystore.close()


def test_push_retries_until_the_migration_is_cancelled(network: Network, tmp_path: Path) -> None:
    """A destination that is down gets retried with backoff; cancelling the migration (here
    by a resharing) ends the pushes, and the new epoch is backed up."""
    directory = tmp_path / "backup"
    port = free_port()
    dest_identity, dest_keystore = make_node_identity(tmp_path / "gone", "alice")
    dest_keystore.close()

    async def scenario() -> None:
        node = NodeServer(network.node, network.keystore, network.ledger.url, port=network.web_port)
        async with serving(node):
            await init_service(network, directory, port)
            service = await ServiceProcess(directory, port).start()
            try:
                await service.wait_status(current, 20, "the first backup")
                await asyncio.to_thread(
                    network.ledger.call,
                    "alice",
                    "start_node_migration",
                    {
                        "destination": {
                            "url": "127.0.0.1:39997",
                            "web_url": f"https://127.0.0.1:{free_port()}",
                            "tls_public_key": dest_identity.tls_public_key.hex(),
                        },
                        "destination_signer_public_key": dest_identity.signer_public_key.hex(),
                    },
                )
                status = await service.wait_status(
                    lambda s: (s.get("last_push") or {}).get("result") == "node_unreachable",
                    20,
                    "a failed push attempt",
                )
                assert status["migration"] is not None and not status["migration"]["pushed"]
                await asyncio.to_thread(reshare, network, 1)
                assert network.ledger.view("migration_info", {"account": "alice"}) is None
                status = await service.wait_status(
                    lambda s: s["migration"] is None and s["newest_epoch"] == 1 and current(s),
                    20,
                    "the cancelled migration and the epoch-1 backup",
                )
                assert "recovery push" in service.log()
                assert await service.stop() == 0
            finally:
                service.kill()

    run(scenario(), timeout=90)
