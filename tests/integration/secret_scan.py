"""Read back every secret a devnet holds — with the project's own code and the devnet's
passphrases — and search every file under the devnet directory for them.

Secrets read: each node's storage key, TLS private key, signer seed, every key share in its
keystore (every domain and epoch) and every presignature's nonces still held; each backup
service's identity seed, encryption secret key, store key and every share of every backup
it holds; each devnet account's full-access private key. Each is searched for raw, as hex
(both cases) and as base64 (standard and URL-safe, with and without padding), in every file
(databases with their WAL, logs, records, configurations). A secret found anywhere but in its
sealed form (which is ciphertext, so never matches) is a leak.
"""

from __future__ import annotations

import base64
import sqlite3
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from cryptography.hazmat.primitives import serialization

from quorumkeep.backup.identity import unlock
from quorumkeep.backup.store import BackupStore
from quorumkeep.devnet.backups import BACKUP_PASSPHRASE_ENV
from quorumkeep.devnet.layout import DevnetDir
from quorumkeep.devnet.network import NODE_PASSPHRASE_ENV
from quorumkeep.devnet.secrets import Secrets
from quorumkeep.ledger.keyfile import open_key, read_key_file
from quorumkeep.node.identity import NodeIdentity, tls_key_password
from quorumkeep.node.keystore import Keystore
from quorumkeep.node.keystore_records import presignature_record
from quorumkeep.node.storage_key import PassphraseKeySource
from quorumkeep.wire.tls import load_encrypted_private_key


@dataclass(frozen=True)
class Secret:
    what: str
    value: bytes


def encodings(secret: bytes) -> list[bytes]:
    forms = [secret, secret.hex().encode(), secret.hex().upper().encode()]
    for b64 in (base64.b64encode(secret), base64.urlsafe_b64encode(secret)):
        forms += [b64, b64.rstrip(b"=")]
    return forms


def _node_secrets(directory: Path, account: str, passphrase: bytes) -> Iterator[Secret]:
    storage_key = PassphraseKeySource(directory, lambda: passphrase).load()
    yield Secret(f"{directory.name} storage key", storage_key.key)
    identity = NodeIdentity.load(directory, account, storage_key)
    yield Secret(f"{directory.name} signer seed", identity.signer_seed)
    pem = identity.tls.private_key_path.read_bytes()
    tls = load_encrypted_private_key(pem, tls_key_password(storage_key))
    raw = tls.private_bytes(
        serialization.Encoding.Raw, serialization.PrivateFormat.Raw, serialization.NoEncryption()
    )
    yield Secret(f"{directory.name} TLS private key", raw)
    with Keystore.open(directory, storage_key, identity.owner) as store:
        for ref in store.key_shares():
            stored = store.get_key_share(ref.domain_id, ref.epoch)
            yield Secret(f"{directory.name} share {ref.domain_id}/{ref.epoch}", stored.share)
        # Nonces are only ever handed out by a take, which deletes them: read them here
        # without deleting, the way the keystore opens them (test-only).
        db = sqlite3.connect(f"file:{store.path}?mode=ro", uri=True)
        try:
            rows = db.execute(
                "SELECT id, domain_id, epoch, created_at_ms, commitments, sealed_nonces "
                "FROM presignatures"
            ).fetchall()
        finally:
            db.close()
        for pid, domain_id, epoch, created_ms, commitments, sealed in rows:
            record = presignature_record(pid, domain_id, epoch, created_ms, bytes(commitments))
            nonces = store._open("presignature", record, bytes(sealed), pid)
            yield Secret(f"{directory.name} nonce {pid} hiding", nonces[:32])
            yield Secret(f"{directory.name} nonce {pid} binding", nonces[32:])


