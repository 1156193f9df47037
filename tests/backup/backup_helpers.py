"""Shared pieces of the backup tests: a real ledger process (process_helpers.Ledger) with a
contract holding trusted-dealer keys, node identities and keystores, the backup router in a
real HTTPS server.

Imported by module name (pytest puts this directory on sys.path); the name is unique.
Every wait is bounded; every process is killed by its owner's ``close``.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Callable, Coroutine, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import httpx
import nacl.signing

import process_helpers
from process_helpers import Ledger, free_port
from quorumkeep.backup.identity import BackupIdentity
from quorumkeep.crypto.group import random_scalar
from quorumkeep.crypto.keys import KeyPackage, PublicKeyPackage, trusted_dealer_keygen
from quorumkeep.crypto.seal import MIN_MEMLIMIT, MIN_OPSLIMIT, KxKeyPair
from quorumkeep.ledger.client import AsyncLedgerClient
from quorumkeep.node.backup_api import BackupNodeDeps, backup_router
from quorumkeep.node.backup_keys import keystore_share_source, store_verified_shares, tls_signer
from quorumkeep.node.backup_registration import RegistrationCache, registration_client
from quorumkeep.node.identity import NodeIdentity
from quorumkeep.node.keystore import Keystore
from quorumkeep.node.metrics import MetricsSnapshot, NodeMetrics
from quorumkeep.node.shares import encode_key_share
from quorumkeep.node.storage_key import PassphraseKeySource
from quorumkeep.node.web import WebServer, create_app
from quorumkeep.wire.backup import (
    Ed25519Signer,
    Keyset,
    KeyShare,
    VerifiedShares,
    public_key_package_json,
    read_keyset,
)
from quorumkeep.wire.tls import client_context

T = TypeVar("T")

LEDGER_PASSPHRASE = process_helpers.LEDGER_PASSPHRASE.encode()
BACKUP_PASSPHRASE = "backup passphrase for the tests"
FAST = {"opslimit": MIN_OPSLIMIT, "memlimit": MIN_MEMLIMIT}


def run(coro: Coroutine[Any, Any, T], timeout: float = 30.0) -> T:
    async def bounded() -> T:
        async with asyncio.timeout(timeout):
            return await coro

    return asyncio.run(bounded())


def backup_cli(*args: str) -> list[str]:
    # main.py does not register the `backup` group yet; the module runs its own Typer app.
    return [sys.executable, "-m", "quorumkeep.cli.backup", *args]


async def eventually(predicate: Callable[[], bool], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        await asyncio.sleep(0.02)
    raise AssertionError(f"timed out after {timeout}s waiting for {what}")


def random_key() -> str:
    return bytes(nacl.signing.SigningKey.generate().verify_key).hex()


# --- nodes and keys ---------------------------------------------------------------------------


def make_node_identity(directory: Path, account: str) -> tuple[NodeIdentity, Keystore]:
    directory.mkdir(parents=True, exist_ok=True)
    key = PassphraseKeySource(directory, lambda: b"node passphrase", **FAST).create(os.urandom)
    identity = NodeIdentity.create(directory, account, key)
    return identity, Keystore.open(directory, key, identity.owner)


@dataclass
class DealtDomain:
    domain_id: int
    packages: dict[int, KeyPackage]
    public: PublicKeyPackage
    secret: bytes = field(repr=False, default=b"")

    def redeal(self) -> DealtDomain:
        """New shares of the same key for the same ids: what a resharing produces."""
        packages, public, _ = trusted_dealer_keygen(
            self.secret, self.public.threshold, sorted(self.packages), os.urandom
        )
        return DealtDomain(self.domain_id, packages, public, self.secret)

    def share(self, participant_id: int, epoch: int) -> KeyShare:
        return KeyShare(
            self.domain_id, epoch, participant_id, self.packages[participant_id].signing_share
        )

    def package_json(self, epoch: int) -> dict[str, Any]:
        return public_key_package_json(self.domain_id, epoch, self.public)


def deal(domain_id: int, threshold: int, ids: Sequence[int]) -> DealtDomain:
    secret = random_scalar(os.urandom)
    packages, public, _ = trusted_dealer_keygen(secret, threshold, list(ids), os.urandom)
    return DealtDomain(domain_id, packages, public, secret)


@dataclass
class Network:
    """A ledger whose contract is Running with trusted-dealer keys, and alice's node."""

    ledger: Ledger
    infos: dict[str, dict[str, Any]]
    domains: list[DealtDomain]
    node: NodeIdentity
    keystore: Keystore
    web_port: int

    @property
    def participant_ids(self) -> dict[str, int]:
        return {a: int(i["participant_id"]) for a, i in self.infos.items()}

    def keyset(self) -> Keyset:
        return read_keyset(self.ledger.view("keyset"))

    def close(self) -> None:
        with contextlib.suppress(Exception):
            self.keystore.close()
        self.ledger.close()


