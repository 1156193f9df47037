"""SessionRouter: routing, buffering bounds (count, per sender, bytes, age), closed sessions,
outsiders, services, and a malformed payload logged with its sender.

Messages are fed through ``_on_message``, exactly as the mesh calls it; sending goes over a
real mesh in the last test.
"""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path

import pytest
from node_helpers import run
from protocol_cluster import NodeKeys, make_node_keys, start_cluster, stop_cluster

from quorumkeep.node.mesh import Mesh
from quorumkeep.node.messages import (
    CHANNEL_DKG,
    CHANNEL_SIGN,
    DkgConfirm,
    Message,
    Refusal,
    SignShare,
    encode,
)
from quorumkeep.node.session_router import SessionRouter
from quorumkeep.node.sessions import SessionError

H = bytes(32)


@pytest.fixture(scope="module")
def keys(tmp_path_factory: pytest.TempPathFactory) -> dict[int, NodeKeys]:
    return make_node_keys(tmp_path_factory.mktemp("session-identities"), 2)


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def confirm(session: str) -> bytes:
    return encode(DkgConfirm(session, H))


def router_for(keys: dict[int, NodeKeys], **options: object) -> SessionRouter:
    return SessionRouter(Mesh(keys[1].identity), **options)  # type: ignore[arg-type]


def test_early_messages_are_buffered_and_delivered_in_order(keys: dict[int, NodeKeys]) -> None:
    async def scenario() -> None:
        router = router_for(keys)
        router._on_message(2, CHANNEL_DKG, encode(DkgConfirm("a", b"\x01" * 32)))
        router._on_message(3, CHANNEL_DKG, encode(DkgConfirm("a", b"\x02" * 32)))
        router._on_message(2, CHANNEL_DKG, encode(DkgConfirm("a", b"\x03" * 32)))
        assert router.buffered() == 3
        session = router.open(CHANNEL_DKG, "a")
        assert router.buffered() == 0
        sender, message = await session.recv(2, 1)
        assert sender == 2 and isinstance(message, DkgConfirm)
        assert message.public_key_package_hash == b"\x01" * 32
        _, message = await session.recv(None, 1)
        assert isinstance(message, DkgConfirm) and message.public_key_package_hash[0] == 2
        _, message = await session.recv(2, 1, expect=DkgConfirm)
        assert isinstance(message, DkgConfirm) and message.public_key_package_hash[0] == 3
        with pytest.raises(TimeoutError):
            await session.recv(None, 0.05)

    run(scenario())


def test_buffer_is_bounded_per_sender_in_total_and_in_bytes(keys: dict[int, NodeKeys]) -> None:
    async def scenario() -> None:
        router = router_for(keys, max_buffered=10, max_buffered_per_sender=4)
        for k in range(6):
            router._on_message(2, CHANNEL_DKG, confirm(f"s{k}"))
        assert router.buffered() == 4  # one sender cannot take the whole buffer
        for sender in (3, 4, 5):
            for k in range(4):
                router._on_message(sender, CHANNEL_DKG, confirm(f"t{sender}-{k}"))
        assert router.buffered() == 10
        assert router.stats.dropped_full == 2 + 6
        size = len(confirm("x1"))
        small = router_for(keys, max_buffered_bytes=3 * size)
        for k in range(5):
            small._on_message(2, CHANNEL_DKG, confirm(f"x{k}"))
        assert small.buffered() == 3

    run(scenario())


def test_buffered_sessions_expire(keys: dict[int, NodeKeys]) -> None:
    async def scenario() -> None:
        clock = Clock()
        router = router_for(keys, buffer_ttl=30.0, clock=clock)
        router._on_message(2, CHANNEL_DKG, confirm("old"))
        clock.now += 20
        router._on_message(2, CHANNEL_DKG, confirm("new"))
        clock.now += 15  # "old" is 35 s old, "new" 15 s
        assert router.buffered() == 1
        assert router.stats.dropped_expired == 1
        old = router.open(CHANNEL_DKG, "old")
        with pytest.raises(TimeoutError):
            await old.recv(None, 0.01)
        new = router.open(CHANNEL_DKG, "new")
        assert (await new.recv(2, 1))[0] == 2

    run(scenario())


