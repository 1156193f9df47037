"""`quorumkeep devnet demo`: the whole recovery story on a fresh devnet, step by step.

A 4-node, 3-of-4 devnet with a backup service per operator is started, the first backups
are awaited, and a signature is made. Then the scenarios run in this order, each followed
by signing:

- ``single-node-loss`` — one node is SIGKILLed and its directory deleted; its operator
  starts a fresh node and a migration; the backup service pushes the shares; the new node
  concludes and takes part in the next signatures;
- ``quorum-loss`` — two nodes are lost at once: sign requests made now wait on the
  contract (2 of 4 nodes, threshold 3); both operators migrate; the waiting requests
  complete;
- ``full-cluster-loss`` — every node is killed and every node directory deleted; every
  operator migrates to a fresh node from its backup; the same group key signs again;
- ``cancelled-by-resharing`` — a migration is open (its destination not yet up) when a
  resharing adds a spare operator's node (4 → 5): the contract cancels the migration,
  nothing is imported, the resharing completes, and the backup services back up the new
  epoch by themselves;
- ``attestation-upgrade`` — every node runs with (development) attestation; the operators
  vote a new build's measurement onto the allow-list, restart all nodes but one on it,
  vote the old measurement off; the nodes mark the laggard and reshare it out
  (devnet/attestation_story.py); the same group key signs;
- ``restored-from-snapshot`` — a running node is snapshotted (`quorumkeep node snapshot`),
  signs a few times (with presignatures the snapshot holds), is stopped, and restored from
  the snapshot into a new directory (`quorumkeep node restore`: same identity, ports and
  passphrase); it forgets the snapshot's presignatures when it starts and signs again: no
  signature made after the restore has the R of any presignature in the snapshot (each R
  recomputed from every commitment list the snapshot holds);
- ``failover-to-standby`` — an operator runs a warm standby beside its node: the standby's
  wrapping key is whitelisted in the primary's ``[export]`` and the primary (restarted to
  read it) pushes a wrapped export of the keyset in force by itself; an export to a key
  that is not whitelisted is refused. The primary's machine is lost; ``operator failover``
  checks the standby holds the epoch in force and migrates to it, and the standby concludes
  from the shares it holds (goal: ≤ 1 s of ledger time), then signs;
- ``every-machine-rebooted`` — every operator starts a key provider and moves its node to
  one whose storage key the other participants' providers hold k-of-m (`--key-source peers`,
  k = 2: 2-of-3 in the whole demo, 2-of-2 when only ``attestation-upgrade`` ran before; a
  migration each); then every node and every provider is SIGKILLed and all are started
  again at once: each node asks its providers, gets two pieces, checks them and opens its
  disk by itself; the same group key signs;
- ``ledger-machine-lost`` — (the ledger runs on a 3-member etcd cluster with two ledger
  servers) the machine of the proposing ledger server and of the etcd member that is the
  Raft leader goes down:
  both are SIGKILLed; the other server takes over proposing, nodes and clients fail over
  to it, signatures go on; the machine comes back, both are restarted, the restarted
  server catches up with the chain and signing goes on;
- ``company-gone`` (last) — the key's owner collects the emergency recovery bundle of the
  epoch in force from the ledger (every node made its part after the last key change);
  then every node, backup service and the ledger is stopped and its directory deleted, and
  the offline tool (`quorumkeep ers recover`, a separate process with no network) rebuilds
  the key from the bundle and the offline RSA key and signs a message that verifies under
  the network's derived public key.

Every operator action is the one `quorumkeep operator …` performs (same functions, same
contract calls, signed by that operator's full-access key); every wait follows the
ledger's event stream or a process's status endpoint and has a deadline whose error names
the log to read. Every signature is verified with PyNaCl under the key derived from the
group key recorded at the start. The report (``--json``) is::

    {"group_public_key": hex,
     "scenarios": [{"name", "passed", "seconds"}…],
     "signatures": [{"payload", "path", "public_key", "signature", "scenario"}…],
     "migrations": [{"account", "scenario", "started_height", "concluded_height",
                     "seconds", "concluded"}…],
     "restores": [{"node", "restored", "epoch", "snapshot_presignatures",
                   "used_before_restore", "signatures_after_restore", "used_after_restore"}…]}

where ``seconds`` runs from the block holding ``start_node_migration`` to the block holding
``conclude_node_migration`` (ledger block timestamps).
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from nacl.exceptions import BadSignatureError
from nacl.signing import VerifyKey
from rich.console import Console
from rich.live import Live
from rich.markup import escape
from rich.table import Table

from quorumkeep.crypto.derive import derive_public_key
from quorumkeep.devnet import (
    backups,
    forkserver,
    processes,
    providers,
    recovery_key,
    snapshots,
    watch,
)
from quorumkeep.devnet.errors import DevnetError
from quorumkeep.devnet.layout import LEDGER_DIR
from quorumkeep.devnet.network import USER, Devnet
from quorumkeep.ers import keys
from quorumkeep.ers.bundle import write_bundle
from quorumkeep.ledger.client import AccountSigner, AsyncLedgerClient, LedgerClient
from quorumkeep.ledger.errors import LedgerError
from quorumkeep.ledger.signing import Signature, SignClient, SignError
from quorumkeep.node.config import CONFIG_FILE_NAME, ConfigError, load_config, write_config
from quorumkeep.node.snapshot_format import SnapshotError
from quorumkeep.node.snapshot_keystore import presignature_commitments
from quorumkeep.node.snapshot_restore import read_snapshot
from quorumkeep.operator.actions import start_migration
from quorumkeep.operator.display import progress_table
from quorumkeep.operator.errors import OperatorError
from quorumkeep.operator.ers_collect import CollectError, collect
from quorumkeep.operator.failover import failover
from quorumkeep.operator.inputs import read_node_info
from quorumkeep.operator.progress import (
    CANCELLED,
    CONCLUDED,
    OPEN,
    MigrationProgress,
    MigrationWatcher,
)

SCENARIOS = (
    "single-node-loss",
    "quorum-loss",
    "full-cluster-loss",
    "cancelled-by-resharing",
    "attestation-upgrade",
    "restored-from-snapshot",
    "failover-to-standby",
    "every-machine-rebooted",
    "ledger-machine-lost",
    "company-gone",
)
ETCD_SCENARIOS = frozenset({"ledger-machine-lost"})
"""Scenarios that need the replicated ledger: with any of them the demo's devnet runs its
ledger on etcd (3 members, two ledger servers)."""
NODES = 4
THRESHOLD = 3
RESHARE_THRESHOLD = 3
UP_TIMEOUT = 120.0
BACKUP_TIMEOUT = 60.0
MIGRATION_TIMEOUT = 60.0
SIGN_TIMEOUT = 60.0
WAITING_SIGN_TIMEOUT = 180.0
"""Sign requests made while the quorum is lost wait for two migrations and new presignatures."""
RESHARE_TIMEOUT = 120.0
ERS_TIMEOUT = 120.0
NEW_NODE_SIGNATURES = 8
"""At most this many signatures to see a replacement node in a signing set."""
RTO_GOAL_SECONDS = 2.0
RESTORED_OWNED = 16
"""Presignatures a restored node owns before the demo signs to see it take part."""
FAILOVER_GOAL_SECONDS = 1.0
"""A warm standby concludes from the shares it holds: no backup service round trip."""
STANDBY_TIMEOUT = 60.0


def goal_seconds(scenario: str) -> float:
    """The recovery time goal of a scenario's migrations."""
    return FAILOVER_GOAL_SECONDS if scenario == "failover-to-standby" else RTO_GOAL_SECONDS


