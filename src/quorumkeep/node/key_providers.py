"""The ``peers`` storage-key source: the node's storage key held k-of-m by key providers.

Formats and rules: docs/key-provider-protocol.md; the math: crypto/storage_split.py.

- ``node init`` (:meth:`PeersKeySource.create`, then :meth:`PeersKeySource.complete` once the
  identity exists): draw the storage secret ``s`` and a *release key*, deal ``s`` k-of-m to
  the providers the contract registers for other operators, deposit each piece (sealed to
  the provider, signed by the node's signer key), and write ``storage-key.json`` (the check
  value and the deal, public) and ``release-key.json`` (the release key's seed). The deal
  is recorded in the contract by the operator (``quorumkeep operator
  record-key-providers``) or, on a re-deal, by the running node itself.
- ``node run`` (:meth:`PeersKeySource.load`): read the deal from the contract, ask every
  holder in parallel (challenge, then a release signed by the release key with a fresh
  X25519 key), check every piece against the commitment — a provider whose piece fails is
  named and left out — and combine any k. While fewer than k answer, retry with backoff
  and say which providers failed and why, until ``wait`` runs out. The key is used only
  after the check value of ``storage-key.json`` opens under it.

The release key is the one key of the node directory kept unsealed: it is what lets a node
that lost everything but its disk prove, after a restart, that it is the node the contract
lists — the signer and TLS keys are sealed under the storage key it is asking for. It can
do nothing but ask for pieces, and only while the contract lists the node that recorded
the deal (docs/key-provider-protocol.md §8).
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import httpx

from quorumkeep.crypto.errors import CryptoError
from quorumkeep.crypto.group import RandomBytes
from quorumkeep.crypto.seal import KxKeyPair
from quorumkeep.crypto.storage_split import (
    KeyPiece,
    StorageSecret,
    check_commitment,
    check_split_parameters,
    combine,
    deal,
    verify_piece,
)
from quorumkeep.daemon.config import write_atomically
from quorumkeep.ledger.client import AsyncLedgerClient
from quorumkeep.ledger.errors import LedgerError
from quorumkeep.net.retry import Backoff, BackoffPolicy
from quorumkeep.node.keystore_errors import RecordExists, StorageKeyUnavailable, WrongStorageKey
from quorumkeep.node.storage_key import (
    STORAGE_KEY_FILE_FORMAT,
    STORAGE_KEY_FILE_NAME,
    StorageKey,
    key_check,
    verify_key_check,
)
from quorumkeep.wire.backup.statements import Ed25519Signer, Signer
from quorumkeep.wire.key_provider import (
    PATH_CHALLENGE,
    PATH_DEPOSIT,
    PATH_RELEASE,
    KeyProviderError,
    Release,
    make_deposit,
    make_release_request,
    open_release,
    read_hex,
    release_report_data,
)

log = logging.getLogger("quorumkeep.node.key_providers")

RELEASE_KEY_FILE_NAME = "release-key.json"
RELEASE_KEY_FORMAT = "quorumkeep release key v1"
SOURCE_NAME = "peers"
REQUEST_TIMEOUT = 10.0
BACKOFF = BackoffPolicy(initial=0.2, maximum=5.0, jitter=0.3)

Progress = Callable[[str], None]
Quote = Callable[[bytes], Awaitable[dict[str, Any]]]
"""Evidence (docs/attestation.md) whose report_data is the given 64 bytes."""


# --- providers as the contract lists them ------------------------------------------------


@dataclass(frozen=True)
class ProviderEndpoint:
    account: str
    url: str
    identity_public_key: bytes
    encryption_public_key: bytes

    @classmethod
    def from_view(cls, account: str, body: Mapping[str, Any]) -> ProviderEndpoint:
        return cls(
            account,
            str(body["url"]),
            bytes.fromhex(body["identity_public_key"]),
            bytes.fromhex(body["encryption_public_key"]),
        )


@dataclass(frozen=True)
class ProviderOutcome:
    """What one provider did at the last attempt (public: shown in /status and logs)."""

    provider: str
    index: int
    ok: bool
    code: str | None = None
    message: str | None = None

    def to_json(self) -> dict[str, Any]:
        return {
            "provider": self.provider,
            "index": self.index,
            "ok": self.ok,
            "code": self.code,
            "message": self.message,
        }

    def line(self) -> str:
        return f"{self.provider} ({self.code}: {self.message})"


def choose_providers(
    registered: Mapping[str, ProviderEndpoint],
    own_account: str,
    wanted: Sequence[str] | None,
    threshold: int,
) -> list[ProviderEndpoint]:
    """The holders of a new deal: ``wanted`` (all registered, none of the node's own
    operator) or every registered provider of another operator, in account order."""
    if wanted is not None:
        if own_account in wanted:
            raise StorageKeyUnavailable(
                f"provider {own_account} is this node's own operator's: it may not hold a piece"
            )
        missing = [p for p in wanted if p not in registered]
        if missing:
            raise StorageKeyUnavailable(f"not registered key providers: {', '.join(missing)}")
        chosen = [registered[p] for p in wanted]
    else:
        chosen = [p for a, p in sorted(registered.items()) if a != own_account]
    try:
        check_split_parameters(threshold, len(chosen))
    except CryptoError:
        raise StorageKeyUnavailable(
            f"need at least {threshold} key providers of other operators (k = {threshold}), "
            f"the contract registers {len(chosen)}"
        ) from None
    return chosen


async def read_providers(ledger: AsyncLedgerClient) -> dict[str, ProviderEndpoint]:
    body = await ledger.view("key_providers")
    return {a: ProviderEndpoint.from_view(a, p) for a, p in body.items()}


# --- the client ---------------------------------------------------------------------------


class ProviderClient:
    """Deposit and release over HTTP; every failure is a :class:`KeyProviderError`."""

    def __init__(self, timeout: float = REQUEST_TIMEOUT, quote: Quote | None = None) -> None:
        self._http = httpx.AsyncClient(timeout=timeout)
        self._quote = quote

    async def aclose(self) -> None:
        await self._http.aclose()

    async def _post(self, endpoint: ProviderEndpoint, path: str, body: Any) -> Any:
        try:
            response = await self._http.post(endpoint.url + path, json=body)
        except httpx.HTTPError as exc:
            raise KeyProviderError(
                "provider_unreachable", f"{endpoint.url}: {type(exc).__name__}"
            ) from None
        try:
            answer = response.json()
        except ValueError:
            raise KeyProviderError(
                "malformed_response", f"HTTP {response.status_code} without a JSON body"
            ) from None
        if response.status_code != 200:
            if isinstance(answer, dict) and isinstance(answer.get("code"), str):
                raise KeyProviderError(answer["code"], str(answer.get("message", ""))[:300])
            raise KeyProviderError("malformed_response", f"HTTP {response.status_code}")
        return answer

    async def deposit(
        self,
        endpoint: ProviderEndpoint,
        *,
        account: str,
        epoch: int,
        threshold: int,
        commitment: Sequence[bytes],
        piece: KeyPiece,
        signer: Signer,
        release_public_key: bytes,
        random_bytes: RandomBytes,
    ) -> None:
        message = make_deposit(
            account=account,
            epoch=epoch,
            threshold=threshold,
            commitment=commitment,
            piece=piece,
            signer=signer,
            release_public_key=release_public_key,
            provider_identity=endpoint.identity_public_key,
            provider_encryption=endpoint.encryption_public_key,
            now_ms=int(time.time() * 1000),
            random_bytes=random_bytes,
        )
        await self._post(endpoint, PATH_DEPOSIT, message.to_json())

    async def fetch_piece(
        self,
        endpoint: ProviderEndpoint,
        *,
        account: str,
        epoch: int,
        index: int,
        commitment: Sequence[bytes],
        release_signer: Signer,
        random_bytes: RandomBytes,
    ) -> KeyPiece:
        """Challenge, release, open and check one piece (``piece_mismatch`` if it fails its
        commitment: the provider answered, with a wrong piece)."""
        challenge = await self._post(endpoint, PATH_CHALLENGE, {"account": account})
        if not isinstance(challenge, dict):
            raise KeyProviderError("malformed_response", "the challenge is not an object")
        try:
            nonce = read_hex(challenge, "nonce", 32)
        except KeyProviderError:
            raise KeyProviderError("malformed_response", "the challenge has no nonce") from None
        requester = KxKeyPair.generate(random_bytes)
        request = make_release_request(
            account=account,
            epoch=epoch,
            release_signer=release_signer,
            requester=requester,
            nonce=nonce,
            provider_identity=endpoint.identity_public_key,
        )
        if self._quote is not None:
            request = replace(request, attestation=await self._quote(release_report_data(request)))
        release = Release.from_json(await self._post(endpoint, PATH_RELEASE, request.to_json()))
        piece = open_release(release, request, requester, endpoint.encryption_public_key, index)
        if not verify_piece(piece, commitment):
            raise KeyProviderError(
                "piece_mismatch", "the released piece does not match the recorded commitment"
            )
        return piece


# --- dealing and gathering ------------------------------------------------------------------


def deal_document(
    epoch: int,
    threshold: int,
    commitment: Sequence[bytes],
    holders: Sequence[ProviderEndpoint],
    signer_public_key: bytes,
    release_public_key: bytes,
) -> dict[str, Any]:
    """The arguments of ``record_key_providers``."""
    return {
        "epoch": epoch,
        "threshold": threshold,
        "commitment": [c.hex() for c in commitment],
        "holders": [{"index": i + 1, "provider": p.account} for i, p in enumerate(holders)],
        "signer_public_key": signer_public_key.hex(),
        "release_public_key": release_public_key.hex(),
    }


async def deal_to_providers(
    client: ProviderClient,
    secret: StorageSecret,
    *,
    account: str,
    epoch: int,
    threshold: int,
    holders: Sequence[ProviderEndpoint],
    signer: Signer,
    release_public_key: bytes,
    random_bytes: RandomBytes,
) -> dict[str, Any]:
    """Deal ``secret`` afresh to ``holders`` and deposit every piece; every deposit must
    succeed (the failures are named). Returns the deal document to record."""
    split = deal(secret, threshold, len(holders), random_bytes)

    async def one(index: int, endpoint: ProviderEndpoint) -> KeyProviderError | None:
        try:
            await client.deposit(
                endpoint,
                account=account,
                epoch=epoch,
                threshold=threshold,
                commitment=split.commitment,
                piece=split.pieces[index],
                signer=signer,
                release_public_key=release_public_key,
                random_bytes=random_bytes,
            )
        except KeyProviderError as exc:
            return exc
        return None

    results = await asyncio.gather(*(one(i + 1, p) for i, p in enumerate(holders)))
    failed = [
        f"{p.account} ({e.code}: {e.message})" for p, e in zip(holders, results, strict=True) if e
    ]
    if failed:
        raise KeyProviderError(
            "deposit_failed", f"deposits of epoch {epoch} failed at: {'; '.join(failed)}"
        )
    return deal_document(
        epoch, threshold, split.commitment, holders, signer.public_key, release_public_key
    )


async def gather_pieces(
    client: ProviderClient,
    deal_json: Mapping[str, Any],
    registered: Mapping[str, ProviderEndpoint],
    *,
    account: str,
    release_signer: Signer,
    random_bytes: RandomBytes,
) -> tuple[dict[str, KeyPiece], list[ProviderOutcome]]:
    """Ask every holder of the deal in parallel; good pieces by provider, and every outcome."""
    threshold = int(deal_json["threshold"])
    commitment = check_commitment([bytes.fromhex(c) for c in deal_json["commitment"]], threshold)
    epoch = int(deal_json["epoch"])

    async def one(index: int, provider: str) -> tuple[KeyPiece | None, ProviderOutcome]:
        endpoint = registered.get(provider)
        if endpoint is None:
            return None, ProviderOutcome(
                provider, index, False, "not_registered", "the provider is no longer registered"
            )
        try:
            piece = await client.fetch_piece(
                endpoint,
                account=account,
                epoch=epoch,
                index=index,
                commitment=commitment,
                release_signer=release_signer,
                random_bytes=random_bytes,
            )
        except KeyProviderError as exc:
            return None, ProviderOutcome(provider, index, False, exc.code, exc.message)
        return piece, ProviderOutcome(provider, index, True)

    holders = [(int(h["index"]), str(h["provider"])) for h in deal_json["holders"]]
    results = await asyncio.gather(*(one(i, p) for i, p in holders))
    pieces = {o.provider: p for p, o in results if p is not None}
    return pieces, [o for _, o in results]


# --- files ----------------------------------------------------------------------------------


def _write_json(path: Path, document: Mapping[str, Any]) -> None:
    write_atomically(path, json.dumps(document, indent=2) + "\n")


def _read_json(path: Path) -> dict[str, Any]:
    try:
        document = json.loads(path.read_bytes())
    except FileNotFoundError:
        raise StorageKeyUnavailable(f"{path} is missing: run `quorumkeep node init`") from None
    except (OSError, ValueError):
        raise StorageKeyUnavailable(f"{path} is unreadable or not JSON") from None
    if not isinstance(document, dict):
        raise StorageKeyUnavailable(f"{path} is not a JSON object")
    return document


@dataclass
class StartReport:
    """The last start's outcome per provider (public; the node's /status and metrics)."""

    epoch: int | None = None
    threshold: int | None = None
    attempts: int = 0
    outcomes: list[ProviderOutcome] = field(default_factory=list)
    seconds: float = 0.0

    def to_json(self) -> dict[str, Any]:
        return {
            "source": SOURCE_NAME,
            "epoch": self.epoch,
            "threshold": self.threshold,
            "attempts": self.attempts,
            "seconds": round(self.seconds, 3),
            "providers": [o.to_json() for o in self.outcomes],
        }


class PeersKeySource:
    """Storage key = BLAKE2b(s), ``s`` held k-of-m by key providers (module docstring)."""

    name = SOURCE_NAME

    def __init__(
        self,
        directory: Path | str,
        *,
        account: str,
        ledger_url: str,
        threshold: int = 2,
        providers: Sequence[str] | None = None,
        wait: float = 600.0,
        progress: Progress | None = None,
        quote: Quote | None = None,
        random_bytes: RandomBytes = os.urandom,
    ) -> None:
        self.directory = Path(directory)
        self.path = self.directory / STORAGE_KEY_FILE_NAME
        self.release_path = self.directory / RELEASE_KEY_FILE_NAME
        self.account = account
        self.ledger_url = ledger_url
        self.threshold = threshold
        self.providers = None if providers is None else tuple(providers)
        self.wait = wait
        self.progress = progress
        self.quote = quote
        """With a TEE (node.toml's [attestation]): every release request carries a quote
        binding its fresh X25519 key and the provider's nonce."""
        self.random_bytes = random_bytes
        self.secret: StorageSecret | None = None
        """The storage secret once created or loaded (in memory only; rotation re-deals it)."""
        self.release_signer: Ed25519Signer | None = None
        self._release_seed = b""
        self.report = StartReport()

    def __repr__(self) -> str:
        return f"PeersKeySource({self.path})"

    def exists(self) -> bool:
        return self.path.exists()

    def _say(self, message: str) -> None:
        log.info("%s", message)
        if self.progress is not None:
            self.progress(message)

    # --- node init ---------------------------------------------------------------------

    def create(self, random_bytes: RandomBytes) -> StorageKey:
        if self.path.exists() or self.release_path.exists():
            raise RecordExists(f"{self.path} exists: this directory already has a storage key")
        self.secret = StorageSecret.generate(random_bytes)
        self._release_seed = random_bytes(32)
        self.release_signer = Ed25519Signer(self._release_seed)
        self.random_bytes = random_bytes
        return StorageKey(self.secret.storage_key())

    def complete(self, signer: Signer) -> dict[str, Any]:
        """After the identity exists: deal, deposit, write the files; returns the deal."""
        return asyncio.run(self._complete(signer))

    async def _complete(self, signer: Signer) -> dict[str, Any]:
        secret, release = self.secret, self.release_signer
        if secret is None or release is None:
            raise StorageKeyUnavailable("create() must run before complete()")
        client = ProviderClient()
        try:
            async with AsyncLedgerClient(self.ledger_url) as ledger:
                registered = await read_providers(ledger)
                view = await ledger.view("key_provider_deal", {"account": self.account})
            # A new node of an account whose old node had a deal (a migration) takes the
            # next epoch: the contract only accepts a growing one.
            epoch = 1 if view["deal"] is None else int(view["deal"]["epoch"]) + 1
            holders = choose_providers(registered, self.account, self.providers, self.threshold)
            document = await deal_to_providers(
                client,
                secret,
                account=self.account,
                epoch=epoch,
                threshold=self.threshold,
                holders=holders,
                signer=signer,
                release_public_key=release.public_key,
                random_bytes=self.random_bytes,
            )
        except LedgerError as exc:
            raise StorageKeyUnavailable(
                f"cannot read the key providers from the ledger ({exc.code}: {exc.message})"
            ) from None
        except KeyProviderError as exc:
            raise StorageKeyUnavailable(exc.message) from None
        finally:
            await client.aclose()
        key = StorageKey(secret.storage_key())
        _write_json(
            self.release_path,
            {
                "format": RELEASE_KEY_FORMAT,
                "account": self.account,
                "release_public_key": release.public_key.hex(),
                "release_seed": self._release_seed.hex(),
            },
        )
        _write_json(
            self.path,
            {
                "format": STORAGE_KEY_FILE_FORMAT,
                "source": self.name,
                "check": key_check(key, self.random_bytes).hex(),
                "release_public_key": release.public_key.hex(),
                "deal": document,
            },
        )
        self._say(
            f"storage key dealt {self.threshold}-of-{len(document['holders'])} to "
            f"{', '.join(h['provider'] for h in document['holders'])}; record it with "
            "`quorumkeep operator record-key-providers`"
        )
        return document

    # --- node run ----------------------------------------------------------------------

    def read_files(self) -> tuple[dict[str, Any], Ed25519Signer]:
        document = _read_json(self.path)
        if document.get("format") != STORAGE_KEY_FILE_FORMAT or document.get("source") != "peers":
            raise StorageKeyUnavailable(f"{self.path} is not a peers storage-key file")
        release_doc = _read_json(self.release_path)
        try:
            if release_doc["format"] != RELEASE_KEY_FORMAT:
                raise ValueError("format")
            signer = Ed25519Signer(bytes.fromhex(release_doc["release_seed"]))
            if signer.public_key.hex() != document["release_public_key"]:
                raise ValueError("release key")
            bytes.fromhex(document["check"])
        except (KeyError, TypeError, ValueError):
            raise StorageKeyUnavailable(
                f"{self.release_path} does not hold the release key {self.path} names"
            ) from None
        return document, signer

    def recorded_deal(self) -> dict[str, Any]:
        """The deal as ``node init`` wrote it (what the operator records)."""
        return dict(self.read_files()[0]["deal"])

    def load(self) -> StorageKey:
        return asyncio.run(self.aload())

    async def aload(self) -> StorageKey:
        document, release = self.read_files()
        self.release_signer = release
        start = time.monotonic()
        deadline = start + self.wait
        backoff = Backoff(BACKOFF)
        report = self.report = StartReport()
        client = ProviderClient(quote=self.quote)
        try:
            async with AsyncLedgerClient(self.ledger_url) as ledger:
                while True:
                    report.attempts += 1
                    problem = await self._attempt(ledger, client, document, release, report)
                    if problem is None:
                        report.seconds = time.monotonic() - start
                        assert self.secret is not None
                        key = StorageKey(self.secret.storage_key())
                        try:
                            verify_key_check(key, bytes.fromhex(document["check"]))
                        except WrongStorageKey:
                            self.secret = None
                            raise WrongStorageKey(
                                "the pieces combine to a key that does not open this node's "
                                "data (storage-key.json's check value): refusing to start"
                            ) from None
                        good = [o.provider for o in report.outcomes if o.ok]
                        self._say(
                            f"storage key recovered from {len(good)} key providers "
                            f"({', '.join(good)}) after {report.attempts} attempt(s) in "
                            f"{report.seconds:.2f} s"
                        )
                        return key
                    remaining = deadline - time.monotonic()
                    if remaining <= 0:
                        raise StorageKeyUnavailable(f"gave up after {self.wait:g}s: {problem}")
                    await backoff.wait(at_most=remaining)
        finally:
            await client.aclose()

    async def _attempt(
        self,
        ledger: AsyncLedgerClient,
        client: ProviderClient,
        document: Mapping[str, Any],
        release: Ed25519Signer,
        report: StartReport,
    ) -> str | None:
        """One round; None when the secret is in ``self.secret``, else why not (said)."""
        try:
            view = await ledger.view("key_provider_deal", {"account": self.account})
            registered = await read_providers(ledger)
        except LedgerError as exc:
            problem = f"the ledger cannot be read ({exc.code}); retrying"
            self._say(problem)
            return problem
        deal_json = view["deal"]
        if deal_json is None:
            problem = (
                f"the contract records no key providers for {self.account}: the operator "
                "records them with `quorumkeep operator record-key-providers`; waiting"
            )
            self._say(problem)
            return problem
        if deal_json["release_public_key"] != document["release_public_key"]:
            raise StorageKeyUnavailable(
                "the contract's deal names another release key than this node directory's"
            )
        report.epoch = int(deal_json["epoch"])
        report.threshold = int(deal_json["threshold"])
        pieces, outcomes = await gather_pieces(
            client,
            deal_json,
            registered,
            account=self.account,
            release_signer=release,
            random_bytes=self.random_bytes,
        )
        report.outcomes = outcomes
        failed = [o for o in outcomes if not o.ok]
        for outcome in failed:
            level = logging.ERROR if outcome.code == "piece_mismatch" else logging.WARNING
            log.log(
                level,
                "key provider %s (index %d) failed: %s: %s",
                outcome.provider,
                outcome.index,
                outcome.code,
                outcome.message,
            )
        k = report.threshold
        if len(pieces) >= k:
            commitment = [bytes.fromhex(c) for c in deal_json["commitment"]]
            self.secret = combine(pieces, commitment, k)
            return None
        problem = (
            f"{len(pieces)} of {k} key providers answered for epoch {report.epoch}; failed: "
            + "; ".join(o.line() for o in failed)
            + "; retrying"
        )
        self._say(problem)
        return problem
