"""Presignatures never outlive the process that made them: the start rule and the peer rule
(node/incarnation.py, decisions.peer_restarted), without processes."""

from __future__ import annotations

import os
from pathlib import Path

from component_helpers import open_keystore

from quorumkeep.node.decisions import peer_restarted
from quorumkeep.node.incarnation import begin_incarnation
from quorumkeep.node.keystore_records import Presignature
from quorumkeep.node.mesh_frames import INCARNATION_SIZE


def _presignatures(count: int) -> list[Presignature]:
    commitments = {1: (b"\x01" * 32, b"\x02" * 32), 2: (b"\x03" * 32, b"\x04" * 32)}
    return [Presignature(f"1:batch:{k}", 0, 3, commitments, os.urandom(64)) for k in range(count)]


def test_a_start_forgets_every_presignature_durably(tmp_path: Path) -> None:
    keystore = open_keystore(tmp_path)
    records = _presignatures(5)
    keystore.add_presignatures(records)
    sealed = [
        bytes(row[0]) for row in keystore._read("SELECT sealed_nonces FROM presignatures", ())
    ]
    first = begin_incarnation(keystore)
    assert first.forgotten == 5 and len(first.announced) == INCARNATION_SIZE
    assert keystore.presignature_count(0) == 0
    # nothing of the sealed nonces is left in the database or its WAL
    for name in ("keystore.sqlite3", "keystore.sqlite3-wal"):
        path = tmp_path / name
        data = path.read_bytes() if path.exists() else b""
        assert not any(s in data for s in sealed), name
    second = begin_incarnation(keystore)
    assert second.forgotten == 0 and second.announced != first.announced
    keystore.close()


def test_a_copy_of_the_directory_forgets_them_too(tmp_path: Path) -> None:
    """A copy opened by another process is a new incarnation: its presignatures go."""
    keystore = open_keystore(tmp_path)
    keystore.add_presignatures(_presignatures(3))
    assert begin_incarnation(keystore, lambda n: b"\x07" * n).announced == b"\x07" * 16
    keystore.add_presignatures(_presignatures(2))  # made by this process
    assert keystore.presignature_count(0) == 2
    assert begin_incarnation(keystore).forgotten == 2  # the next start forgets them
    keystore.close()


def test_peer_restarted_rule() -> None:
    a, b = b"\x01" * 16, b"\x02" * 16
    assert not peer_restarted(None, a)  # first sighting since our start
    assert not peer_restarted(a, a)  # a reconnection of the same process
    assert peer_restarted(a, b)
    assert peer_restarted(b, a)  # any change, even back to an older value
