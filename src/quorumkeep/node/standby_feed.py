"""The primary's side of a warm standby: push a wrapped export of every keyset to it.

A participant whose node.toml names a warm standby (``[export] standby_web_url``,
``standby_tls_public_key``, ``standby_wrapping_key``) pushes, by itself, a wrapped export
of its shares of the keyset in force to the standby whenever the contract is Running at a
keyset it has not pushed yet: after the first state read (start), after every key
generation and every resharing. Transport: ``PUT /standby/wrapped-export`` on the
standby's web API over TLS 1.3, the standby's certificate pinned to its configured TLS key;
the export is signed by this node's TLS key, the one the contract lists (docs/node.md,
"Warm standby"; format: docs/wrapped-export.md).

The export goes only where ``[export]`` allows (``allow = true`` and the standby's wrapping
key in ``whitelist``); a refusal is logged once per keyset and shown in ``/status``, never
retried (the configuration is read at start). Failed pushes (the standby is down, refuses
for now) are retried with backoff from 0.5 s to 30 s until they succeed or the keyset moves
on.
"""

from __future__ import annotations

import asyncio
import logging
import os
import random
import time
from collections.abc import Awaitable, Callable
from typing import Any
from urllib.parse import urlsplit

import httpx
from prometheus_client import Counter, Gauge

from quorumkeep.contract.state import ContractState, Running
from quorumkeep.crypto.group import RandomBytes
from quorumkeep.crypto.seal import KxKeyPair
from quorumkeep.net.retry import Backoff, BackoffPolicy, Uniform
from quorumkeep.node.config import ExportConfig
from quorumkeep.node.held_keys import HeldKeys
from quorumkeep.node.metrics import NodeMetrics
from quorumkeep.node.wrapped_export import held_shares
from quorumkeep.wire.backup import Signer
from quorumkeep.wire.tls import TLSError, client_context, fetch_certificate, pinned
from quorumkeep.wire.wrapped import (
    PATH_WRAPPED_EXPORT,
    WrappedExport,
    WrappedExportError,
    seal_export,
)

log = logging.getLogger("quorumkeep.node.standby")

PUSH_POLICY = BackoffPolicy(0.5, 30.0, jitter=0.5)
PUSH_TIMEOUT = 10.0

Push = Callable[[bytes], Awaitable[dict[str, Any]]]
"""Sends one export's bytes to the standby; its JSON answer, or raises (``PushFailed``)."""


class PushFailed(Exception):
    """The standby could not be reached or refused the export (``code`` from its answer)."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


class PinnedStandby:
    """HTTPS to the standby's web API, its certificate pinned to its TLS key."""

    def __init__(self, web_url: str, tls_public_key: bytes, timeout: float = PUSH_TIMEOUT) -> None:
        self.web_url = web_url
        self.tls_public_key = tls_public_key
        self.timeout = timeout
        self._client: httpx.AsyncClient | None = None

    async def _connect(self) -> httpx.AsyncClient:
        if self._client is None:
            parts = urlsplit(self.web_url)
            host, port = parts.hostname or "", parts.port or 443
            try:
                certificate = await fetch_certificate(host, port, self.timeout)
                trusted = pinned(self.tls_public_key, certificate)
            except TLSError as exc:
                raise PushFailed("standby_unreachable", f"{self.web_url}: {exc}") from None
            self._client = httpx.AsyncClient(
                base_url=self.web_url,
                verify=client_context(None, None, None, [trusted]),
                timeout=self.timeout,
            )
        return self._client

    async def push(self, body: bytes) -> dict[str, Any]:
        client = await self._connect()
        try:
            response = await client.put(
                PATH_WRAPPED_EXPORT, content=body, headers={"content-type": "application/json"}
            )
        except httpx.HTTPError as exc:
            await self.aclose()  # it may come back with another certificate
            raise PushFailed(
                "standby_unreachable", f"{self.web_url}: {type(exc).__name__}"
            ) from None
        try:
            answer = response.json()
        except ValueError:
            answer = None
        if response.status_code != 200 or not isinstance(answer, dict):
            error = answer.get("error") if isinstance(answer, dict) else None
            if isinstance(error, dict):
                raise PushFailed(str(error.get("code")), str(error.get("message")))
            raise PushFailed("standby_error", f"HTTP {response.status_code}")
        return answer

    async def aclose(self) -> None:
        client, self._client = self._client, None
        if client is not None:
            await client.aclose()


