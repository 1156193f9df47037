"""The backup service registered for this node's account, cached so that unauthenticated
requests to the ``/backup`` endpoints are checked without reading the ledger.

Every header a backup request carries is public, so anyone can send well-formed requests with
garbage signatures. Were the registered key read from the contract for each of them, a flood
would queue behind the node's own contract calls on its shared ledger client. Instead:

- :class:`RegistrationCache` holds the registration (identity and encryption keys, or none).
  It is loaded once at start (the ``backup_service_info`` view) and then kept current from the
  contract's ``backup_service_registered`` events, followed with the ledger's kind filter.
- Both go through a **separate, bounded** ledger client (:func:`registration_client`: two
  connections, one for the long-poll and one for a read), never the node's own.
- A request whose identity key is the cached one has its signature checked with no I/O. A key
  the cache does not know may be a registration whose event has not arrived yet: the cache is
  refreshed, at most once per ``min_refresh_interval`` (1 s) and one refresh at a time, and
  requests arriving meanwhile share that refresh. A flood of unknown keys thus costs at most
  one read per second on the separate client.
- The cache only filters: once a request's signature verified, the endpoint confirms the
  registration on the node's own client (an authenticated path) before it answers, so a key
  replaced a moment ago is never honoured from a stale cache.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import Any

from quorumkeep.contract.events import BACKUP_SERVICE_REGISTERED
from quorumkeep.daemon.errors import error_code
from quorumkeep.ledger.client import AsyncLedgerClient
from quorumkeep.ledger.errors import LedgerError
from quorumkeep.wire.backup import KEY_SIZE, BackupProtocolError

log = logging.getLogger("quorumkeep.node.backup")

ViewReader = Callable[[str, Mapping[str, Any]], Awaitable[Any]]
REGISTRATION_CONNECTIONS = 2
"""The separate client's connections: one long-poll for events, one read."""


@dataclass(frozen=True)
class Registration:
    """The keys the contract lists for an account's backup service (public)."""

    identity_public_key: bytes
    encryption_public_key: bytes


def _key(value: object, what: str) -> bytes:
    if not isinstance(value, str) or len(value) != 2 * KEY_SIZE:
        raise BackupProtocolError("contract_unavailable", f"the contract's {what} is malformed")
    try:
        return bytes.fromhex(value)
    except ValueError:
        raise BackupProtocolError(
            "contract_unavailable", f"the contract's {what} is malformed"
        ) from None


def registration_from_json(value: object) -> Registration | None:
    """The ``backup_service_info`` view's value (or an event's data) as a Registration;
    None for no registration; ``contract_unavailable`` if malformed."""
    if value is None:
        return None
    if not isinstance(value, Mapping):
        raise BackupProtocolError("contract_unavailable", "backup_service_info is malformed")
    return Registration(
        _key(value.get("identity_public_key"), "identity_public_key"),
        _key(value.get("encryption_public_key"), "encryption_public_key"),
    )


def registration_client(ledger_url: str) -> AsyncLedgerClient:
    """The separate, bounded ledger client the cache reads through."""
    return AsyncLedgerClient(ledger_url, timeout=10.0, max_connections=REGISTRATION_CONNECTIONS)


class RegistrationCache:
    """The account's backup service registration, from the contract's events."""

    def __init__(
        self,
        account: str,
        read_view: ViewReader,
        *,
        min_refresh_interval: float = 1.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.account = account
        self._read_view = read_view
        self._min_refresh_interval = min_refresh_interval
        self._clock = clock
        self._current: Registration | None = None
        self._loaded = False
        self._last_refresh: float | None = None
        self._refreshing: asyncio.Task[None] | None = None
        self._follower: asyncio.Task[None] | None = None

    @property
    def current(self) -> Registration | None:
        return self._current

    async def start(self, ledger: AsyncLedgerClient | None = None) -> None:
        """Load the registration (a failure is retried on the first request) and, given a
        ledger client, follow the registration events from the current height."""
        since = -1
        if ledger is not None:
            with contextlib.suppress(LedgerError):
                since = int((await ledger.status())["height"])
        with contextlib.suppress(BackupProtocolError):
            await self._refresh()
        if ledger is not None:
            self._follower = asyncio.create_task(
                self._follow(ledger, since), name="backup-registration-events"
            )

    async def close(self) -> None:
        for task in (self._follower, self._refreshing):
            if task is not None and not task.done():
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await task

    async def _follow(self, ledger: AsyncLedgerClient, since: int) -> None:
        try:
            async for event in ledger.follow_events(since, kinds=[BACKUP_SERVICE_REGISTERED]):
                if event.data.get("account") != self.account:
                    continue
                try:
                    self._current = registration_from_json(event.data)
                    self._loaded = True
                except BackupProtocolError as exc:
                    log.warning("ignored a malformed registration event: %s", exc.message)
        except LedgerError as exc:
            log.warning("stopped following backup registrations: %s", exc.code)

    async def _refresh(self) -> None:
        self._last_refresh = self._clock()
        try:
            value = await self._read_view("backup_service_info", {"account": self.account})
        except BackupProtocolError:
            raise
        except Exception as exc:
            code = error_code(exc)
            raise BackupProtocolError(
                "contract_unavailable", f"cannot read the contract's backup_service_info ({code})"
            ) from None
        self._current = registration_from_json(value)
        self._loaded = True

    async def lookup(self, identity_public_key: bytes) -> Registration:
        """The registration if ``identity_public_key`` is the registered one; otherwise
        ``unregistered_caller`` (after at most one rate-limited refresh), or
        ``contract_unavailable`` while the registration could never be read."""
        current = self._current
        if current is not None and current.identity_public_key == identity_public_key:
            return current
        due = (
            self._last_refresh is None
            or self._clock() - self._last_refresh >= self._min_refresh_interval
        )
        if self._refreshing is None and due:
            self._refreshing = asyncio.create_task(self._refresh())
        task = self._refreshing
        if task is not None:
            try:
                await asyncio.shield(task)
            except BackupProtocolError:
                if not self._loaded:
                    raise
            finally:
                if self._refreshing is task and task.done():
                    self._refreshing = None
        current = self._current
        if current is not None and current.identity_public_key == identity_public_key:
            return current
        if not self._loaded:
            raise BackupProtocolError(
                "contract_unavailable", "the backup service registration is not known yet"
            )
        raise BackupProtocolError(
            "unregistered_caller",
            f"the caller's key is not the backup service registered for {self.account}",
        )
