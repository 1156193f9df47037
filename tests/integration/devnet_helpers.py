"""Shared pieces of the integration tests: the CLI, signing, reading a node's keystore."""

from __future__ import annotations

import asyncio
import os
import sqlite3
import subprocess
from collections.abc import Sequence
from pathlib import Path
from typing import TypeVar

from nacl.signing import VerifyKey

from process_helpers import run_cli
from quorumkeep.crypto.derive import derive_public_key
from quorumkeep.devnet import watch
from quorumkeep.devnet.network import USER, Devnet
from quorumkeep.ledger.client import AccountSigner
from quorumkeep.ledger.signing import Signature, SignClient
from quorumkeep.node.keystore import KEYSTORE_FILE_NAME

T = TypeVar("T")
_SIGNERS: dict[tuple[Path, int], list[AccountSigner]] = {}
CLI_TIMEOUT = 180.0
SIGN_TIMEOUT = 60.0


def cli(*args: str, timeout: float = CLI_TIMEOUT) -> subprocess.CompletedProcess[str]:
    return run_cli(*args, timeout=timeout)


def group_key(devnet: Devnet, domain_id: int = 0) -> bytes:
    return bytes.fromhex(watch.domain_keys(devnet.contract_state())[domain_id])


def check_signature(devnet: Devnet, result: Signature, domain_id: int = 0) -> None:
    """Independently of the client: the derived key from the group key, then PyNaCl."""
    expected = derive_public_key(group_key(devnet, domain_id), USER, result.path)
    assert result.public_key == expected
    VerifyKey(expected).verify(result.payload, result.signature)  # raises if invalid


def sign_all(
    devnet: Devnet,
    paths: Sequence[str],
    *,
    keys: int = 4,
    timeout: float = SIGN_TIMEOUT,
) -> list[Signature]:
    """One request per path, all in flight at once; every result checked."""

    signers = _SIGNERS.get((devnet.path, keys))
    if signers is None:
        signers = devnet.user_signers(keys) if keys > 1 else [devnet.signer(USER)]
        _SIGNERS[(devnet.path, keys)] = signers

    async def run() -> list[Signature]:
        async with SignClient(devnet.ledger_url, signers) as client:
            return list(
                await asyncio.gather(
                    *(client.sign(os.urandom(32), path, timeout=timeout) for path in paths)
                )
            )

    results = asyncio.run(run())
    for result in results:
        check_signature(devnet, result)
    return results


def presignatures(devnet: Devnet, node: str, epoch: int | None = None) -> dict[str, frozenset[int]]:
    """presignature id -> participant ids, from the node's keystore (read-only); with
    ``epoch``, only that epoch's (older ones are deleted whenever the pool gets to them).

    The participant lists are public metadata beside the sealed nonces.
    """
    record = devnet.process(node)
    assert record.directory is not None
    path = devnet.dir.resolve(record.directory) / KEYSTORE_FILE_NAME
    db = sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=10)
    try:
        rows = db.execute(
            "SELECT p.id, pp.participant_id FROM presignatures p "
            "JOIN presignature_participants pp ON pp.presignature_id = p.id "
            "WHERE ? IS NULL OR p.epoch = ?",
            (epoch, epoch),
        ).fetchall()
    finally:
        db.close()
    found: dict[str, set[int]] = {}
    for presignature_id, participant in rows:
        found.setdefault(str(presignature_id), set()).add(int(participant))
    return {k: frozenset(v) for k, v in found.items()}


def metric(text: str, name: str) -> float:
    """Sum of a Prometheus metric's samples (all label sets)."""
    total = 0.0
    for line in text.splitlines():
        if line.startswith(name) and not line.startswith("#"):
            head, _, value = line.rpartition(" ")
            if head.split("{")[0] == name:
                total += float(value)
    return total


def node_dir(devnet: Devnet, node: str) -> Path:
    record = devnet.process(node)
    assert record.directory is not None
    return devnet.dir.resolve(record.directory)
