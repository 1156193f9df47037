"""Node snapshots without processes: the archive, its checks, and the contract's rule for a
restore (node/snapshot.py). The node directory is real (node init's files, a real keystore
kept open and written to while the snapshot is taken)."""

from __future__ import annotations

import dataclasses
import io
import json
import os
import tarfile
from collections.abc import Iterator
from pathlib import Path

import pytest
from component_helpers import ALICE_A, EPOCH, contract, key_pair, running
from node_helpers import fast_source

from quorumkeep.cli.node import build_config
from quorumkeep.contract.state import ContractState, Participants, Resharing
from quorumkeep.node.config import load_config
from quorumkeep.node.identity import NodeIdentity, initialize_node, load_node
from quorumkeep.node.keystore import Keystore
from quorumkeep.node.keystore_records import Presignature
from quorumkeep.node.shares import encode_key_share
from quorumkeep.node.snapshot import create_snapshot
from quorumkeep.node.snapshot_format import (
    MANIFEST_NAME,
    NODE_FILES,
    ChecksumMismatch,
    Manifest,
    NotANodeDirectory,
    SnapshotInvalid,
)
from quorumkeep.node.snapshot_restore import (
    DirectoryNotEmpty,
    SnapshotMismatch,
    SnapshotStale,
    SnapshotSuperseded,
    read_snapshot,
    restore_refusal,
    write_restored,
)

NOW_MS = 1_765_000_000_000


@dataclasses.dataclass
class RunningNode:
    directory: Path
    identity: NodeIdentity
    keystore: Keystore


@pytest.fixture
def node(tmp_path: Path) -> Iterator[RunningNode]:
    """A node directory as `node init` makes it, holding epoch 4's shares of domains 0 and 1
    and some presignatures, its keystore open (as a running node's is)."""
    directory = tmp_path / "alice-node"
    config = build_config(
        account="alice",
        directory=directory,
        ledger="http://127.0.0.1:9",
        p2p="127.0.0.1:7001",
        web="127.0.0.1:8001",
        p2p_advertise=None,
        web_advertise=None,
        passphrase_env="QK_TEST_PASSPHRASE",
        passphrase_file=None,
    )
    initialize_node(config, fast_source(directory))
    identity, keystore = load_node(config, fast_source(directory))
    for domain_id in (0, 1):
        share, public = encode_key_share(*key_pair(1, domain_id))
        keystore.put_key_share(domain_id, EPOCH, share, public)
    commitments = {1: (b"\x01" * 32, b"\x02" * 32), 2: (b"\x03" * 32, b"\x04" * 32)}
    keystore.add_presignatures(
        [Presignature(f"1:aa:{k}", 0, EPOCH, commitments, os.urandom(64)) for k in range(3)]
    )
    yield RunningNode(directory, identity, keystore)
    keystore.close()


def alice_contract(identity: NodeIdentity, epoch: int = EPOCH) -> ContractState:
    alice = dataclasses.replace(ALICE_A, tls_public_key=identity.tls_public_key)
    return contract(running(alice, epoch))


def test_snapshot_of_a_running_node_restores_to_the_same_node(
    node: RunningNode, tmp_path: Path
) -> None:
    out = tmp_path / "snapshots" / "alice.snapshot"
    manifest = create_snapshot(node.directory, out, now_ms=NOW_MS)
    node.keystore.add_presignatures(  # the node goes on writing: the snapshot is unaffected
        [Presignature("1:bb:0", 0, EPOCH, {1: (b"\x05" * 32, b"\x06" * 32)}, os.urandom(64))]
    )
    assert out.stat().st_mode & 0o777 == 0o600
    assert manifest.account == "alice" and manifest.epoch == EPOCH
    assert manifest.tls_public_key == node.identity.tls_public_key
    assert manifest.domains == (0, 1) and manifest.presignatures == 3
    # the manifest's keyset hash is the contract's for the same keys
    assert manifest.keyset_hash == running().keyset.hash
    assert [f.name for f in manifest.files] == list(NODE_FILES)

    read, contents = read_snapshot(out)
    assert read == manifest
    assert restore_refusal(manifest, alice_contract(node.identity)) is None
    restored = tmp_path / "restored"
    config = write_restored(contents, restored)
    assert config.data_dir == restored.resolve() and config.account == "alice"
    assert load_config(restored / "node.toml").data_dir == restored.resolve()
    assert restored.stat().st_mode & 0o777 == 0o700
    for name in NODE_FILES:
        assert (restored / name).stat().st_mode & 0o777 == 0o600
    # the restored directory opens as the same node, shares intact, under the same passphrase
    identity, keystore = load_node(config, fast_source(restored))
    with keystore:
        assert identity.tls_public_key == node.identity.tls_public_key
        assert keystore.keysets() == {EPOCH: (0, 1)}
        assert {p.id for p in keystore.presignatures(0)} == {"1:aa:0", "1:aa:1", "1:aa:2"}
    # nothing in the archive is a secret in plaintext: shares and nonces stay sealed
    archive = out.read_bytes()
    for domain_id in (0, 1):
        assert key_pair(1, domain_id)[0].signing_share not in archive


