"""quorumkeep.node.mesh on real sockets: mutual TLS by contract key, rebuilds, hostile input."""

from __future__ import annotations

import asyncio
import gc
import json
import os
import signal
import socket
import ssl
import sys
import textwrap
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field

import pytest
from node_helpers import eventually, make_identity, run

from quorumkeep.node.identity import NodeIdentity
from quorumkeep.node.mesh import Mesh
from quorumkeep.node.mesh_frames import (
    HELLO_BODY,
    MAX_FRAME_SIZE,
    FrameError,
    decode_incarnation,
    decode_message,
    encode_incarnation,
    encode_message,
    read_frame,
)
from quorumkeep.node.mesh_peers import InvalidParticipants, PeerInfo, PeerNotConnected
from quorumkeep.wire.tls import certificate_der, close_writer, fetch_certificate

# A socket, transport or stream left unclosed is a failure here, not a silent warning: the
# warning raised in a finalizer becomes an unraisable-exception error (pyproject.toml).
pytestmark = pytest.mark.filterwarnings("error::ResourceWarning")


@pytest.fixture(autouse=True)
def _collect_garbage() -> Iterator[None]:
    yield
    gc.collect()  # finalize objects in reference cycles while this test is still running


FAST_MESH = {"handshake_timeout": 2.0, "backoff_initial": 0.02, "backoff_max": 0.25}


@pytest.fixture(scope="module")
def identities(tmp_path_factory: pytest.TempPathFactory) -> dict[str, NodeIdentity]:
    base = tmp_path_factory.mktemp("mesh-identities")
    names = ["a", "b", "c", "d", "c2", "mallory"]
    return {name: make_identity(base / name, name)[0] for name in names}


@dataclass
class Node:
    identity: NodeIdentity
    mesh: Mesh
    inbox: list[tuple[int, str, bytes]] = field(default_factory=list)

    def info(self, pid: int) -> PeerInfo:
        host, port = self.mesh.address
        return PeerInfo(pid, self.identity.account, f"{host}:{port}", self.identity.tls_public_key)

    def received(self, sender: int, channel: str | None = None) -> list[bytes]:
        return [p for s, c, p in self.inbox if s == sender and (channel is None or c == channel)]


async def start_node(identity: NodeIdentity) -> Node:
    mesh = Mesh(identity, **FAST_MESH)
    node = Node(identity, mesh)
    mesh.add_handler(lambda sender, channel, payload: node.inbox.append((sender, channel, payload)))
    await mesh.start()
    return node


async def start_cluster(
    identities: Mapping[str, NodeIdentity], names: list[str]
) -> tuple[dict[int, Node], dict[int, PeerInfo]]:
    nodes = {pid: await start_node(identities[name]) for pid, name in enumerate(names, start=1)}
    participants = {pid: node.info(pid) for pid, node in nodes.items()}
    for pid, node in nodes.items():
        await node.mesh.update_participants(participants, pid)
    for node in nodes.values():
        await node.mesh.wait_connected(None, timeout=10)
    for pid, node in nodes.items():  # and each acceptor admitted its peers' connections
        await eventually(lambda n=node, p=pid: n.mesh.inbound_peers() == set(nodes) - {p})
    return nodes, participants


async def stop(nodes: Mapping[int, Node] | list[Node]) -> None:
    values = nodes.values() if isinstance(nodes, Mapping) else nodes
    await asyncio.gather(*(node.mesh.close() for node in values))


# --- frames ------------------------------------------------------------------------------