class StandbyFeed:
    """Pushes every new keyset's wrapped export to the configured warm standby."""

    def __init__(
        self,
        *,
        account: str,
        export: ExportConfig,
        source: Callable[[], Signer],
        wrapping_key: KxKeyPair,
        held: HeldKeys,
        metrics: NodeMetrics,
        push: Push | None = None,
        clock: Callable[[], float] = time.time,
        random_bytes: RandomBytes = os.urandom,
        uniform: Uniform = random.random,
    ) -> None:
        """``source`` gives the node's TLS key as a signer (asked once, when first needed)."""
        assert export.pushes
        self._account = account
        self._export = export
        self._source_factory = source
        self._source: Signer | None = None
        self._wrapping = wrapping_key
        self._held = held
        self._clock = clock
        self._random_bytes = random_bytes
        self._uniform = uniform
        assert export.standby_web_url is not None and export.standby_tls_public_key is not None
        assert export.standby_wrapping_key is not None
        self._destination = bytes.fromhex(export.standby_wrapping_key)
        self._standby: PinnedStandby | None = None
        if push is None:
            self._standby = PinnedStandby(
                export.standby_web_url, bytes.fromhex(export.standby_tls_public_key)
            )
            push = self._standby.push
        self._push = push
        self._task: asyncio.Task[None] | None = None
        self._target: bytes | None = None
        """Hash of the keyset being pushed (or pushed)."""
        self._pushed: tuple[int, bytes, float] | None = None
        self._error: tuple[str, str] | None = None
        r = metrics.registry
        self._pushes = Counter(
            "quorumkeep_standby_pushes",
            "Wrapped exports pushed to the warm standby, by outcome (ok, failed, refused).",
            ["outcome"],
            registry=r,
        )
        self._pushed_epoch = Gauge(
            "quorumkeep_standby_pushed_epoch",
            "Epoch of the last wrapped export the warm standby took (-1: none yet).",
            registry=r,
        )
        self._pushed_epoch.set(-1)

    def update(self, state: ContractState, me: int | None) -> None:
        """After every state applied: push the keyset in force if it was not yet."""
        running = state.protocol
        if me is None or not isinstance(running, Running):
            if me is None:
                self._cancel()
            return
        target = running.keyset.hash
        if target == self._target:
            return
        self._cancel()
        self._target = target
        self._task = asyncio.create_task(self._run(running, me), name="standby-push")

    def _cancel(self) -> None:
        if self._task is not None and not self._task.done():
            self._task.cancel()
        self._task = None
        self._target = None

    def tasks(self) -> list[asyncio.Task[None]]:
        return [self._task] if self._task is not None else []

    async def close(self) -> None:
        self._cancel()
        if self._standby is not None:
            await self._standby.aclose()

    async def _run(self, running: Running, me: int) -> None:
        refusal = self._export.refusal(self._destination)
        if refusal is not None:
            self._error = refusal
            self._pushes.labels(outcome="refused").inc()
            log.error("not pushing to the warm standby: %s [%s]", refusal[1], refusal[0])
            return
        backoff = Backoff(PUSH_POLICY, uniform=self._uniform)
        while True:
            try:
                export = await asyncio.to_thread(self._seal, running, me)
                answer = await self._push(export.to_bytes())
            except (PushFailed, WrappedExportError, LookupError) as exc:
                code = getattr(exc, "code", "no_shares")
                message = getattr(exc, "message", str(exc))
                self._error = (code, message)
                self._pushes.labels(outcome="failed").inc()
                level = logging.WARNING if backoff.retries % 10 == 0 else logging.DEBUG
                log.log(
                    level,
                    "push to the warm standby failed epoch=%d: %s [%s]; retrying",
                    running.epoch,
                    message,
                    code,
                )
                await backoff.wait()
                continue
            self._error = None
            self._pushed = (running.epoch, running.keyset.hash, self._clock())
            self._pushes.labels(outcome="ok").inc()
            self._pushed_epoch.set(running.epoch)
            log.info(
                "pushed wrapped export to the warm standby account=%s epoch=%d domains=%s "
                "standby=%s answer_epoch=%s",
                self._account,
                running.epoch,
                list(running.keyset.domain_ids),
                self._export.standby_web_url,
                answer.get("epoch"),
            )
            return

    def _seal(self, running: Running, me: int) -> WrappedExport:
        if self._source is None:
            self._source = self._source_factory()
        return seal_export(
            account=self._account,
            participant_id=me,
            keyset=running.keyset,
            shares=held_shares(self._held, running, me),
            source=self._source,
            source_wrapping=self._wrapping,
            destination_wrapping_public_key=self._destination,
            now_ms=int(self._clock() * 1000),
            random_bytes=self._random_bytes,
        )

    def status(self) -> dict[str, Any]:
        """``/status``'s ``standby_push``."""
        pushed = self._pushed
        return {
            "web_url": self._export.standby_web_url,
            "wrapping_key": self._export.standby_wrapping_key,
            "pushed_epoch": pushed[0] if pushed else None,
            "last_push_age_seconds": round(self._clock() - pushed[2], 3) if pushed else None,
            "pending": self._task is not None and not self._task.done(),
            "error": {"code": self._error[0], "message": self._error[1]} if self._error else None,
        }
