"""A local quorumkeep network of real processes: one ledger and N nodes on 127.0.0.1.

``Devnet.up`` creates it (ledger with operator and user accounts, node directories, signer
keys, contract ``init``, domain 0) and returns once domain 0 has a key; the other methods
drive an existing devnet through its ``DIR/devnet.json`` record (layout: ``layout.py``).
Every operator action goes through the ledger exactly as an operator's CLI would: signed
by that operator's full-access key, which the devnet keeps sealed in ``DIR/accounts``.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import subprocess
import time
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

import httpx
from nacl.signing import SigningKey

from quorumkeep.crypto.seal import (
    INTERACTIVE_MEMLIMIT,
    INTERACTIVE_OPSLIMIT,
    MIN_MEMLIMIT,
    MIN_OPSLIMIT,
    PassphraseParams,
)
from quorumkeep.devnet import attestation, backups, processes, providers, recovery_key, watch
from quorumkeep.devnet.defaults import DEFAULT_UP_TIMEOUT, START_TIMEOUT, STOP_GRACE
from quorumkeep.devnet.errors import DevnetError
from quorumkeep.devnet.etcd import EtcdMember, etcd_available, leader_url, member_argv
from quorumkeep.devnet.etcd import healthy as etcd_healthy
from quorumkeep.devnet.layout import (
    ACCOUNTS_DIR,
    LEDGER_DIR,
    LOGS_DIR,
    NODES_DIR,
    PHASE_READY,
    AccountRecord,
    DevnetDir,
    DevnetRecord,
)
from quorumkeep.devnet.processes import ProcessRecord
from quorumkeep.devnet.secrets import Secrets
from quorumkeep.ledger.client import AccountSigner, LedgerClient
from quorumkeep.ledger.errors import ContractCallFailed
from quorumkeep.ledger.etcd import EtcdError, EtcdSync
from quorumkeep.ledger.genesis import KEYS_DIR, init_ledger
from quorumkeep.ledger.keyfile import (
    KeyFileError,
    load_signer,
    open_key,
    read_key_file,
    seal_key,
    write_key_file,
)
from quorumkeep.ledger.replicated import DEFAULT_PREFIX
from quorumkeep.ledger.storage import StorageError
from quorumkeep.ledger.transaction import FULL_ACCESS, MAX_ACTIONS, AddKey
from quorumkeep.operator.actions import node_permission
from quorumkeep.wire import tls

LEDGER = "ledger"
LEDGER_2 = "ledger-2"
ETCD_DIR = "etcd"
PROPOSER_KEY = DEFAULT_PREFIX.encode() + b"proposer"
ETCD_KIND = "etcd"
ETCD_MEMBERS = 3
LEDGER_STORES = ("sqlite", "etcd")
USER = "user"
NODE_PASSPHRASE_ENV = "QUORUMKEEP_PASSPHRASE"
DEFAULT_SIGN_TIMEOUT_BLOCKS = 100_000
"""Blocks a sign request stays pending. Under load the ledger makes hundreds of blocks a
second, so the contract's default (600) could expire requests that are merely queued."""
NODE_KDF_COST = "interactive"
"""Argon2id cost of the nodes' storage keys: a devnet restarts nodes often, and its
passphrases sit in DIR/secrets anyway."""
NODE_INIT_TIMEOUT = 60.0
HTTP_TIMEOUT = 5.0

Progress = Callable[[str], None]


def operator_name(index: int) -> str:
    return f"op{index}"


def _quiet(_: str) -> None:
    pass


