"""Resharing over real meshes: 4 → 5 with t 3 → 4 under the same key, departures, cheaters."""

from __future__ import annotations

import asyncio
import os
from pathlib import Path
from typing import Any

import pytest
from nacl.signing import VerifyKey
from node_helpers import run
from protocol_cluster import (
    NodeKeys,
    dkg_all,
    frost_sign,
    make_node_keys,
    start_cluster,
    stop_cluster,
)

from quorumkeep.crypto import reshare
from quorumkeep.crypto.errors import InvalidParameters
from quorumkeep.crypto.group import ONE, base_mul, scalar_add
from quorumkeep.crypto.keys import KeyPackage, PublicKeyPackage
from quorumkeep.crypto.reshare import SubShare
from quorumkeep.node.protocols import reshare as reshare_protocol
from quorumkeep.node.protocols.errors import (
    InvalidSessionParameters,
    ParticipantMisbehaved,
    ProtocolTimeout,
    SessionAborted,
)
from quorumkeep.node.protocols.reshare import reshare_leader, run_reshare
from quorumkeep.node.session_router import SessionRouter

Result = tuple[KeyPackage, PublicKeyPackage] | None


@pytest.fixture(scope="module")
def keys(tmp_path_factory: pytest.TempPathFactory) -> dict[int, NodeKeys]:
    return make_node_keys(tmp_path_factory.mktemp("reshare-identities"), 5)


async def reshare_all(
    routers: dict[int, SessionRouter],
    old: dict[int, tuple[KeyPackage, PublicKeyPackage]],
    new_participants: list[int],
    new_threshold: int,
    session_id: str,
    timeout: float = 10.0,
    **extra: Any,
) -> dict[int, Result | BaseException]:
    public = next(iter(old.values()))[1]
    everyone = sorted(set(old) | set(new_participants))

    def call(pid: int) -> Any:
        key, old_public = old.get(pid, (None, None))
        return run_reshare(
            routers[pid],
            session_id=session_id,
            me=pid,
            old_participants=public.identifiers,
            old_threshold=public.threshold,
            old_public=old_public,
            old_key=key,
            new_participants=new_participants,
            new_threshold=new_threshold,
            random_bytes=os.urandom,
            timeout=timeout,
            group_public_key=public.group_public_key,
            **extra,
        )

    outcomes = await asyncio.gather(*(call(pid) for pid in everyone), return_exceptions=True)
    return dict(zip(everyone, outcomes, strict=True))


def test_reshare_four_to_five_keeps_the_key_and_the_new_set_signs(
    keys: dict[int, NodeKeys], tmp_path: Path
) -> None:
    async def scenario() -> None:
        nodes = await start_cluster(keys, tmp_path)
        try:
            old = await dkg_all(nodes, "dkg-r-0", threshold=3, pids=[1, 2, 3, 4])
            routers = {pid: node.router for pid, node in nodes.items()}
            outcomes = await reshare_all(routers, old, [1, 2, 3, 4, 5], 4, "reshare-0-1-0")
        finally:
            await stop_cluster(nodes)
        group_key = old[1][1].group_public_key
        new: dict[int, KeyPackage] = {}
        publics = []
        for pid, outcome in outcomes.items():
            assert isinstance(outcome, tuple), (pid, outcome)
            key, public = outcome
            assert key.identifier == pid and key.threshold == 4
            assert base_mul(key.signing_share) == public.verifying_shares[pid]
            new[pid] = key
            publics.append(public)
        assert all(p == publics[0] for p in publics)
        assert publics[0].group_public_key == group_key
        assert publics[0].identifiers == [1, 2, 3, 4, 5] and publics[0].threshold == 4
        message = b"signed by the new set under the old key"
        for signers in ([1, 2, 3, 5], [2, 3, 4, 5]):
            VerifyKey(group_key).verify(message, frost_sign(new, signers, message))
        # three new shares are below the new threshold: they no longer make a signature
        with pytest.raises(InvalidParameters):
            frost_sign(new, [1, 2, 5], message)

    run(scenario())


