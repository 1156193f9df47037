"""The ledger replicated on a real 3-member etcd cluster, under faults.

A stream of transactions goes through a client given both ledger servers' URLs while the
proposing server is SIGKILLed, then an etcd member, and both are started again. Every
acknowledged transaction must be in the chain exactly once, both servers must serve the
same chain, which must verify (a full replay: signatures, outcomes, state hashes), and the
ledger must go on accepting transactions.
"""

from __future__ import annotations

import json
import threading
import time
from pathlib import Path

import pytest
from etcd_helpers import EtcdCluster, LedgerServer, wait_until
from ledger_helpers import backup_service_args, init_args, make_ledger

from quorumkeep.devnet.etcd import etcd_available
from quorumkeep.ledger.blocks import Block
from quorumkeep.ledger.chain import LedgerState
from quorumkeep.ledger.client import LedgerClient
from quorumkeep.ledger.errors import LedgerError
from quorumkeep.ledger.etcd import EtcdSync

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(not etcd_available(), reason="etcd is not installed (make setup)"),
]

ACCOUNTS = ("alice", "bob", "carol", "dave")


class Stream:
    """Sequential register_backup_service calls from three accounts, in a thread."""

    def __init__(self, url: str, signers: dict[str, object]) -> None:
        self.url = url
        self.signers = signers
        self.acknowledged: list[str] = []
        self.errors: list[str] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        with LedgerClient(self.url, timeout=20.0) as client:
            i = 0
            while not self._stop.is_set():
                signer = self.signers[("bob", "carol", "dave")[i % 3]]
                i += 1
                try:
                    outcome = client.call(signer, "register_backup_service", backup_service_args())  # type: ignore[arg-type]
                except LedgerError as exc:  # not acknowledged: may or may not be in
                    self.errors.append(exc.code)
                    time.sleep(0.2)
                    continue
                self.acknowledged.append(outcome.tx_hash)

    def start(self) -> Stream:
        self._thread.start()
        return self

    def wait_for(self, more: int, timeout: float = 60.0) -> None:
        target = len(self.acknowledged) + more
        deadline = time.monotonic() + timeout
        while len(self.acknowledged) < target:
            assert time.monotonic() < deadline, (
                f"only {len(self.acknowledged)}/{target} acknowledged; errors {self.errors[-5:]}"
            )
            time.sleep(0.1)

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(60)


def _chain(url: str) -> list[tuple[int, bytes, bytes]]:
    from quorumkeep.ledger.canonical import canonical_json

    rows = []
    with LedgerClient(url) as client:
        head = client.status()["height"]
        for height in range(head + 1):
            body = client.block(height)
            stated = bytes.fromhex(body.pop("hash"))
            rows.append((height, stated, canonical_json(body)))
    return rows


def _proposer_url(etcd_urls: list[str]) -> str | None:
    etcd = EtcdSync(etcd_urls)
    try:
        kvs, _, _ = etcd.range(b"quorumkeep/ledger/proposer")
    finally:
        etcd.close()
    return str(json.loads(kvs[0].value)["url"]) if kvs else None


def _proposer(etcd_urls: list[str]) -> str:
    url = _proposer_url(etcd_urls)
    assert url is not None, "no proposer"
    return url


def test_acknowledged_transactions_survive_killing_the_proposer_and_an_etcd_member(
    tmp_path: Path,
) -> None:
    ledger = make_ledger(tmp_path / "data", ACCOUNTS)
    cluster = EtcdCluster(tmp_path, 3)
    servers: list[LedgerServer] = []
    stream: Stream | None = None
    try:
        cluster.start()
        servers = [LedgerServer(ledger.path, cluster.urls, f"ledger-{i}").start() for i in range(2)]
        both = ",".join(s.url for s in servers)
        with LedgerClient(both) as client:
            client.call(ledger.signers["alice"], "init", init_args(list(ACCOUNTS)))
        stream = Stream(both, dict(ledger.signers)).start()
        stream.wait_for(10)

        proposer = next(s for s in servers if s.url == _proposer(cluster.urls))
        proposer.kill()  # the proposing server dies
        stream.wait_for(10)  # the other one took over
        cluster.kill("m0")  # an etcd member dies (2 of 3 keep the quorum)
        stream.wait_for(10)
        proposer.start()  # both come back
        cluster.start("m0")
        stream.wait_for(10)
        stream.stop()

        acknowledged = stream.acknowledged
        chains = [_chain(s.url) for s in servers]
        heads = [rows[-1][1] for rows in chains]
        if heads[0] != heads[1]:  # the restarted one may be a block behind: compare prefixes
            n = min(len(c) for c in chains)
            assert [r[1] for r in chains[0][:n]] == [r[1] for r in chains[1][:n]]
        rows = max(chains, key=len)
        state = LedgerState.replay(rows)  # every hash, link, signature, outcome, state hash
        assert state.height == len(rows) - 1
        included = [
            tx.signed.hash.hex() for _, _, body in rows for tx in Block.from_body(body).transactions
        ]
        assert len(included) == len(set(included))  # nothing twice
        missing = set(acknowledged) - set(included)
        assert not missing, f"{len(missing)} acknowledged transactions are not in the chain"
        assert len(acknowledged) >= 40
        # ... and the ledger goes on: a call through the server that was killed and restarted.
        with LedgerClient(proposer.url) as client:
            assert client.call(
                ledger.signers["alice"], "register_backup_service", backup_service_args()
            ).ok
    finally:
        if stream is not None:
            stream.stop()
        for server in servers:
            server.kill()
        cluster.close()