class Devnet:
    """An existing devnet directory. Methods that change it hold ``DIR/.lock``."""

    def __init__(self, path: Path | str, *, progress: Progress | None = None) -> None:
        self.dir = DevnetDir(path)
        self.secrets = Secrets(self.dir.path)
        self.progress = progress or _quiet
        self.record: DevnetRecord = self.dir.load()
        self._signers: dict[str, AccountSigner] = {}
        # Nodes running when a wait began: one of them dying ends the wait early.
        self._expected_alive: dict[str, bool] = {}
        # Seconds spent in the phases of the last up/reshare (for benchmarks and reports).
        self.timings: dict[str, float] = {}

    # --- creation --------------------------------------------------------------------

    @classmethod
    def up(
        cls,
        path: Path | str,
        *,
        nodes: int,
        threshold: int,
        resume: bool = False,
        spare_operators: int = 1,
        timeout: float = DEFAULT_UP_TIMEOUT,
        sign_timeout_blocks: int = DEFAULT_SIGN_TIMEOUT_BLOCKS,
        backup: bool = True,
        ledger: str = "sqlite",
        key_source: str = "passphrase",
        progress: Progress | None = None,
    ) -> Devnet:
        """Create a devnet in ``path`` (or, with ``resume``, restart an existing one's
        stopped processes) and return once the contract is Running with domain 0's key.

        With ``backup`` every operator with a node also gets a backup service (its own
        process and directory), registered in the contract by the operator.

        ``key_source="peers"``: every operator with a node also runs a key provider
        (registered before ``init``), and every node's storage key is dealt 2-of-m to the
        providers of the other operators (docs/key-provider-protocol.md).

        ``ledger="etcd"``: a 3-member etcd cluster and two ledger servers on it instead of
        one SQLite ledger; every client is given both servers' URLs.

        An existing devnet is never overwritten: without ``resume`` it is refused, running
        or not; a directory holding anything else is refused too.
        """
        directory = DevnetDir(path)
        report = progress or _quiet
        if directory.exists():
            existing = cls(path, progress=progress)
            if not resume:
                running = [p.name for p in existing.record.processes.values() if existing.alive(p)]
                if running:
                    raise DevnetError(
                        "devnet_running",
                        f"a devnet is running in {directory.path} ({', '.join(running)}); "
                        "use `devnet status`, or `devnet down` first",
                    )
                raise DevnetError(
                    "devnet_exists",
                    f"{directory.path} already holds a devnet (stopped); restart it with "
                    "`devnet up --resume`, or remove the directory for a new one",
                )
            existing.resume(timeout=timeout)
            return existing
        if resume:
            raise DevnetError("no_devnet", f"{directory.path} holds no devnet to resume")
        if directory.path.exists() and any(directory.path.iterdir()):
            raise DevnetError(
                "directory_not_empty",
                f"{directory.path} is not empty and holds no devnet; pick a new directory",
            )
        if nodes < 1:
            raise DevnetError("invalid_arguments", "--nodes must be at least 1")
        if not 2 <= threshold <= nodes:
            raise DevnetError(
                "invalid_arguments", f"--threshold must be in 2..{nodes} (the node count)"
            )
        if spare_operators < 0:
            raise DevnetError("invalid_arguments", "--spare-operators must be >= 0")
        if ledger not in LEDGER_STORES:
            raise DevnetError("invalid_arguments", "--ledger must be sqlite or etcd")
        if key_source not in ("passphrase", "peers"):
            raise DevnetError("invalid_arguments", "--key-source must be passphrase or peers")
        if key_source == "peers" and nodes < 3:
            raise DevnetError(
                "invalid_arguments", "--key-source peers needs at least 3 nodes (k = 2 of others)"
            )
        if ledger == "etcd" and not etcd_available():
            raise DevnetError(
                "etcd_missing", "--ledger etcd needs etcd (Debian's etcd-server; make setup)"
            )
        directory.path.mkdir(parents=True, exist_ok=True)
        with directory.locked():
            record = DevnetRecord(threshold=threshold, nodes=nodes, key_source=key_source)
            directory.save(record)
            devnet = cls(path, progress=report)
            try:
                devnet._create(spare_operators, sign_timeout_blocks, timeout, backup, ledger)
            except BaseException:
                # Leave nothing running behind a failed start; keep the logs to read.
                with contextlib.suppress(DevnetError):
                    devnet._stop_all(grace=2.0)
                raise
        return devnet

    def _create(
        self,
        spare_operators: int,
        sign_timeout_blocks: int,
        timeout: float,
        backup: bool,
        store: str = "sqlite",
    ) -> None:
        record = self.record
        operators = [operator_name(i) for i in range(1, record.nodes + spare_operators + 1)]
        self.progress(f"creating the ledger with accounts {', '.join(operators)}, {USER}")
        self._create_accounts([*operators, USER])
        if store == "etcd":
            self._start_etcd(timeout)
            ledger = self._start_ledger()
            second = self._start_ledger(LEDGER_2)
            self.record.ledger_url = ",".join(
                f"http://127.0.0.1:{r.ports['http']}" for r in (ledger, second)
            )
            self.save()
            self._wait_ledger_healthy(ledger)  # the first publishes the genesis to etcd
            self._wait_ledger_healthy(second)
        else:
            ledger = self._start_ledger()
        attestation.create_platform_key(self.dev_platform_key)
        names = [operator_name(i) for i in range(1, record.nodes + 1)]
        peers = record.key_source == "peers"
        if peers:
            # Providers first: a node deals its storage key to them at `node init`, before
            # the contract exists (they register at genesis).
            self.progress(f"starting {len(names)} key providers")
            self._wait_ledger_healthy(ledger)
            provider_records = providers.init_providers(self, names)
            for name in names:
                providers.register(self, name)
            for provider in provider_records:
                self._spawn(provider)
            for provider in provider_records:
                providers.wait_healthy(self, provider.name)
        self.progress(f"initializing {len(names)} nodes")
        infos = self.init_nodes([(name, name) for name in names])  # while the ledger starts
        services = []
        if backup:
            self.progress(f"initializing {len(names)} backup services")
            services = backups.init_backup_services(self, names)
        self._wait_ledger_healthy(ledger)
        with self.client() as client:
            for name in names:
                self._authorize(client, name, infos[name])
            self.progress(f"init: {len(names)} participants, threshold {record.threshold}")
            client.call(
                self.signer(names[0]),
                "init",
                {
                    "participants": [infos[n] for n in names],
                    "threshold": record.threshold,
                    "config": {"sign_timeout_blocks": sign_timeout_blocks},
                    "attestation": attestation.genesis(self.dev_platform_key),
                },
            )
            for service in services:
                assert service.account is not None
                backups.register(self, service.account)
            if peers:
                self.progress("recording where each node's storage key is held")
                for name in names:
                    providers.record_deal(self, name)
            self.progress("starting the nodes" + (" and backup services" if services else ""))
            self._spawn_many(names)
            self._spawn_many([service.name for service in services])
            for name in names:
                self.wait_node_healthy(name, timeout=timeout)
            for service in services:
                backups.wait_healthy(self, service.name, timeout=timeout)
            self.progress("voting domain 0 (every operator)")
            domain = {"domain_id": 0, "scheme": "Ed25519", **self._backup_policy(backup)}
            for name in names:
                client.call(self.signer(name), "vote_add_domains", {"domains": [domain]})
            keygen_started = time.monotonic()  # the last vote moved the contract on
            self.progress("waiting for the distributed key generation of domain 0")
            self.wait_contract(
                client, watch.running_with_domain(0), timeout=timeout, what="domain 0's key"
            )
            self.timings["dkg"] = time.monotonic() - keygen_started
            if backup:
                self.progress(
                    "backup before use: waiting for every operator's backup service to confirm "
                    "its backup of domain 0"
                )
                self.timings["backup_gate"] = self.wait_backup_gate(client, 0, timeout=timeout)
            self.wait_contract(
                client, attestation.all_attested, timeout=timeout, what="every node's attestation"
            )
            self.progress("voting domain 0's emergency recovery key (every operator)")
            recovery_key.create_and_vote(self, client, names)
        record.phase = PHASE_READY
        self.save()

    def _create_accounts(self, names: Sequence[str]) -> None:
        """Genesis with ``names``; each key file re-sealed under that account's passphrase.

        ``ledger init`` seals every key under one passphrase; a devnet gives each
        operator its own, as separate operators would have.
        """
        ledger_dir = self.dir.resolve(LEDGER_DIR)
        genesis_passphrase = os.urandom(32).hex().encode()
        try:
            created = init_ledger(
                ledger_dir,
                names,
                genesis_passphrase,
                passphrase_cost=(MIN_OPSLIMIT, MIN_MEMLIMIT),  # re-sealed just below
            )
        except StorageError as exc:
            raise DevnetError("ledger_init_failed", str(exc)) from None
        self.record.chain_id = created.chain_id
        for name in names:
            secret = f"account-{name}"
            passphrase = self.secrets.create(secret)
            relative = f"{ACCOUNTS_DIR}/{name}.json"
            try:
                signing_key = open_key(read_key_file(created.key_files[name]), genesis_passphrase)
                write_key_file(
                    self.dir.resolve(relative),
                    seal_key(
                        signing_key,
                        passphrase,
                        account=name,
                        params=PassphraseParams.new(
                            os.urandom, INTERACTIVE_OPSLIMIT, INTERACTIVE_MEMLIMIT
                        ),
                    ),
                )
            except KeyFileError as exc:
                raise DevnetError("account_key_failed", str(exc)) from None
            self.record.accounts[name] = AccountRecord(
                name=name,
                role=USER if name == USER else "operator",
                key_file=relative,
                secret=secret,
                public_key=created.public_keys[name],
            )
            self._signers[name] = AccountSigner(name, signing_key)
        shutil.rmtree(ledger_dir / KEYS_DIR, ignore_errors=True)
        self.save()

    # --- the record --------------------------------------------------------------------

    def save(self) -> None:
        self.dir.save(self.record)

    def reload(self) -> None:
        self.record = self.dir.load()

    @property
    def path(self) -> Path:
        return self.dir.path

    @property
    def ledger_url(self) -> str:
        if self.record.ledger_url is None:
            raise DevnetError("no_ledger", "this devnet has no ledger yet")
        return self.record.ledger_url

    def client(self) -> LedgerClient:
        return LedgerClient(self.ledger_url)

    def etcd_names(self) -> list[str]:
        return [r.name for r in self.record.processes.values() if r.kind == ETCD_KIND]

    def etcd_leader(self) -> str | None:
        """The etcd member that is the Raft leader (replicated ledger), by its status."""
        by_url = {_etcd_url(self.process(n)): n for n in self.etcd_names()}
        url = leader_url(list(by_url))
        return None if url is None else by_url[url]

    def ledger_proposer(self) -> str | None:
        """The ledger server that proposes blocks (replicated ledger), by its etcd key."""
        urls = [_etcd_url(self.process(n)) for n in self.etcd_names()]
        if not urls:
            return None
        etcd = EtcdSync(urls)
        try:
            kvs, _, _ = etcd.range(PROPOSER_KEY)
        except EtcdError:
            return None
        finally:
            etcd.close()
        if not kvs:
            return None
        url = str(json.loads(kvs[0].value).get("url", ""))
        for record in self.record.processes.values():
            if record.kind == "ledger" and url == f"http://127.0.0.1:{record.ports['http']}":
                return record.name
        return None

    def process(self, name: str) -> ProcessRecord:
        found = self.record.processes.get(name)
        if found is None:
            known = ", ".join(self.record.processes) or "none"
            raise DevnetError("unknown_process", f"no process {name!r} in this devnet ({known})")
        return found

    def node_names(self) -> list[str]:
        return self.record.node_names()

    def log_path(self, name: str) -> Path:
        return self.dir.resolve(self.process(name).log)

    def alive(self, record: ProcessRecord | str) -> bool:
        if isinstance(record, str):
            record = self.process(record)
        return processes.is_running(record)

    def signer(self, account: str) -> AccountSigner:
        """The account's full-access key, unsealed with its devnet passphrase."""
        cached = self._signers.get(account)
        if cached is not None:
            return cached
        entry = self.record.accounts.get(account)
        if entry is None:
            raise DevnetError("unknown_account", f"the devnet has no account {account!r}")
        try:
            signer = load_signer(
                self.dir.resolve(entry.key_file), self.secrets.get(entry.secret), account
            )
        except KeyFileError as exc:
            raise DevnetError("account_key_failed", str(exc)) from None
        self._signers[account] = signer
        return signer

    def user_signers(self, count: int, account: str = USER) -> list[AccountSigner]:
        """The account's key and ``count - 1`` extra full-access keys added to it, so that
        as many transactions can be in flight at once (each key's nonces go in order).
        The extra keys live in memory only."""
        main = self.signer(account)
        extra = [AccountSigner(account, SigningKey(os.urandom(32))) for _ in range(count - 1)]
        with self.client() as client:
            for start in range(0, len(extra), MAX_ACTIONS):
                batch = extra[start : start + MAX_ACTIONS]
                outcome = client.submit(main, [AddKey(s.public_key, FULL_ACCESS) for s in batch])
                if not outcome.ok:
                    raise DevnetError(
                        "add_key_failed", f"adding keys to {account}: {outcome.error_message}"
                    )
        return [main, *extra]

    def key_file(self, account: str) -> tuple[Path, Path]:
        """(key file, passphrase file) of a devnet account."""
        entry = self.record.accounts.get(account)
        if entry is None:
            raise DevnetError("unknown_account", f"the devnet has no account {account!r}")
        return self.dir.resolve(entry.key_file), self.secrets.path(entry.secret)

    # --- processes -------------------------------------------------------------------------

    def _ledger_argv(self, port: int) -> list[str]:
        etcd = [r for r in self.record.processes.values() if r.kind == ETCD_KIND]
        store = ["--store", "etcd", "--etcd", ",".join(_etcd_url(r) for r in etcd)] if etcd else []
        return processes.cli_argv(
            "ledger",
            "serve",
            "--data",
            str(self.dir.resolve(LEDGER_DIR)),
            "--listen",
            f"127.0.0.1:{port}",
            *store,
        )

    def _etcd_members(self) -> list[EtcdMember]:
        return [
            EtcdMember(
                r.name,
                self.dir.resolve(f"{ETCD_DIR}/{r.name}"),
                r.ports["client"],
                r.ports["peer"],
            )
            for r in self.record.processes.values()
            if r.kind == ETCD_KIND
        ]

    def _etcd_argv(self, name: str) -> list[str]:
        members = self._etcd_members()
        member = next(m for m in members if m.name == name)
        return member_argv(member, members, f"quorumkeep-devnet-{self.path.name}")

    def _start_etcd(self, timeout: float) -> None:
        """Record and start a 3-member etcd cluster (data under DIR/etcd/)."""
        taken = self._taken_ports()
        for i in range(1, ETCD_MEMBERS + 1):
            client = processes.free_port(taken)
            taken.add(client)
            peer = processes.free_port(taken)
            taken.add(peer)
            name = f"etcd-{i}"
            self.record.processes[name] = ProcessRecord(
                name=name,
                kind=ETCD_KIND,
                argv=[],
                log=f"{LOGS_DIR}/{name}.log",
                ports={"client": client, "peer": peer},
            )
        self.progress(f"starting a {ETCD_MEMBERS}-member etcd cluster")
        for record in list(self.record.processes.values()):
            if record.kind == ETCD_KIND:
                self._spawn(record)
        self._wait_etcd(timeout)

    def _wait_etcd(self, timeout: float = START_TIMEOUT) -> None:
        urls = [_etcd_url(r) for r in self.record.processes.values() if r.kind == ETCD_KIND]
        deadline = time.monotonic() + timeout
        while not any(etcd_healthy(u) for u in urls):
            if time.monotonic() > deadline:
                raise DevnetError(
                    "etcd_not_ready",
                    f"etcd has no leader after {timeout:g} s; read {self.dir.resolve(LOGS_DIR)}",
                )
            time.sleep(0.1)

    def _node_argv(self, record: ProcessRecord) -> list[str]:
        assert record.directory is not None
        config = self.dir.resolve(record.directory) / "node.toml"
        return processes.cli_argv("node", "run", "--config", str(config))

    def _taken_ports(self) -> set[int]:
        return {port for p in self.record.processes.values() for port in p.ports.values()}

    def _start_ledger(self, name: str = LEDGER) -> ProcessRecord:
        """Spawn a ledger server on a free port (the caller waits for its health)."""
        port = processes.free_port(self._taken_ports())
        record = ProcessRecord(
            name=name,
            kind="ledger",
            argv=self._ledger_argv(port),
            log=f"{LOGS_DIR}/{name}.log",
            ports={"http": port},
        )
        self.record.processes[name] = record
        self.record.ledger_url = f"http://127.0.0.1:{port}"
        self.progress(f"starting the ledger on {self.record.ledger_url}")
        self._spawn(record)
        return record

    def _spawn(self, record: ProcessRecord) -> None:
        """(Re)start a recorded process with a fresh argv (DIR may have moved) and its
        secrets in the environment."""
        if record.kind == "ledger":
            record.argv = self._ledger_argv(record.ports["http"])
        elif record.kind == ETCD_KIND:
            (self.dir.resolve(ETCD_DIR)).mkdir(parents=True, exist_ok=True)
            record.argv = self._etcd_argv(record.name)
        elif record.kind == "node":
            record.argv = self._node_argv(record)
        elif record.kind == backups.BACKUP_KIND:
            record.argv = backups.backup_argv(self.dir, record)
        elif record.kind == providers.PROVIDER_KIND:
            record.argv = providers.provider_argv(self.dir, record)
        env = {var: self.secrets.get(secret) for var, secret in record.env_secrets.items()}
        processes.spawn(record, self.dir.path, env)
        self.save()

    def _spawn_many(self, names: Sequence[str]) -> None:
        for name in names:
            self._spawn(self.process(name))

    def _wait_ledger_healthy(self, record: ProcessRecord, timeout: float = START_TIMEOUT) -> None:
        url = f"http://127.0.0.1:{record.ports['http']}/health"
        deadline = time.monotonic() + timeout
        while True:
            self._require_alive(record)
            try:
                if httpx.get(url, timeout=1.0).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            if time.monotonic() > deadline:
                raise DevnetError(
                    "ledger_not_ready",
                    f"the ledger did not answer /health within {timeout:g} s; "
                    f"read {self.log_path(record.name)}",
                )
            time.sleep(0.05)  # bounded start-up wait: nothing to long-poll before it listens

    def _require_alive(self, record: ProcessRecord) -> None:
        if not processes.is_running(record):
            tail = processes.log_tail(self.dir.resolve(record.log))
            raise DevnetError(
                "process_exited",
                f"{record.name} exited; read {self.dir.resolve(record.log)}"
                + (f" (last lines: {tail})" if tail else ""),
            )

    def start(self, name: str, *, wait: bool = True, timeout: float = START_TIMEOUT) -> bool:
        """Start a stopped process; False if it was already running. Waits for its health
        endpoint unless ``wait`` is False."""
        with self.dir.locked():
            self.reload()
            record = self.process(name)
            if processes.is_running(record):
                return False
            if record.retired:
                raise DevnetError("process_retired", f"{name} is retired; it is never restarted")
            self._spawn(record)
        if wait:
            if record.kind == "ledger":
                self._wait_ledger_healthy(record, timeout)
            elif record.kind == ETCD_KIND:
                self._wait_etcd(timeout)
            elif record.kind == "node":
                self.wait_node_healthy(name, timeout=timeout)
            elif record.kind == backups.BACKUP_KIND:
                backups.wait_healthy(self, name, timeout=timeout)
            elif record.kind == providers.PROVIDER_KIND:
                providers.wait_healthy(self, name, timeout=timeout)
        return True

    def kill(self, name: str) -> bool:
        """SIGKILL one process (a crash); False if it was not running."""
        with self.dir.locked():
            self.reload()
            record = self.process(name)
            return processes.kill(record)

    def stop(self, name: str, *, grace: float = STOP_GRACE) -> bool:
        """SIGTERM one process, SIGKILL after ``grace`` s; False if it was not running."""
        with self.dir.locked():
            self.reload()
            return bool(processes.stop([self.process(name)], grace=grace))

    def retire(self, name: str, *, grace: float = STOP_GRACE) -> None:
        """Stop a process for good (a node replaced by a migration): `start` and `up
        --resume` leave it alone; its record and log stay."""
        with self.dir.locked():
            self.reload()
            record = self.process(name)
            processes.stop([record], grace=grace)
            record.retired = True
            self.save()

    def down(self, *, grace: float = STOP_GRACE) -> list[str]:
        """Stop every process the devnet started (nodes first, then the ledger)."""
        with self.dir.locked():
            self.reload()
            return self._stop_all(grace=grace)

    def _stop_all(self, *, grace: float) -> list[str]:
        records = list(self.record.processes.values())
        others = [r for r in records if r.kind not in ("ledger", ETCD_KIND)]
        ledgers = [r for r in records if r.kind == "ledger"]
        etcd = [r for r in records if r.kind == ETCD_KIND]
        stopped = (
            processes.stop(others, grace=grace)
            + processes.stop(ledgers, grace=grace)
            + processes.stop(etcd, grace=grace)
        )
        return [r.name for r in stopped]

    def resume(self, *, timeout: float = DEFAULT_UP_TIMEOUT) -> list[str]:
        """Restart every stopped process; returns their names. The devnet must have
        finished its first start."""
        with self.dir.locked():
            self.reload()
            if self.record.phase != PHASE_READY:
                raise DevnetError(
                    "devnet_incomplete",
                    f"the devnet in {self.path} never finished starting; read its logs in "
                    f"{self.dir.resolve(LOGS_DIR)}, then remove the directory and run "
                    "`devnet up` again",
                )
            started = []
            etcd = [r for r in self.record.processes.values() if r.kind == ETCD_KIND]
            for record in etcd:
                if not processes.is_running(record):
                    self.progress(f"restarting {record.name}")
                    self._spawn(record)
                    started.append(record.name)
            if etcd:
                self._wait_etcd(timeout)
            ledgers = [r for r in self.record.processes.values() if r.kind == "ledger"]
            for ledger in ledgers:
                if not processes.is_running(ledger):
                    self.progress(f"restarting {ledger.name}")
                    self._spawn(ledger)
                    started.append(ledger.name)
            for ledger in ledgers:
                self._wait_ledger_healthy(ledger)
            for record in self.record.processes.values():
                stopped = record.pid is not None and not processes.is_running(record)
                if record.kind not in ("ledger", ETCD_KIND) and stopped and not record.retired:
                    self.progress(f"restarting {record.name}")
                    self._spawn(record)
                    started.append(record.name)
        for name in started:
            if self.process(name).kind == "node":
                self.wait_node_healthy(name, timeout=timeout)
            elif self.process(name).kind == backups.BACKUP_KIND:
                backups.wait_healthy(self, name, timeout=timeout)
            elif self.process(name).kind == providers.PROVIDER_KIND:
                providers.wait_healthy(self, name, timeout=timeout)
        with self.client() as client:
            self.wait_contract(
                client, watch.running_with_domain(0), timeout=timeout, what="domain 0's key"
            )
        return started

    # --- nodes -----------------------------------------------------------------------------

    def init_nodes(
        self, nodes: Sequence[tuple[str, str]], key_source: str | None = None
    ) -> dict[str, dict[str, Any]]:
        """``quorumkeep node init`` for each (node name, operator account), concurrently.

        Records each node as a (not yet started) process and returns its participant info.
        ``key_source`` (default: the devnet's) ``peers`` deals each node's storage key to
        the registered key providers of the other operators instead of a passphrase.
        """
        peers = (key_source or self.record.key_source) == "peers"
        pending: list[tuple[ProcessRecord, subprocess.Popen[bytes]]] = []
        try:
            for name, account in nodes:
                if name in self.record.processes:
                    raise DevnetError("node_exists", f"the devnet already has a node {name!r}")
                if account not in self.record.accounts:
                    raise DevnetError("unknown_account", f"the devnet has no account {account!r}")
                taken = self._taken_ports()
                p2p = processes.free_port(taken)
                web = processes.free_port({*taken, p2p})
                directory = f"{NODES_DIR}/{name}"
                secret = f"node-{name}"
                record = ProcessRecord(
                    name=name,
                    kind="node",
                    argv=[],
                    log=f"{LOGS_DIR}/{name}.log",
                    ports={"p2p": p2p, "web": web},
                    env_secrets={} if peers else {NODE_PASSPHRASE_ENV: secret},
                    account=account,
                    directory=directory,
                )
                self.record.processes[name] = record
                env: dict[str, bytes] = {}
                if not peers:
                    env[NODE_PASSPHRASE_ENV] = self.secrets.create(secret)
                argv = processes.cli_argv(
                    "node",
                    "init",
                    "--account",
                    account,
                    "--dir",
                    str(self.dir.resolve(directory)),
                    "--ledger",
                    self.ledger_url,
                    "--p2p",
                    f"127.0.0.1:{p2p}",
                    "--web",
                    f"127.0.0.1:{web}",
                    *(("--key-source", "peers") if peers else ("--kdf-cost", NODE_KDF_COST)),
                    *attestation.cli_options(self.dev_platform_key),
                )
                child = processes.start_setup(argv, self.path, env)
                pending.append((record, child))
            self.save()
            infos: dict[str, dict[str, Any]] = {}
            for record, child in pending:
                out = processes.finish_setup(
                    child,
                    self.dir.resolve(record.log),
                    command="node init",
                    subject=record.name,
                    code="node_init_failed",
                    timeout=NODE_INIT_TIMEOUT,
                )
                infos[record.name] = _participant_info(out, record.name)
            return infos
        finally:
            processes.kill_unfinished(child for _, child in pending)

    @property
    def dev_platform_key(self) -> Path:
        """The development platform key file (docs/attestation.md)."""
        return self.dir.resolve(attestation.DEV_PLATFORM_KEY_FILE)

    def participant_info(self, name: str) -> dict[str, Any]:
        """A node's participant info, from its public identity file and node.toml."""
        record = self.process(name)
        if record.kind != "node" or record.directory is None:
            raise DevnetError("not_a_node", f"{name} is not a node")
        directory = self.dir.resolve(record.directory)
        try:
            identity = json.loads((directory / "identity.json").read_bytes())
        except (OSError, ValueError):
            raise DevnetError("node_missing", f"{directory} holds no node identity") from None
        return {
            "account": record.account,
            "url": f"127.0.0.1:{record.ports['p2p']}",
            "web_url": f"https://127.0.0.1:{record.ports['web']}",
            "tls_public_key": identity["tls_public_key"],
            "signer_public_key": identity["signer_public_key"],
        }

    def _authorize(self, client: LedgerClient, name: str, info: dict[str, Any]) -> None:
        account = self.process(name).account
        assert account is not None
        outcome = client.add_key(
            self.signer(account),
            bytes.fromhex(info["signer_public_key"]),
            node_permission(),
        )
        if not outcome.ok and outcome.error_code != "AccessKeyExists":
            raise DevnetError(
                "add_key_failed",
                f"adding {name}'s signer key to {account}: {outcome.error_message}",
            )

    def add_node(self, account: str, name: str | None = None, *, start: bool = True) -> str:
        """A new node for ``account`` (init, signer key, start); its name is returned.

        It takes part once the contract lists it: by a resharing (``reshare``), or, for a
        replacement node, by a migration.
        """
        return self.add_nodes([account], names=None if name is None else [name], start=start)[0]

    def add_nodes(
        self,
        accounts: Sequence[str],
        *,
        names: Sequence[str] | None = None,
        start: bool = True,
        key_source: str | None = None,
    ) -> list[str]:
        """``add_node`` for several accounts at once (their ``node init`` run concurrently,
        as separate machines would); returns the new nodes' names in ``accounts`` order."""
        with self.dir.locked():
            self.reload()
            chosen: list[str] = []
            for index, account in enumerate(accounts):
                name = names[index] if names is not None else None
                if name is None:
                    name = account
                    suffix = 2
                    while name in self.record.processes or name in chosen:
                        name = f"{account}-{suffix}"
                        suffix += 1
                chosen.append(name)
            infos = self.init_nodes(list(zip(chosen, accounts, strict=True)), key_source)
            with self.client() as client:
                for name in chosen:
                    self._authorize(client, name, infos[name])
            if start:
                self._spawn_many(chosen)
        return chosen

    def provider_names(self) -> list[str]:
        return [n for n, p in self.record.processes.items() if p.kind == providers.PROVIDER_KIND]

    def add_providers(self, accounts: Sequence[str]) -> list[str]:
        """A key provider for each account (init, registered by the operator, started);
        their process names. Each account must be a participant or a candidate."""
        with self.dir.locked():
            self.reload()
            records = providers.init_providers(self, accounts)
            self.save()
            for account in accounts:
                providers.register(self, account)
            for record in records:
                self._spawn(record)
        for record in records:
            providers.wait_healthy(self, record.name)
        return [record.name for record in records]

    def backup_names(self) -> list[str]:
        return [n for n, p in self.record.processes.items() if p.kind == backups.BACKUP_KIND]

    def add_backup_service(self, account: str, *, start: bool = True) -> str:
        """A backup service for ``account`` (init, registered by the operator, started);
        its process name is returned. The account must be a participant or a candidate
        (the contract's rule for ``register_backup_service``)."""
        with self.dir.locked():
            self.reload()
            (service,) = backups.init_backup_services(self, [account])
            self.save()
            backups.register(self, account)
            if start:
                self._spawn(service)
        if start:
            backups.wait_healthy(self, service.name)
        return service.name

    def backup_status(self, name: str) -> dict[str, Any]:
        """A backup service's ``/status`` (``name`` like ``backup-op1``)."""
        return backups.status(self, name)

    def free_port(self) -> int:
        """A free 127.0.0.1 port no process of this devnet is recorded with."""
        return processes.free_port(self._taken_ports())

    def add_process(
        self,
        name: str,
        kind: str,
        args: Sequence[str],
        *,
        account: str | None = None,
        directory: str | None = None,
        ports: dict[str, int] | None = None,
        env_secrets: dict[str, str] | None = None,
        start: bool = True,
    ) -> ProcessRecord:
        """Record (and start) another long-running ``quorumkeep ARGS…`` process of the
        devnet, e.g. an operator's backup service; `down`, `kill`, `start`, `status` and
        `up --resume` then treat it like the others. ``env_secrets`` maps environment
        variables to devnet secret names (created if missing)."""
        with self.dir.locked():
            self.reload()
            if name in self.record.processes:
                raise DevnetError("process_exists", f"the devnet already has a process {name!r}")
            for secret in (env_secrets or {}).values():
                self.secrets.get_or_create(secret)
            record = ProcessRecord(
                name=name,
                kind=kind,
                argv=processes.cli_argv(*args),
                log=f"{LOGS_DIR}/{name}.log",
                ports=dict(ports or {}),
                env_secrets=dict(env_secrets or {}),
                account=account,
                directory=directory,
            )
            self.record.processes[name] = record
            self.save()
            if start:
                self._spawn(record)
            return record

    def wipe(self, name: str) -> None:
        """Delete a stopped node's directory (its keys and shares): a lost machine."""
        with self.dir.locked():
            self.reload()
            record = self.process(name)
            if record.kind != "node" or record.directory is None:
                raise DevnetError("not_a_node", f"{name} is not a node")
            if processes.is_running(record):
                raise DevnetError("node_running", f"{name} is running; kill or stop it first")
            shutil.rmtree(self.dir.resolve(record.directory), ignore_errors=True)

    def node_url(self, name: str) -> str:
        return f"https://127.0.0.1:{self.process(name).ports['web']}"

    @contextlib.contextmanager
    def node_http(self, name: str, timeout: float = HTTP_TIMEOUT) -> Iterator[httpx.Client]:
        """An HTTPS client for a node's web API that trusts exactly that node's certificate."""
        record = self.process(name)
        assert record.directory is not None
        try:
            certificate = (self.dir.resolve(record.directory) / "tls-cert.pem").read_bytes()
        except OSError:
            raise DevnetError("node_missing", f"{name} has no TLS certificate") from None
        context = tls.client_context(None, None, None, [certificate])
        with httpx.Client(base_url=self.node_url(name), verify=context, timeout=timeout) as http:
            yield http

    def node_get(self, name: str, route: str, timeout: float = HTTP_TIMEOUT) -> Any:
        """GET a node's JSON endpoint (``/status``, ``/health``); DevnetError if unreachable."""
        try:
            with self.node_http(name, timeout) as http:
                response = http.get(route)
        except httpx.HTTPError as exc:
            raise DevnetError("node_unreachable", f"{name}{route}: {type(exc).__name__}") from None
        if response.status_code != 200:
            raise DevnetError("node_error", f"{name}{route}: HTTP {response.status_code}")
        return response.json()

    def node_metrics(self, name: str, timeout: float = HTTP_TIMEOUT) -> str:
        try:
            with self.node_http(name, timeout) as http:
                response = http.get("/metrics")
        except httpx.HTTPError as exc:
            raise DevnetError("node_unreachable", f"{name}/metrics: {type(exc).__name__}") from None
        return response.text

    def wait_node_healthy(self, name: str, *, timeout: float = START_TIMEOUT) -> None:
        record = self.process(name)
        deadline = time.monotonic() + timeout
        while True:
            self._require_alive(record)
            with contextlib.suppress(DevnetError):
                self.node_get(name, "/health", timeout=1.0)
                return
            if time.monotonic() > deadline:
                raise DevnetError(
                    "node_not_ready",
                    f"{name} did not answer /health within {timeout:g} s; "
                    f"read {self.log_path(name)}",
                )
            time.sleep(0.05)  # bounded start-up wait: nothing to long-poll before it listens

    # --- the contract ---------------------------------------------------------------------

    def contract_state(self) -> dict[str, Any]:
        with self.client() as client:
            state: dict[str, Any] = client.view("state")
            return state

    def node_of(self, account: str, state: dict[str, Any] | None = None) -> str | None:
        """The devnet node whose TLS key the contract lists for ``account`` (None if none)."""
        state = state if state is not None else self.contract_state()
        wanted = [p for p in watch.participants(state) if p["account"] == account]
        p = watch.protocol(state)
        if p["state"] == "Resharing":
            wanted += [m for m in p["participants"] if m["account"] == account]
        keys = {m["tls_public_key"] for m in wanted}
        for name in self.node_names():
            if self.process(name).retired:
                continue  # replaced (a migration, or a restore of the same identity)
            with contextlib.suppress(DevnetError):
                if self.participant_info(name)["tls_public_key"] in keys:
                    return name
        return None

    def wait_contract(
        self,
        client: LedgerClient,
        predicate: Callable[[dict[str, Any]], Any],
        *,
        timeout: float,
        what: str,
    ) -> Any:
        """Wait for the contract, failing early (naming the log) if a process dies and on
        timeout naming the nodes that have not voted."""

        def tick(_: dict[str, Any]) -> None:
            for record in self.record.processes.values():
                if record.pid is None:
                    continue
                if record.kind == "ledger" or self._expected_alive.get(record.name, False):
                    self._require_alive(record)

        def explain(state: dict[str, Any]) -> str:
            return f"no {what} yet: " + self.explain_stall(state)

        self._expected_alive = {n: processes.is_running(self.process(n)) for n in self.node_names()}
        return watch.wait_for(client, predicate, timeout=timeout, on_tick=tick, on_timeout=explain)

    def explain_stall(self, state: dict[str, Any]) -> str:
        """Who the contract is waiting for, and which log to read."""
        p = watch.protocol(state)
        kind = p["state"]
        events: list[dict[str, Any]] = []
        members: list[dict[str, Any]] = []
        if kind == "Initializing":
            events = p["generating"]
            members = p["running"]["participants"]
        elif kind == "Resharing":
            events = p["resharing"]
            members = p["participants"]
        missing: list[str] = []
        for event in events:
            if event["public_key"] is None:
                missing += [m["account"] for m in members if m["account"] not in event["votes"]]
        dead = [n for n in self.node_names() if not processes.is_running(self.process(n))]
        parts = [f"protocol {kind}"]
        if missing:
            logs = []
            for account in sorted(set(missing)):
                name = self.node_of(account, state)
                if name is not None:
                    logs.append(str(self.log_path(name)))
            parts.append(f"waiting for votes of {', '.join(sorted(set(missing)))}")
            if logs:
                parts.append(f"read {', '.join(logs)}")
        if dead:
            parts.append(f"stopped: {', '.join(dead)}")
        return "; ".join(parts)

    @staticmethod
    def _backup_policy(backup: bool) -> dict[str, int]:
        """The backup policy a devnet votes for its domains: the contract's default (every
        operator's backup confirmed before the domain signs) with backup services; without
        them nothing could ever confirm, so 0 (the domain signs at once)."""
        return {} if backup else {"backups_required": 0}

    def wait_backup_gate(self, client: LedgerClient, domain_id: int, *, timeout: float) -> float:
        """Wait until the domain's backup policy is met (it signs); the seconds waited."""
        started = time.monotonic()
        seen: dict[str, Any] = {}

        def open_gate(_: dict[str, Any]) -> bool:
            seen.update(client.view("backup_status"))
            return any(
                d["domain_id"] == domain_id and d["signing_allowed"] for d in seen["domains"]
            )

        try:
            self.wait_contract(
                client, open_gate, timeout=timeout, what=f"backup confirmations of {domain_id}"
            )
        except DevnetError as exc:
            missing: list[str] = next(
                (d["missing"] for d in seen.get("domains", []) if d["domain_id"] == domain_id), []
            )
            logs = [
                str(self.log_path(backups.backup_name(a)))
                for a in missing
                if backups.backup_name(a) in self.record.processes
            ]
            raise DevnetError(
                exc.code,
                f"domain {domain_id} is not backed up: no confirmation from "
                f"{', '.join(missing) or '?'}" + (f"; read {', '.join(logs)}" if logs else ""),
            ) from None
        return time.monotonic() - started

    def vote_add_domains(self, accounts: Sequence[str] | None = None) -> None:
        """Every participant's operator votes one new Ed25519 domain (with the devnet's
        backup policy, see :meth:`_backup_policy`)."""
        state = self.contract_state()
        voters = accounts or [m["account"] for m in watch.participants(state)]
        domain = {"scheme": "Ed25519", **self._backup_policy(bool(self.backup_names()))}
        with self.client() as client:
            for account in voters:
                client.call(self.signer(account), "vote_add_domains", {"domains": [domain]})

    def reshare(
        self,
        *,
        threshold: int,
        add: Sequence[str] = (),
        remove: Sequence[str] = (),
        voters: Sequence[str] | None = None,
        timeout: float = DEFAULT_UP_TIMEOUT,
        wait: bool = True,
    ) -> int:
        """Vote new parameters: the current participants minus the ``remove`` accounts plus
        the ``add`` nodes (devnet node names) at ``threshold``. Every operator of the
        current set that stays, and every newcomer, votes (or only ``voters``). Returns the
        new epoch, after waiting for the resharing to complete if ``wait``."""
        state = self.contract_state()
        if watch.protocol_name(state) != "Running":
            raise DevnetError(
                "not_running", f"the protocol is {watch.protocol_name(state)}, not Running"
            )
        current = [
            {k: v for k, v in m.items() if k != "participant_id"}
            for m in watch.participants(state)
            if m["account"] not in remove
        ]
        newcomers = [self.participant_info(name) for name in add]
        with self.client() as client:
            for info in newcomers:  # a newcomer must be attested (a node not started is not)
                evidence = attestation.node_evidence(
                    self.dev_platform_key,
                    bytes.fromhex(info["tls_public_key"]),
                    bytes.fromhex(info["signer_public_key"]),
                )
                with contextlib.suppress(ContractCallFailed):  # a participant already
                    client.call(
                        self.signer(info["account"]),
                        "submit_participant_info",
                        {**info, "attestation": evidence},
                    )
        new_epoch = int(watch.protocol(state)["next_epoch"])
        proposal = {"participants": current + newcomers, "threshold": threshold}
        if voters is None:
            voters = [m["account"] for m in current] + [n["account"] for n in newcomers]
        with self.client() as client:
            for account in voters:
                try:
                    client.call(
                        self.signer(account),
                        "vote_new_parameters",
                        {"epoch": new_epoch, "proposal": proposal},
                    )
                except ContractCallFailed as exc:
                    raise DevnetError(
                        "vote_failed", f"vote_new_parameters by {account}: {exc.message}"
                    ) from None
            resharing_started = time.monotonic()
            if wait:
                self.wait_contract(
                    client,
                    lambda s: (
                        watch.protocol_name(s) == "Running" and (watch.epoch(s) or 0) >= new_epoch
                    ),
                    timeout=timeout,
                    what=f"epoch {new_epoch}",
                )
                self.timings["resharing"] = time.monotonic() - resharing_started
        return new_epoch


def _etcd_url(record: ProcessRecord) -> str:
    return f"http://127.0.0.1:{record.ports['client']}"


def _participant_info(stdout: bytes, name: str) -> dict[str, Any]:
    """The participant info JSON object `node init` printed (its last JSON object)."""
    text = stdout.decode("utf-8", "replace").strip()
    start = text.rfind("\n{")
    candidates = [text[start + 1 :]] if start >= 0 else []
    candidates.append(text[text.find("{") :] if "{" in text else text)
    for candidate in candidates:
        try:
            value = json.loads(candidate)
        except ValueError:
            continue
        if isinstance(value, dict):
            info = value.get("participant_info", value)
            if isinstance(info, dict) and "tls_public_key" in info:
                return {
                    k: info[k]
                    for k in ("account", "url", "web_url", "tls_public_key", "signer_public_key")
                }
    raise DevnetError("node_init_failed", f"`node init` for {name} printed no participant info")
