"""Asking the network for signatures: submit ``sign``, follow the ledger's events for the
answer, verify it locally. The client of ``quorumkeep sign``, the devnet and the benchmarks,
beside the ledger client it drives.

One ``SignClient`` follows the ledger's long-poll event stream once for all its requests
and hands each ``sign_responded``/``sign_failed`` to the request waiting for it, so any
number of requests can be in flight without any of them polling. Every signature is
checked with PyNaCl (RFC 8032 Ed25519) under the derived key the contract's
``public_key`` view gives for (account, path) before it is returned.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

from nacl.exceptions import BadSignatureError
from nacl.signing import VerifyKey

from quorumkeep.contract.events import SIGN_FAILED, SIGN_RESPONDED
from quorumkeep.ledger.client import AccountSigner, AsyncLedgerClient, LedgerEvent, TxOutcome
from quorumkeep.ledger.errors import ContractCallFailed, LedgerError
from quorumkeep.ledger.transaction import FunctionCall

DEFAULT_SIGN_TIMEOUT = 60.0
"""Seconds `quorumkeep sign` waits for the signature."""


class SignError(Exception):
    """A sign request that could not be made or did not give a valid signature."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = " ".join(message.split())

    def __str__(self) -> str:
        return self.message


@dataclass(frozen=True)
class Signature:
    """A verified answer to one sign request."""

    request_id: int
    payload: bytes
    path: str
    domain_id: int
    public_key: bytes
    signature: bytes
    latency_s: float
    submit_latency_s: float
    """Of ``latency_s``: until the ``sign`` transaction was in a durable block."""
    request_height: int
    response_height: int
    responder: str | None

    def to_json(self) -> dict[str, Any]:
        return {
            "payload": self.payload.hex(),
            "path": self.path,
            "public_key": self.public_key.hex(),
            "signature": self.signature.hex(),
            "latency_ms": round(self.latency_s * 1000, 3),
        }


def verify(public_key: bytes, payload: bytes, signature: bytes) -> bool:
    try:
        VerifyKey(public_key).verify(payload, signature)
    except BadSignatureError:
        return False
    return True


