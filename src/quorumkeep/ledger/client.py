"""Clients of the ledger's HTTP API: ``AsyncLedgerClient`` (nodes, backup services) and
``LedgerClient`` (CLI, scripts), with the same methods and the same typed errors.

Submitting: the client keeps the next nonce of each access key it signs with and a recent
block height, both learnt from the ledger and refreshed on demand; a submission refused for
a stale nonce or an expired height (another process used the key, or the client was idle)
is re-signed once with fresh values. A submission whose answer was lost in transit is
re-sent *unchanged*, so it can never execute twice: if it already made it into a block, the
ledger says ``DuplicateTransaction`` and the client fetches the recorded outcome instead.
"""

from __future__ import annotations

import asyncio
import importlib.util
import sys
import threading
import time
from collections.abc import AsyncIterator, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import httpx
import nacl.signing

from quorumkeep.ledger.errors import ContractCallFailed, LedgerError
from quorumkeep.ledger.event_filter import filter_query, kind_tuple
from quorumkeep.ledger.failover import AsyncFailoverTransport, FailoverTransport, split_urls
from quorumkeep.ledger.transaction import (
    Action,
    AddKey,
    DeleteKey,
    FunctionCall,
    Permission,
    SignedTransaction,
    Transaction,
)
from quorumkeep.net.http_client import default_verify
from quorumkeep.net.retry import Backoff, BackoffPolicy

if "sniffio" not in sys.modules and importlib.util.find_spec("sniffio") is None:
    # httpcore tries `import sniffio` on every async request; without a negative entry in
    # sys.modules each failed import rescans sys.path (~0.25 ms per request).
    sys.modules["sniffio"] = None  # type: ignore[assignment]

__all__ = [
    "AccountSigner",
    "AsyncLedgerClient",
    "ContractCallFailed",
    "LedgerClient",
    "LedgerError",
    "LedgerEvent",
    "TxOutcome",
]

# A cached block height older than this is refreshed before signing: under load blocks
# come every few milliseconds and a transaction must name one of the last
# ``tx_validity_blocks`` (1000 by default).
HEIGHT_MAX_AGE_S = 1.0
RESEND_ATTEMPTS = 8
RESEND_BACKOFF = BackoffPolicy(initial=0.05, maximum=2.0, factor=2.0)
"""Waits before re-sending a transaction whose answer was lost or that a restarting server (or
one whose proposer is changing) answered 503: 0.05 s doubling to 2 s, ~5 s over 8 attempts."""
_RETRY_WITH_FRESH_VALUES = frozenset({"InvalidNonce", "TransactionExpired"})
# A refused transaction was not included, so re-signing it with fresh values is safe. With
# concurrent submitters on one key, requests can reach the server out of nonce order; every
# round lands at least the highest nonce, so a few rounds settle any realistic burst.
FRESH_VALUE_ATTEMPTS = 8


@dataclass(frozen=True)
class AccountSigner:
    """An account name and one of its access keys (the private key stays in memory)."""

    account: str
    signing_key: nacl.signing.SigningKey = field(repr=False)

    @property
    def public_key(self) -> bytes:
        return bytes(self.signing_key.verify_key)

    @property
    def public_key_hex(self) -> str:
        return self.public_key.hex()

    def sign(self, transaction: Transaction) -> SignedTransaction:
        return transaction.sign(self.signing_key)


@dataclass(frozen=True)
class TxOutcome:
    """The ledger's answer to an included transaction."""

    tx_hash: str
    block_height: int
    status: str
    value: Any
    events: list[dict[str, Any]]
    error_code: str | None = None
    error_message: str | None = None

    @property
    def ok(self) -> bool:
        return self.status == "success"

    @classmethod
    def from_json(cls, body: Mapping[str, Any]) -> TxOutcome:
        error = body.get("error") or {}
        return cls(
            tx_hash=str(body["tx_hash"]),
            block_height=int(body["block_height"]),
            status=str(body["status"]),
            value=body.get("value"),
            events=list(body.get("events") or []),
            error_code=error.get("code"),
            error_message=error.get("message"),
        )

    @classmethod
    def from_record(cls, record: Mapping[str, Any]) -> TxOutcome:
        """From ``GET /v1/transactions/{hash}`` (the included transaction and its outcome)."""
        return cls.from_json(
            {
                "tx_hash": record["tx_hash"],
                "block_height": record["block_height"],
                **record["outcome"],
            }
        )

    def raise_for_failure(self) -> TxOutcome:
        if not self.ok:
            raise ContractCallFailed(
                self.error_code or "ContractError",
                self.error_message or "the contract rejected the call",
                tx_hash=self.tx_hash,
                block_height=self.block_height,
            )
        return self


