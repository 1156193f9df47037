"""Presignatures and signing over real meshes with real keystores (3-of-4, plus an outsider)."""

from __future__ import annotations

import asyncio
import logging
import os
import statistics
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from nacl.signing import VerifyKey
from node_helpers import eventually, run
from protocol_cluster import Node, NodeKeys, dkg_all, make_node_keys, start_cluster, stop_cluster

from quorumkeep.crypto.derive import derive_public_key
from quorumkeep.crypto.group import ONE, scalar_add
from quorumkeep.crypto.keys import KeyPackage, PublicKeyPackage
from quorumkeep.node.incarnation import begin_incarnation
from quorumkeep.node.keystore import Keystore
from quorumkeep.node.keystore_errors import RecordNotFound
from quorumkeep.node.keystore_records import Presignature
from quorumkeep.node.messages import (
    CHANNEL_PRESIGN,
    PresignRequest,
    Refusal,
    SignShare,
    SignShareRequest,
)
from quorumkeep.node.protocols.errors import SigningFailed
from quorumkeep.node.protocols.nonces import PresignatureTaker
from quorumkeep.node.protocols.presign import PresignaturePool
from quorumkeep.node.protocols.presign_batches import presignature_owner
from quorumkeep.node.protocols.presign_owner import exposed
from quorumkeep.node.protocols.sign import SigningService, SignJob

HOLDERS = [1, 2, 3, 4]
DOMAIN, EPOCH = 0, 0


@pytest.fixture(scope="module")
def keys(tmp_path_factory: pytest.TempPathFactory) -> dict[int, NodeKeys]:
    return make_node_keys(tmp_path_factory.mktemp("sign-identities"), 5)


class Contract:
    """What the coordinator's ``is_pending`` answers from: the requests pending on-chain."""

    def __init__(self) -> None:
        self.requests: dict[int, tuple[bytes, str, int, str]] = {}
        self.asked = 0

    def add(self, request_id: int, payload: bytes, path: str, caller: str = "user") -> SignJob:
        self.requests[request_id] = (payload, path, DOMAIN, caller)
        return SignJob(request_id, DOMAIN, EPOCH, payload, path, caller)

    async def is_pending(
        self, request_id: int, payload: bytes, path: str, domain_id: int, caller: str
    ) -> bool:
        self.asked += 1
        return self.requests.get(request_id) == (payload, path, domain_id, caller)


@dataclass
class Cluster:
    nodes: dict[int, Node]
    pools: dict[int, PresignaturePool]
    services: dict[int, SigningService]
    public: PublicKeyPackage
    contract: Contract

    def keystore(self, pid: int) -> Keystore:
        return self.nodes[pid].keystore

    def stored(self, pid: int) -> dict[str, tuple[int, ...]]:
        """presignature id → participants, as in pid's keystore."""
        return {
            info.id: info.participants for info in self.keystore(pid).presignatures(DOMAIN, EPOCH)
        }

    def all_stored(self) -> dict[int, dict[str, tuple[int, ...]]]:
        return {pid: self.stored(pid) for pid in HOLDERS}


async def start_signing(
    keys: dict[int, NodeKeys],
    tmp_path: Path,
    *,
    target: int = 12,
    batch_size: int = 4,
    **pool_options: Any,
) -> Cluster:
    nodes = await start_cluster(keys, tmp_path)
    material: dict[int, tuple[KeyPackage, PublicKeyPackage]] = await dkg_all(
        nodes, "dkg-sign", threshold=3, pids=HOLDERS
    )
    contract = Contract()
    pools: dict[int, PresignaturePool] = {}
    services: dict[int, SigningService] = {}
    for pid in HOLDERS:
        node = nodes[pid]
        pools[pid] = PresignaturePool(
            node.router,
            node.keystore,
            pid,
            os.urandom,
            target=target,
            batch_size=batch_size,
            request_timeout=3.0,
            **pool_options,
        )
        key, public = material[pid]
        pools[pid].set_key(DOMAIN, EPOCH, key, public)
        services[pid] = SigningService(
            node.router,
            node.keystore,
            pools[pid],
            pid,
            is_pending=contract.is_pending,
            share_timeout=3.0,
            presignature_wait=0.5,
        )
    return Cluster(nodes, pools, services, material[1][1], contract)