class DemoError(Exception):
    """A demo step that failed: one line naming what to read next."""

    report: DemoReport | None = None  # what was done before the failure, when known

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = " ".join(message.split())

    def __str__(self) -> str:
        return self.message


@dataclass(frozen=True)
class MigrationResult:
    account: str
    scenario: str
    started_height: int
    concluded_height: int | None
    seconds: float | None
    concluded: bool

    def to_json(self) -> dict[str, Any]:
        return {
            "account": self.account,
            "scenario": self.scenario,
            "started_height": self.started_height,
            "concluded_height": self.concluded_height,
            "seconds": None if self.seconds is None else round(self.seconds, 3),
            "concluded": self.concluded,
        }


@dataclass(frozen=True)
class ScenarioResult:
    name: str
    passed: bool
    seconds: float

    def to_json(self) -> dict[str, Any]:
        return {"name": self.name, "passed": self.passed, "seconds": round(self.seconds, 3)}


@dataclass
class DemoReport:
    """What the demo did; ``to_json`` is the ``--json`` report (docs/devnet.md)."""

    group_public_key: str | None = None
    signatures: list[Signature] = field(default_factory=list)
    signature_scenarios: list[str] = field(default_factory=list)
    migrations: list[MigrationResult] = field(default_factory=list)
    scenarios: list[ScenarioResult] = field(default_factory=list)
    backup_gates: list[dict[str, Any]] = field(default_factory=list)
    """Each wait for the contract's backup gate: ``{scenario, epoch, seconds}`` (setup's is
    measured from the end of the DKG)."""
    restores: list[dict[str, Any]] = field(default_factory=list)

    @property
    def scenario_seconds(self) -> dict[str, float]:
        return {s.name: s.seconds for s in self.scenarios}

    def add_signature(self, signature: Signature, scenario: str) -> None:
        self.signatures.append(signature)
        self.signature_scenarios.append(scenario)

    def to_json(self) -> dict[str, Any]:
        return {
            "group_public_key": self.group_public_key,
            "scenarios": [s.to_json() for s in self.scenarios],
            "signatures": [
                {
                    "scenario": scenario,
                    "payload": s.payload.hex(),
                    "path": s.path,
                    "public_key": s.public_key.hex(),
                    "signature": s.signature.hex(),
                }
                for s, scenario in zip(self.signatures, self.signature_scenarios, strict=True)
            ],
            "migrations": [m.to_json() for m in self.migrations],
            "backup_gates": self.backup_gates,
            "restores": list(self.restores),
        }

    def seconds_by_scenario(self) -> dict[str, list[float]]:
        found: dict[str, list[float]] = {}
        for m in self.migrations:
            if m.seconds is not None:
                found.setdefault(m.scenario, []).append(m.seconds)
        return found


# --- telling the story ------------------------------------------------------------------------


class Narrator:
    """The readable narrative: sections, timed steps (a spinner while they run), notes."""

    def __init__(self, console: Console | None = None, *, quiet: bool = False) -> None:
        self.console = console or Console()
        self.quiet = quiet

    def section(self, title: str) -> None:
        if not self.quiet:
            self.console.print()
            self.console.rule(f"[bold]{title}[/bold]", align="left")

    def note(self, text: str) -> None:
        if not self.quiet:
            self.console.print(f"  {text}")

    @contextlib.contextmanager
    def step(self, text: str) -> Iterator[Callable[[str], None]]:
        """Run a step under a spinner; print ``✓ text (seconds)`` or ``✗ text``.

        The yielded function sets a suffix for the ✓ line (what the step found)."""
        started = time.monotonic()
        suffix: list[str] = []

        def found(more: str) -> None:
            suffix[:] = [escape(more)]

        try:
            if self.quiet:
                yield found
            else:
                with self.console.status(f"{text} …"):
                    yield found
        except BaseException:
            if not self.quiet:
                self.console.print(f"  [red]✗[/red] {text}")
            raise
        if not self.quiet:
            seconds = time.monotonic() - started
            more = f": {suffix[0]}" if suffix else ""
            self.console.print(f"  [green]✓[/green] {text}{more} [dim]({seconds:.2f} s)[/dim]")

    def done(self, text: str, seconds: float) -> None:
        if not self.quiet:
            self.console.print(f"  [green]✓[/green] {text} [dim]({seconds:.2f} s)[/dim]")

    def failed(self, text: str) -> None:
        if not self.quiet:
            self.console.print(f"  [red]✗[/red] {text}")

    @contextlib.contextmanager
    def live(self) -> Iterator[Callable[[Any], None]]:
        """A live area redrawn with whatever renderable is passed (migration progress)."""
        if self.quiet:
            yield lambda _: None
            return
        with Live(console=self.console, refresh_per_second=10, transient=True) as area:
            yield area.update

    def print(self, renderable: Any) -> None:
        if not self.quiet:
            self.console.print(renderable)


# --- signing in the background ------------------------------------------------------------------


class SignSession:
    """A SignClient on an event loop of its own thread, so sign requests can stay in flight
    (waiting for a lost quorum) while the demo drives the devnet synchronously."""

    def __init__(self, ledger_url: str, signer: AccountSigner) -> None:
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True)
        self._thread.start()
        self._client: SignClient = self._run(self._open(ledger_url, signer), 30.0)

    async def _open(self, ledger_url: str, signer: AccountSigner) -> SignClient:
        client = SignClient(ledger_url, [signer])
        await client.start()
        return client

    def _run(self, coroutine: Any, timeout: float) -> Any:
        return asyncio.run_coroutine_threadsafe(coroutine, self._loop).result(timeout)

    def start(
        self, payload: bytes, path: str, timeout: float
    ) -> concurrent.futures.Future[Signature]:
        """Submit now; the future completes with the verified signature (or SignError)."""
        return asyncio.run_coroutine_threadsafe(
            self._client.sign(payload, path, timeout=timeout), self._loop
        )

    def close(self) -> None:
        with contextlib.suppress(Exception):
            self._run(self._client.close(), 10.0)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(10.0)
        self._loop.close()


# --- the demo -------------------------------------------------------------------------------------