def test_departing_holder_returns_none_and_the_newcomer_joins(
    keys: dict[int, NodeKeys], tmp_path: Path
) -> None:
    async def scenario() -> None:
        nodes = await start_cluster(keys, tmp_path)
        try:
            old = await dkg_all(nodes, "dkg-r-1", threshold=3, pids=[1, 2, 3, 4])
            routers = {pid: node.router for pid, node in nodes.items()}
            outcomes = await reshare_all(
                routers, old, [1, 2, 3, 5], 3, "reshare-depart", excluded_dealers=[1]
            )
        finally:
            await stop_cluster(nodes)
        assert outcomes[4] is None  # participant 4 dealt (1 was excluded) and leaves
        new = {pid: outcome[0] for pid, outcome in outcomes.items() if isinstance(outcome, tuple)}
        assert sorted(new) == [1, 2, 3, 5]
        message = b"after a departure"
        VerifyKey(old[1][1].group_public_key).verify(message, frost_sign(new, [1, 3, 5], message))

    run(scenario())


def test_absent_departing_holder_is_left_out_of_the_session(
    keys: dict[int, NodeKeys], tmp_path: Path
) -> None:
    # Participant 4 was marked by the contract: it is down (peers refuse it anyway); the
    # others reshare to [1, 2, 3] without waiting for it or sending it anything.
    async def scenario() -> None:
        nodes = await start_cluster(keys, tmp_path)
        try:
            old = await dkg_all(nodes, "dkg-r-absent", threshold=3, pids=[1, 2, 3, 4])
            await nodes[4].mesh.close()
            routers = {pid: node.router for pid, node in nodes.items() if pid != 4}
            live = {pid: old[pid] for pid in (1, 2, 3)}
            outcomes = await reshare_all(
                routers, live, [1, 2, 3], 3, "reshare-absent", timeout=5.0, absent=[4]
            )
            alone = await run_reshare(
                nodes[4].router,
                session_id="reshare-absent",
                me=4,
                old_participants=[1, 2, 3, 4],
                old_threshold=3,
                old_public=old[4][1],
                old_key=old[4][0],
                new_participants=[1, 2, 3],
                new_threshold=3,
                random_bytes=os.urandom,
                timeout=1.0,
                absent=[4],
            )
        finally:
            await stop_cluster({pid: n for pid, n in nodes.items() if pid != 4})
        assert alone is None
        new = {pid: outcome[0] for pid, outcome in outcomes.items() if isinstance(outcome, tuple)}
        assert sorted(new) == [1, 2, 3], outcomes
        message = b"after an absent departure"
        VerifyKey(old[1][1].group_public_key).verify(message, frost_sign(new, [1, 2, 3], message))

    run(scenario())


def test_a_new_holder_cannot_be_absent(keys: dict[int, NodeKeys]) -> None:
    with pytest.raises(InvalidSessionParameters):
        run(
            run_reshare(
                None,  # type: ignore[arg-type]
                session_id="x",
                me=1,
                old_participants=[1, 2, 3, 4],
                old_threshold=3,
                old_public=None,
                old_key=None,
                new_participants=[1, 2, 3],
                new_threshold=3,
                random_bytes=os.urandom,
                timeout=1.0,
                group_public_key=base_mul(ONE),
                absent=[3],
            )
        )


