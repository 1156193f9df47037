"""The node's contract calls: many at once, all signed by its one signer key.

A node answers sign requests concurrently, and the contract accepts a `respond` only from
the signer key it registered for the node — so every call shares one access key and one
nonce sequence. The ledger requires each transaction's nonce to be above the key's last
used one. It re-slots one key's transactions into nonce order within a block, but a
transaction that arrives after a higher nonce of the same key was included is refused
(``InvalidNonce``); independent concurrent submissions therefore keep refusing each other.

:class:`ContractCaller` sends in *rounds*: the oldest few queued calls (``MAX_ROUND``) get
the next nonces in queue order and are sent at once, so they reach the ledger together and
land in one block in nonce order; the next round starts when this one is answered. A call
refused for its nonce goes into the next round with a fresh nonce; the ledger's idea of the
key's nonce is fetched only at the first round and when the ledger is ahead of us (someone
else used the key). Transient ledger errors are retried with bounded backoff; a call the
contract rejects raises ``ContractCallFailed`` at once.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol, TypeVar

from quorumkeep.contract.state import ContractState
from quorumkeep.ledger.client import AccountSigner, AsyncLedgerClient, TxOutcome
from quorumkeep.ledger.errors import ContractCallFailed, LedgerError
from quorumkeep.ledger.transaction import FunctionCall, Transaction
from quorumkeep.net.retry import Backoff, BackoffPolicy, retry
from quorumkeep.node.metrics import NodeMetrics

log = logging.getLogger("quorumkeep.node.calls")
T = TypeVar("T")

HEIGHT_MAX_AGE = 1.0
"""Seconds a learnt block height is used before it is refreshed (a transaction must name
one of the ledger's recent heights)."""
MAX_ROUND = 4
"""Most transactions sent in one round. A few at once land in one block in nonce order;
many at once reach the ledger spread over several blocks and refuse each other (measured
against a local ledger: 4 per round, no refusal and twice the rate of one at a time; 8 per
round, every second transaction refused)."""
TRANSIENT = frozenset({"LedgerUnavailable", "ShuttingDown"})
_CURRENT_NONCE = re.compile(r"current nonce (\d+)")

ContractCall = Callable[[str, dict[str, Any]], Awaitable[TxOutcome]]
"""A contract call signed by the node's signer key (``ContractCallFailed`` if rejected):
the narrow interface the coordinator's components take instead of the ledger."""
ViewReader = Callable[[str, Mapping[str, Any]], Awaitable[Any]]
"""A view of the contract (method, args) → its JSON value."""
StateReader = Callable[[], Awaitable[ContractState]]
"""A fresh read of the contract's ``state`` view (transient ledger errors retried)."""


def transient(exc: LedgerError) -> bool:
    """A failure worth retrying unchanged: the ledger is down, restarting or overloaded."""
    return not isinstance(exc, ContractCallFailed) and (
        exc.code in TRANSIENT or exc.status in (0, 502, 503, 504)
    )


@dataclass(eq=False)
class _Call:
    action: FunctionCall
    future: asyncio.Future[TxOutcome]
    attempts: int = 0
    errors: list[str] = field(default_factory=list)


class ContractCaller:
    """Contract calls signed by one account key, safe to issue concurrently."""

    def __init__(
        self,
        ledger: AsyncLedgerClient,
        signer: AccountSigner,
        *,
        attempts: int = 6,
        backoff: float = 0.1,
    ) -> None:
        self.ledger = ledger
        self.signer = signer
        self.attempts = attempts
        self.backoff = backoff
        self._chain_id: bytes | None = None
        self._next_nonce: int | None = None
        self._relearn_nonce = False
        self._height = -1
        self._height_at = 0.0
        self._queue: list[_Call] = []
        self._wake = asyncio.Event()
        self._sender: asyncio.Task[None] | None = None
        self.nonce_retries = 0
        self.rounds = 0

    def saw_height(self, height: int) -> None:
        """A block height seen elsewhere (e.g. on the event stream): fresh enough to sign."""
        if height >= self._height:
            self._height = height
            self._height_at = time.monotonic()

    async def call(self, method: str, args: Mapping[str, Any]) -> TxOutcome:
        """Call ``method``; the outcome of a success, ``ContractCallFailed`` if the contract
        refused, ``LedgerError`` if the ledger stayed unusable for every attempt."""
        future: asyncio.Future[TxOutcome] = asyncio.get_running_loop().create_future()
        self._queue.append(_Call(FunctionCall(method, dict(args)), future))
        self._wake.set()
        if self._sender is None or self._sender.done():
            self._sender = asyncio.create_task(self._send_rounds(), name="contract-calls")
        outcome = await future
        return outcome.raise_for_failure()

    async def close(self) -> None:
        if self._sender is not None:
            self._sender.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._sender
        for pending in self._queue:
            if not pending.future.done():
                pending.future.set_exception(
                    LedgerError("ShuttingDown", "the node is stopping; call not sent")
                )
        self._queue.clear()

    async def _learn(self) -> None:
        stale = time.monotonic() - self._height_at >= HEIGHT_MAX_AGE
        if self._chain_id is None or stale:
            status = await self.ledger.status()
            self._chain_id = bytes.fromhex(status["chain_id"])
            self.saw_height(int(status["height"]))
        if self._next_nonce is None or self._relearn_nonce:
            body = await self.ledger.account(self.signer.account)
            for key in body["keys"]:
                if key["public_key"] == self.signer.public_key_hex:
                    self._next_nonce = max(self._next_nonce or 0, int(key["nonce"]) + 1)
                    self._relearn_nonce = False
                    break
            else:
                raise LedgerError(
                    "UnknownAccessKey",
                    f"{self.signer.public_key_hex} is not an access key of {self.signer.account}",
                )

    async def _send_rounds(self) -> None:
        backoff = Backoff(BackoffPolicy(initial=self.backoff, maximum=max(self.backoff, 5.0)))
        while True:
            await self._wake.wait()
            self._wake.clear()
            while self._queue:
                batch = [c for c in self._queue[:MAX_ROUND] if not c.future.done()]
                del self._queue[:MAX_ROUND]
                if not batch:
                    continue
                retry = await self._round(batch)
                if retry:
                    self._queue[:0] = retry  # ahead of newer calls: they keep their order
                    if any(c.errors and c.errors[-1] == "transient" for c in retry):
                        await backoff.wait()
                    else:
                        backoff.reset()
                else:
                    backoff.reset()

    def _fail(self, pending: _Call, exc: BaseException) -> None:
        if not pending.future.done():
            pending.future.set_exception(exc)

    async def _round(self, batch: list[_Call]) -> list[_Call]:
        """Send ``batch`` as consecutive nonces; return the calls to send again."""
        self.rounds += 1
        try:
            await self._learn()
        except LedgerError as exc:
            retry = []
            for pending in batch:
                pending.attempts += 1
                if transient(exc) and pending.attempts < self.attempts:
                    pending.errors.append("transient")
                    retry.append(pending)
                else:
                    self._fail(pending, exc)
            return retry
        assert self._chain_id is not None and self._next_nonce is not None
        return await self._send(batch)

    async def _send(self, batch: list[_Call]) -> list[_Call]:
        assert self._chain_id is not None and self._next_nonce is not None
        signed = []
        for pending in batch:
            transaction = Transaction(
                chain_id=self._chain_id,
                signer_account=self.signer.account,
                public_key=self.signer.public_key,
                nonce=self._next_nonce,
                block_height=self._height,
                actions=(pending.action,),
            )
            self._next_nonce += 1
            signed.append(self.signer.sign(transaction))
        results = await asyncio.gather(
            *(self.ledger.submit_signed(s) for s in signed), return_exceptions=True
        )
        retry: list[_Call] = []
        for pending, result in zip(batch, results, strict=True):
            pending.attempts += 1
            if isinstance(result, TxOutcome):
                self.saw_height(result.block_height)
                if not pending.future.done():
                    pending.future.set_result(result)
                continue
            if not isinstance(result, LedgerError):
                self._fail(pending, result)
                continue
            last = pending.attempts >= self.attempts
            if result.code == "InvalidNonce" and not last:
                self.nonce_retries += 1
                match = _CURRENT_NONCE.search(result.message)
                if match is None or int(match.group(1)) >= self._next_nonce:
                    self._relearn_nonce = True  # the key was used elsewhere: catch up
                pending.errors.append("nonce")
                retry.append(pending)
            elif result.code in ("TransactionExpired", "InvalidBlockHeight") and not last:
                self._height_at = 0.0
                pending.errors.append("height")
                retry.append(pending)
            elif transient(result) and not last:
                log.info("ledger call %s failed (%s); retrying", pending.action.method, result.code)
                pending.errors.append("transient")
                retry.append(pending)
            else:
                self._fail(pending, result)
        return retry


class ContractPort(Protocol):
    """The coordinator's access to the contract (:class:`ContractAccess`; tests: a fake)."""

    async def retried(self, what: str, operation: Callable[[], Awaitable[T]]) -> T: ...

    async def read_state(self) -> ContractState: ...

    async def call(self, method: str, args: dict[str, Any]) -> TxOutcome: ...

    def saw_height(self, height: int) -> None: ...

    async def close(self) -> None: ...


class ContractAccess:
    """The node's reads and calls of the contract: transient ledger errors retried with
    bounded backoff, every failure counted in the node's ``ledger_errors`` metric."""

    def __init__(
        self,
        ledger: AsyncLedgerClient,
        caller: ContractCaller,
        metrics: NodeMetrics,
        policy: BackoffPolicy,
        attempts: int,
    ) -> None:
        self._ledger = ledger
        self._caller = caller
        self._metrics = metrics
        self._policy = policy
        self._attempts = attempts

    async def retried(self, what: str, operation: Callable[[], Awaitable[T]]) -> T:
        """``operation()`` with transient ledger errors retried (``what`` names it in logs)."""

        def count(exc: Exception, delay: float) -> None:
            self._metrics.ledger_errors.labels(operation=what).inc()
            code = exc.code if isinstance(exc, LedgerError) else type(exc).__name__
            log.info("ledger %s failed (%s); retrying in %.2fs", what, code, delay)

        return await retry(
            operation,
            policy=self._policy,
            retryable=lambda exc: isinstance(exc, LedgerError) and transient(exc),
            attempts=self._attempts,
            on_retry=count,
        )

    async def read_state(self) -> ContractState:
        """A fresh read of the contract's ``state`` view."""
        value = await self.retried("view state", lambda: self._ledger.view("state"))
        return ContractState.from_json(value)

    async def call(self, method: str, args: dict[str, Any]) -> TxOutcome:
        """A contract call signed by the node's signer key; ContractCallFailed if rejected."""
        try:
            return await self._caller.call(method, args)
        except LedgerError as exc:
            if not isinstance(exc, ContractCallFailed):
                self._metrics.ledger_errors.labels(operation=method).inc()
            raise

    def saw_height(self, height: int) -> None:
        """A block height seen on the event stream (fresh enough to sign with)."""
        self._caller.saw_height(height)

    async def close(self) -> None:
        await self._caller.close()