async def stop_signing(cluster: Cluster) -> None:
    for pid in HOLDERS:
        await cluster.pools[pid].close()
        await cluster.services[pid].close()
    await stop_cluster(cluster.nodes)


async def fill(cluster: Cluster, batches: int) -> None:
    for _ in range(batches):
        added = await asyncio.gather(*(cluster.pools[pid].fill(DOMAIN, EPOCH) for pid in HOLDERS))
        assert all(n == cluster.pools[1].batch_size for n in added), added


def verify(cluster: Cluster, job: SignJob, signature: bytes) -> None:
    derived = derive_public_key(cluster.public.group_public_key, job.caller, job.path)
    VerifyKey(derived).verify(job.payload, signature)  # raises if invalid


def payloads(count: int) -> Iterator[bytes]:
    for _ in range(count):
        yield os.urandom(32)


def test_background_generation_fills_every_pool_consistently(
    keys: dict[int, NodeKeys], tmp_path: Path
) -> None:
    async def scenario() -> None:
        cluster = await start_signing(keys, tmp_path, target=16, batch_size=8)
        try:
            for pid in HOLDERS:
                cluster.pools[pid].start()
            for pid in HOLDERS:
                await cluster.pools[pid].wait_for(DOMAIN, EPOCH, 16, timeout=20)
            stored = cluster.all_stored()
        finally:
            await stop_signing(cluster)
        sets: dict[int, set[tuple[int, ...]]] = {pid: set() for pid in HOLDERS}
        for owner in HOLDERS:
            owned = {i: p for i, p in stored[owner].items() if presignature_owner(i) == owner}
            assert len(owned) >= 16
            for presignature_id, participants in owned.items():
                assert len(participants) == 3 and owner in participants
                sets[owner].add(participants)
                for member in participants:  # every member holds its nonce for it
                    assert stored[member][presignature_id] == participants
        # the pool survives the loss of any one peer: for every peer, the owner holds
        # presignatures without it (3 peers, 2 per batch: batches of 16 // 3 = 5)
        for owner in HOLDERS:
            for peer in set(HOLDERS) - {owner}:
                assert any(peer not in s for s in sets[owner]), (owner, peer, sets[owner])

    run(scenario())


