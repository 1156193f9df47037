"""The ``peers`` storage-key source: the node's storage key held k-of-m by key providers.

Formats and rules: docs/key-provider-protocol.md; the math: crypto/storage_split.py. In
parts: the HTTP client of one provider (node/key_provider_client.py), dealing to and
gathering from a holder set (node/key_provider_deal.py), the two files
(node/key_provider_files.py); this module is the source that runs them.

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
import logging
import os
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from quorumkeep.crypto.group import RandomBytes
from quorumkeep.crypto.storage_split import StorageSecret, combine
from quorumkeep.ledger.client import AsyncLedgerClient
from quorumkeep.ledger.errors import LedgerError
from quorumkeep.net.retry import Backoff, BackoffPolicy
from quorumkeep.node.key_provider_client import ProviderClient, Quote, read_providers
from quorumkeep.node.key_provider_deal import (
    ProviderOutcome,
    choose_providers,
    deal_to_providers,
    gather_pieces,
)
from quorumkeep.node.key_provider_files import (
    RELEASE_KEY_FILE_NAME,
    read_peers_files,
    write_peers_files,
)
from quorumkeep.node.keystore_errors import RecordExists, StorageKeyUnavailable, WrongStorageKey
from quorumkeep.node.storage_key import (
    STORAGE_KEY_FILE_NAME,
    StorageKey,
    key_check,
    verify_key_check,
)
from quorumkeep.wire.backup.statements import Ed25519Signer, Signer
from quorumkeep.wire.key_provider import KeyProviderError

log = logging.getLogger("quorumkeep.node.key_providers")

SOURCE_NAME = "peers"
BACKOFF = BackoffPolicy(initial=0.2, maximum=5.0, jitter=0.3)

Progress = Callable[[str], None]


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
        write_peers_files(
            self.path,
            self.release_path,
            source=self.name,
            account=self.account,
            release_seed=self._release_seed,
            release_public_key=release.public_key,
            check=key_check(key, self.random_bytes),
            deal=document,
        )
        self._say(
            f"storage key dealt {self.threshold}-of-{len(document['holders'])} to "
            f"{', '.join(h['provider'] for h in document['holders'])}; record it with "
            "`quorumkeep operator record-key-providers`"
        )
        return document

    # --- node run ----------------------------------------------------------------------

    def read_files(self) -> tuple[dict[str, Any], Ed25519Signer]:
        return read_peers_files(self.path, self.release_path)

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