@dataclass(frozen=True)
class LedgerEvent:
    """A contract event and where it is recorded (resume after ``height`` to skip it)."""

    height: int
    index: int
    tx_hash: str | None
    kind: str
    data: dict[str, Any]

    @classmethod
    def from_json(cls, body: Mapping[str, Any]) -> LedgerEvent:
        return cls(
            height=int(body["height"]),
            index=int(body["index"]),
            tx_hash=body.get("tx_hash"),
            kind=str(body["kind"]),
            data=dict(body.get("data") or {}),
        )


def _error_from_response(response: httpx.Response) -> LedgerError:
    try:
        error = response.json()["error"]
        return LedgerError(str(error["code"]), str(error["message"]), response.status_code)
    except (ValueError, KeyError, TypeError):
        return LedgerError(
            "LedgerUnavailable",
            f"ledger answered HTTP {response.status_code} without an error body",
            response.status_code,
        )


def _unreachable(base_url: str, exc: Exception) -> LedgerError:
    detail = str(exc) or type(exc).__name__
    return LedgerError("LedgerUnavailable", f"cannot reach the ledger at {base_url}: {detail}")


def _events_path(
    since: int, timeout: float, kinds: Iterable[str] | None, exclude_kinds: Iterable[str] | None
) -> str:
    return f"/v1/events?since={since}&timeout={timeout}" + filter_query(kinds, exclude_kinds)


def _actions_for_call(method: str, args: Mapping[str, Any] | None) -> list[Action]:
    return [FunctionCall(method, dict(args or {}))]


class _Book:
    """Nonces and the recent height, shared by the sync and async clients."""

    def __init__(self) -> None:
        self.chain_id: bytes | None = None
        self.nonces: dict[tuple[str, bytes], int] = {}
        self.height = -1
        self.height_at = 0.0

    def saw_height(self, height: int) -> None:
        if height >= self.height:
            self.height = height
            self.height_at = time.monotonic()

    def height_fresh(self) -> bool:
        return self.height >= 0 and time.monotonic() - self.height_at < HEIGHT_MAX_AGE_S

    def learn_account(self, signer: AccountSigner, body: Mapping[str, Any]) -> None:
        self.saw_height(int(body["block_height"]))
        for key in body["keys"]:
            if key["public_key"] == signer.public_key_hex:
                slot = (signer.account, signer.public_key)
                self.nonces[slot] = max(self.nonces.get(slot, 0), int(key["nonce"]))
                return
        raise LedgerError(
            "UnknownAccessKey",
            f"{signer.public_key_hex} is not an access key of account {signer.account!r}",
        )

    def next_transaction(self, signer: AccountSigner, actions: Sequence[Action]) -> Transaction:
        assert self.chain_id is not None
        slot = (signer.account, signer.public_key)
        nonce = self.nonces[slot] + 1
        self.nonces[slot] = nonce
        return Transaction(
            chain_id=self.chain_id,
            signer_account=signer.account,
            public_key=signer.public_key,
            nonce=nonce,
            block_height=self.height,
            actions=tuple(actions),
        )

    def forget(self, signer: AccountSigner) -> None:
        self.nonces.pop((signer.account, signer.public_key), None)
        self.height_at = 0.0


POOL_CONNECTIONS = 8
"""HTTP connections an AsyncLedgerClient opens to the ledger at most."""


