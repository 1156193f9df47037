"""PedPoP over real meshes: one key for all, named cheaters, timeouts, hostile payloads."""

from __future__ import annotations

import asyncio
import os
from pathlib import Path
from typing import Any

import pytest
from nacl.signing import VerifyKey
from node_helpers import eventually, run
from protocol_cluster import (
    NodeKeys,
    dkg_all,
    frost_sign,
    make_node_keys,
    start_cluster,
    stop_cluster,
)

from quorumkeep.crypto import dkg
from quorumkeep.crypto.dkg import Round2Package
from quorumkeep.crypto.group import ONE, base_mul, scalar_add
from quorumkeep.node.messages import (
    CHANNEL_DKG,
    DkgRound1,
    MessageError,
    SessionAbort,
    decode,
    encode,
)
from quorumkeep.node.protocols import dkg as dkg_protocol
from quorumkeep.node.protocols.dkg import dkg_context, run_dkg
from quorumkeep.node.protocols.errors import (
    InvalidSessionParameters,
    ParticipantMisbehaved,
    ProtocolTimeout,
    SessionAborted,
)


@pytest.fixture(scope="module")
def keys(tmp_path_factory: pytest.TempPathFactory) -> dict[int, NodeKeys]:
    return make_node_keys(tmp_path_factory.mktemp("dkg-identities"), 4)


def test_dkg_among_four_gives_one_key_that_signs(keys: dict[int, NodeKeys], tmp_path: Path) -> None:
    async def scenario() -> None:
        nodes = await start_cluster(keys, tmp_path)
        try:
            results = await dkg_all(nodes, "dkg-0-0-0", threshold=3)
        finally:
            await stop_cluster(nodes)
        publics = {pid: public for pid, (_, public) in results.items()}
        first = publics[1]
        assert all(public == first for public in publics.values())
        assert first.identifiers == [1, 2, 3, 4] and first.threshold == 3
        packages = {pid: key for pid, (key, _) in results.items()}
        for pid, key in packages.items():
            assert key.identifier == pid and key.threshold == 3
            assert base_mul(key.signing_share) == first.verifying_shares[pid]
        message = b"quorumkeep dkg test message"
        for signers in ([1, 2, 3], [2, 3, 4], [1, 3, 4]):
            signature = frost_sign(packages, signers, message)
            VerifyKey(first.group_public_key).verify(message, signature)  # raises if invalid

    run(scenario())