class SignClient:
    """Sign requests from one account; ``signers`` are access keys of that account.

    A key's transactions are sent one after the other (its nonces stay in order), so
    concurrency is bounded by the number of keys; waiting for answers is not.
    """

    def __init__(self, ledger_url: str, signers: Sequence[AccountSigner]) -> None:
        if not signers:
            raise ValueError("at least one signer is needed")
        accounts = {s.account for s in signers}
        if len(accounts) != 1:
            raise ValueError("every signer must be a key of the same account")
        self.account = signers[0].account
        self.client = AsyncLedgerClient(ledger_url)
        self._keys = [(s, asyncio.Lock()) for s in signers]
        self._next_key = itertools.cycle(range(len(signers)))
        self._answers: dict[int, LedgerEvent] = {}
        self._waiters: dict[int, asyncio.Future[LedgerEvent]] = {}
        self._derived: dict[tuple[int, str], bytes] = {}
        self._follower: asyncio.Task[None] | None = None
        self._follow_error: BaseException | None = None

    async def __aenter__(self) -> SignClient:
        await self.start()
        return self

    async def __aexit__(self, *_: object) -> None:
        await self.close()

    async def start(self) -> None:
        """Begin following events from the current head (before any request is made)."""
        if self._follower is None:
            try:
                head = int((await self.client.status())["height"])
            except LedgerError as exc:
                raise SignError(exc.code, f"{exc.code}: {exc.message}") from None
            self._follower = asyncio.create_task(self._follow(head), name="sign-answers")

    async def close(self) -> None:
        if self._follower is not None:
            self._follower.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._follower
            self._follower = None
        for waiter in self._waiters.values():
            waiter.cancel()
        await self.client.aclose()

    async def _follow(self, since: int) -> None:
        try:
            # Only the answers travel: the ledger filters out the rest (most of them
            # sign_requested), so this loop wakes once per answer block, not per block.
            answers = self.client.follow_events(
                since, poll_timeout=20.0, kinds=(SIGN_RESPONDED, SIGN_FAILED)
            )
            async for event in answers:
                if event.kind not in (SIGN_RESPONDED, SIGN_FAILED):  # a ledger without filters
                    continue
                if event.data.get("account") != self.account:
                    continue
                request_id = int(event.data["request_id"])
                waiter = self._waiters.pop(request_id, None)
                if waiter is not None and not waiter.done():
                    waiter.set_result(event)
                else:  # answered before the submitter learnt its request id
                    self._answers[request_id] = event
        except asyncio.CancelledError:
            raise
        except BaseException as exc:  # surfaced to every waiting request
            self._follow_error = exc
            for waiter in self._waiters.values():
                if not waiter.done():
                    waiter.set_exception(
                        SignError("ledger_unavailable", f"following the ledger failed: {exc}")
                    )

    async def derived_key(self, domain_id: int, path: str) -> bytes:
        """The key a signature for (this account, path) must verify under (contract view)."""
        key = (domain_id, path)
        cached = self._derived.get(key)
        if cached is None:
            try:
                value = await self.client.view(
                    "public_key", {"domain_id": domain_id, "account": self.account, "path": path}
                )
            except LedgerError as exc:
                raise SignError(exc.code, f"{exc.code}: {exc.message}") from None
            cached = bytes.fromhex(value)
            self._derived[key] = cached
        return cached

    async def submit(
        self, payload: bytes, path: str, domain_id: int = 0, *, deadline: float | None = None
    ) -> tuple[int, int]:
        """Submit one ``sign``; returns (request id, block height). Raises SignError.

        With a ``deadline`` (``time.monotonic()``), a ledger that cannot be reached (it is
        restarting) does not end the attempt: preparing the transaction (nothing sent yet)
        is retried, and the *same* signed transaction is sent again — a transaction is
        included at most once, and a copy that did land is then found by its hash — with
        backoff until the deadline (``timeout``).
        """
        signer, lock = self._keys[next(self._next_key)]
        actions = [
            FunctionCall("sign", {"payload": payload.hex(), "path": path, "domain_id": domain_id})
        ]
        async with lock:
            signed = await _retrying(
                deadline, "prepare the sign request", lambda: self.client.prepare(signer, actions)
            )
            sent = False

            async def send() -> TxOutcome:
                nonlocal sent
                try:
                    return await self.client.submit_signed(signed)
                except LedgerError as exc:
                    if exc.code == "DuplicateTransaction" and sent:
                        # an earlier copy landed although its answer was lost
                        return TxOutcome.from_json(await self.client.transaction(signed.hash.hex()))
                    raise
                finally:
                    sent = True

            try:
                outcome = await _retrying(deadline, "submit the sign request", send)
                outcome.raise_for_failure()
            except ContractCallFailed as exc:
                raise SignError(exc.code, f"{exc.code}: {exc.message}") from None
            except LedgerError as exc:
                raise SignError(exc.code, f"{exc.code}: {exc.message}") from None
        return int(outcome.value["request_id"]), outcome.block_height

    async def wait_answer(self, request_id: int, timeout: float) -> LedgerEvent:
        if self._follow_error is not None:
            raise SignError(
                "ledger_unavailable", f"following the ledger failed: {self._follow_error}"
            )
        answer = self._answers.pop(request_id, None)
        if answer is not None:
            return answer
        loop = asyncio.get_running_loop()
        waiter = self._waiters.setdefault(request_id, loop.create_future())
        try:
            return await asyncio.wait_for(asyncio.shield(waiter), timeout)
        except TimeoutError:
            raise SignError(
                "timeout",
                f"request {request_id} got no answer within {timeout:g} s "
                "(it stays pending on the contract until its deadline)",
            ) from None
        finally:
            if waiter.done() or self._waiters.get(request_id) is waiter:
                self._waiters.pop(request_id, None)

    async def sign(
        self,
        payload: bytes,
        path: str,
        domain_id: int = 0,
        *,
        timeout: float = DEFAULT_SIGN_TIMEOUT,
    ) -> Signature:
        """Request a signature and wait for it (at most ``timeout`` s in all); a ledger that
        is unreachable for part of that time is waited for (see :meth:`submit`)."""
        if self._follower is None:
            await _retrying(time.monotonic() + timeout, "reach the ledger", self.start)
        started = time.perf_counter()
        deadline = time.monotonic() + timeout
        derived = await _retrying(
            deadline, "read the derived key", lambda: self.derived_key(domain_id, path)
        )
        try:
            request_id, height = await asyncio.wait_for(
                self.submit(payload, path, domain_id, deadline=deadline),
                max(0.001, deadline - time.monotonic()),
            )
        except TimeoutError:
            raise SignError(
                "timeout", f"the sign request was not accepted by the ledger within {timeout:g} s"
            ) from None
        submitted = time.perf_counter() - started
        event = await self.wait_answer(request_id, max(0.001, deadline - time.monotonic()))
        latency = time.perf_counter() - started
        if event.kind == SIGN_FAILED:
            reason = event.data.get("reason", "no reason given")
            raise SignError("sign_failed", f"request {request_id} failed: {reason}")
        signature = bytes.fromhex(event.data["signature"])
        request_key = bytes.fromhex(event.data["public_key"])
        if request_key != derived:
            raise SignError(
                "key_mismatch",
                f"request {request_id} was signed under {request_key.hex()}, "
                f"not the derived key {derived.hex()}",
            )
        if not verify(derived, payload, signature):
            raise SignError(
                "bad_signature", f"the signature for request {request_id} does not verify"
            )
        return Signature(
            request_id=request_id,
            payload=payload,
            path=path,
            domain_id=domain_id,
            public_key=derived,
            signature=signature,
            latency_s=latency,
            submit_latency_s=submitted,
            request_height=height,
            response_height=event.height,
            responder=event.data.get("responder"),
        )


def sign_once(
    ledger_url: str,
    signer: AccountSigner,
    payload: bytes,
    path: str,
    domain_id: int = 0,
    *,
    timeout: float = DEFAULT_SIGN_TIMEOUT,
) -> Signature:
    """One request, blocking: what ``quorumkeep sign`` does."""

    async def run() -> Signature:
        client = SignClient(ledger_url, [signer])
        try:  # sign() starts the client, waiting (within timeout) for an unreachable ledger
            return await client.sign(payload, path, domain_id, timeout=timeout)
        finally:
            await client.close()

    return asyncio.run(run())


_T = TypeVar("_T")
UNREACHABLE = "LedgerUnavailable"


async def _retrying(deadline: float | None, what: str, attempt: Callable[[], Awaitable[_T]]) -> _T:
    """``attempt()``, again with backoff (50 ms doubling to 1 s) while the ledger cannot be
    reached and ``deadline`` (monotonic) is ahead; SignError ``timeout`` once it passed."""
    delay = 0.05
    while True:
        try:
            return await attempt()
        except (LedgerError, SignError) as exc:
            if exc.code != UNREACHABLE or deadline is None:
                raise
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise SignError(
                    "timeout", f"timeout: could not {what}: the ledger stayed unreachable ({exc})"
                ) from None
            await asyncio.sleep(min(delay, remaining))
            delay = min(delay * 2, 1.0)