class AsyncLedgerClient:
    """asyncio client; one instance may be shared by many tasks."""

    def __init__(
        self,
        base_url: str,
        *,
        timeout: float = 30.0,
        transport: httpx.AsyncBaseTransport | None = None,
        max_connections: int = POOL_CONNECTIONS,
    ) -> None:
        self.base_url = base_url.rstrip("/")
        urls = split_urls(self.base_url)
        limits = httpx.Limits(
            max_connections=max_connections, max_keepalive_connections=max_connections
        )
        if transport is None and len(urls) > 1:
            transport = AsyncFailoverTransport(urls, limits)
        self._http = httpx.AsyncClient(
            base_url=urls[0],
            timeout=timeout,
            transport=transport,
            limits=limits,
            verify=default_verify(),
        )
        # Each time a request starts or ends, httpcore's pool checks every connection against
        # every other (quadratic in its size) and every queued request against every
        # connection; above its keep-alive limit it also drops connections. With 64 sign
        # requests in flight that cost the benchmark client 19 ms of CPU per request; a small
        # pool that never queues (requests wait on this semaphore instead) costs 4-5 ms. The
        # ledger commits one block at a time, so more connections would not answer sooner.
        self._connections = asyncio.Semaphore(max_connections)
        self._book = _Book()
        self._prepare_lock = asyncio.Lock()

    async def aclose(self) -> None:
        await self._http.aclose()

    async def __aenter__(self) -> AsyncLedgerClient:
        return self

    async def __aexit__(self, *_: object) -> None:
        await self.aclose()

    async def _request(
        self, method: str, path: str, *, json: Any = None, timeout: float | None = None
    ) -> Any:
        try:
            async with self._connections:
                if timeout is None:
                    response = await self._http.request(method, path, json=json)
                else:
                    response = await self._http.request(method, path, json=json, timeout=timeout)
        except httpx.HTTPError as exc:
            raise _unreachable(self.base_url, exc) from None
        if response.status_code != 200:
            raise _error_from_response(response)
        try:
            return response.json()
        except ValueError:
            raise LedgerError("LedgerUnavailable", "ledger answered with invalid JSON") from None

    # --- reads ---------------------------------------------------------------------

    async def status(self) -> dict[str, Any]:
        body: dict[str, Any] = await self._request("GET", "/v1/status")
        self._book.saw_height(int(body["height"]))
        self._book.chain_id = bytes.fromhex(body["chain_id"])
        return body

    async def health(self) -> dict[str, Any]:
        result: dict[str, Any] = await self._request("GET", "/health")
        return result

    async def account(self, name: str) -> dict[str, Any]:
        result: dict[str, Any] = await self._request("GET", f"/v1/accounts/{name}")
        return result

    async def block(self, height: int) -> dict[str, Any]:
        result: dict[str, Any] = await self._request("GET", f"/v1/blocks/{height}")
        return result

    async def transaction(self, tx_hash: str) -> dict[str, Any]:
        result: dict[str, Any] = await self._request("GET", f"/v1/transactions/{tx_hash}")
        return result

    async def view(self, method: str, args: Mapping[str, Any] | None = None) -> Any:
        body = await self._request("POST", "/v1/view", json={"method": method, "args": args or {}})
        return body["value"]

    async def events(
        self,
        since: int = -1,
        timeout: float = 25.0,
        *,
        kinds: Iterable[str] | None = None,
        exclude_kinds: Iterable[str] | None = None,
    ) -> tuple[list[LedgerEvent], int]:
        """One long-poll: events above ``since`` (waiting up to ``timeout`` s) and the cursor.

        ``kinds`` (only these) or ``exclude_kinds`` (all but these) filter on the server:
        the poll waits for a matching event, and the cursor passes the blocks without one.
        """
        path = _events_path(since, timeout, kinds, exclude_kinds)
        body = await self._request("GET", path, timeout=timeout + 10.0)
        return [LedgerEvent.from_json(e) for e in body["events"]], int(body["next"])

    async def follow_events(
        self,
        since: int = -1,
        *,
        poll_timeout: float = 25.0,
        max_backoff: float = 5.0,
        kinds: Iterable[str] | None = None,
        exclude_kinds: Iterable[str] | None = None,
    ) -> AsyncIterator[LedgerEvent]:
        """Every event above ``since`` (of ``kinds`` / not of ``exclude_kinds``, as for
        ``events``), forever; reconnects with backoff when the ledger is unreachable. To
        resume after a crash, pass the height of the last block whose events were all
        handled (events come in whole blocks, in order)."""
        kinds = kind_tuple("kinds", kinds)  # a generator would be empty on the second poll
        exclude_kinds = kind_tuple("exclude_kinds", exclude_kinds)
        cursor = since
        backoff = Backoff(BackoffPolicy(initial=0.05, maximum=max_backoff, jitter=0.5))
        while True:
            try:
                events, cursor_next = await self.events(
                    cursor, poll_timeout, kinds=kinds, exclude_kinds=exclude_kinds
                )
            except LedgerError as exc:
                if exc.status not in (0, 502, 503, 504) and exc.code != "LedgerUnavailable":
                    raise
                await backoff.wait()
                continue
            backoff.reset()
            for event in events:
                yield event
            cursor = max(cursor, cursor_next)

    # --- transactions ----------------------------------------------------------------

    async def prepare(self, signer: AccountSigner, actions: Sequence[Action]) -> SignedTransaction:
        """Sign ``actions`` with the next nonce and a fresh block height, for
        :meth:`submit_signed` (which may re-send it as often as needed: a transaction is
        included at most once)."""
        return await self._prepare(signer, actions)

    async def _prepare(self, signer: AccountSigner, actions: Sequence[Action]) -> SignedTransaction:
        slot = (signer.account, signer.public_key)
        # Concurrent submitters share the nonce book: one prepares at a time, and a retry in
        # another task may forget the key's nonce while we await, so look again after awaiting.
        async with self._prepare_lock:
            for _ in range(3):
                if self._book.chain_id is None:
                    await self.status()
                if slot not in self._book.nonces:
                    self._book.learn_account(signer, await self.account(signer.account))
                elif not self._book.height_fresh():
                    await self.status()
                if slot in self._book.nonces:
                    return signer.sign(self._book.next_transaction(signer, actions))
        raise LedgerError("NonceUnavailable", "could not obtain a nonce for the access key")

    async def submit(self, signer: AccountSigner, actions: Sequence[Action]) -> TxOutcome:
        """Sign and submit ``actions``; the outcome may be a contract failure (not raised)."""
        for attempt in range(FRESH_VALUE_ATTEMPTS):
            signed = await self._prepare(signer, actions)
            try:
                return await self.submit_signed(signed)
            except LedgerError as exc:
                if exc.code in _RETRY_WITH_FRESH_VALUES and attempt < FRESH_VALUE_ATTEMPTS - 1:
                    self._book.forget(signer)
                    continue
                raise
        raise AssertionError("unreachable")

    async def call(
        self, signer: AccountSigner, method: str, args: Mapping[str, Any] | None = None
    ) -> TxOutcome:
        """Call a contract method; raises ContractCallFailed if the contract rejected it."""
        outcome = await self.submit(signer, _actions_for_call(method, args))
        return outcome.raise_for_failure()

    async def add_key(
        self, signer: AccountSigner, public_key: bytes, permission: Permission
    ) -> TxOutcome:
        return await self.submit(signer, [AddKey(public_key, permission)])

    async def delete_key(self, signer: AccountSigner, public_key: bytes) -> TxOutcome:
        return await self.submit(signer, [DeleteKey(public_key)])

    async def submit_signed(self, signed: SignedTransaction) -> TxOutcome:
        """Submit an already-signed transaction, re-sending it unchanged if the answer is lost."""
        backoff = Backoff(RESEND_BACKOFF)
        for attempt in range(RESEND_ATTEMPTS):
            try:
                async with self._connections:
                    response = await self._http.post("/v1/transactions", json=signed.to_json())
            except httpx.HTTPError as exc:
                if attempt == RESEND_ATTEMPTS - 1:
                    raise _unreachable(self.base_url, exc) from None
                await backoff.wait()
                continue
            if response.status_code == 503 and attempt < RESEND_ATTEMPTS - 1:
                await backoff.wait()  # restarting, or its proposer changing: resend
                continue
            if response.status_code == 200:
                outcome = TxOutcome.from_json(response.json())
                self._book.saw_height(outcome.block_height)
                return outcome
            error = _error_from_response(response)
            if error.code == "DuplicateTransaction" and attempt > 0:
                return TxOutcome.from_record(await self.transaction(signed.hash.hex()))
            raise error
        raise AssertionError("unreachable")