def test_a_pool_whose_every_set_includes_a_peer_makes_more_until_none_does(
    keys: dict[int, NodeKeys], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Batches made while peer 4 was away fill owner 1's target with sets that all include
    peers 2 and 3; once 4 is back the pool makes more (up to twice the target) until the loss
    of any one peer leaves it presignatures."""

    async def scenario() -> None:
        cluster = await start_signing(keys, tmp_path, target=16, batch_size=8)
        try:
            pool, router = cluster.pools[1], cluster.nodes[1].router
            everyone = router.connected_peers
            await eventually(lambda: everyone() >= {2, 3, 4}, timeout=10)
            monkeypatch.setattr(router, "connected_peers", lambda: everyone() - {4})
            while sum(pool.sizes().values()) < 16:
                assert await pool.fill(DOMAIN, EPOCH) > 0
            owned = owned_sets(cluster.all_stored()[1])
            assert owned and all({2, 3} <= s for s in owned)  # 2 and 3 are in every set
            monkeypatch.setattr(router, "connected_peers", everyone)
            pool.start()

            def covered() -> bool:
                sets = owned_sets(cluster.all_stored()[1])
                return all(any(peer not in s for s in sets) for peer in (2, 3, 4))

            await eventually(covered, timeout=20)
            await asyncio.sleep(0.5)  # and then it stops: no more than twice the target
            assert 16 < sum(pool.sizes().values()) <= 32
        finally:
            await stop_signing(cluster)

    run(scenario())


def owned_sets(stored: dict[str, tuple[int, ...]]) -> list[set[int]]:
    return [set(p) for i, p in stored.items() if presignature_owner(i) == 1]


def test_exposed_peers_are_those_in_every_presignature_a_batch_could_leave_out() -> None:
    # 3 candidates, batches of 2: the peers every held presignature includes
    assert exposed([2, 3, 4], 2, 16, {2: 16, 3: 16, 4: 0}) == [2, 3]
    assert exposed([2, 3, 4], 2, 32, {2: 24, 3: 24, 4: 16}) == []
    # a batch needs every candidate: no set could leave one out
    assert exposed([2, 3], 2, 16, {2: 16, 3: 16}) == []
    # in-flight presignatures count in both held and load
    assert exposed([2, 3, 4], 2, 24, {2: 24, 3: 16, 4: 8}) == [2]


def test_signing_uses_each_presignature_exactly_once(
    keys: dict[int, NodeKeys], tmp_path: Path
) -> None:
    async def scenario() -> None:
        cluster = await start_signing(keys, tmp_path)
        try:
            await fill(cluster, 3)
            before = cluster.all_stored()
            owned_before = {
                pid: {i for i in before[pid] if presignature_owner(i) == pid} for pid in HOLDERS
            }
            jobs = []
            for n, payload in enumerate(payloads(8)):
                job = cluster.contract.add(n, payload, f"wallet/{n % 3}", caller=f"user{n % 2}")
                jobs.append((HOLDERS[n % 4], job))
            signatures = await asyncio.gather(
                *(cluster.services[leader].lead(job) for leader, job in jobs)
            )
            for (_, job), signature in zip(jobs, signatures, strict=True):
                assert len(signature) == 64
                verify(cluster, job, signature)
            after = cluster.all_stored()
            used: set[str] = set()
            for pid in HOLDERS:
                owned_after = {i for i in after[pid] if presignature_owner(i) == pid}
                assert owned_after <= owned_before[pid]
                used |= owned_before[pid] - owned_after
            assert len(used) == len(jobs)  # one presignature per signature, no retries
            for pid in HOLDERS:
                # used ones are gone everywhere (nonces deleted), all others untouched
                assert set(after[pid]) == set(before[pid]) - used

            # a leader replaying a used presignature gets nothing: the nonce is gone
            replay_id = sorted(used)[0]
            owner = presignature_owner(replay_id)
            assert owner is not None
            member = next(p for p in before[owner][replay_id] if p != owner)
            payload, path, _, caller = cluster.contract.requests[0]
            commitments = ((member, b"\x01" * 32, b"\x02" * 32),)
            request = SignShareRequest(
                replay_id, 0, DOMAIN, EPOCH, payload, path, caller, commitments
            )
            reply = await cluster.services[member].share_for(owner, request)
            assert isinstance(reply, Refusal) and reply.code == "unknown_presignature"
        finally:
            await stop_signing(cluster)

    run(scenario())


def test_member_refuses_requests_not_pending_on_the_contract(
    keys: dict[int, NodeKeys], tmp_path: Path
) -> None:
    async def scenario() -> None:
        cluster = await start_signing(keys, tmp_path)
        try:
            await fill(cluster, 1)
            owner = 1
            info = next(
                i
                for i in cluster.keystore(owner).presignatures(DOMAIN, EPOCH)
                if presignature_owner(i.id) == owner
            )
            member = next(p for p in info.participants if p != owner)
            commitments = tuple((p, h, b) for p, (h, b) in sorted(info.commitments.items()))
            pending = cluster.contract.add(7, os.urandom(32), "pending/path")

            def request(**change: Any) -> SignShareRequest:
                fields: dict[str, Any] = {
                    "request_id": 7,
                    "domain_id": DOMAIN,
                    "epoch": EPOCH,
                    "payload": pending.payload,
                    "path": pending.path,
                    "caller": pending.caller,
                    "commitments": commitments,
                }
                fields.update(change)
                return SignShareRequest(info.id, **fields)

            service = cluster.services[member]
            for change in (
                {"request_id": 8},  # nobody asked for request 8
                {"payload": os.urandom(32)},  # a malicious leader's own message
                {"path": "other/path"},
                {"caller": "mallory"},
            ):
                reply = await service.share_for(owner, request(**change))
                assert isinstance(reply, Refusal) and reply.code == "not_pending", change
            # checks before the contract is even asked
            reply = await service.share_for(2 if owner != 2 else 3, request())
            assert isinstance(reply, Refusal) and reply.code == "not_owner"
            reply = await service.share_for(owner, request(epoch=9))
            assert isinstance(reply, Refusal) and reply.code == "unknown_key"
            # none of this cost the member its nonce
            assert info.id in cluster.stored(member)
            # the genuine request is served, once
            reply = await service.share_for(owner, request())
            assert isinstance(reply, SignShare)
            assert info.id not in cluster.stored(member)
            reply = await service.share_for(owner, request())
            assert isinstance(reply, Refusal) and reply.code == "unknown_presignature"

            # end to end: a leader asked to sign something not pending gets no signature,
            # and its members keep their nonces (they refuse before taking them)
            stored = cluster.all_stored()
            owned = {i: p for i, p in stored[2].items() if presignature_owner(i) == 2}
            job = SignJob(99, DOMAIN, EPOCH, os.urandom(32), "x", "user")
            with pytest.raises(SigningFailed) as failure:
                await cluster.services[2].lead(job, timeout=3)
            assert "not_pending" in str(failure.value)
            assert not any(i in cluster.stored(2) for i in owned)  # the leader's own: burned
            for presignature_id, participants in owned.items():
                for member in participants:
                    if member != 2:
                        assert presignature_id in cluster.stored(member)
        finally:
            await stop_signing(cluster)

    run(scenario())


def test_contract_checks_in_progress_per_leader_are_bounded(
    keys: dict[int, NodeKeys], tmp_path: Path
) -> None:
    """A request id newer than the member's state waits for the event stream and then asks the
    ledger: a leader naming future ids may hold at most ``max_checks_per_leader`` such checks;
    past that the member refuses at once (``busy``) without asking the contract."""

    async def scenario() -> None:
        cluster = await start_signing(keys, tmp_path)
        try:
            await fill(cluster, 1)
            owner = 1
            info = next(
                i
                for i in cluster.keystore(owner).presignatures(DOMAIN, EPOCH)
                if presignature_owner(i.id) == owner
            )
            member = next(p for p in info.participants if p != owner)
            commitments = tuple((p, h, b) for p, (h, b) in sorted(info.commitments.items()))
            service = cluster.services[member]
            service.max_checks_per_leader = 4
            gate = asyncio.Event()
            asked: list[int] = []

            async def slow_is_pending(request_id: int, *_: Any) -> bool:
                asked.append(request_id)
                await gate.wait()
                return False

            service.is_pending = slow_is_pending
            requests = [
                SignShareRequest(info.id, 1000 + k, DOMAIN, EPOCH, b"x" * 32, "p", "u", commitments)
                for k in range(10)
            ]
            tasks = [asyncio.create_task(service.share_for(owner, r)) for r in requests]
            await eventually(lambda: sum(t.done() for t in tasks) == 6)
            assert len(asked) == 4
            gate.set()
            replies = await asyncio.gather(*tasks)
            codes = sorted(r.code for r in replies if isinstance(r, Refusal))
            assert codes == ["busy"] * 6 + ["not_pending"] * 4
            # the bound is per leader, and freed once the checks end
            reply = await service.share_for(owner, requests[0])
            assert isinstance(reply, Refusal) and reply.code == "not_pending"
        finally:
            await stop_signing(cluster)

    run(scenario())


def test_bad_signature_share_is_named_and_another_set_signs(
    keys: dict[int, NodeKeys],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    async def scenario() -> None:
        cluster = await start_signing(keys, tmp_path, batch_size=2)
        try:
            await fill(cluster, 3)  # leader 1's sets rotate: {1,2,3}, {1,3,4}, {1,2,4}
            cheater = cluster.services[3]
            honest_share_for = cheater.share_for

            async def corrupt(sender: int, request: SignShareRequest) -> SignShare | Refusal:
                reply = await honest_share_for(sender, request)
                if isinstance(reply, SignShare):
                    return SignShare(reply.session, scalar_add(reply.share, ONE))
                return reply

            monkeypatch.setattr(cheater, "share_for", corrupt)
            job = cluster.contract.add(1, os.urandom(32), "cheat/test")
            with caplog.at_level(logging.WARNING, logger="quorumkeep.node.protocols.sign"):
                signature = await cluster.services[1].lead(job)
            verify(cluster, job, signature)
            assert cluster.services[1].stats.cheaters_named == 1
            assert cluster.services[1].stats.attempts == 2
            assert any("participant 3" in r.getMessage() for r in caplog.records)
            # exclusion is per request: the next request tries participant 3 again, names it
            # again, and is still signed by another set
            job2 = cluster.contract.add(2, os.urandom(32), "cheat/test")
            verify(cluster, job2, await cluster.services[1].lead(job2))
            assert cluster.services[1].stats.cheaters_named == 2
        finally:
            await stop_signing(cluster)

    run(scenario())


def test_a_member_that_forgot_its_nonces_is_avoided_never_named_a_cheater(
    keys: dict[int, NodeKeys], tmp_path: Path
) -> None:
    """Participant 3 restarted (its start forgot every presignature) before its peers purged
    theirs with it: a leader asking it gets unknown_presignature, signs with another set, and
    names nobody."""

    async def scenario() -> None:
        cluster = await start_signing(keys, tmp_path, batch_size=2)
        try:
            await fill(cluster, 3)  # leader 1's sets rotate: {1,2,3}, {1,3,4}, {1,2,4}
            assert begin_incarnation(cluster.keystore(3)).forgotten > 0
            job = cluster.contract.add(1, os.urandom(32), "forgot/test")
            verify(cluster, job, await cluster.services[1].lead(job))
            assert cluster.services[1].stats.cheaters_named == 0
            assert cluster.services[1].stats.attempts >= 2
            assert cluster.services[3].stats.shares_served == 0
            assert cluster.services[3].stats.refusals >= 1
        finally:
            await stop_signing(cluster)

    run(scenario())


def test_purge_involving_removes_exactly_those_presignatures(
    keys: dict[int, NodeKeys], tmp_path: Path
) -> None:
    async def scenario() -> None:
        cluster = await start_signing(keys, tmp_path)
        try:
            await fill(cluster, 3)
            before = cluster.all_stored()
            assert any(4 in p for s in before.values() for p in s.values())
            removed = {pid: cluster.pools[pid].purge_involving([4]) for pid in HOLDERS}
            after = cluster.all_stored()
            for pid in HOLDERS:
                expected = {i: p for i, p in before[pid].items() if 4 not in p}
                assert after[pid] == expected
                assert removed[pid] == len(before[pid]) - len(expected)
                owned = sum(1 for i in expected if presignature_owner(i) == pid)
                assert cluster.pools[pid].sizes() == {(DOMAIN, EPOCH): owned}
            assert after[4] == {}
            # what is left still signs, without participant 4
            job = cluster.contract.add(3, os.urandom(32), "after/purge")
            verify(cluster, job, await cluster.services[1].lead(job))
        finally:
            await stop_signing(cluster)

    run(scenario())


def test_batch_requests_from_outsiders_and_bad_sets_are_refused(
    keys: dict[int, NodeKeys], tmp_path: Path
) -> None:
    async def scenario() -> None:
        cluster = await start_signing(keys, tmp_path)
        try:
            outsider = cluster.nodes[5].router  # connected to all, holds no share of the key

            async def ask(router: Any, sender: int, sid: str, **change: Any) -> str:
                fields: dict[str, Any] = {
                    "domain_id": DOMAIN,
                    "epoch": EPOCH,
                    "participants": tuple(sorted({1, 2, sender})),
                    "count": 2,
                }
                fields.update(change)
                with router.open(CHANNEL_PRESIGN, sid) as session:
                    await session.send(1, PresignRequest(sid, **fields))
                    _, reply = await session.recv(1, 5)
                assert isinstance(reply, Refusal)
                return reply.code

            assert await ask(outsider, 5, "5:aa") == "not_participant"
            holder = cluster.nodes[3].router
            assert await ask(holder, 3, "3:bb", epoch=1) == "unknown_key"
            assert await ask(holder, 3, "3:cc", participants=(2, 3, 4)) == "invalid_request"
            assert await ask(holder, 3, "3:dd", participants=(1, 3)) == "invalid_request"
            assert await ask(holder, 3, "2:ee") == "invalid_request"  # not its own id
            assert cluster.stored(1) == {}
        finally:
            await stop_signing(cluster)

    run(scenario())


def test_a_member_holds_at_most_a_capped_number_of_presignatures_per_owner(
    keys: dict[int, NodeKeys], tmp_path: Path
) -> None:
    """An owner that keeps asking (and never signs) cannot make a member store without bound:
    past ``max_held_per_owner`` confirmed presignatures of that owner, the member refuses."""

    async def scenario() -> None:
        cluster = await start_signing(keys, tmp_path, max_held_per_owner=8)
        try:
            owner = cluster.pools[3]
            for _ in range(12):
                await owner.fill(DOMAIN, EPOCH)
            for member in HOLDERS:
                if member == 3:
                    continue
                held = [p for p in cluster.stored(member) if presignature_owner(p) == 3]
                assert len(held) <= 8, (member, len(held))
            assert cluster.pools[1].stats.member_refusals > 0
            # Another owner is not affected by owner 3's share of the cap.
            assert await cluster.pools[2].fill(DOMAIN, EPOCH) == 4
        finally:
            await stop_signing(cluster)

    run(scenario())


def test_throughput_three_of_four_in_one_process(
    keys: dict[int, NodeKeys], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """An indication only (one process, one GIL for four nodes): printed, never asserted."""
    count, concurrency = 120, 12

    async def scenario() -> tuple[float, list[float]]:
        cluster = await start_signing(keys, tmp_path, target=48, batch_size=32)
        try:
            for pid in HOLDERS:
                cluster.pools[pid].start()
            for pid in HOLDERS:
                await cluster.pools[pid].wait_for(DOMAIN, EPOCH, 32, timeout=20)
            jobs = [
                (HOLDERS[n % 4], cluster.contract.add(n, payload, f"bench/{n % 5}"))
                for n, payload in enumerate(payloads(count))
            ]
            latencies: list[float] = []
            gate = asyncio.Semaphore(concurrency)

            async def one(leader: int, job: SignJob) -> None:
                async with gate:
                    started = time.perf_counter()
                    signature = await cluster.services[leader].lead(job)
                    latencies.append(time.perf_counter() - started)
                    verify(cluster, job, signature)

            started = time.perf_counter()
            await asyncio.gather(*(one(leader, job) for leader, job in jobs))
            return time.perf_counter() - started, latencies
        finally:
            await stop_signing(cluster)

    elapsed, latencies = run(scenario(), timeout=60)
    assert len(latencies) == count
    with capsys.disabled():
        print(
            f"\n[in-process 3-of-4] {count} signatures in {elapsed:.2f}s = "
            f"{count / elapsed:.0f}/s, p50 {1e3 * statistics.median(latencies):.1f} ms, "
            f"p99 {1e3 * sorted(latencies)[int(0.99 * count) - 1]:.1f} ms "
            f"(concurrency {concurrency})"
        )


def test_concurrent_takes_are_coalesced_and_each_gets_its_own_result(
    keys: dict[int, NodeKeys], tmp_path: Path
) -> None:
    async def scenario() -> None:
        store = Keystore.open(tmp_path, keys[1].storage_key, keys[1].identity.owner)
        try:
            commitments = {1: (b"\x01" * 32, b"\x02" * 32), 2: (b"\x03" * 32, b"\x04" * 32)}
            records = [
                Presignature(f"1:ab:{k}", DOMAIN, EPOCH, commitments, bytes([k + 1]) * 64)
                for k in range(10)
            ]
            store.add_presignatures(records)
            taker = PresignatureTaker(store)
            ids = [f"1:ab:{k}" for k in range(10)] + ["1:ab:missing"]
            results = await asyncio.gather(*(taker.take(i) for i in ids), return_exceptions=True)
            for k, result in enumerate(results[:10]):
                assert isinstance(result, Presignature)
                assert result.id == f"1:ab:{k}" and result.nonces == bytes([k + 1]) * 64
            assert isinstance(results[10], RecordNotFound)
            assert taker.taken == 10 and taker.batches < 11  # coalesced
            assert store.presignatures(DOMAIN, EPOCH) == []  # all deleted durably
            with pytest.raises(RecordNotFound):
                await taker.take("1:ab:0")  # never twice
        finally:
            store.close()

    run(scenario())


def test_a_new_epoch_retires_the_old_presignatures_even_after_a_restart(
    keys: dict[int, NodeKeys], tmp_path: Path
) -> None:
    async def scenario() -> None:
        cluster = await start_signing(keys, tmp_path, target=4, batch_size=4)
        try:
            material = {pid: cluster.pools[pid].key(DOMAIN, EPOCH) for pid in HOLDERS}
            for pid in HOLDERS:
                cluster.pools[pid].configure(me=pid, epoch=EPOCH, keys={DOMAIN: material[pid]})
            for pid in HOLDERS:
                await cluster.pools[pid].wait_for(DOMAIN, EPOCH, 4, timeout=20)
            assert all(cluster.stored(pid) for pid in HOLDERS)
            # "restart": new pools on the same keystores, configured for epoch 1
            for pid in HOLDERS:
                await cluster.pools[pid].close()
            for pid in HOLDERS:
                node = cluster.nodes[pid]
                pool = PresignaturePool(node.router, node.keystore, pid, target=4, batch_size=4)
                cluster.pools[pid] = pool
                pool.configure(me=pid, epoch=1, keys={DOMAIN: material[pid]})  # type: ignore[dict-item]
            for pid in HOLDERS:
                await cluster.pools[pid].wait_for(DOMAIN, 1, 4, timeout=20)

            def old_epoch_left() -> bool:
                return any(
                    info.epoch == EPOCH
                    for pid in HOLDERS
                    for info in cluster.keystore(pid).presignatures(DOMAIN)
                )

            await eventually(lambda: not old_epoch_left(), timeout=10)
            assert all(cluster.pools[pid].sizes() == {(DOMAIN, 1): 4} for pid in HOLDERS)
        finally:
            await stop_signing(cluster)

    run(scenario())


@pytest.mark.parametrize(
    ("presignature_id", "owner"),
    [("3:7:0", 3), ("12:0:1", 12), ("²:1:0", None), ("03:1:0", None), ("3", None), ("-3:1", None)],
)
def test_presignature_owner_reads_ascii_decimal_only(
    presignature_id: str, owner: int | None
) -> None:
    assert presignature_owner(presignature_id) == owner