def test_frame_bytes_are_as_documented() -> None:
    frame = encode_message("sign", b"\x01\x02")
    assert frame == b"\x00\x00\x00\x08" + b"\x02\x04sign" + b"\x01\x02"
    assert decode_message(frame[4:]) == ("sign", b"\x01\x02")
    assert HELLO_BODY == b"\x01QKM\x02"
    assert encode_incarnation(bytes(range(16))) == b"\x00\x00\x00\x11\x03" + bytes(range(16))
    assert decode_incarnation(b"\x03" + bytes(range(16))) == bytes(range(16))
    for body in (b"", b"\x03" + bytes(15), b"\x03" + bytes(17), b"\x02" + bytes(16)):
        with pytest.raises(FrameError):
            decode_incarnation(body)
    with pytest.raises(FrameError):
        encode_incarnation(bytes(15))
    assert decode_message(encode_message("é", b"")[4:]) == ("é", b"")
    with pytest.raises(FrameError):
        encode_message("", b"x")
    with pytest.raises(FrameError):
        encode_message("x" * 256, b"x")
    with pytest.raises(FrameError):
        encode_message("c", b"x" * MAX_FRAME_SIZE)
    assert len(encode_message("c", b"x" * (MAX_FRAME_SIZE - 3))) == MAX_FRAME_SIZE + 4
    for body in (b"", b"\x02", b"\x02\x00x", b"\x02\x05ab", b"\x03\x01ab", b"\x02\x02\xff\xfe"):
        with pytest.raises(FrameError):
            decode_message(body)


def test_read_frame_limits() -> None:
    async def scenario() -> None:
        for data, error in [
            (b"\x00\x00\x00\x00", FrameError),
            ((MAX_FRAME_SIZE + 1).to_bytes(4, "big"), FrameError),
            (b"\x00\x00\x00\x05abc", asyncio.IncompleteReadError),
        ]:
            reader = asyncio.StreamReader()
            reader.feed_data(data)
            reader.feed_eof()
            with pytest.raises(error):
                await read_frame(reader)

    run(scenario())


# --- flows -------------------------------------------------------------------------------


def test_messages_flow_both_ways_between_four_participants(
    identities: dict[str, NodeIdentity],
) -> None:
    async def scenario() -> None:
        nodes, _ = await start_cluster(identities, ["a", "b", "c", "d"])
        try:
            for pid, node in nodes.items():
                assert node.mesh.connected_peers() == set(nodes) - {pid}
                for other in nodes:
                    await node.mesh.send(other, "test", f"{pid}->{other}".encode())
            big = os.urandom(MAX_FRAME_SIZE - 100)
            await nodes[1].mesh.send(2, "big", big)
            sent_to = await nodes[4].mesh.broadcast("all", b"hi", include_self=True)
            assert sent_to == {1, 2, 3, 4}
            await eventually(lambda: all(len(n.inbox) >= 5 for n in nodes.values()))
            await eventually(lambda: nodes[2].received(1, "big") == [big])
            for pid, node in nodes.items():
                for sender in nodes:
                    # Including ourselves: a message to my_id reaches our own handlers.
                    assert node.received(sender, "test") == [f"{sender}->{pid}".encode()]
                    assert node.received(4, "all") == [b"hi"]
                assert set(node.mesh.inbound_peers()) == set(nodes) - {pid}
            assert nodes[1].mesh.stats.messages_sent == 5  # four tests (one to itself), one big
        finally:
            await stop(nodes)

    run(scenario())


def test_certificate_is_served_to_clients_without_one(identities: dict[str, NodeIdentity]) -> None:
    async def scenario() -> None:
        node = await start_node(identities["a"])
        try:
            host, port = node.mesh.address
            der = await fetch_certificate(host, port, timeout=5)
            assert der == certificate_der(identities["a"].certificate)
            await eventually(lambda: node.mesh.stats.certificate_fetches_served == 1)
            assert node.mesh.inbound_peers() == frozenset()
        finally:
            await node.mesh.close()

    run(scenario())