def vote_pk(ledger: Ledger, account: str, domain: DealtDomain, event: Any) -> None:
    args: dict[str, Any] = {
        "key_event_id": event,
        "public_key": domain.public.group_public_key.hex(),
        "verifying_shares": {
            str(p): s.hex() for p, s in sorted(domain.public.verifying_shares.items())
        },
    }
    ledger.call(account, "vote_pk", args)


def start_network(
    tmp: Path,
    accounts: tuple[str, ...] = ("alice", "bob", "carol"),
    domains: int = 1,
    threshold: int = 2,
) -> Network:
    """alice's node identity is real (its TLS key is in the contract); the others' keys
    are random: the tests act for them with their operators' full-access keys."""
    ledger = Ledger(tmp / "ledger", (*accounts, "mallory")).create().start(idle_block_ms=100)
    try:
        node, keystore = make_node_identity(tmp / "alice-node", "alice")
        web_port = free_port()
        infos = {}
        for index, account in enumerate(accounts):
            infos[account] = {
                "account": account,
                "participant_id": index + 1,
                "url": f"127.0.0.1:{30000 + index}",
                "web_url": f"https://127.0.0.1:{31000 + index}",
                "tls_public_key": random_key(),
                "signer_public_key": random_key(),
            }
        infos["alice"].update(
            web_url=f"https://127.0.0.1:{web_port}",
            tls_public_key=node.tls_public_key.hex(),
            signer_public_key=node.signer_public_key.hex(),
        )
        ledger.call("alice", "init", {"participants": list(infos.values()), "threshold": threshold})
        dealt = [deal(d, threshold, range(1, len(accounts) + 1)) for d in range(domains)]
        if domains:
            wanted = [{"scheme": "Ed25519"} for _ in range(domains)]
            for account in accounts:
                ledger.call(account, "vote_add_domains", {"domains": wanted})
            for domain in dealt:
                event = {"domain_id": domain.domain_id, "epoch": 0, "attempt": 0}
                for account in accounts:
                    vote_pk(ledger, account, domain, event)
        return Network(ledger, infos, dealt, node, keystore, web_port)
    except BaseException:
        ledger.close()
        raise


def reshare(network: Network, epoch: int) -> list[DealtDomain]:
    """A resharing to ``epoch`` with the same participants and keys, new shares (the tests
    vote for every node); returns the new shares, which become ``network.domains``."""
    ledger = network.ledger
    view = ledger.view("participants")
    proposal = {"participants": view["participants"], "threshold": view["threshold"]}
    accounts = [p["account"] for p in view["participants"]]
    for account in accounts:
        value = ledger.call(account, "vote_new_parameters", {"epoch": epoch, "proposal": proposal})
        if value["protocol_state"] == "Resharing":
            break
    new = [d.redeal() for d in network.domains]
    network.domains = new
    store_node_shares(network, epoch)  # a node stores its new share before it votes
    for domain in new:
        event = {"domain_id": domain.domain_id, "epoch": epoch, "attempt": 0}
        shares = {str(p): s.hex() for p, s in sorted(domain.public.verifying_shares.items())}
        for account in accounts:
            ledger.call(
                account, "vote_reshared", {"key_event_id": event, "verifying_shares": shares}
            )
    return new


def store_node_shares(network: Network, epoch: int = 0, participant_id: int = 1) -> None:
    for domain in network.domains:
        key = domain.packages[participant_id]
        share, public = encode_key_share(key, domain.public)
        network.keystore.put_key_share(domain.domain_id, epoch, share, public, replace=True)


# --- the node's backup endpoints in a real HTTPS server ------------------------------------------


