"""Following a node migration: started → shares pushed → imported → concluded.

The contract says when a migration started, concluded or was cancelled: those steps come
from its events, read with the ledger's long-poll (``GET /v1/events``), and are timed by
the timestamps of the blocks that hold them — so ``seconds`` is the ledger's own measure
from the ``start_node_migration`` transaction to the ``conclude_node_migration`` one.

What happens in between happens on the destination node, which the contract does not see.
While a migration is open, the watcher asks that node for its ``GET /status`` over HTTPS,
trusting only a certificate that carries the TLS key the migration names
(``wire.tls.pinned``): the node reports ``shares pushed`` once its backup service delivered
shares (its ``migration.phase`` turns ``concluding``) and ``imported`` once its ``keysets``
hold the current keyset's shares. The node stores shares only after verifying them, within
the request that delivered them, so the two usually show at the same look. They are timed
by when the watcher saw them (local clock); a step the node passed between two looks, or a
node that cannot be reached, leaves its time unknown but never blocks the outcome.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

import httpx

from quorumkeep.contract.events import MIGRATION_CANCELLED, MIGRATION_CONCLUDED, MIGRATION_STARTED
from quorumkeep.ledger.client import AsyncLedgerClient, LedgerEvent
from quorumkeep.ledger.errors import LedgerError
from quorumkeep.operator.errors import OperatorError
from quorumkeep.wire.tls import TLSError, client_context, fetch_certificate, pinned

STEPS = ("started", "shares pushed", "imported", "concluded")
MIGRATION_KINDS = (MIGRATION_STARTED, MIGRATION_CONCLUDED, MIGRATION_CANCELLED)
OPEN = "open"
CONCLUDED = "concluded"
CANCELLED = "cancelled"
REPLACED = "replaced"
NONE = "none"

PROBE_INTERVAL = 0.1
"""Seconds between two looks at the destination node while a migration is open."""
PROBE_TIMEOUT = 2.0
EVENT_SLICE = 2.0
"""Longest single long-poll: bounds how late a deadline is noticed."""


@dataclass
class MigrationProgress:
    """One migration of one account, as far as the watcher has seen it."""

    account: str
    state: str = NONE
    participant_id: int | None = None
    destination: dict[str, str] = field(default_factory=dict)
    destination_signer_public_key: str | None = None
    started_height: int | None = None
    started_ms: int | None = None
    pushed_ms: int | None = None
    imported_ms: int | None = None
    concluded_height: int | None = None
    concluded_ms: int | None = None
    cancelled_height: int | None = None
    cancelled_ms: int | None = None
    cancel_reason: str | None = None
    node_role: str | None = None
    node_error: str | None = None

    @property
    def done(self) -> bool:
        return self.state in (CONCLUDED, CANCELLED, REPLACED)

    @property
    def seconds(self) -> float | None:
        """Ledger time from the start transaction's block to the conclude transaction's."""
        if self.started_ms is None or self.concluded_ms is None:
            return None
        return (self.concluded_ms - self.started_ms) / 1000.0

    def step_reached(self, step: str) -> bool:
        if step == "started":
            return self.started_height is not None
        if step == "concluded":
            return self.state == CONCLUDED
        if self.state == CONCLUDED:
            return True  # a concluded migration went through every step
        if step == "shares pushed":
            return self.pushed_ms is not None or self.imported_ms is not None
        return self.imported_ms is not None

    def step_offset(self, step: str) -> float | None:
        """Seconds after the start at which ``step`` was reached (None if unknown)."""
        at = {
            "started": self.started_ms,
            "shares pushed": self.pushed_ms,
            "imported": self.imported_ms,
            "concluded": self.concluded_ms,
        }[step]
        if at is None or self.started_ms is None:
            return None
        if self.concluded_ms is not None:
            # A step seen on the node (local clock) cannot come after the conclusion.
            at = min(at, self.concluded_ms)
        return max(0.0, (at - self.started_ms) / 1000.0)

    def to_json(self) -> dict[str, Any]:
        return {
            "account": self.account,
            "state": self.state,
            "participant_id": self.participant_id,
            "destination": dict(self.destination),
            "destination_signer_public_key": self.destination_signer_public_key,
            "started_height": self.started_height,
            "concluded_height": self.concluded_height,
            "cancelled_height": self.cancelled_height,
            "cancel_reason": self.cancel_reason,
            "seconds": None if self.seconds is None else round(self.seconds, 3),
            "steps": {
                step: {
                    "reached": self.step_reached(step),
                    "after_seconds": None
                    if self.step_offset(step) is None
                    else round(self.step_offset(step) or 0.0, 3),
                }
                for step in STEPS
            },
            "node_role": self.node_role,
        }


Update = Callable[[dict[str, MigrationProgress]], None]


def _ignore(_: dict[str, MigrationProgress]) -> None:
    return None


class DestinationProbe:
    """``GET /status`` of a migration's destination node, pinned to its TLS key."""

    def __init__(self, web_url: str, tls_public_key: bytes, timeout: float = PROBE_TIMEOUT) -> None:
        self.web_url = web_url.rstrip("/")
        self.tls_public_key = tls_public_key
        self.timeout = timeout
        self._client: httpx.AsyncClient | None = None

    async def _connect(self) -> httpx.AsyncClient:
        if self._client is None:
            parts = urlsplit(self.web_url)
            if parts.scheme != "https" or not parts.hostname:
                raise OperatorError("node_unreachable", f"{self.web_url} is not an https:// URL")
            certificate = await fetch_certificate(parts.hostname, parts.port or 443, self.timeout)
            trusted = pinned(self.tls_public_key, certificate)
            self._client = httpx.AsyncClient(
                base_url=self.web_url,
                verify=client_context(None, None, None, [trusted]),
                timeout=self.timeout,
            )
        return self._client

    async def status(self) -> dict[str, Any]:
        """The node's /status; OperatorError if it cannot be reached or is not that node."""
        try:
            client = await self._connect()
            response = await client.get("/status")
        except TLSError as exc:
            await self.aclose()
            raise OperatorError("node_unreachable", f"{self.web_url}: {exc}") from None
        except httpx.HTTPError as exc:
            await self.aclose()
            raise OperatorError(
                "node_unreachable", f"{self.web_url}: {type(exc).__name__}"
            ) from None
        if response.status_code != 200:
            raise OperatorError("node_error", f"{self.web_url}/status: HTTP {response.status_code}")
        body = response.json()
        if not isinstance(body, dict):
            raise OperatorError("node_error", f"{self.web_url}/status is not a JSON object")
        return body

    async def aclose(self) -> None:
        client, self._client = self._client, None
        if client is not None:
            await client.aclose()