def test_certificate_key_not_in_the_participant_set_is_refused(
    identities: dict[str, NodeIdentity],
) -> None:
    async def scenario() -> None:
        nodes, participants = await start_cluster(identities, ["a", "b", "c"])
        mallory = await start_node(identities["mallory"])
        try:
            # Mallory believes it is participant 9 and also claims participant 2's slot.
            claimed = dict(participants)
            claimed[9] = mallory.info(9)
            await mallory.mesh.update_participants(claimed, 9)
            await eventually(lambda: nodes[1].mesh.stats.connections_rejected >= 2)
            # It can learn their certificates (that is public), but no connection is admitted.
            with pytest.raises(PeerNotConnected):
                await mallory.mesh.wait_connected([1, 2, 3], timeout=0.5)
            assert mallory.mesh.connected_peers() == frozenset()
            with pytest.raises(PeerNotConnected):
                await mallory.mesh.send(1, "evil", b"x")
            # By hand: a TLS client with Mallory's certificate gets no HELLO, only a close.
            host, port = nodes[1].mesh.address
            context = identities["mallory"].tls.client_context([identities["a"].certificate])
            reader, writer = await asyncio.open_connection(
                host, port, ssl=context, server_hostname=""
            )
            try:
                async with asyncio.timeout(5):
                    data = await reader.read(100)
            except (ssl.SSLError, ConnectionError):
                data = b""
            await close_writer(writer)
            assert data == b""
            for node in nodes.values():
                assert all(sender in (1, 2, 3) for sender, _c, _p in node.inbox)
                assert node.mesh.inbound_peers() <= {1, 2, 3}
            # The legitimate participants are undisturbed.
            await nodes[2].mesh.send(1, "ok", b"still fine")
            await eventually(lambda: nodes[1].received(2, "ok") == [b"still fine"])
        finally:
            await stop([*nodes.values(), mallory])

    run(scenario())


async def _closed_by_peer(reader: asyncio.StreamReader, timeout: float = 5.0) -> bool:
    try:
        async with asyncio.timeout(timeout):
            while await reader.read(4096):
                pass
    except (ssl.SSLError, ConnectionError):
        pass
    return True


def test_garbage_and_bad_frames_close_only_that_connection(
    identities: dict[str, NodeIdentity],
) -> None:
    async def scenario() -> None:
        nodes, participants = await start_cluster(identities, ["a", "b", "c", "d"])
        a = nodes[1]
        before = a.mesh.peer_states()
        stop_traffic = asyncio.Event()

        async def traffic(sender: int, receiver: int) -> None:
            n = 0
            while not stop_traffic.is_set():
                await nodes[sender].mesh.send(receiver, "traffic", str(n).encode())
                n += 1
                await asyncio.sleep(0.005)

        pumps = [asyncio.create_task(traffic(s, r)) for s, r in [(1, 2), (2, 1), (1, 3), (3, 1)]]
        try:
            host, port = a.mesh.address
            # 1. Plain-TCP garbage: the TLS handshake fails and the socket is closed.
            for garbage in (os.urandom(3000), b"GET / HTTP/1.1\r\nHost: x\r\n\r\n"):
                reader, writer = await asyncio.open_connection(host, port)
                writer.write(garbage)
                assert await _closed_by_peer(reader)
                await close_writer(writer)
            # 2. A participant's own credentials, then bad frames after a valid one. D's real
            # mesh is stopped first so that its reconnects cannot displace our raw connections.
            d_port = nodes[4].mesh.address[1]
            await nodes[4].mesh.close()
            d = identities["d"].tls
            bad_frames = [
                (MAX_FRAME_SIZE + 1).to_bytes(4, "big") + b"\x02",
                b"\x00\x00\x00\x00",
                b"\x00\x00\x00\x03\x7fab",  # unknown frame kind
                b"\x00\x00\x00\x04\x02\x05ab",  # channel longer than the body
            ]
            for index, bad in enumerate(bad_frames):
                reader, writer = await asyncio.open_connection(
                    host,
                    port,
                    ssl=d.client_context([identities["a"].certificate]),
                    server_hostname="",
                )
                async with asyncio.timeout(5):
                    assert await read_frame(reader) == HELLO_BODY
                writer.write(encode_incarnation(os.urandom(16)))
                writer.write(encode_message("raw", f"before {index}".encode()) + bad)
                await writer.drain()
                assert await _closed_by_peer(reader)
                await close_writer(writer)
                await eventually(
                    lambda i=index: a.received(4, "raw")[-1:] == [f"before {i}".encode()]
                )
            assert a.mesh.stats.frames_rejected == len(bad_frames)
            assert a.mesh.stats.connections_rejected >= 2
            # Traffic with B and C went on, over the very same connections.
            counts = (len(a.received(2, "traffic")), len(a.received(3, "traffic")))
            await eventually(
                lambda: (
                    len(a.received(2, "traffic")) > counts[0] + 5
                    and len(a.received(3, "traffic")) > counts[1] + 5
                )
            )
            after = a.mesh.peer_states()
            for pid in (2, 3):
                assert after[pid] == before[pid]
            assert nodes[2].received(1, "traffic")[:3] == [b"0", b"1", b"2"]
            # D comes back on its address; everyone reconnects to it.
            nodes[4] = Node(identities["d"], Mesh(identities["d"], port=d_port, **FAST_MESH))
            await nodes[4].mesh.start()
            await nodes[4].mesh.update_participants(participants, 4)
            await nodes[4].mesh.send(1, "back", b"d is back", wait=5)
            await eventually(lambda: a.received(4, "back") == [b"d is back"])
        finally:
            stop_traffic.set()
            await asyncio.wait(pumps, timeout=5)
            await stop(nodes)
        for pump in pumps:
            assert pump.exception() is None

    run(scenario())