class Demo:
    """The scenarios, run against a devnet (created by :meth:`setup`, or given)."""

    def __init__(self, devnet: Devnet, narrator: Narrator | None = None) -> None:
        self.devnet = devnet
        self.narrator = narrator or Narrator(quiet=True)
        self.report = DemoReport()
        self.scenario = "setup"  # the scenario running now: it labels signatures
        self._signer: SignSession | None = None
        self._group_key: bytes | None = None
        self._counter = 0

    # -- set-up

    @classmethod
    def create(cls, directory: Path, narrator: Narrator, *, ledger: str = "sqlite") -> Demo:
        """Start the devnet: 4 nodes, threshold 3, a backup service per operator (and the
        ledger on SQLite, or on etcd)."""
        what = "a ledger" if ledger == "sqlite" else "3 etcd members, 2 ledger servers"
        with narrator.step(
            f"devnet up: {what}, {NODES} nodes (threshold {THRESHOLD}) and a backup "
            "service per operator"
        ) as found:
            try:
                devnet = Devnet.up(
                    directory,
                    nodes=NODES,
                    threshold=THRESHOLD,
                    spare_operators=1,
                    timeout=UP_TIMEOUT,
                    backup=True,
                    ledger=ledger,
                )
            except (DevnetError, LedgerError) as exc:
                raise DemoError(f"devnet up failed: {exc}") from None
            found(f"ledger {devnet.ledger_url}")
        return cls(devnet, narrator)

    def close(self) -> None:
        if self._signer is not None:
            self._signer.close()
            self._signer = None

    def setup(self) -> None:
        """Record the group key, wait for the first backups, sign once."""
        state = self._state()
        keys = watch.domain_keys(state)
        if 0 not in keys:
            raise DemoError("the contract has no key for domain 0")
        self._group_key = bytes.fromhex(keys[0])
        self.report.group_public_key = keys[0]
        self.narrator.note(f"group public key (domain 0): [bold]{keys[0]}[/bold]")
        epoch = watch.epoch(state) or 0
        gate = self.devnet.timings.get("backup_gate")
        if gate is not None:
            # `devnet up` waited for the gate right after the DKG: the first signature could
            # not be asked for before every operator's backup service confirmed.
            self.narrator.note(
                f"backup before use: the first signature waited {gate:.2f} s after the DKG "
                "for every operator's backup confirmation (sign before that: KeyNotBackedUp)"
            )
            self.report.backup_gates.append(
                {"scenario": "setup", "epoch": epoch, "seconds": round(gate, 3)}
            )
        self.wait_backups(epoch, "the first backups")
        self.sign("setup")

    # -- helpers

    def _state(self) -> dict[str, Any]:
        try:
            return self.devnet.contract_state()
        except (DevnetError, LedgerError) as exc:
            raise DemoError(f"cannot read the contract: {exc}") from None

    def _sessions(self) -> SignSession:
        if self._signer is None:
            self._signer = SignSession(self.devnet.ledger_url, self.devnet.signer(USER))
        return self._signer

    def _next_path(self, label: str) -> str:
        self._counter += 1
        return f"demo/{label}/{self._counter}"

    def verify(self, signature: Signature) -> None:
        """PyNaCl, under the key derived from the group key recorded at the start."""
        assert self._group_key is not None
        expected = derive_public_key(self._group_key, USER, signature.path)
        if signature.public_key != expected:
            raise DemoError(
                f"signature for {signature.path!r} is under {signature.public_key.hex()}, "
                f"not the key derived from the original group key ({expected.hex()})"
            )
        try:
            VerifyKey(expected).verify(signature.payload, signature.signature)
        except BadSignatureError:
            raise DemoError(f"the signature for {signature.path!r} does not verify") from None
        self.report.add_signature(signature, self.scenario)

    def _signature(self, future: concurrent.futures.Future[Signature], timeout: float) -> Signature:
        try:
            signature = future.result(timeout + 5.0)
        except SignError as exc:
            raise DemoError(f"signing failed: {exc}; {self._node_logs()}") from None
        except concurrent.futures.TimeoutError:
            raise DemoError(f"no signature within {timeout:g} s; {self._node_logs()}") from None
        self.verify(signature)
        return signature

    def _node_logs(self) -> str:
        names = [n for n in self.devnet.node_names() if self.devnet.alive(n)]
        logs = ", ".join(str(self.devnet.log_path(n)) for n in names)
        return f"read {logs}" if logs else "no node is running"

    def sign(self, label: str, count: int = 1) -> list[Signature]:
        """``count`` signatures (in flight together), each verified."""
        made = []
        with self.narrator.step(
            f"sign {count} request{'s' if count > 1 else ''} as {USER}"
        ) as found:
            futures = [
                self._sessions().start(os.urandom(32), self._next_path(label), SIGN_TIMEOUT)
                for _ in range(count)
            ]
            for future in futures:
                made.append(self._signature(future, SIGN_TIMEOUT))
            ms = ", ".join(f"{s.latency_s * 1000:.0f} ms" for s in made)
            found(f"verified with PyNaCl ({ms})")
        return made

    def wait_backups(self, epoch: int, what: str) -> None:
        names = self.devnet.backup_names()
        if not names:
            raise DemoError("the devnet has no backup services")
        with self.narrator.step(f"wait for {what} (epoch {epoch})") as found:
            try:
                backups.wait_for_backups(
                    self.devnet,
                    names,
                    backups.covers_epoch(epoch),
                    timeout=BACKUP_TIMEOUT,
                    what=f"backup of epoch {epoch}",
                )
            except DevnetError as exc:
                raise DemoError(str(exc)) from None
            found(f"{len(names)} services hold epoch {epoch}, verified against the contract")
        self.wait_backup_gate(epoch)

    def wait_backup_gate(self, epoch: int) -> float:
        """Backup before use: domain 0 signs only once every operator's backup service has
        confirmed its backup of the epoch in force in the contract (`confirm_backup`)."""
        with self.narrator.step(
            f"backup before use: wait for the contract's backup gate of domain 0 (epoch {epoch})"
        ) as found:
            try:
                with self.devnet.client() as client:
                    seconds = self.devnet.wait_backup_gate(client, 0, timeout=BACKUP_TIMEOUT)
                    status = client.view("backup_status")
            except (DevnetError, LedgerError) as exc:
                raise DemoError(str(exc)) from None
            domain = next(d for d in status["domains"] if d["domain_id"] == 0)
            heights = sorted(
                entry["confirmation"]["block_height"]
                for entry in status["operators"].values()
                if entry["current"]
            )
            found(
                f"open: {len(domain['confirmed'])} of {domain['required']} operators confirmed "
                f"their backup (blocks {', '.join(str(h) for h in heights)})"
            )
        if self.scenario != "setup":
            self.report.backup_gates.append(
                {"scenario": self.scenario, "epoch": epoch, "seconds": round(seconds, 3)}
            )
        return seconds

    def current_node(self, account: str) -> str:
        name = self.devnet.node_of(account, self._state())
        if name is None:
            raise DemoError(f"no devnet node holds {account}'s registered TLS key")
        return name

    def lose(self, nodes: Sequence[str]) -> None:
        """SIGKILL the nodes and delete their directories (lost machines)."""
        with self.narrator.step(
            f"SIGKILL {', '.join(nodes)} and delete {'their' if len(nodes) > 1 else 'its'} "
            "data director" + ("ies" if len(nodes) > 1 else "y")
        ):
            try:
                for name in nodes:
                    self.devnet.kill(name)
                for name in nodes:
                    self.devnet.wipe(name)
            except DevnetError as exc:
                raise DemoError(str(exc)) from None

    def migrate(
        self, accounts: Sequence[str], scenario: str, *, replaced: Mapping[str, str]
    ) -> dict[str, str]:
        """Each operator starts a fresh node and a migration to it; wait until every
        migration concluded. Returns account → new node name."""
        with self.narrator.step(
            f"operator{'s' if len(accounts) > 1 else ''} of {', '.join(accounts)} "
            f"start{'' if len(accounts) > 1 else 's'} a fresh node"
        ) as found:
            try:
                names = self.devnet.add_nodes(accounts)
                for name in names:
                    self.devnet.wait_node_healthy(name)
            except DevnetError as exc:
                raise DemoError(str(exc)) from None
            found(", ".join(names))
        new_nodes = dict(zip(accounts, names, strict=True))
        heights = self.start_migrations(new_nodes)
        progress = self.follow(accounts, min(heights.values()), scenario)
        for account in accounts:
            p = progress[account]
            if p.state != CONCLUDED:
                raise DemoError(
                    f"{account}'s migration ended {p.state} ({p.cancel_reason}); read "
                    f"{self.devnet.log_path(new_nodes[account])}"
                )
        for account in accounts:
            old = replaced.get(account)
            if old is not None:
                with contextlib.suppress(DevnetError):
                    self.devnet.retire(old, grace=2.0)
        return new_nodes

    def start_migrations(self, new_nodes: Mapping[str, str]) -> dict[str, int]:
        """``start_node_migration`` by each operator (what `operator start-migration` does)."""
        heights: dict[str, int] = {}
        with self.narrator.step("start_node_migration") as found:
            with self.devnet.client() as client:
                for account, name in new_nodes.items():
                    directory = self.devnet.dir.resolve(self.devnet.process(name).directory or "")
                    try:
                        info = read_node_info(str(directory))
                        started = start_migration(client, self.devnet.signer(account), info)
                    except OperatorError as exc:
                        raise DemoError(f"{account}: {exc.message}") from None
                    heights[account] = started.started_height
            found(", ".join(f"{a} at block {h}" for a, h in heights.items()))
        return heights

    def follow(
        self,
        accounts: Sequence[str],
        since: int,
        scenario: str,
        what: str = "backup services push the shares; the new nodes conclude",
    ) -> dict[str, MigrationProgress]:
        """Follow the migrations on the contract's events (and the new nodes' /status),
        live, until each ended; record them in the report."""
        names = {a: self._destination_log(a) for a in accounts}

        def ended(progress: dict[str, MigrationProgress]) -> bool:
            return all(progress[a].state not in (OPEN, "none") for a in accounts)

        def explain(progress: dict[str, MigrationProgress]) -> str:
            stuck = [a for a in accounts if progress[a].state in (OPEN, "none")]
            logs = ", ".join(
                f"{names[a]} and {self.devnet.log_path(backups.backup_name(a))}" for a in stuck
            )
            return f"migration of {', '.join(stuck)} not concluded; read {logs}"

        async def run(update: Callable[[Any], None]) -> dict[str, MigrationProgress]:
            async with AsyncLedgerClient(self.devnet.ledger_url) as ledger:
                watcher = MigrationWatcher(ledger, accounts)
                await watcher.start_from_height(since)
                return await watcher.wait(
                    ended,
                    timeout=MIGRATION_TIMEOUT,
                    on_update=lambda p: update(
                        progress_table([p[a] for a in accounts], "migrations")
                    ),
                    explain=explain,
                )

        started = time.monotonic()
        with self.narrator.live() as update:
            try:
                progress = asyncio.run(run(update))
            except (OperatorError, LedgerError) as exc:
                self.narrator.failed(what)
                raise DemoError(str(exc)) from None
        self.narrator.done(what, time.monotonic() - started)
        self.narrator.print(progress_table([progress[a] for a in accounts], "migrations"))
        for account in accounts:
            self.record(progress[account], scenario)
        return progress

    def _destination_log(self, account: str) -> str:
        candidates = [
            n
            for n in self.devnet.node_names()
            if self.devnet.process(n).account == account and not self.devnet.process(n).retired
        ]
        return str(self.devnet.log_path(candidates[-1])) if candidates else "the new node's log"

    def record(self, progress: MigrationProgress, scenario: str) -> MigrationResult:
        assert progress.started_height is not None
        result = MigrationResult(
            account=progress.account,
            scenario=scenario,
            started_height=progress.started_height,
            concluded_height=progress.concluded_height,
            seconds=progress.seconds,
            concluded=progress.state == CONCLUDED,
        )
        self.report.migrations.append(result)
        if result.seconds is not None:
            self.narrator.note(
                f"{progress.account}: start_node_migration (block {result.started_height}) → "
                f"conclude_node_migration (block {result.concluded_height}): "
                f"[bold]{result.seconds:.3f} s[/bold] of ledger time"
            )
        return result

    def node_took_part(self, name: str, label: str, *, batch: int = 1) -> None:
        """Sign (``batch`` requests at a time, at most :data:`NEW_NODE_SIGNATURES` times)
        until ``name`` led or gave a share: it is in the signing set."""

        def count() -> float:
            try:
                text = self.devnet.node_metrics(name)
            except DevnetError:
                return 0.0
            total = 0.0
            for line in text.splitlines():
                if line.startswith(
                    ("quorumkeep_signatures_total", "quorumkeep_signature_shares_total")
                ):
                    total += float(line.rpartition(" ")[2])
            return total

        before = count()
        for _ in range(NEW_NODE_SIGNATURES):
            self.sign(label, batch)
            if count() > before:
                self.narrator.note(f"{name} took part in signing (led or gave a share)")
                return
        raise DemoError(
            f"{name} took part in none of {NEW_NODE_SIGNATURES * batch} signatures; "
            f"read {self.devnet.log_path(name)}"
        )

    # -- the scenarios

    def single_node_loss(self) -> None:
        scenario = "single-node-loss"
        self.narrator.section(f"{scenario}: a node's machine is lost")
        participants = watch.participants(self._state())
        account = (
            participants[1]["account"] if len(participants) > 1 else participants[0]["account"]
        )
        old = self.current_node(account)
        self.lose([old])
        new = self.migrate([account], scenario, replaced={account: old})
        self.node_took_part(new[account], scenario)

    def quorum_loss(self) -> None:
        scenario = "quorum-loss"
        self.narrator.section(f"{scenario}: two nodes lost at once, the quorum with them")
        state = self._state()
        accounts = [m["account"] for m in watch.participants(state)][-2:]
        old = {a: self.current_node(a) for a in accounts}
        self.lose(list(old.values()))
        waiting = []
        with self.narrator.step("sign 2 requests while the quorum is lost") as found:
            for _ in range(2):
                waiting.append(
                    self._sessions().start(
                        os.urandom(32), self._next_path(scenario), WAITING_SIGN_TIMEOUT
                    )
                )
            pending = self._wait_pending(2)
            found(f"requests {pending} pending on the contract, unanswered")
        if any(f.done() for f in waiting):
            raise DemoError("a sign request was answered while the quorum was lost")
        self.migrate(accounts, scenario, replaced=old)
        with self.narrator.step("the waiting requests complete") as found:
            made = [self._signature(f, WAITING_SIGN_TIMEOUT) for f in waiting]
            found(", ".join(f"request {s.request_id} at block {s.response_height}" for s in made))
        concluded = max(m.concluded_height or 0 for m in self.report.migrations[-2:])
        if any(s.response_height < concluded for s in made):
            raise DemoError("a waiting request was answered before both migrations concluded")
        self.sign(scenario)

    def restored_from_snapshot(self) -> None:
        scenario = "restored-from-snapshot"
        self.narrator.section(f"{scenario}: a node comes back from an older copy of its directory")
        account = watch.participants(self._state())[0]["account"]
        name = self.current_node(account)
        with self.narrator.step(f"snapshot {name} while it runs") as found:
            deadline = time.monotonic() + SIGN_TIMEOUT
            while not snapshots.held_presignatures(self.devnet, name):
                if time.monotonic() > deadline:
                    raise DemoError(
                        f"{name} made no presignature; read {self.devnet.log_path(name)}"
                    )
                time.sleep(0.2)  # bounded: the pool fills in the background, no event for it
            try:
                archive, manifest = snapshots.take(self.devnet, name)
                _, contents = read_snapshot(archive)
            except (DevnetError, SnapshotError) as exc:
                raise DemoError(str(exc)) from None
            held = presignature_commitments(contents["keystore.sqlite3"])
            found(
                f"{archive.name}: epoch {manifest['epoch']}, keyset "
                f"{str(manifest['keyset_hash'])[:16]}…, {len(held)} presignatures, secrets sealed"
            )
        before = self.sign(scenario, 3)
        used_before = snapshots.used_presignatures(before, held)
        self.narrator.note(
            f"{len(used_before)} of these signatures used a presignature the snapshot holds"
        )
        with self.narrator.step(
            f"stop {name}, restore the snapshot into a new directory, start it"
        ) as found:
            try:
                self.devnet.stop(name)
                restored = snapshots.restore(self.devnet, name, archive)
                status = self.devnet.node_get(restored, "/status")
            except DevnetError as exc:
                raise DemoError(str(exc)) from None
            left = set(snapshots.held_presignatures(self.devnet, restored)) & set(held)
            if left:
                raise DemoError(
                    f"{restored} still holds {len(left)} of the snapshot's presignatures"
                )
            found(
                f"{restored}: the same node (TLS key {status['tls_public_key'][:16]}…), new "
                f"incarnation {status['incarnation'][:16]}…, none of the snapshot's "
                "presignatures kept"
            )
        with self.narrator.step(f"{restored} and its peers make new presignatures") as found:
            deadline = time.monotonic() + SIGN_TIMEOUT
            while True:
                try:
                    owned = sum(
                        self.devnet.node_get(restored, "/status")["owned_presignatures"].values()
                    )
                except DevnetError as exc:
                    raise DemoError(str(exc)) from None
                if owned >= RESTORED_OWNED:
                    break
                if time.monotonic() > deadline:
                    raise DemoError(
                        f"{restored} made no presignatures; read {self.devnet.log_path(restored)}"
                    )
                time.sleep(0.2)  # bounded: the pool fills in the background, no event for it
            found(f"{owned} owned by {restored}")
        first = len(self.report.signatures)
        self.node_took_part(restored, scenario, batch=3)
        self.sign(scenario, 2)
        after = self.report.signatures[first:]
        used_after = snapshots.used_presignatures(after, held)
        if used_after:
            raise DemoError(
                f"signatures {sorted(used_after)} after the restore used presignatures of the "
                "snapshot"
            )
        self.narrator.note(
            f"none of the {len(held)} presignatures in the snapshot made any of the "
            f"{len(after)} signatures since the restore (each R recomputed from every "
            "commitment list of the snapshot)"
        )
        self.report.restores.append(
            {
                "node": name,
                "restored": restored,
                "epoch": manifest["epoch"],
                "snapshot_presignatures": len(held),
                "used_before_restore": len(used_before),
                "signatures_after_restore": len(after),
                "used_after_restore": len(used_after),
            }
        )

    def _node_dir(self, name: str) -> Path:
        return self.devnet.dir.resolve(self.devnet.process(name).directory or "")

    def _node_cli(self, name: str, args: Sequence[str]) -> Any:
        """``quorumkeep ARGS`` as its own process with node ``name``'s passphrase."""
        record = self.devnet.process(name)
        env = {v: self.devnet.secrets.get(s).decode() for v, s in record.env_secrets.items()}
        return cli_json(args, SIGN_TIMEOUT, env=env)

    def _standby_status(self, name: str, fresh_epoch: int) -> dict[str, Any]:
        """The standby's ``warm_standby`` status once it holds ``fresh_epoch`` (bounded)."""
        deadline = time.monotonic() + STANDBY_TIMEOUT
        while True:
            with contextlib.suppress(DevnetError):
                status = self.devnet.node_get(name, "/status")
                standby = status.get("warm_standby") or {}
                if standby.get("fresh") and standby.get("held_epoch") == fresh_epoch:
                    return dict(standby)
            if time.monotonic() > deadline:
                raise DemoError(
                    f"{name} does not hold epoch {fresh_epoch}; read {self.devnet.log_path(name)}"
                )
            time.sleep(0.2)  # bounded: the push is the primary's, nothing to follow here

    def failover_to_standby(self) -> None:
        scenario = "failover-to-standby"
        self.narrator.section(f"{scenario}: a warm standby takes over from its primary")
        state = self._state()
        account = watch.participants(state)[0]["account"]
        epoch = watch.epoch(state) or 0
        primary = self.current_node(account)
        with self.narrator.step(f"{account}'s operator starts a warm standby") as found:
            try:
                (standby,) = self.devnet.add_nodes([account], start=False)
                # the standby runs its primary's build (what it attests to, if it does)
                running = load_config(self._node_dir(primary) / CONFIG_FILE_NAME)
                path = self._node_dir(standby) / CONFIG_FILE_NAME
                config = load_config(path).model_copy(
                    update={"warm_standby": True, "attestation": running.attestation}
                )
                write_config(config, path)
                self.devnet.start(standby)
            except (DevnetError, ConfigError) as exc:
                raise DemoError(str(exc)) from None
            found(f"{standby} (warm_standby = true; its signer key is a node key already)")
        with self.narrator.step(f"whitelist {standby}'s wrapping key on {primary}") as found:
            info = self._node_cli(
                standby, ["node", "wrapping-key", "--dir", str(self._node_dir(standby)), "--json"]
            )
            cli_json(
                ["node", "export-config", "--dir", str(self._node_dir(primary)), "--allow",
                 "--standby", json.dumps(info)],
                SIGN_TIMEOUT,
            )  # fmt: skip
            found(f"wrapping key {info['wrapping_public_key'][:16]}…, [export] allow = true")
        with self.narrator.step("an export to a key not whitelisted is refused") as found:
            refusal = cli_error(
                ["node", "export", "--dir", str(self._node_dir(primary)), "--to",
                 os.urandom(32).hex(), "--out", str(self._node_dir(primary) / "refused.export")],
                SIGN_TIMEOUT,
            )  # fmt: skip
            if "not_whitelisted" not in refusal:
                raise DemoError(f"the export was not refused as not whitelisted: {refusal}")
            found(refusal)
        with self.narrator.step(f"restart {primary}: it pushes the keyset in force") as found:
            try:
                self.devnet.stop(primary)
                self.devnet.start(primary)
            except DevnetError as exc:
                raise DemoError(str(exc)) from None
            held = self._standby_status(standby, epoch)
            found(f"{standby} holds epoch {held['held_epoch']} (fresh)")
        self.lose([primary])
        with self.narrator.step("operator failover: the standby holds the epoch; migrate") as found:
            with self.devnet.client() as client:
                try:
                    standby_info = read_node_info(str(self._node_dir(standby)))
                    started, _ = failover(client, self.devnet.signer(account), standby_info)
                except OperatorError as exc:
                    raise DemoError(f"{account}: {exc.message}") from None
            found(f"start_node_migration at block {started.started_height}")
        progress = self.follow(
            [account],
            started.started_height,
            scenario,
            what="the standby concludes from the shares it holds",
        )
        if progress[account].state != CONCLUDED:
            raise DemoError(
                f"the fail-over of {account} ended {progress[account].state}; "
                f"read {self.devnet.log_path(standby)}"
            )
        with contextlib.suppress(DevnetError):
            self.devnet.retire(primary, grace=2.0)
        metrics = self.devnet.node_metrics(standby)
        pushed = _metric(metrics, "quorumkeep_migration_imports_total")
        self.narrator.note(
            f"{standby} concluded from its wrapped export"
            + (" (the backup service's push was not needed)" if not pushed else "")
        )
        self.node_took_part(standby, scenario)

    def ledger_machine_lost(self) -> None:
        scenario = "ledger-machine-lost"
        self.narrator.section(f"{scenario}: the proposing ledger server's machine is lost")
        proposer = self.devnet.ledger_proposer()
        members = self.devnet.etcd_names()
        if proposer is None or not members:
            raise DemoError("this devnet's ledger is not replicated on etcd (--ledger etcd)")
        # The Raft leader's machine: the survivor's writes then wait out an election.
        lost = [proposer, self.devnet.etcd_leader() or members[0]]
        with self.narrator.step(f"SIGKILL {' and '.join(lost)} (one machine)"):
            try:
                for name in lost:
                    self.devnet.kill(name)
            except DevnetError as exc:
                raise DemoError(str(exc)) from None
        self.sign(scenario, 2)  # through the other server, once it proposes
        with self.narrator.step("the machine comes back: restart both") as found:
            try:
                for name in reversed(lost):  # etcd first, then the ledger server on it
                    self.devnet.start(name)
            except DevnetError as exc:
                raise DemoError(str(exc)) from None
            found(f"now proposing: {self.devnet.ledger_proposer()}")
        signed = self.sign(scenario)
        with self.narrator.step(f"{proposer} caught up with the chain") as found:
            height = signed[-1].response_height
            url = f"http://127.0.0.1:{self.devnet.process(proposer).ports['http']}"
            deadline = time.monotonic() + SIGN_TIMEOUT
            with LedgerClient(url) as client:
                while client.status()["height"] < height:
                    if time.monotonic() > deadline:
                        raise DemoError(
                            f"{proposer} did not reach block {height}; read "
                            f"{self.devnet.log_path(proposer)}"
                        )
                    time.sleep(0.1)  # bounded: a status read, no event to wait on
                found(f"at block {client.status()['height']} like the others")

    def _wait_pending(self, count: int) -> list[int]:
        """Request ids of our pending sign requests, once ``count`` of them are on the
        contract (followed on the event stream)."""

        def mine(state: dict[str, Any]) -> list[int]:
            ids = [int(r["request_id"]) for r in state["sign_requests"] if r["account"] == USER]
            return ids if len(ids) >= count else []

        try:
            with self.devnet.client() as client:
                found: list[int] = self.devnet.wait_contract(
                    client, mine, timeout=SIGN_TIMEOUT, what="pending sign requests"
                )
        except (DevnetError, LedgerError) as exc:
            raise DemoError(str(exc)) from None
        return found

    def full_cluster_loss(self) -> None:
        scenario = "full-cluster-loss"
        self.narrator.section(f"{scenario}: every node and every node's data lost")
        state = self._state()
        accounts = [m["account"] for m in watch.participants(state)]
        old = {a: self.current_node(a) for a in accounts}
        self.lose(list(old.values()))
        self.narrator.note("no node holds a share now: only the backup services do")
        self.migrate(accounts, scenario, replaced=old)
        keys = watch.domain_keys(self._state())
        if self.report.group_public_key is not None and keys.get(0) != self.report.group_public_key:
            raise DemoError("the contract's group key changed during the recovery")
        self.narrator.note(f"group public key unchanged: {keys.get(0)}")
        self.sign(scenario)

    def cancelled_by_resharing(self) -> None:
        scenario = "cancelled-by-resharing"
        self.narrator.section(f"{scenario}: a resharing starts while a migration is open")
        state = self._state()
        participants = watch.participants(state)
        account = participants[0]["account"]
        current = self.current_node(account)
        spare = self._spare_operator(state)
        with self.narrator.step(
            f"{account}'s operator prepares a new node (not started yet) and starts a migration"
        ) as found:
            try:
                (destination,) = self.devnet.add_nodes([account], start=False)
            except DevnetError as exc:
                raise DemoError(str(exc)) from None
            found(destination)
        heights = self.start_migrations({account: destination})
        with self.narrator.step(f"{spare} starts a node and a backup service to join") as found:
            try:
                (joiner,) = self.devnet.add_nodes([spare])
                self.devnet.wait_node_healthy(joiner)
                with self.devnet.client() as client:
                    self.devnet.wait_contract(
                        client,
                        lambda s: spare in s["candidates"],
                        timeout=SIGN_TIMEOUT,
                        what=f"{spare}'s participant info",
                    )
                service = self.devnet.add_backup_service(spare)
            except (DevnetError, LedgerError) as exc:
                raise DemoError(str(exc)) from None
            found(f"{joiner}, {service}")
        n = len(participants) + 1
        with self.narrator.step(
            f"resharing {len(participants)} → {n} nodes (threshold {RESHARE_THRESHOLD})"
        ) as found:
            try:
                epoch = self.devnet.reshare(
                    threshold=RESHARE_THRESHOLD, add=[joiner], timeout=RESHARE_TIMEOUT
                )
            except (DevnetError, LedgerError) as exc:
                raise DemoError(f"resharing failed: {exc}") from None
            found(f"Running at epoch {epoch}")
        progress = self._replay(account, heights[account])
        if progress.state != CANCELLED:
            raise DemoError(f"{account}'s migration is {progress.state}, not cancelled")
        self.narrator.note(
            f"{account}'s migration from block {progress.started_height} was cancelled at "
            f"block {progress.cancelled_height}: {progress.cancel_reason}"
        )
        self.record(progress, scenario)
        with self.narrator.step(f"start {destination}: it must import nothing") as found:
            try:
                self.devnet.start(destination)
                status = self._settled_status(destination)
            except DevnetError as exc:
                raise DemoError(str(exc)) from None
            if status.get("keysets") or status.get("role") == "participant":
                raise DemoError(
                    f"{destination} holds shares after a cancelled migration: "
                    f"{status.get('keysets')}; read {self.devnet.log_path(destination)}"
                )
            found(f"role {status.get('role')}, no shares; {current} stays {account}'s node")
            with contextlib.suppress(DevnetError):
                self.devnet.retire(destination, grace=2.0)
        self.wait_backups(epoch, "the backups of the new epoch")
        self.sign(scenario)

    def attestation_upgrade(self) -> None:
        from quorumkeep.devnet import attestation_story

        scenario = attestation_story.SCENARIO
        self.narrator.section(f"{scenario}: new node code voted in, a laggard reshared out")
        try:
            laggard = attestation_story.run(self.devnet, self.narrator.step, self.current_node)
        except attestation_story.StoryError as exc:
            raise DemoError(f"{exc}; {self._node_logs()}") from None
        self.narrator.note(f"{laggard} is marked in the contract; its peers refuse its connections")
        # The resharing made new shares: the remaining operators' backup services back them
        # up and confirm them before the domain signs again (the laggard's holds nothing).
        self.wait_backup_gate(watch.epoch(self._state()) or 0)
        self.sign(scenario)

    def every_machine_rebooted(self) -> None:
        """Every node's storage key moves to key providers (a migration per operator to a
        node with ``--key-source peers``); then every node and every provider is SIGKILLed and
        started again at once: each node gets k pieces back by itself and the network signs
        again under the same group key, with nobody typing a passphrase."""
        from quorumkeep.devnet import attestation_story
        from quorumkeep.devnet.attestation import NODE_APP

        scenario = "every-machine-rebooted"
        self.narrator.section(f"{scenario}: every node and every key provider restart at once")
        state = self._state()
        accounts = [m["account"] for m in watch.participants(state)]
        old = {a: self.current_node(a) for a in accounts}
        with self.narrator.step("a key provider per operator, registered in the contract") as f:
            have = set(self.devnet.provider_names())
            try:
                started = self.devnet.add_providers(
                    [a for a in accounts if providers.provider_name(a) not in have]
                )
            except DevnetError as exc:
                raise DemoError(str(exc)) from None
            f(", ".join(started) or "already running")
        with self.narrator.step(
            "each operator starts a node whose storage key the others' providers hold"
        ) as f:
            try:
                names = self.devnet.add_nodes(accounts, start=False, key_source="peers")
                build = attestation_story.allowed_build(self.devnet)
                if build != NODE_APP:  # the attestation-upgrade scenario moved the network on
                    for name in names:
                        attestation_story.set_build(self.devnet, name, build)
            except (DevnetError, LedgerError) as exc:
                raise DemoError(str(exc)) from None
            f(", ".join(names))
        new_nodes = dict(zip(accounts, names, strict=True))
        heights = self.start_migrations(new_nodes)
        with self.narrator.step("operators record their deals; the new nodes start") as f:
            try:
                for name in names:
                    providers.record_deal(self.devnet, name)
                with self.devnet.client() as client:
                    deals = {
                        a: client.view("key_provider_deal", {"account": a})["deal"]
                        for a in accounts
                    }
                for name in names:
                    self.devnet.start(name, wait=False)
                for name in names:
                    self.devnet.wait_node_healthy(name)
            except (DevnetError, LedgerError) as exc:
                raise DemoError(str(exc)) from None
            held = "; ".join(
                f"{a} {d['threshold']}-of-{len(d['holders'])} "
                f"({', '.join(h['provider'] for h in d['holders'])})"
                for a, d in deals.items()
            )
            f(f"each got its storage key from its providers: {held}")
        progress = self.follow(accounts, min(heights.values()), scenario)
        for account in accounts:
            if progress[account].state != CONCLUDED:
                raise DemoError(f"{account}'s migration ended {progress[account].state}")
            with contextlib.suppress(DevnetError):
                self.devnet.retire(old[account], grace=2.0)
        self.sign(scenario)
        machines = [*names, *self.devnet.provider_names()]
        with self.narrator.step(f"SIGKILL all {len(machines)}: every node and every provider"):
            try:
                for name in machines:
                    self.devnet.kill(name)
            except DevnetError as exc:
                raise DemoError(str(exc)) from None
        with self.narrator.step("start them all again at once") as f:
            began = time.monotonic()
            try:
                for name in machines:
                    self.devnet.start(name, wait=False)
                for name in names:
                    self.devnet.wait_node_healthy(name, timeout=UP_TIMEOUT)
            except DevnetError as exc:
                raise DemoError(str(exc)) from None
            f(f"every node serves again after {time.monotonic() - began:.1f} s")
        keys = watch.domain_keys(self._state())
        if keys.get(0) != self.report.group_public_key:
            raise DemoError("the contract's group key changed")
        self.narrator.note(f"group public key unchanged: {keys.get(0)}")
        self.sign(scenario)

    def company_gone(self) -> None:
        scenario = "company-gone"
        self.narrator.section(f"{scenario}: the company and every machine of the network are gone")
        offline = self.devnet.path / "offline"
        offline.mkdir(exist_ok=True)
        with self.narrator.step(
            "every node recorded its recovery part for the epoch in force"
        ) as found:
            try:
                with self.devnet.client() as client:
                    record = self.devnet.wait_contract(
                        client,
                        recovery_key.parts_complete(0),
                        timeout=ERS_TIMEOUT,
                        what="recovery parts from every participant",
                    )
                    epoch = int(record["epoch"])
                    path = self._next_path(scenario)
                    expected = bytes.fromhex(
                        client.view("public_key", {"domain_id": 0, "account": USER, "path": path})
                    )
            except (DevnetError, LedgerError) as exc:
                raise DemoError(str(exc)) from None
            found(f"epoch {epoch}")
        bundle_path = offline / "bundle.json"
        with self.narrator.step(
            "the key's owner collects the bundle and verifies it offline"
        ) as found:
            try:
                bundle = collect(self.devnet.ledger_url, 0, epoch)
            except CollectError as exc:
                raise DemoError(f"ers collect: {exc}") from None
            write_bundle(bundle_path, bundle)
            verified = cli_json(["ers", "verify", str(bundle_path), "--json"], ERS_TIMEOUT)
            if not verified["ok"]:
                raise DemoError(f"the collected bundle does not verify: {verified}")
            found(f"{len(bundle.parts)} parts, threshold {bundle.threshold}: {bundle_path}")
        with self.narrator.step(
            "stop every node, backup service and the ledger; delete their data"
        ):
            self.close()
            try:
                self.devnet.down(grace=5.0)
            except DevnetError as exc:
                raise DemoError(f"devnet down: {exc}") from None
            alive = [n for n, r in self.devnet.record.processes.items() if processes.is_running(r)]
            if alive:
                raise DemoError(f"still running after devnet down: {', '.join(alive)}")
            for record in self.devnet.record.processes.values():
                if record.directory is not None:
                    shutil.rmtree(self.devnet.dir.resolve(record.directory), ignore_errors=True)
            shutil.rmtree(self.devnet.path / LEDGER_DIR, ignore_errors=True)
        message = os.urandom(32)
        key_dir = recovery_key.key_dir(self.devnet.path)
        with self.narrator.step(
            "ers recover: the offline tool rebuilds the key and signs"
        ) as found:
            result = cli_json(
                [
                    "ers", "recover", str(bundle_path),
                    "--key", str(key_dir / keys.PRIVATE_FILE),
                    "--passphrase-file", str(self.devnet.secrets.path(recovery_key.SECRET)),
                    "--account", USER, "--path", path, "--epoch", str(epoch),
                    "--out", str(offline / "recovered-key.json"),
                    "--sign", message.hex(),
                ],
                ERS_TIMEOUT,
            )  # fmt: skip
            public = bytes.fromhex(result["public_key"])
            if public != expected:
                raise DemoError(
                    f"the recovered key {public.hex()} is not the network's derived key "
                    f"{expected.hex()}"
                )
            signature = Signature(
                request_id=-1,
                payload=message,
                path=path,
                domain_id=0,
                public_key=public,
                signature=bytes.fromhex(result["signature"]),
                latency_s=0.0,
                submit_latency_s=0.0,
                request_height=-1,
                response_height=-1,
                responder="ers recover",
            )
            self.verify(signature)
            found(f"signature verified with PyNaCl under {public.hex()[:16]}…")

    def _spare_operator(self, state: dict[str, Any]) -> str:
        members = {m["account"] for m in watch.participants(state)}
        spare = [
            name
            for name, entry in self.devnet.record.accounts.items()
            if entry.role == "operator"
            and name not in members
            and not any(p.account == name for p in self.devnet.record.processes.values())
        ]
        if not spare:
            raise DemoError("the devnet has no spare operator account to add a node for")
        return sorted(spare)[0]

    def _replay(self, account: str, since: int) -> MigrationProgress:
        async def run() -> MigrationProgress:
            async with AsyncLedgerClient(self.devnet.ledger_url) as ledger:
                watcher = MigrationWatcher(ledger, [account], probe_nodes=False)
                await watcher.start_from_height(since)
                return watcher.progress[account]

        try:
            return asyncio.run(run())
        except LedgerError as exc:
            raise DemoError(f"cannot read the migration's events: {exc}") from None

    def _settled_status(self, name: str) -> dict[str, Any]:
        """The node's /status once it has read the contract (role no longer 'starting')."""
        deadline = time.monotonic() + SIGN_TIMEOUT
        while True:
            status: dict[str, Any] = self.devnet.node_get(name, "/status")
            if status.get("role") not in (None, "starting"):
                return status
            if time.monotonic() > deadline:
                raise DemoError(
                    f"{name} never read the contract; read {self.devnet.log_path(name)}"
                )
            time.sleep(0.1)  # bounded: the node's first state read has no event of its own

    def run(self, scenarios: Sequence[str] = SCENARIOS) -> DemoReport:
        """``setup``, then each scenario in order; the report of everything done."""
        steps: dict[str, Callable[[], None]] = {
            "single-node-loss": self.single_node_loss,
            "quorum-loss": self.quorum_loss,
            "full-cluster-loss": self.full_cluster_loss,
            "cancelled-by-resharing": self.cancelled_by_resharing,
            "attestation-upgrade": self.attestation_upgrade,
            "restored-from-snapshot": self.restored_from_snapshot,
            "failover-to-standby": self.failover_to_standby,
            "every-machine-rebooted": self.every_machine_rebooted,
            "ledger-machine-lost": self.ledger_machine_lost,
            "company-gone": self.company_gone,
        }
        unknown = [name for name in scenarios if name not in steps]
        if unknown:
            raise DemoError(f"unknown scenario {unknown[0]!r} (known: {', '.join(SCENARIOS)})")
        self.setup()
        for name in scenarios:
            self.scenario = name
            started = time.monotonic()
            passed = False
            try:
                steps[name]()
                passed = True
            finally:
                elapsed = time.monotonic() - started
                self.report.scenarios.append(ScenarioResult(name, passed, elapsed))
        self.scenario = "setup"
        return self.report