@dataclass
class NodeServer:
    """The backup router mounted in the node's web API, served by the node's WebServer."""

    identity: NodeIdentity
    keystore: Keystore
    ledger_url: str
    port: int = 0
    imported: list[VerifiedShares] = field(default_factory=list)
    served: list[tuple[int, float]] = field(default_factory=list)
    import_error: Exception | None = None
    shares_override: Callable[[Keyset], list[KeyShare]] | None = None
    clock: Callable[[], float] = time.time
    server: WebServer | None = None
    status: Callable[[], dict[str, Any]] = dict
    """The node's /status document (the default, empty, is refused by the web API)."""
    ledger: AsyncLedgerClient | None = None
    registration_ledger: AsyncLedgerClient | None = None
    registrations: RegistrationCache | None = None
    views: list[str] = field(default_factory=list)
    """Contract views read through the node's shared ledger client (authenticated paths)."""
    registration_views: list[str] = field(default_factory=list)
    """Contract views read through the separate, bounded client that keeps the cache."""

    @property
    def url(self) -> str:
        return f"https://127.0.0.1:{self.port}"

    async def start(self) -> NodeServer:
        self.ledger = AsyncLedgerClient(self.ledger_url, timeout=10.0)
        self.registration_ledger = registration_client(self.ledger_url)
        shared, separate = self.ledger, self.registration_ledger

        async def read_view(method: str, args: Any) -> Any:
            self.views.append(method)
            return await shared.view(method, args)

        async def read_registration(method: str, args: Any) -> Any:
            self.registration_views.append(method)
            return await separate.view(method, args)

        self.registrations = RegistrationCache(self.identity.account, read_registration)
        await self.registrations.start(separate)

        from_keystore = keystore_share_source(self.keystore)

        async def current_shares(keyset: Keyset) -> list[KeyShare]:
            if self.shares_override is not None:
                return self.shares_override(keyset)
            return await from_keystore(keyset)

        async def import_shares(verified: VerifiedShares) -> None:
            if self.import_error is not None:
                raise self.import_error
            await asyncio.to_thread(store_verified_shares, self.keystore, verified)
            self.imported.append(verified)

        deps = BackupNodeDeps(
            account=self.identity.account,
            tls_signer=tls_signer(self.identity.tls),
            read_view=read_view,
            registrations=self.registrations,
            current_shares=current_shares,
            import_shares=import_shares,
            on_backup_served=lambda epoch, at: self.served.append((epoch, at)),
            clock=lambda: self.clock(),
        )
        app = create_app(
            status=self.status,
            metrics=NodeMetrics(),
            snapshot=MetricsSnapshot,
            routers=[backup_router(deps)],
        )
        self.server = WebServer(self.identity.tls, "127.0.0.1", self.port, app)
        await self.server.start()
        self.port = self.server.address[1]
        return self

    async def stop(self) -> None:
        if self.server is not None:
            await self.server.stop()
        if self.registrations is not None:
            await self.registrations.close()
        if self.registration_ledger is not None:
            await self.registration_ledger.aclose()
        if self.ledger is not None:
            await self.ledger.aclose()


@contextlib.contextmanager
def killing(proc: subprocess.Popen[bytes]) -> Iterator[subprocess.Popen[bytes]]:
    try:
        yield proc
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGKILL)
            proc.wait(15)


# --- the service's side, built from the protocol module ------------------------------------------


@dataclass
class ServiceKeys:
    """A backup service's identity and encryption keys (without the service around them)."""

    account: str
    signer: Ed25519Signer = field(default_factory=lambda: Ed25519Signer(os.urandom(32)))
    encryption: KxKeyPair = field(default_factory=lambda: KxKeyPair.generate(os.urandom))

    def identity(self) -> BackupIdentity:
        return BackupIdentity(self.account, self.signer, self.encryption)

    def registration(self) -> dict[str, str]:
        return self.identity().public.registration()

    def register(self, ledger: Ledger, operator: str | None = None) -> None:
        ledger.call(operator or self.account, "register_backup_service", self.registration())


def pinned_http(identity: NodeIdentity, url: str) -> httpx.AsyncClient:
    context = client_context(None, None, None, [identity.certificate])
    return httpx.AsyncClient(base_url=url, verify=context, timeout=10.0)


@contextlib.asynccontextmanager
async def serving(server: NodeServer) -> AsyncIterator[NodeServer]:
    await server.start()
    try:
        yield server
    finally:
        await server.stop()