def test_new_tls_key_rebuilds_only_that_peer(identities: dict[str, NodeIdentity]) -> None:
    async def scenario() -> None:
        nodes, participants = await start_cluster(identities, ["a", "b", "c", "d"])
        replacement = await start_node(identities["c2"])  # participant 3 migrated: new key, url
        old_c = nodes[3]
        try:
            before = {pid: node.mesh.peer_states() for pid, node in nodes.items()}
            updated = dict(participants)
            updated[3] = replacement.info(3)
            for pid in (1, 2, 4):
                assert await nodes[pid].mesh.update_participants(updated, pid) == {3}
            await replacement.mesh.update_participants(updated, 3)
            await replacement.mesh.wait_connected(None, timeout=10)
            for pid in (1, 2, 4):
                await nodes[pid].mesh.wait_connected(None, timeout=10)
                states = nodes[pid].mesh.peer_states()
                for other in (1, 2, 4):
                    if other != pid:  # untouched: the same connections as before
                        assert states[other] == before[pid][other]
                assert states[3].outbound_connection != before[pid][3].outbound_connection
            await eventually(lambda: all(3 in nodes[p].mesh.inbound_peers() for p in (1, 2, 4)))
            # The old node (never told) is cut off: its connections are dropped and refused.
            await eventually(lambda: old_c.mesh.connected_peers() == frozenset())
            with pytest.raises(PeerNotConnected):
                await old_c.mesh.send(1, "stale", b"from the old node")
            old_inbox = len(old_c.inbox)
            await nodes[1].mesh.send(3, "hello", b"to the new 3")
            await replacement.mesh.send(1, "hello", b"from the new 3")
            await eventually(lambda: replacement.received(1, "hello") == [b"to the new 3"])
            await eventually(lambda: nodes[1].received(3, "hello") == [b"from the new 3"])
            assert len(old_c.inbox) == old_inbox
            assert nodes[1].received(3, "stale") == []
        finally:
            await stop([*nodes.values(), replacement])

    run(scenario())