def parse_only(text: str) -> tuple[str, ...]:
    """``--only NAME[,NAME]``: known scenario names, in the story's order, each once."""
    names = [name.strip() for name in text.split(",") if name.strip()]
    if not names:
        raise DemoError(f"--only needs scenario names (known: {', '.join(SCENARIOS)})")
    unknown = [name for name in names if name not in SCENARIOS]
    if unknown:
        raise DemoError(f"unknown scenario {unknown[0]!r} (known: {', '.join(SCENARIOS)})")
    return tuple(name for name in SCENARIOS if name in names)


def _cli(
    args: Sequence[str], timeout: float, env: Mapping[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    try:
        return forkserver.run(
            [sys.executable, "-m", "quorumkeep.cli.main", *args],
            capture_output=True,
            text=True,
            timeout=timeout,
            env={**os.environ, **(env or {})},
        )
    except subprocess.TimeoutExpired:
        raise DemoError(f"quorumkeep {args[0]} {args[1]} ran over {timeout:g} s") from None


def cli_json(args: Sequence[str], timeout: float, env: Mapping[str, str] | None = None) -> Any:
    """Run ``quorumkeep ARGS`` as its own process; its stdout's JSON (DemoError if it fails)."""
    done = _cli(args, timeout, env)
    if done.returncode != 0:
        error = done.stderr.strip().splitlines()[-1:] or ["(no output)"]
        raise DemoError(f"quorumkeep {args[0]} {args[1]} failed: {error[0]}")
    with contextlib.suppress(ValueError):
        return json.loads(done.stdout)
    try:
        return json.loads(done.stdout.strip().splitlines()[-1])
    except (ValueError, IndexError):
        raise DemoError(f"quorumkeep {args[0]} {args[1]} printed no JSON") from None


def cli_error(args: Sequence[str], timeout: float) -> str:
    """Run ``quorumkeep ARGS``, which must fail; its one-line error."""
    done = _cli(args, timeout)
    if done.returncode == 0:
        raise DemoError(f"quorumkeep {args[0]} {args[1]} succeeded where it must refuse")
    return (done.stderr.strip().splitlines()[-1:] or ["(no output)"])[0]


def _metric(text: str, name: str) -> float:
    """The value of an unlabelled metric in Prometheus text (0 if absent)."""
    for line in text.splitlines():
        if line.startswith(name + " "):
            return float(line.rpartition(" ")[2])
    return 0.0


def summary_table(report: DemoReport) -> Table:
    table = Table(title="recovery time: start_node_migration → conclude (ledger time)")
    table.add_column("scenario", no_wrap=True)
    table.add_column("concluded", justify="right")
    table.add_column("cancelled", justify="right")
    table.add_column("max seconds", justify="right")
    table.add_column("goal", justify="center")
    per = report.seconds_by_scenario()
    for scenario in SCENARIOS:
        done = [m for m in report.migrations if m.scenario == scenario]
        if not done and scenario not in report.scenario_seconds:
            continue
        seconds = per.get(scenario, [])
        goal = goal_seconds(scenario)
        met = all(s <= goal for s in seconds)
        table.add_row(
            scenario,
            str(sum(m.concluded for m in done)),
            str(sum(not m.concluded for m in done)),
            f"{max(seconds):.3f}" if seconds else "-",
            (f"[green]≤ {goal:g} s[/green]" if met else f"[red]> {goal:g} s[/red]")
            if seconds
            else "-",
        )
    return table


def run_demo(
    directory: Path | None,
    narrator: Narrator,
    scenarios: Sequence[str] = SCENARIOS,
) -> DemoReport:
    """The whole demo in ``directory`` (a new temporary one if None, removed after a
    success). Every process is stopped at the end; on failure the directory stays for its
    logs and the DemoError names them. Its processes start through a fork server
    (devnet/forkserver.py): the one named in the environment, else one of the demo's own."""
    with contextlib.ExitStack() as stack:
        if not os.environ.get(forkserver.ENV):
            stack.enter_context(forkserver.serving())
        return _run_demo(directory, narrator, scenarios)


def _run_demo(directory: Path | None, narrator: Narrator, scenarios: Sequence[str]) -> DemoReport:
    temporary = directory is None
    path = Path(tempfile.mkdtemp(prefix="quorumkeep-demo-")) / "devnet" if temporary else directory
    assert path is not None
    narrator.note(f"devnet directory: {path}")
    demo: Demo | None = None
    ok = False
    try:
        narrator.section("setup")
        ledger = "etcd" if ETCD_SCENARIOS & set(scenarios) else "sqlite"
        demo = Demo.create(path, narrator, ledger=ledger)
        demo.run(scenarios)
        ok = True
        return demo.report
    except DemoError as exc:
        failure = DemoError(f"{exc} (devnet directory kept: {path})")
        failure.report = demo.report if demo is not None else None
        raise failure from None
    finally:
        if demo is not None:
            demo.close()
        _stop(path)
        if ok and temporary:
            shutil.rmtree(path.parent, ignore_errors=True)


def _stop(path: Path) -> None:
    """Stop whatever the devnet in ``path`` still runs (nothing is left behind)."""
    try:
        devnet = Devnet(path)
    except DevnetError:
        return
    with contextlib.suppress(DevnetError):
        devnet.down(grace=5.0)
    left = [p for p in devnet.record.processes.values() if processes.is_running(p)]
    for record in left:
        processes.kill(record)