class LedgerClient:
    """Blocking client with the methods of AsyncLedgerClient (no follow_events).

    Safe to share between threads: nonce allocation is serialized by a lock.
    """

    def __init__(
        self,
        base_url: str,
        *,
        timeout: float = 30.0,
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        self.base_url = base_url.rstrip("/")
        urls = split_urls(self.base_url)
        if transport is None and len(urls) > 1:
            transport = FailoverTransport(urls)
        self._http = httpx.Client(
            base_url=urls[0], timeout=timeout, transport=transport, verify=default_verify()
        )
        self._book = _Book()
        self._lock = threading.Lock()

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> LedgerClient:
        return self

    def __exit__(self, *_: object) -> None:
        self.close()

    def _request(
        self, method: str, path: str, *, json: Any = None, timeout: float | None = None
    ) -> Any:
        try:
            if timeout is None:
                response = self._http.request(method, path, json=json)
            else:
                response = self._http.request(method, path, json=json, timeout=timeout)
        except httpx.HTTPError as exc:
            raise _unreachable(self.base_url, exc) from None
        if response.status_code != 200:
            raise _error_from_response(response)
        try:
            return response.json()
        except ValueError:
            raise LedgerError("LedgerUnavailable", "ledger answered with invalid JSON") from None

    def status(self) -> dict[str, Any]:
        body: dict[str, Any] = self._request("GET", "/v1/status")
        self._book.saw_height(int(body["height"]))
        self._book.chain_id = bytes.fromhex(body["chain_id"])
        return body

    def health(self) -> dict[str, Any]:
        result: dict[str, Any] = self._request("GET", "/health")
        return result

    def account(self, name: str) -> dict[str, Any]:
        result: dict[str, Any] = self._request("GET", f"/v1/accounts/{name}")
        return result

    def block(self, height: int) -> dict[str, Any]:
        result: dict[str, Any] = self._request("GET", f"/v1/blocks/{height}")
        return result

    def transaction(self, tx_hash: str) -> dict[str, Any]:
        result: dict[str, Any] = self._request("GET", f"/v1/transactions/{tx_hash}")
        return result

    def view(self, method: str, args: Mapping[str, Any] | None = None) -> Any:
        body = self._request("POST", "/v1/view", json={"method": method, "args": args or {}})
        return body["value"]

    def events(
        self,
        since: int = -1,
        timeout: float = 25.0,
        *,
        kinds: Iterable[str] | None = None,
        exclude_kinds: Iterable[str] | None = None,
    ) -> tuple[list[LedgerEvent], int]:
        path = _events_path(since, timeout, kinds, exclude_kinds)
        body = self._request("GET", path, timeout=timeout + 10.0)
        return [LedgerEvent.from_json(e) for e in body["events"]], int(body["next"])

    def _prepare(self, signer: AccountSigner, actions: Sequence[Action]) -> SignedTransaction:
        slot = (signer.account, signer.public_key)
        with self._lock:
            if self._book.chain_id is None:
                self.status()
            if slot not in self._book.nonces:
                self._book.learn_account(signer, self.account(signer.account))
            elif not self._book.height_fresh():
                self.status()
            transaction = self._book.next_transaction(signer, actions)
        return signer.sign(transaction)

    def submit(self, signer: AccountSigner, actions: Sequence[Action]) -> TxOutcome:
        for attempt in range(FRESH_VALUE_ATTEMPTS):
            signed = self._prepare(signer, actions)
            try:
                return self.submit_signed(signed)
            except LedgerError as exc:
                if exc.code in _RETRY_WITH_FRESH_VALUES and attempt < FRESH_VALUE_ATTEMPTS - 1:
                    with self._lock:
                        self._book.forget(signer)
                    continue
                raise
        raise AssertionError("unreachable")

    def call(
        self, signer: AccountSigner, method: str, args: Mapping[str, Any] | None = None
    ) -> TxOutcome:
        return self.submit(signer, _actions_for_call(method, args)).raise_for_failure()

    def add_key(
        self, signer: AccountSigner, public_key: bytes, permission: Permission
    ) -> TxOutcome:
        return self.submit(signer, [AddKey(public_key, permission)])

    def delete_key(self, signer: AccountSigner, public_key: bytes) -> TxOutcome:
        return self.submit(signer, [DeleteKey(public_key)])

    def submit_signed(self, signed: SignedTransaction) -> TxOutcome:
        for attempt in range(RESEND_ATTEMPTS):
            try:
                response = self._http.post("/v1/transactions", json=signed.to_json())
            except httpx.HTTPError as exc:
                if attempt == RESEND_ATTEMPTS - 1:
                    raise _unreachable(self.base_url, exc) from None
                time.sleep(RESEND_BACKOFF.delay(attempt))
                continue
            if response.status_code == 503 and attempt < RESEND_ATTEMPTS - 1:
                time.sleep(RESEND_BACKOFF.delay(attempt))  # restarting, or proposer changing
                continue
            if response.status_code == 200:
                outcome = TxOutcome.from_json(response.json())
                self._book.saw_height(outcome.block_height)
                return outcome
            error = _error_from_response(response)
            if error.code == "DuplicateTransaction" and attempt > 0:
                return TxOutcome.from_record(self.transaction(signed.hash.hex()))
            raise error
        raise AssertionError("unreachable")