def test_a_restarted_peer_announces_its_new_incarnation_before_its_messages(
    identities: dict[str, NodeIdentity],
) -> None:
    async def scenario() -> None:
        nodes, participants = await start_cluster(identities, ["a", "b"])
        a = nodes[1]
        seen: list[tuple[str, int, bytes]] = []
        a.mesh.add_peer_handler(lambda pid, incarnation: seen.append(("peer", pid, incarnation)))
        a.mesh.add_handler(lambda pid, channel, payload: seen.append(("message", pid, payload)))
        try:
            old = nodes[2].mesh.incarnation
            port = nodes[2].mesh.address[1]
            await nodes[2].mesh.close()
            b = Node(identities["b"], Mesh(identities["b"], port=port, **FAST_MESH))
            nodes[2] = b
            assert b.mesh.incarnation != old
            await b.mesh.start()
            await b.mesh.update_participants(participants, 2)
            await b.mesh.send(1, "first", b"from the new process", wait=10)
            await eventually(lambda: ("message", 2, b"from the new process") in seen)
            index = seen.index(("message", 2, b"from the new process"))
            assert ("peer", 2, b.mesh.incarnation) in seen[:index]
            # A connection that does not start with INCARNATION is closed, its message unread.
            host, a_port = a.mesh.address
            await b.mesh.close()
            reader, writer = await asyncio.open_connection(
                host,
                a_port,
                ssl=identities["b"].tls.client_context([identities["a"].certificate]),
                server_hostname="",
            )
            async with asyncio.timeout(5):
                assert await read_frame(reader) == HELLO_BODY
            rejected = a.mesh.stats.frames_rejected
            writer.write(encode_message("raw", b"no incarnation"))
            await writer.drain()
            assert await _closed_by_peer(reader)
            await close_writer(writer)
            assert a.mesh.stats.frames_rejected == rejected + 1
            assert a.received(2, "raw") == []
        finally:
            await stop(nodes)

    run(scenario())


def test_removed_participant_is_dropped(identities: dict[str, NodeIdentity]) -> None:
    async def scenario() -> None:
        nodes, participants = await start_cluster(identities, ["a", "b", "c", "d"])
        try:
            remaining = {pid: info for pid, info in participants.items() if pid != 4}
            for pid in (1, 2, 3):
                assert await nodes[pid].mesh.update_participants(remaining, pid) == {4}
            for pid in (1, 2, 3):
                mesh = nodes[pid].mesh
                assert mesh.connected_peers() == {1, 2, 3} - {pid}
                assert 4 not in mesh.peer_states()
                with pytest.raises(PeerNotConnected):
                    await mesh.send(4, "x", b"x")
            await eventually(lambda: all(4 not in nodes[p].mesh.inbound_peers() for p in (1, 2, 3)))
            # D was not told; it keeps trying and is refused everywhere.
            await eventually(lambda: nodes[4].mesh.connected_peers() == frozenset())
            for pid in (1, 2, 3):
                assert nodes[pid].received(4, "late") == []
            # Told it is no longer a participant, D drops everything itself.
            assert await nodes[4].mesh.update_participants(remaining, None) == {1, 2, 3, 4}
            assert nodes[4].mesh.peer_states() == {}
        finally:
            await stop(nodes)

    run(scenario())


def test_a_connection_mid_hello_is_not_admitted_once_this_node_left_the_set(
    identities: dict[str, NodeIdentity],
) -> None:
    """A peer's connection that said hello before this node stopped being a participant,
    and sends its incarnation after, is closed rather than admitted."""

    async def scenario() -> None:
        nodes, participants = await start_cluster(identities, ["a", "b"])
        a = nodes[1]
        await nodes[2].mesh.close()  # B's own reconnects would race the raw connection
        await eventually(lambda: a.mesh.inbound_peers() == frozenset())
        host, port = a.mesh.address
        reader, writer = await asyncio.open_connection(
            host,
            port,
            ssl=identities["b"].tls.client_context([identities["a"].certificate]),
            server_hostname="",
        )
        try:
            async with asyncio.timeout(5):
                assert await read_frame(reader) == HELLO_BODY
            await a.mesh.update_participants(participants, None)  # A leaves the set
            writer.write(encode_incarnation(os.urandom(16)) + encode_message("raw", b"late"))
            await writer.drain()
            assert await _closed_by_peer(reader)
            assert a.mesh.inbound_peers() == frozenset()
            assert a.received(2) == []
        finally:
            await close_writer(writer)
            await stop(nodes)

    run(scenario())


