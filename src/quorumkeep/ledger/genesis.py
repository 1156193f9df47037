"""Creating a ledger: genesis block plus one sealed full-access key file per account."""

from __future__ import annotations

import os
import sqlite3
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import nacl.signing

from quorumkeep.crypto.seal import PassphraseParams
from quorumkeep.encoding.fields import ACCOUNT_PATTERN, is_account_name
from quorumkeep.ledger.chain import DEFAULT_TX_VALIDITY_BLOCKS, DEFAULT_TX_VALIDITY_MS, make_genesis
from quorumkeep.ledger.errors import LedgerError
from quorumkeep.ledger.keyfile import KeyFileError, seal_key, write_key_file
from quorumkeep.ledger.storage import DB_NAME, BlockReader, BlockStore, StorageError

KEYS_DIR = "keys"


@dataclass(frozen=True)
class InitializedLedger:
    chain_id: str
    key_files: dict[str, Path]
    public_keys: dict[str, str]


def has_genesis(data_dir: Path) -> bool:
    """Whether ``data_dir`` holds a ledger with a genesis block (read-only, lock-free)."""
    if not (data_dir / DB_NAME).exists():
        return False
    try:
        reader = BlockReader(data_dir)
    except sqlite3.DatabaseError:
        return False
    try:
        return reader.block_body(0) is not None
    except sqlite3.DatabaseError:
        return False
    finally:
        reader.close()


def init_ledger(
    data_dir: Path,
    accounts: Sequence[str],
    passphrase: bytes,
    *,
    tx_validity_blocks: int = DEFAULT_TX_VALIDITY_BLOCKS,
    tx_validity_ms: int = DEFAULT_TX_VALIDITY_MS,
    random_bytes: Callable[[int], bytes] = os.urandom,
    passphrase_cost: tuple[int, int] | None = None,
) -> InitializedLedger:
    """Write ``data_dir/ledger.sqlite`` (genesis) and ``data_dir/keys/<account>.json``.

    ``passphrase_cost`` is (opslimit, memlimit) of Argon2id (default: the seal module's).
    Refuses (StorageError) if the directory already holds a ledger or anything else (it must be
    new or empty);
    keys are written before the genesis, so a failure leaves no ledger behind.
    """
    data_dir = Path(data_dir)
    names = list(accounts)
    if not names:
        raise StorageError("at least one account is needed")
    for name in names:
        if not is_account_name(name):
            raise StorageError(f"account {name!r} does not match {ACCOUNT_PATTERN.pattern}")
    if len(set(names)) != len(names):
        raise StorageError("an account is listed twice")
    if has_genesis(data_dir):
        raise StorageError(f"{data_dir} already holds a ledger (genesis exists); not touching it")
    if data_dir.is_dir() and any(data_dir.iterdir()):
        raise StorageError(f"{data_dir} is not empty; a ledger is created in a new or empty one")
    if data_dir.exists() and not data_dir.is_dir():
        raise StorageError(f"{data_dir} is not a directory")
    key_paths = {name: data_dir / KEYS_DIR / f"{name}.json" for name in names}
    for path in key_paths.values():
        if path.exists():
            raise StorageError(f"{path} already exists; not overwriting a key file")
    store = BlockStore(data_dir, create=True)
    try:
        if store.head_height() is not None:
            raise StorageError(
                f"{data_dir} already holds a ledger (genesis exists); not touching it"
            )
        public_keys: dict[str, bytes] = {}
        for name in names:
            signing_key = nacl.signing.SigningKey(random_bytes(32))
            try:
                write_key_file(
                    key_paths[name],
                    seal_key(
                        signing_key,
                        passphrase,
                        account=name,
                        random_bytes=random_bytes,
                        params=None
                        if passphrase_cost is None
                        else PassphraseParams.new(random_bytes, *passphrase_cost),
                    ),
                )
            except KeyFileError as exc:
                raise StorageError(str(exc)) from None
            public_keys[name] = bytes(signing_key.verify_key)
        try:
            genesis = make_genesis(
                {name: [pk] for name, pk in public_keys.items()},
                timestamp_ms=time.time_ns() // 1_000_000,
                tx_validity_blocks=tx_validity_blocks,
                tx_validity_ms=tx_validity_ms,
            )
        except LedgerError as exc:
            raise StorageError(exc.message) from None
        store.write_genesis(genesis)
    finally:
        store.close()
    return InitializedLedger(
        chain_id=genesis.hash.hex(),
        key_files=key_paths,
        public_keys={name: pk.hex() for name, pk in public_keys.items()},
    )