def test_dealer_with_a_bad_sub_share_is_named_by_everyone(
    keys: dict[int, NodeKeys], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    real_deal = reshare.deal

    def cheating_deal(key_package: KeyPackage, *args: Any) -> Any:
        package, sub_shares = real_deal(key_package, *args)
        if key_package.identifier == 2:  # dealer 2 gives newcomer 5 a wrong sub-share
            sub_shares[5] = SubShare(scalar_add(sub_shares[5].value, ONE))
        return package, sub_shares

    monkeypatch.setattr(reshare_protocol.reshare, "deal", cheating_deal)

    async def scenario() -> None:
        nodes = await start_cluster(keys, tmp_path)
        try:
            old = await dkg_all(nodes, "dkg-r-2", threshold=3, pids=[1, 2, 3, 4])
            routers = {pid: node.router for pid, node in nodes.items()}
            # excluding 4 makes the dealer set exactly {1, 2, 3}
            outcomes = await reshare_all(
                routers, old, [1, 2, 3, 4, 5], 3, "reshare-cheat", excluded_dealers=[4]
            )
        finally:
            await stop_cluster(nodes)
        for pid, outcome in outcomes.items():
            assert isinstance(outcome, ParticipantMisbehaved), (pid, outcome)
            assert outcome.culprit == 2
        assert outcomes[5].reported_by is None  # type: ignore[union-attr]

    run(scenario())


def test_too_few_live_old_holders_time_out_at_ready(
    keys: dict[int, NodeKeys], tmp_path: Path
) -> None:
    async def scenario() -> None:
        nodes = await start_cluster(keys, tmp_path)
        try:
            old = await dkg_all(nodes, "dkg-r-3", threshold=3, pids=[1, 2, 3, 4])
            routers = {pid: node.router for pid, node in nodes.items()}
            # only 1 and 2 of the old holders take part; the leader (1) needs three
            live = {pid: old[pid] for pid in (1, 2)}
            public = old[1][1]
            outcome = await asyncio.gather(
                *(
                    run_reshare(
                        routers[pid],
                        session_id="reshare-few",
                        me=pid,
                        old_participants=[1, 2, 3, 4],
                        old_threshold=3,
                        old_public=live[pid][1],
                        old_key=live[pid][0],
                        new_participants=[1, 2, 3, 4],
                        new_threshold=3,
                        random_bytes=os.urandom,
                        timeout=1.0 if pid == 1 else 3.0,
                    )
                    for pid in (1, 2)
                ),
                return_exceptions=True,
            )
        finally:
            await stop_cluster(nodes)
        assert public.identifiers == [1, 2, 3, 4]
        leader_error = outcome[0]
        assert isinstance(leader_error, ProtocolTimeout)
        assert leader_error.stage == "ready" and leader_error.missing == (3, 4)
        # the leader's abort reaches participant 2 before its own, longer, timeout
        assert isinstance(outcome[1], SessionAborted) and outcome[1].by == 1

    run(scenario())


def test_leader_rotates_with_the_attempt() -> None:
    assert reshare_leader([1, 2, 3, 4], [2, 3, 4, 5]) == 2
    assert reshare_leader([1, 2, 3, 4], [2, 3, 4, 5], attempt=1) == 3
    assert reshare_leader([1, 2, 3, 4], [2, 3, 4, 5], attempt=3) == 2
    with pytest.raises(InvalidSessionParameters):
        reshare_leader([1, 2], [3, 4])


def test_inconsistent_inputs_are_refused(keys: dict[int, NodeKeys], tmp_path: Path) -> None:
    async def scenario() -> None:
        nodes = await start_cluster(keys, tmp_path, [1, 2])
        try:
            old = await dkg_all(nodes, "dkg-r-4", threshold=2)
            key, public = old[1]
            base: dict[str, Any] = {
                "session_id": "reshare-bad",
                "me": 1,
                "old_participants": [1, 2],
                "old_threshold": 2,
                "old_public": public,
                "old_key": key,
                "new_participants": [1, 2, 3],
                "new_threshold": 2,
                "random_bytes": os.urandom,
                "timeout": 1.0,
            }
            cases: list[dict[str, Any]] = [
                {"me": 7},  # neither old nor new
                {"old_threshold": 3},  # does not match the public package
                {"new_threshold": 4},  # t > n
                {"new_participants": [1, 3, 4]},  # only one old holder stays; t_old is 2
                {"old_public": None},  # an old holder without its public package
                {"old_public": None, "old_key": None, "me": 3},  # newcomer without group key
                {"group_public_key": base_mul(ONE)},  # another key
                {"old_key": old[2][0]},  # someone else's key package
            ]
            for case in cases:
                with pytest.raises(InvalidSessionParameters):
                    await run_reshare(nodes[1].router, **{**base, **case})
        finally:
            await stop_cluster(nodes)

    run(scenario())