def _lease_count(etcd_urls: list[str]) -> int:
    etcd = EtcdSync(etcd_urls)
    try:
        return len(etcd.post("/v3/lease/leases", {}).get("leases", []))
    finally:
        etcd.close()


def _call_until_accepted(url: str, signer: object, timeout: float = 60.0) -> int:
    """register_backup_service through ``url``, re-sent while the ledger answers
    LedgerUnavailable (no proposer yet); the block height it landed in."""
    deadline = time.monotonic() + timeout
    with LedgerClient(url, timeout=20.0) as client:
        while True:
            try:
                return client.call(
                    signer, "register_backup_service", backup_service_args()
                ).block_height  # type: ignore[arg-type]
            except LedgerError as exc:
                assert exc.code == "LedgerUnavailable", exc
                assert time.monotonic() < deadline, f"not accepted within {timeout:g} s: {exc}"
                time.sleep(0.2)


def test_a_server_paused_past_its_lease_takes_over_when_the_proposer_dies(
    tmp_path: Path,
) -> None:
    """The proposer's machine is lost while the other server runs nothing for longer than
    the lease TTL (SIGSTOP here; in the demo, a request to an etcd member that waited on
    the member killed with the proposer). Both leases and the proposer key expire; the
    survivor's campaign must not go on offering etcd its expired lease (etcd refuses the
    put: "requested lease not found") but take a new one, and take over."""
    ledger = make_ledger(tmp_path / "data", ACCOUNTS)
    cluster = EtcdCluster(tmp_path, 1)
    servers: list[LedgerServer] = []
    try:
        cluster.start()
        first = LedgerServer(ledger.path, cluster.urls, "first").start()
        servers.append(first)
        wait_until(lambda: _proposer_url(cluster.urls) == first.url, 60.0, "a proposer")
        with LedgerClient(first.url) as client:
            client.call(ledger.signers["alice"], "init", init_args(list(ACCOUNTS)))
        second = LedgerServer(ledger.path, cluster.urls, "second").start()
        servers.append(second)
        wait_until(lambda: _lease_count(cluster.urls) == 2, 60.0, "the second server's lease")
        second.pause()
        first.kill()  # the proposer's machine is lost while the other server is stalled
        wait_until(lambda: _lease_count(cluster.urls) == 0, 60.0, "both leases to expire")
        second.resume()
        height = _call_until_accepted(second.url, ledger.signers["bob"])
        log = second.log_path.read_text()
        assert "proposer of the ledger from block" in log, log
        assert height >= 2
    finally:
        for server in servers:
            server.resume()
            server.kill()
        cluster.close()


def test_a_restart_starts_from_the_snapshot_in_etcd(tmp_path: Path) -> None:
    ledger = make_ledger(tmp_path / "data", ACCOUNTS)
    cluster = EtcdCluster(tmp_path, 1)
    servers: list[LedgerServer] = []
    try:
        cluster.start()
        first = LedgerServer(ledger.path, cluster.urls, "first").start()
        servers.append(first)
        with LedgerClient(first.url) as client:
            client.call(ledger.signers["alice"], "init", init_args(list(ACCOUNTS)))
            calls = [
                client.call(ledger.signers[a], "register_backup_service", backup_service_args())
                for a in ("bob", "carol", "dave")
            ]
            head = client.status()["height"]
        first.stop()  # a clean stop: the proposer puts a snapshot of the head
        etcd = EtcdSync(cluster.urls)
        try:
            kvs, _, _ = etcd.range(b"quorumkeep/ledger/snapshot")
        finally:
            etcd.close()
        assert kvs and json.loads(kvs[0].value)["height"] == head
        second = LedgerServer(ledger.path, cluster.urls, "second").start()
        servers.append(second)
        assert f"started from the snapshot at block {head}" in second.log_path.read_text()
        with LedgerClient(second.url) as client:
            events, _ = client.events(-1, timeout=0)  # older events: from the etcd index
            assert [e.kind for e in events][-3:] == ["backup_service_registered"] * 3
            assert len(events) == 2 + 3
            # A transaction from before the snapshot, still in the replay window, is found.
            record = client.transaction(calls[0].tx_hash)
            assert record["block_height"] == calls[0].block_height
            assert client.call(
                ledger.signers["bob"], "register_backup_service", backup_service_args()
            ).ok
    finally:
        for server in servers:
            server.kill()
        cluster.close()