def test_update_participants_rejects_bad_sets(identities: dict[str, NodeIdentity]) -> None:
    async def scenario() -> None:
        nodes, participants = await start_cluster(identities, ["a", "b"])
        a = nodes[1].mesh
        key_b = identities["b"].tls_public_key
        bad_sets: list[tuple[dict[int, PeerInfo], int | None]] = [
            ({**participants, 5: PeerInfo(6, "x", "127.0.0.1:1", bytes(32))}, 1),
            ({**participants, 5: PeerInfo(5, "x", "127.0.0.1:1", key_b)}, 1),
            (participants, 7),
            (participants, 2),  # participant 2's key is not ours
            ({**participants, 3: "not info"}, 1),  # type: ignore[dict-item]
        ]
        try:
            states = a.peer_states()
            for bad, my_id in bad_sets:
                with pytest.raises(InvalidParticipants) as info:
                    await a.update_participants(bad, my_id)
                assert info.value.code == "invalid_participants"
            assert a.peer_states() == states and a.my_id == 1
            for kwargs in (
                {"participant_id": -1},
                {"account": ""},
                {"url": "nohost"},
                {"tls_public_key": b"short"},
            ):
                fields = {
                    "participant_id": 1,
                    "account": "a",
                    "url": "h:1",
                    "tls_public_key": bytes(32),
                }
                fields.update(kwargs)
                with pytest.raises(InvalidParticipants):
                    PeerInfo(**fields)  # type: ignore[arg-type]
            with pytest.raises(PeerNotConnected):
                await a.send(42, "c", b"x")
            with pytest.raises(FrameError):
                await a.send(2, "", b"x")
            assert await a.update_participants(participants, 1) == frozenset()  # no-op
        finally:
            await stop(nodes)

    run(scenario())


# --- a peer in another process ------------------------------------------------------------

_CHILD = textwrap.dedent(
    """
    import asyncio, json, os, sys
    from quorumkeep.node.identity import NodeIdentity
    from quorumkeep.node.storage_key import PassphraseKeySource
    from quorumkeep.node.mesh import Mesh
    from quorumkeep.node.mesh_peers import PeerInfo

    directory, account, port = sys.argv[1], sys.argv[2], int(sys.argv[3])
    key = PassphraseKeySource(directory, lambda: b"correct horse").load()
    identity = NodeIdentity.load(directory, account, key)

    async def main():
        mesh = Mesh(identity, port=port, handshake_timeout=2.0, backoff_initial=0.02,
                    backoff_max=0.25)
        await mesh.start()
        print(json.dumps({"port": mesh.address[1]}), flush=True)
        loop = asyncio.get_running_loop()
        spec = json.loads(await loop.run_in_executor(None, sys.stdin.readline))
        participants = {
            int(k): PeerInfo(int(k), v["account"], v["url"], bytes.fromhex(v["key"]))
            for k, v in spec["participants"].items()
        }

        async def echo(sender, channel, payload):
            if channel == "echo":
                await mesh.send(sender, "echoed", payload + b" from pid %d" % os.getpid(), wait=5)

        mesh.add_handler(echo)
        await mesh.update_participants(participants, spec["my_id"])
        print("ready", flush=True)
        await loop.run_in_executor(None, sys.stdin.readline)
        await mesh.close()

    asyncio.run(main())
    """
)


async def _spawn(identity: NodeIdentity, port: int) -> tuple[asyncio.subprocess.Process, int]:
    child = await asyncio.create_subprocess_exec(
        sys.executable,
        "-c",
        _CHILD,
        str(identity.directory),
        identity.account,
        str(port),
        stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE,
    )
    assert child.stdout is not None
    async with asyncio.timeout(20):
        line = await child.stdout.readline()
    return child, json.loads(line)["port"]


async def _configure(child: asyncio.subprocess.Process, participants: dict[int, PeerInfo]) -> None:
    spec = {
        "my_id": 3,
        "participants": {
            str(pid): {"account": p.account, "url": p.url, "key": p.tls_public_key.hex()}
            for pid, p in participants.items()
        },
    }
    assert child.stdin is not None and child.stdout is not None
    child.stdin.write(json.dumps(spec).encode() + b"\n")
    await child.stdin.drain()
    async with asyncio.timeout(20):
        assert (await child.stdout.readline()).strip() == b"ready"