def test_a_damaged_or_foreign_archive_is_refused(node: RunningNode, tmp_path: Path) -> None:
    out = tmp_path / "alice.snapshot"
    create_snapshot(node.directory, out, now_ms=NOW_MS)
    _, contents = read_snapshot(out)
    manifest_bytes = _member(out, MANIFEST_NAME)

    def archive(members: list[tuple[str, bytes]], name: str) -> Path:
        path = tmp_path / name
        buffer = io.BytesIO()
        with tarfile.open(fileobj=buffer, mode="w") as tar:
            for member_name, data in members:
                info = tarfile.TarInfo(member_name)
                info.size = len(data)
                tar.addfile(info, io.BytesIO(data))
        path.write_bytes(buffer.getvalue())
        return path

    files = [(name, contents[name]) for name in NODE_FILES]
    flipped = bytearray(contents["keystore.sqlite3"])
    flipped[len(flipped) // 2] ^= 1
    cases: list[tuple[Path, type[Exception]]] = [
        (archive([(MANIFEST_NAME, manifest_bytes), *files[:-1]], "missing"), SnapshotInvalid),
        (
            archive([(MANIFEST_NAME, manifest_bytes), *files, ("extra", b"x")], "extra"),
            SnapshotInvalid,
        ),
        (archive([*files, (MANIFEST_NAME, manifest_bytes)], "order"), SnapshotInvalid),
        (
            archive([(MANIFEST_NAME, manifest_bytes), ("../node.toml", b""), *files[1:]], "up"),
            SnapshotInvalid,
        ),
        (
            archive(
                [
                    (MANIFEST_NAME, manifest_bytes),
                    *files[:-1],
                    ("keystore.sqlite3", bytes(flipped)),
                ],
                "flipped",
            ),
            ChecksumMismatch,
        ),
        (
            archive([(MANIFEST_NAME, b"not json"), *files], "garbage-manifest"),
            SnapshotInvalid,
        ),
        (
            archive(
                [(MANIFEST_NAME, manifest_bytes.replace(b"snapshot v1", b"snapshot v9")), *files],
                "format",
            ),
            SnapshotInvalid,
        ),
        (_write(tmp_path / "not-tar", os.urandom(5000)), SnapshotInvalid),
        (tmp_path / "absent", SnapshotInvalid),
    ]
    other = json.loads(manifest_bytes)
    other["account"] = "mallory"  # identity.json still says alice
    cases.append(
        (archive([(MANIFEST_NAME, json.dumps(other).encode()), *files], "other"), SnapshotInvalid)
    )
    # a manifest that lies about its keystore (to pass the contract's epoch check): the
    # keystore's own epoch, keyset hash and presignature count are compared with it
    for field, value in (("epoch", EPOCH + 1), ("presignatures", 0), ("domains", [0])):
        lying = json.loads(manifest_bytes)
        lying[field] = value
        cases.append(
            (
                archive([(MANIFEST_NAME, json.dumps(lying).encode()), *files], f"lie-{field}"),
                SnapshotInvalid,
            )
        )
    # JSON nested deeper than the parser's recursion limit, within the manifest's size bound
    nested = b"[" * 60_000
    cases.append((archive([(MANIFEST_NAME, nested), *files], "nested"), SnapshotInvalid))
    for path, error in cases:
        with pytest.raises(error):
            read_snapshot(path)


def test_restore_refuses_a_directory_in_use(node: RunningNode, tmp_path: Path) -> None:
    out = tmp_path / "alice.snapshot"
    create_snapshot(node.directory, out, now_ms=NOW_MS)
    _, contents = read_snapshot(out)
    with pytest.raises(DirectoryNotEmpty):
        write_restored(contents, node.directory)  # the live node's own directory
    busy = tmp_path / "busy"
    busy.mkdir()
    (busy / "something").write_text("x")
    with pytest.raises(DirectoryNotEmpty):
        write_restored(contents, busy)
    assert sorted(p.name for p in busy.iterdir()) == ["something"]


def test_snapshot_refuses_what_is_not_a_node_directory(node: RunningNode, tmp_path: Path) -> None:
    with pytest.raises(NotANodeDirectory):
        create_snapshot(tmp_path / "nothing-here", tmp_path / "x.snapshot", now_ms=NOW_MS)
    (node.directory / "signer-key.sealed").unlink()
    with pytest.raises(NotANodeDirectory):
        create_snapshot(node.directory, tmp_path / "y.snapshot", now_ms=NOW_MS)
    assert not (tmp_path / "y.snapshot").exists()


# --- the contract's rule -------------------------------------------------------------------


def _manifest(epoch: int | None, tls: bytes, keyset_hash: bytes | None) -> Manifest:
    return Manifest(
        account="alice",
        tls_public_key=tls,
        signer_public_key=b"\x09" * 32,
        epoch=epoch,
        domains=(0, 1) if epoch is not None else (),
        keyset_hash=keyset_hash,
        presignatures=0,
        created_at_ms=NOW_MS,
        files=(),
    )


def test_restore_rule() -> None:
    tls = ALICE_A.tls_public_key
    current = running(epoch=EPOCH)
    good = _manifest(EPOCH, tls, current.keyset.hash)
    assert restore_refusal(good, contract(current)) is None
    assert restore_refusal(good, ContractState()) is None  # nothing served yet
    # the contract moved on: a resharing since the snapshot voided its shares
    stale = restore_refusal(good, contract(running(epoch=EPOCH + 1)))
    assert isinstance(stale, SnapshotStale)
    assert "backup service" in str(stale) and "start-migration" in str(stale)
    assert isinstance(restore_refusal(_manifest(None, tls, None), contract(current)), SnapshotStale)
    # a migration replaced the node since
    moved = restore_refusal(_manifest(EPOCH, b"\x07" * 32, current.keyset.hash), contract(current))
    assert isinstance(moved, SnapshotSuperseded) and "backup service" in str(moved)
    # another keyset of the same epoch, or an epoch the contract never reached
    assert isinstance(
        restore_refusal(_manifest(EPOCH, tls, b"\x00" * 32), contract(current)), SnapshotMismatch
    )
    ahead = _manifest(EPOCH + 1, tls, running(epoch=EPOCH + 1).keyset.hash)
    assert isinstance(restore_refusal(ahead, contract(current)), SnapshotMismatch)
    # taken during a resharing to EPOCH + 1 (holding the new shares too): fine
    resharing = contract(Resharing(current, EPOCH + 1, current.parameters, []))
    assert restore_refusal(ahead, resharing) is None
    assert restore_refusal(good, resharing) is None
    moved_in_resharing = Resharing(
        current, EPOCH + 1, Participants(2, (dataclasses.replace(ALICE_A, url="127.0.0.1:1"),)), []
    )
    assert restore_refusal(good, contract(moved_in_resharing)) is None


def _member(path: Path, name: str) -> bytes:
    with tarfile.open(path) as tar:
        handle = tar.extractfile(name)
        assert handle is not None
        return handle.read()


def _write(path: Path, data: bytes) -> Path:
    path.write_bytes(data)
    return path