def test_bad_round2_share_is_named_by_everyone(
    keys: dict[int, NodeKeys], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    real_part2 = dkg.part2

    def cheating_part2(secret: Any, packages: Any) -> Any:
        secret2, shares = real_part2(secret, packages)
        if secret.identifier == 4:  # participant 4 sends participant 1 a wrong share
            shares[1] = Round2Package(scalar_add(shares[1].signing_share, ONE))
        return secret2, shares

    monkeypatch.setattr(dkg_protocol.dkg, "part2", cheating_part2)

    async def scenario() -> None:
        nodes = await start_cluster(keys, tmp_path)
        try:
            outcomes = await asyncio.gather(
                *(
                    run_dkg(
                        nodes[pid].router,
                        session_id="dkg-cheat",
                        me=pid,
                        participants=[1, 2, 3, 4],
                        threshold=3,
                        random_bytes=os.urandom,
                        timeout=10,
                    )
                    for pid in (1, 2, 3, 4)
                ),
                return_exceptions=True,
            )
        finally:
            await stop_cluster(nodes)
        for pid, outcome in zip((1, 2, 3, 4), outcomes, strict=True):
            assert isinstance(outcome, ParticipantMisbehaved), (pid, outcome)
            assert outcome.culprit == 4
            assert outcome.code == "cheater_detected"
        assert outcomes[0].reported_by is None  # participant 1 detected it itself
        assert all(o.reported_by == 1 for o in outcomes[1:])  # type: ignore[union-attr]

    run(scenario())


def test_equivocating_round1_is_named_before_anyone_keeps_a_share(
    keys: dict[int, NodeKeys], tmp_path: Path
) -> None:
    """Participant 4 sends one valid round-1 package to 1 and another to 2 and 3."""

    async def cheater(nodes: Any) -> None:
        router = nodes[4].router
        session = router.open(CHANNEL_DKG, "dkg-equivocate", [1, 2, 3, 4])
        context = dkg_context("dkg-equivocate")
        _, package_a = dkg.part1(4, [1, 2, 3, 4], 3, os.urandom, context=context)
        _, package_b = dkg.part1(4, [1, 2, 3, 4], 3, os.urandom, context=context)
        await session.send(1, DkgRound1("dkg-equivocate", package_a))
        await session.broadcast([2, 3], DkgRound1("dkg-equivocate", package_b))
        _, abort = await session.recv(None, 5, expect=SessionAbort)  # they found out
        assert isinstance(abort, SessionAbort) and abort.culprit == 4
        session.close()

    async def scenario() -> None:
        nodes = await start_cluster(keys, tmp_path)
        try:
            honest = [
                run_dkg(
                    nodes[pid].router,
                    session_id="dkg-equivocate",
                    me=pid,
                    participants=[1, 2, 3, 4],
                    threshold=3,
                    random_bytes=os.urandom,
                    timeout=5,
                )
                for pid in (1, 2, 3)
            ]
            outcomes = await asyncio.gather(*honest, cheater(nodes), return_exceptions=True)
        finally:
            await stop_cluster(nodes)
        for outcome in outcomes[:3]:
            assert isinstance(outcome, ParticipantMisbehaved), outcome
            assert outcome.culprit == 4
        assert any("different round-1 packages" in str(o) for o in outcomes[:3])

    run(scenario())


def test_missing_participant_times_out_naming_it(keys: dict[int, NodeKeys], tmp_path: Path) -> None:
    async def scenario() -> None:
        nodes = await start_cluster(keys, tmp_path)
        try:
            outcomes = await asyncio.gather(
                *(
                    run_dkg(
                        nodes[pid].router,
                        session_id="dkg-absent",
                        me=pid,
                        participants=[1, 2, 3, 4],
                        threshold=3,
                        random_bytes=os.urandom,
                        timeout=1.0 if pid == 1 else 10.0,
                    )
                    for pid in (1, 2, 3)  # participant 4 is connected but never starts
                ),
                return_exceptions=True,
            )
        finally:
            await stop_cluster(nodes)
        first = outcomes[0]
        assert isinstance(first, ProtocolTimeout), first
        assert first.missing == (4,) and first.stage == "round 1"
        assert first.code == "timeout"
        for outcome in outcomes[1:]:  # told at once instead of waiting out their own 10 s
            assert isinstance(outcome, SessionAborted), outcome
            assert outcome.by == 1 and "[4]" in outcome.reason

    run(scenario())


def test_garbage_and_early_messages_do_not_disturb_a_run(
    keys: dict[int, NodeKeys], tmp_path: Path
) -> None:
    """Malformed payloads are dropped and logged; messages sent before a participant opened
    its session are buffered; the run still completes."""

    async def scenario() -> None:
        nodes = await start_cluster(keys, tmp_path)
        try:
            for payload in (b"\xff\xfe", b"[]", b'{"type":"dkg_round1"}', b"{" * 5000):
                await nodes[2].mesh.send(1, CHANNEL_DKG, payload)
            # participants 2..4 start first; participant 1 joins 0.3 s later
            late = asyncio.sleep(0.3)
            others = asyncio.gather(
                *(
                    run_dkg(
                        nodes[pid].router,
                        session_id="dkg-late",
                        me=pid,
                        participants=[1, 2, 3, 4],
                        threshold=3,
                        random_bytes=os.urandom,
                        timeout=10,
                    )
                    for pid in (2, 3, 4)
                )
            )
            await late
            # three round-1 packages wait for participant 1's session
            await eventually(lambda: nodes[1].router.buffered() == 3)
            mine = await run_dkg(
                nodes[1].router,
                session_id="dkg-late",
                me=1,
                participants=[1, 2, 3, 4],
                threshold=3,
                random_bytes=os.urandom,
                timeout=10,
            )
            rest = await others
            assert all(public == mine[1] for _, public in rest)
            assert nodes[1].router.stats.malformed == 4
        finally:
            await stop_cluster(nodes)

    run(scenario())


def test_invalid_parameters_are_refused_before_anything_is_sent(
    keys: dict[int, NodeKeys], tmp_path: Path
) -> None:
    async def scenario() -> None:
        nodes = await start_cluster(keys, tmp_path, [1, 2])
        try:
            router = nodes[1].router
            cases: list[dict[str, Any]] = [
                {"participants": [2, 3, 4], "threshold": 2},  # me missing
                {"participants": [1, 2, 2], "threshold": 2},  # duplicate
                {"participants": [1, 2], "threshold": 3},  # t > n
                {"participants": [1, 2], "threshold": 1},  # t < 2
                {"participants": [0, 1], "threshold": 2},  # id 0
            ]
            for case in cases:
                with pytest.raises(InvalidSessionParameters):
                    await run_dkg(
                        router,
                        session_id="dkg-bad",
                        me=1,
                        random_bytes=os.urandom,
                        timeout=1,
                        **case,
                    )
            assert nodes[1].mesh.stats.messages_sent == 0
        finally:
            await stop_cluster(nodes)

    run(scenario())


def test_round1_payload_decodes_strictly() -> None:
    _, package = dkg.part1(1, [1, 2], 2, os.urandom, context=b"x")
    payload = encode(DkgRound1("s", package))
    assert decode(CHANNEL_DKG, payload) == DkgRound1("s", package)
    tampered = payload.replace(package.proof_mu.hex().encode(), b"ff" * 32)
    with pytest.raises(MessageError, match="proof mu"):
        decode(CHANNEL_DKG, tampered)