def _backup_secrets(directory: Path, account: str, passphrase: bytes) -> Iterator[Secret]:
    identity, key = unlock(directory, passphrase, account)
    yield Secret(f"{directory.name} store key", key.key)
    yield Secret(f"{directory.name} identity seed", bytes(identity.signer._key))
    yield Secret(f"{directory.name} encryption key", identity.encryption.secret_key)
    store = BackupStore.open(directory, account, identity.signer.public_key, key)
    try:
        for record in store.records():
            for share in store.shares(record):
                yield Secret(
                    f"{directory.name} backup share {share.domain_id}/{share.epoch}",
                    share.signing_share,
                )
    finally:
        store.close()


def devnet_secrets(path: Path) -> list[Secret]:
    """Every secret the devnet at ``path`` holds (see the module docstring)."""
    layout = DevnetDir(path)
    record = layout.load()
    secrets = Secrets(path)
    found: list[Secret] = []
    for process in record.processes.values():
        if process.directory is None or process.account is None:
            continue
        directory = layout.resolve(process.directory)
        if not directory.exists():
            continue  # a lost node's data was deleted by the scenario
        if NODE_PASSPHRASE_ENV in process.env_secrets and process.kind == "node":
            passphrase = secrets.get(process.env_secrets[NODE_PASSPHRASE_ENV])
            found += _node_secrets(directory, process.account, passphrase)
        elif BACKUP_PASSPHRASE_ENV in process.env_secrets:
            passphrase = secrets.get(process.env_secrets[BACKUP_PASSPHRASE_ENV])
            found += _backup_secrets(directory, process.account, passphrase)
    for name, account in record.accounts.items():
        key = open_key(read_key_file(layout.resolve(account.key_file)), secrets.get(account.secret))
        found.append(Secret(f"account {name} private key", bytes(key)))
    return found


BLOCK = 16
"""The scan reads each file in aligned blocks of this many bytes: every occurrence of a
needle of at least ``2 * BLOCK - 1`` bytes covers one aligned block entirely."""


class Needles:
    """Exact multi-needle search (every needle at least ``2 * BLOCK - 1`` bytes long).

    Each ``BLOCK``-byte piece of each needle, at every shift, is indexed. An occurrence of a
    needle at offset ``i`` contains the aligned block at ``j = ⌈i / BLOCK⌉ · BLOCK`` (since
    ``j + BLOCK ≤ i + 2 · BLOCK - 1``), so looking up every aligned block of a file finds every
    occurrence, and comparing the candidate bytes confirms it: one dictionary lookup per
    ``BLOCK`` bytes instead of one pass over the file per needle (a devnet holds thousands of
    nonces, each searched in seven forms)."""

    def __init__(self, needles: list[tuple[str, bytes]]) -> None:
        self.index: dict[bytes, list[tuple[int, str, bytes]]] = {}
        for what, needle in needles:
            if len(needle) < 2 * BLOCK - 1:
                raise ValueError(f"{what}: a needle of {len(needle)} bytes is too short to scan")
            for shift in range(len(needle) - BLOCK + 1):
                piece = needle[shift : shift + BLOCK]
                self.index.setdefault(piece, []).append((shift, what, needle))

    def found_in(self, data: bytes) -> set[str]:
        """What the needles found anywhere in ``data`` are of."""
        found: set[str] = set()
        index = self.index
        for j in range(0, len(data) - BLOCK + 1, BLOCK):
            candidates = index.get(data[j : j + BLOCK])
            if candidates is None:
                continue
            for shift, what, needle in candidates:
                start = j - shift
                if start >= 0 and data[start : start + len(needle)] == needle:
                    found.add(what)
        return found


def scan(path: Path, secrets: list[Secret]) -> list[tuple[str, str]]:
    """(file, secret) for every secret found in any form in any file under ``path``."""
    needles = Needles([(s.what, form) for s in secrets for form in encodings(s.value)])
    hits = []
    for file in sorted(p for p in path.rglob("*") if p.is_file()):
        for what in sorted(needles.found_in(file.read_bytes())):
            hits.append((str(file.relative_to(path)), what))
    return hits