@pytest.mark.slow
def test_peer_in_a_separate_process_survives_sigkill_and_restart(
    identities: dict[str, NodeIdentity],
) -> None:
    async def scenario() -> None:
        a, b = await start_node(identities["a"]), await start_node(identities["b"])
        child, port = await _spawn(identities["c"], 0)
        children = [child]
        try:
            participants = {
                1: a.info(1),
                2: b.info(2),
                3: PeerInfo(3, "c", f"127.0.0.1:{port}", identities["c"].tls_public_key),
            }
            await _configure(child, participants)
            await a.mesh.update_participants(participants, 1)
            await b.mesh.update_participants(participants, 2)
            for node in (a, b):
                await node.mesh.wait_connected(None, timeout=10)
                await node.mesh.send(3, "echo", node.identity.account.encode())
            reply = f" from pid {child.pid}".encode()
            await eventually(lambda: a.received(3, "echoed") == [b"a" + reply])
            await eventually(lambda: b.received(3, "echoed") == [b"b" + reply])
            # SIGKILL: the peer vanishes without closing anything itself.
            child.send_signal(signal.SIGKILL)
            async with asyncio.timeout(10):
                await child.wait()
            await eventually(lambda: 3 not in a.mesh.connected_peers() | a.mesh.inbound_peers())
            with pytest.raises(PeerNotConnected):
                await a.mesh.send(3, "echo", b"lost")
            # Restarted on the same port with the same identity: both sides reconnect.
            child, _ = await _spawn(identities["c"], port)
            children.append(child)
            await _configure(child, participants)
            await a.mesh.wait_connected([3], timeout=10)
            await a.mesh.send(3, "echo", b"again")
            reply = f" from pid {child.pid}".encode()
            await eventually(lambda: a.received(3, "echoed")[-1:] == [b"again" + reply])
        finally:
            for proc in children:
                if proc.returncode is None:
                    proc.kill()
                    async with asyncio.timeout(10):
                        await proc.wait()
            await stop([a, b])

    run(scenario(), timeout=45)


def test_mesh_listens_only_where_told(identities: dict[str, NodeIdentity]) -> None:
    async def scenario() -> None:
        node = await start_node(identities["a"])
        try:
            host, port = node.mesh.address
            assert host == "127.0.0.1"
            with socket.create_connection((host, port), timeout=2):
                pass
        finally:
            await node.mesh.close()
        with pytest.raises(OSError), socket.create_connection((host, port), timeout=2):
            pass

    run(scenario())


def test_handshakes_in_progress_are_capped(identities: dict[str, NodeIdentity]) -> None:
    """Connections that never finish their TLS handshake hold a slot each, up to
    ``max_handshakes``; past that a new connection is closed at once, and the slots free up
    as the stalled ones go."""

    async def scenario() -> None:
        mesh = Mesh(identities["a"], handshake_timeout=30.0, max_handshakes=4)
        await mesh.start()
        host, port = mesh.address
        stalled: list[tuple[asyncio.StreamReader, asyncio.StreamWriter]] = []
        try:
            for _ in range(4):
                stalled.append(await asyncio.open_connection(host, port))
            await eventually(lambda: mesh.stats.handshakes_in_progress == 4)
            reader, writer = await asyncio.open_connection(host, port)
            try:
                async with asyncio.timeout(10):
                    assert await reader.read() == b""  # closed without a handshake
            finally:
                await close_writer(writer)
            assert mesh.stats.handshakes_refused == 1
            for _, w in stalled[:2]:
                await close_writer(w)
            await eventually(lambda: mesh.stats.handshakes_in_progress == 2)
            der = await fetch_certificate(host, port, timeout=5)  # a slot is free again
            assert der == certificate_der(identities["a"].certificate)
        finally:
            for _, w in stalled:
                await close_writer(w)
            await mesh.close()

    run(scenario())