def holds_keyset(status: Mapping[str, Any], keyset: Mapping[str, Any] | None) -> bool:
    """Whether a node's /status shows shares of every domain of ``keyset``."""
    if keyset is None:
        return False
    held = status.get("keysets")
    if not isinstance(held, Mapping):
        return False
    domains = held.get(str(keyset["epoch"]))
    if not isinstance(domains, list):
        return False
    wanted = {int(d["domain_id"]) for d in keyset["domains"]}
    return wanted <= {int(d) for d in domains if isinstance(d, int)}


def shares_received(status: Mapping[str, Any]) -> bool:
    """Whether a node's /status says its backup service delivered the shares: its
    ``migration.phase`` moved from ``waiting_for_shares`` to ``concluding`` (docs/node.md)."""
    migration = status.get("migration")
    return isinstance(migration, Mapping) and migration.get("phase") == "concluding"


class MigrationWatcher:
    """Follows the migrations of some accounts on the contract's event stream."""

    def __init__(
        self,
        ledger: AsyncLedgerClient,
        accounts: Sequence[str],
        *,
        probe_nodes: bool = True,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.ledger = ledger
        self.accounts = list(dict.fromkeys(accounts))
        self.progress = {a: MigrationProgress(a) for a in self.accounts}
        self.history: list[MigrationProgress] = []
        """Migrations that ended while watching (concluded, cancelled, replaced)."""
        self.cursor = -1
        self.probe_nodes = probe_nodes
        self.clock = clock
        self._block_ms: dict[int, int] = {}
        self._keyset: dict[str, Any] | None = None
        self._probes: dict[str, tuple[tuple[str, str], asyncio.Task[None]]] = {}
        self._changed = asyncio.Event()

    # -- setting out

    async def _timestamp(self, height: int) -> int:
        cached = self._block_ms.get(height)
        if cached is None:
            block = await self.ledger.block(height)
            cached = int(block["timestamp_ms"])
            self._block_ms[height] = cached
        return cached

    async def start_from_views(self) -> None:
        """Begin at the ledger's head with each account's open migration (if any)."""
        status = await self.ledger.status()
        self.cursor = int(status["height"])
        for account in self.accounts:
            value = await self.ledger.view("migration_info", {"account": account})
            if isinstance(value, Mapping):
                await self._started(account, dict(value))
        self._keyset = await self._read_keyset()

    async def start_from_height(self, height: int, *, only_migrations: bool = False) -> None:
        """Replay every event from block ``height`` on (e.g. the start transaction's);
        ``only_migrations``: just the migration events (the ledger filters them by kind, so
        even a replay from block 0 is cheap)."""
        self.cursor = max(-1, height - 1)
        self._keyset = await self._read_keyset()
        head = int((await self.ledger.status())["height"])
        kinds = MIGRATION_KINDS if only_migrations else None
        while self.cursor < head:
            events, cursor = await self.ledger.events(self.cursor, timeout=0, kinds=kinds)
            for event in events:
                await self._apply(event)
            if cursor <= self.cursor:
                break
            self.cursor = cursor

    async def _read_keyset(self) -> dict[str, Any] | None:
        try:
            value = await self.ledger.view("keyset", {})
        except LedgerError:
            return None
        return dict(value) if isinstance(value, Mapping) else None

    # -- events

    async def _started(self, account: str, data: dict[str, Any]) -> None:
        """A migration of ``account`` started; an open one it replaces ends ``replaced``."""
        current = self.progress[account]
        height = int(data["started_height"])
        if current.state == OPEN and current.started_height == height:
            return  # seen in the view and again as an event
        if current.state == OPEN:
            current.state = REPLACED
            self.history.append(current)
        elif current.done:
            self.history.append(current)
        destination = dict(data.get("destination") or {})
        self.progress[account] = MigrationProgress(
            account,
            state=OPEN,
            participant_id=data.get("participant_id"),
            destination={k: str(v) for k, v in destination.items()},
            destination_signer_public_key=data.get("destination_signer_public_key"),
            started_height=height,
            started_ms=await self._timestamp(height),
        )

    async def _apply(self, event: LedgerEvent) -> bool:
        account = event.data.get("account")
        if event.kind not in (MIGRATION_STARTED, MIGRATION_CONCLUDED, MIGRATION_CANCELLED):
            if event.kind in ("protocol_state_changed", "participants_changed"):
                self._keyset = None  # re-read before judging "imported"
            return False
        if account not in self.progress:
            return False
        current = self.progress[account]
        if event.kind == MIGRATION_STARTED:
            await self._started(account, event.data)
        elif event.kind == MIGRATION_CONCLUDED and current.state == OPEN:
            current.state = CONCLUDED
            current.concluded_height = event.height
            current.concluded_ms = await self._timestamp(event.height)
        elif event.kind == MIGRATION_CANCELLED and current.state == OPEN:
            current.state = CANCELLED
            current.cancelled_height = event.height
            current.cancelled_ms = await self._timestamp(event.height)
            current.cancel_reason = str(event.data.get("reason", ""))
        return True

    # -- the destination node

    async def probe_once(self) -> None:
        """One look at the destination node of every open migration (no waiting)."""
        for progress in self.progress.values():
            if progress.state != OPEN:
                continue
            probe = DestinationProbe(
                progress.destination.get("web_url", ""),
                bytes.fromhex(progress.destination.get("tls_public_key", "")),
            )
            try:
                await self._look(progress, probe)
            finally:
                await probe.aclose()

    async def _look(self, progress: MigrationProgress, probe: DestinationProbe) -> None:
        """Ask the destination node once and record what it shows."""
        try:
            status = await probe.status()
        except OperatorError as exc:
            progress.node_error = exc.message
            progress.node_role = None
            return
        progress.node_error = None
        role = status.get("role")
        progress.node_role = str(role) if role is not None else None
        now_ms = int(self.clock() * 1000)
        if self._keyset is None:
            self._keyset = await self._read_keyset()
        if progress.pushed_ms is None and shares_received(status):
            progress.pushed_ms = now_ms
        if progress.imported_ms is None and holds_keyset(status, self._keyset):
            progress.imported_ms = now_ms
            if progress.pushed_ms is None:
                progress.pushed_ms = now_ms

    async def _probe(self, account: str, web_url: str, tls_key: bytes) -> None:
        probe = DestinationProbe(web_url, tls_key)
        try:
            while True:
                progress = self.progress[account]
                if progress.done or progress.destination.get("web_url") != web_url:
                    return
                await self._look(progress, probe)
                self._changed.set()
                await asyncio.sleep(PROBE_INTERVAL)
        finally:
            await probe.aclose()

    def _sync_probes(self) -> None:
        if not self.probe_nodes:
            return
        for account, progress in self.progress.items():
            wanted = None
            if progress.state == OPEN:
                web_url = progress.destination.get("web_url", "")
                tls_key = progress.destination.get("tls_public_key", "")
                wanted = (web_url, tls_key)
            running = self._probes.get(account)
            if running is not None and (running[0] != wanted or running[1].done()):
                running[1].cancel()
                del self._probes[account]
                running = None
            if wanted is not None and running is None:
                key = bytes.fromhex(wanted[1])
                task = asyncio.create_task(self._probe(account, wanted[0], key))
                self._probes[account] = (wanted, task)

    async def aclose(self) -> None:
        probes, self._probes = self._probes, {}
        for _, task in probes.values():
            task.cancel()
        for _, task in probes.values():
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task

    # -- waiting

    async def wait(
        self,
        until: Callable[[dict[str, MigrationProgress]], bool],
        *,
        timeout: float,
        on_update: Update = _ignore,
        explain: Callable[[dict[str, MigrationProgress]], str] | None = None,
    ) -> dict[str, MigrationProgress]:
        """Follow events until ``until(progress)``; OperatorError("timeout") after ``timeout``."""
        deadline = time.monotonic() + timeout
        poll: asyncio.Task[tuple[list[LedgerEvent], int]] | None = None
        try:
            while True:
                self._sync_probes()
                on_update(self.progress)
                if until(self.progress):
                    return self.progress
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    what = explain(self.progress) if explain else "the migration did not finish"
                    raise OperatorError("timeout", f"{what} (waited {timeout:g} s)")
                if poll is None:
                    poll = asyncio.create_task(
                        self.ledger.events(self.cursor, timeout=min(remaining, EVENT_SLICE))
                    )
                self._changed.clear()
                changed = asyncio.create_task(self._changed.wait())
                await asyncio.wait(
                    {poll, changed}, timeout=remaining, return_when=asyncio.FIRST_COMPLETED
                )
                changed.cancel()
                if not poll.done():
                    continue  # a probe saw something (or the deadline): show it, keep polling
                done, poll = poll, None
                try:
                    events, cursor = done.result()
                except LedgerError as exc:
                    raise OperatorError(
                        exc.code, f"following the ledger: {exc.code}: {exc.message}"
                    ) from None
                for event in events:
                    await self._apply(event)
                self.cursor = max(self.cursor, cursor)
        finally:
            if poll is not None:
                poll.cancel()
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await poll
            await self.aclose()


def all_done(progress: dict[str, MigrationProgress]) -> bool:
    """Every watched account's migration ended (or none is open)."""
    return all(p.state != OPEN for p in progress.values())