def test_closed_sessions_drop_late_messages_and_cannot_reopen(keys: dict[int, NodeKeys]) -> None:
    async def scenario() -> None:
        router = router_for(keys)
        with router.open(CHANNEL_DKG, "once") as session:
            router._on_message(2, CHANNEL_DKG, confirm("once"))
        assert session.closed
        router._on_message(2, CHANNEL_DKG, confirm("once"))
        assert router.buffered() == 0 and router.stats.dropped_closed == 1
        with pytest.raises(SessionError, match="single-use"):
            router.open(CHANNEL_DKG, "once")
        with pytest.raises(SessionError, match="closed"):
            await session.recv(None, 0.01)
        live = router.open(CHANNEL_DKG, "live")
        with pytest.raises(SessionError, match="already open"):
            router.open(CHANNEL_DKG, "live")
        with pytest.raises(SessionError, match="unknown channel"):
            router.open("other", "x")
        with pytest.raises(SessionError, match="session"):
            router.open(CHANNEL_DKG, "has space")
        live.close()

    run(scenario())


def test_sessions_take_only_their_participants_and_a_bounded_queue(
    keys: dict[int, NodeKeys],
) -> None:
    async def scenario() -> None:
        router = router_for(keys, max_session_queue=3)
        router._on_message(9, CHANNEL_DKG, confirm("p"))  # buffered before the open
        session = router.open(CHANNEL_DKG, "p", participants=[1, 2])
        router._on_message(9, CHANNEL_DKG, confirm("p"))
        for _ in range(5):
            router._on_message(2, CHANNEL_DKG, confirm("p"))
        assert router.stats.dropped_outsider == 1
        assert router.stats.dropped_full == 2
        received = []
        for _ in range(3):
            received.append((await session.recv(None, 1))[0])
        assert received == [2, 2, 2]
        with pytest.raises(TimeoutError):
            await session.recv(None, 0.01)

    run(scenario())


def test_services_get_what_no_session_takes(keys: dict[int, NodeKeys]) -> None:
    async def scenario() -> None:
        router = router_for(keys)
        served: list[tuple[int, Message]] = []

        async def service(sender: int, message: Message) -> None:
            served.append((sender, message))
            if isinstance(message, Refusal):
                raise RuntimeError("a failing service must not break routing")

        router.serve(CHANNEL_SIGN, service)
        with pytest.raises(SessionError):
            router.serve(CHANNEL_SIGN, service)
        mine = router.open(CHANNEL_SIGN, "1:a:0")
        assert router._on_message(2, CHANNEL_SIGN, encode(SignShare("1:a:0", H))) is None
        pending = router._on_message(2, CHANNEL_SIGN, encode(SignShare("2:b:0", H)))
        assert pending is not None
        await pending
        failing = router._on_message(3, CHANNEL_SIGN, encode(Refusal("2:b:1", "x", "y")))
        assert failing is not None
        await failing  # logged, not raised
        assert [s for s, _ in served] == [2, 3]
        assert (await mine.recv(2, 1))[0] == 2
        assert router._on_message(2, "not-a-protocol", b"anything") is None
        assert router.buffered() == 0

    run(scenario())


def test_malformed_payload_is_dropped_and_logged_naming_the_sender(
    keys: dict[int, NodeKeys], tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    async def scenario() -> None:
        nodes = await start_cluster(keys, tmp_path)
        try:
            session = nodes[1].router.open(CHANNEL_DKG, "m", participants=[2])
            with caplog.at_level(logging.WARNING, logger="quorumkeep.node.sessions"):
                await nodes[2].mesh.send(1, CHANNEL_DKG, b'{"type":"dkg_confirm"}')
                await nodes[2].mesh.send(1, CHANNEL_DKG, confirm("m"))
                sender, message = await session.recv(2, 5)
            assert sender == 2 and isinstance(message, DkgConfirm)
            assert nodes[1].router.stats.malformed == 1
            lines = [r.getMessage() for r in caplog.records]
            assert any("malformed dkg message from participant 2" in line for line in lines)
            # the connection survived: the good message after the bad one arrived
            session.close()
        finally:
            await stop_cluster(nodes)
        await asyncio.sleep(0)

    run(scenario())
