"""Hand-made contract states and an in-memory ledger for the coordinator's components.

:class:`FakeLedger` is a fake of the narrow interface the components take — a contract call,
a fresh state read, a view — not of a ledger process: a test sets the state the contract is
in, queues failures, and says how a call changes the state. Keystores are real (SQLite files
under the test's tmp_path); nothing starts a process.
"""

from __future__ import annotations

import asyncio
import hashlib
import os
from collections.abc import Awaitable, Callable, Mapping
from pathlib import Path
from typing import Any, TypeVar

from quorumkeep.contract.state import (
    ContractState,
    Destination,
    DomainKey,
    Keyset,
    Migration,
    ParticipantInfo,
    Participants,
    Running,
    SignRequest,
)
from quorumkeep.crypto.group import base_mul, scalar_from_int
from quorumkeep.crypto.keys import KeyPackage, PublicKeyPackage
from quorumkeep.ledger.client import TxOutcome
from quorumkeep.ledger.errors import ContractCallFailed, LedgerError
from quorumkeep.node.keystore import Keystore
from quorumkeep.node.keystore_records import KeystoreOwner
from quorumkeep.node.metrics import NodeMetrics
from quorumkeep.node.storage_key import StorageKey

T = TypeVar("T")


def scalar(label: str) -> bytes:
    return scalar_from_int(int.from_bytes(hashlib.sha256(label.encode()).digest()))


def key(label: str) -> bytes:
    return base_mul(scalar(label))


def member(account: str, pid: int, generation: int = 0) -> ParticipantInfo:
    return ParticipantInfo(
        account=account,
        participant_id=pid,
        url=f"127.0.0.1:{7000 + pid + 100 * generation}",
        web_url=f"https://127.0.0.1:{8000 + pid + 100 * generation}",
        tls_public_key=key(f"tls/{account}/{generation}"),
        signer_public_key=key(f"signer/{account}/{generation}"),
    )


ALICE_A, BOB, CAROL = member("alice", 1), member("bob", 2), member("carol", 3)
ALICE_B = member("alice", 1, generation=1)
DOMAINS = (0, 1)
EPOCH = 4


def share_secret(domain_id: int, pid: int, epoch: int = EPOCH) -> bytes:
    return scalar(f"share/{domain_id}/{pid}/{epoch}")


def running(alice: ParticipantInfo = ALICE_A, epoch: int = EPOCH) -> Running:
    members = (alice, BOB, CAROL)
    domains = tuple(
        DomainKey(
            d,
            "Ed25519",
            key(f"group/{d}"),
            tuple(
                (m.participant_id, base_mul(share_secret(d, m.participant_id, epoch)))
                for m in members
            ),
        )
        for d in DOMAINS
    )
    return Running(Keyset(epoch, domains), epoch + 1, Participants(2, members))


def migration_to(destination: ParticipantInfo, started_height: int = 50) -> Migration:
    return Migration(
        "alice",
        1,
        Destination(destination.url, destination.web_url, destination.tls_public_key),
        destination.signer_public_key,
        started_height,
    )


def contract(
    protocol: Any = None, *, to: ParticipantInfo | None = None, **fields: Any
) -> ContractState:
    migrations = {"alice": migration_to(to)} if to is not None else {}
    return ContractState(protocol=protocol or running(), migrations=migrations, **fields)


def key_pair(pid: int, domain_id: int, epoch: int = EPOCH) -> tuple[KeyPackage, PublicKeyPackage]:
    """Participant ``pid``'s share of ``domain_id`` in :func:`running`'s keyset."""
    domain = running(epoch=epoch).keyset.get(domain_id)
    assert domain is not None
    verifying = dict(domain.verifying_shares)
    public = PublicKeyPackage(domain.public_key, verifying, 2)
    return (
        KeyPackage(pid, share_secret(domain_id, pid, epoch), verifying[pid], domain.public_key, 2),
        public,
    )


def sign_request(request_id: int, payload: bytes = b"\x01" * 32, domain_id: int = 0) -> SignRequest:
    return SignRequest(
        request_id=request_id,
        account="user",
        payload=payload,
        path="a/b",
        domain_id=domain_id,
        public_key=key("derived"),
        block_height=10,
        deadline_height=100,
    )


def open_keystore(directory: Path, account: str = "alice") -> Keystore:
    return Keystore.open(
        directory, StorageKey(os.urandom(32)), KeystoreOwner(account, key(f"tls/{account}/0"))
    )


def outcome(height: int = 1) -> TxOutcome:
    return TxOutcome("00" * 32, height, "ok", None, [])


def unavailable() -> LedgerError:
    return LedgerError("LedgerUnavailable", "the ledger is down", status=0)


def refused(code: str) -> ContractCallFailed:
    return ContractCallFailed(code, f"the contract says {code}")


Effect = Callable[[ContractState, dict[str, Any]], ContractState | None]


class FakeLedger:
    """The contract as the components see it: ``state``, ``call``, ``view``."""

    def __init__(self, state: ContractState | None = None) -> None:
        self.state = state or contract()
        self.calls: list[tuple[str, dict[str, Any]]] = []
        self.reads = 0
        self.failures: dict[str, list[Exception]] = {}
        """method (or "state" for reads) → exceptions raised by the next calls, in order."""
        self.effects: dict[str, Effect] = {}
        """method → how an included call changes the state (a new state, or None)."""
        self.views: dict[tuple[str, str], Any] = {}
        self.gates: dict[str, asyncio.Event] = {}
        """method → an event a call waits for before it is answered."""

    def fail(self, method: str, *errors: Exception) -> None:
        self.failures.setdefault(method, []).extend(errors)

    async def read_state(self) -> ContractState:
        self.reads += 1
        await asyncio.sleep(0)
        queued = self.failures.get("state")
        if queued:
            raise queued.pop(0)
        return ContractState.from_json(self.state.to_json())

    async def call(self, method: str, args: dict[str, Any]) -> TxOutcome:
        self.calls.append((method, dict(args)))
        gate = self.gates.get(method)
        if gate is not None:
            await gate.wait()
        await asyncio.sleep(0)
        queued = self.failures.get(method)
        if queued:
            raise queued.pop(0)
        effect = self.effects.get(method)
        if effect is not None:
            changed = effect(self.state, args)
            if changed is not None:
                self.state = changed
        return outcome()

    async def view(self, method: str, args: Mapping[str, Any]) -> Any:
        found = self.views.get((method, repr(sorted(args.items()))))
        if found is None:
            raise LedgerError("ViewFailed", f"no {method} view", status=400)
        return found

    # The rest of the coordinator's ContractPort (node/calls.py): no retries to fake.

    async def retried(self, what: str, operation: Callable[[], Awaitable[T]]) -> T:
        return await operation()

    def saw_height(self, height: int) -> None:
        self.height = max(getattr(self, "height", -1), height)

    async def close(self) -> None:
        return None

    def called(self, method: str) -> list[dict[str, Any]]:
        return [args for m, args in self.calls if m == method]


def metrics() -> NodeMetrics:
    return NodeMetrics()


async def settle(rounds: int = 20) -> None:
    """Let background tasks take their next steps."""
    for _ in range(rounds):
        await asyncio.sleep(0)
