"""Every dataclass of the package that holds a secret redacts it in ``repr``.

The test walks every module of ``quorumkeep``, finds every dataclass field whose name says it
holds a secret (share, nonce, secret, seed, private key, password, …), fills an instance with
a recognisable sentinel in those fields and checks that ``repr`` shows the sentinel in no
form (raw, hex either case, base64). A field named like a secret that is not one must be
listed in ``PUBLIC`` with the reason; a field whose type is a class that redacts itself is
listed in ``DELEGATED`` (that class is walked too).
"""

from __future__ import annotations

import base64
import dataclasses
import importlib
import inspect
import pkgutil
import re
from typing import Any

import pytest

import quorumkeep

SECRET_NAME = re.compile(
    r"share|nonce|secret|seed|private|password|coefficient|hiding|binding|signing_key"
    r"|^key$|^rx$|^tx$|storage_key|^value$|^own_"
)
NOT_SECRET_NAME = re.compile(r"verifying|public|commitment|_ids?$|count|^shares_|sealed")

PUBLIC = {
    # replay nonces and transaction counters: public by design
    "quorumkeep.wire.backup.hello.Hello.nonce": "a replay nonce sent in the clear",
    "quorumkeep.wire.backup.messages.BackupResponse.request_nonce": "echoed public nonce",
    "quorumkeep.wire.backup.messages.RecoverySession.request_nonce": "echoed public nonce",
    "quorumkeep.wire.backup.messages.RecoveryPush.nonce": "a replay nonce sent in the clear",
    "quorumkeep.wire.key_provider.ReleaseRequest.nonce": "the provider's public challenge",
    "quorumkeep.ledger.accounts.AccessKey.nonce": "the access key's transaction counter",
    "quorumkeep.ledger.transaction.Transaction.nonce": "the transaction counter",
    # values that are not secrets
    "quorumkeep.crypto.pve.Row.seed": "the opened half's seed: published by the proof",
    "quorumkeep.ers.keys.GeneratedKey.private_path": "a file path, not the key",
    "quorumkeep.ledger.etcd.KeyValue.key": "an etcd key of the public ledger's layout",
    "quorumkeep.ledger.etcd.KeyValue.value": "public ledger data (blocks, snapshots, index)",
    "quorumkeep.contract.context.CallResult.value": "a contract call's public return value",
    "quorumkeep.contract.attestation_state.AttestationRecord.key": "the attested public key "
    "(a node's TLS key, a backup service's identity key)",
    "quorumkeep.ledger.blocks.Outcome.value": "a transaction's public outcome",
    "quorumkeep.ledger.client.TxOutcome.value": "a transaction's public outcome",
    "quorumkeep.node.messages_signing.SignShare.share": "a FROST signature share z_i: sent to the "
    "aggregator and checkable against public commitments (RFC 9591 §5.3)",
    "quorumkeep.bench.crypto._SigningSetup.shares": "signature shares z_i of the benchmark",
    "quorumkeep.devnet.layout.AccountRecord.secret": "the name of a devnet secret, not its value",
    "quorumkeep.devnet.processes.ProcessRecord.env_secrets": "variable → name of a devnet "
    "secret, never its value",
    "quorumkeep.wire.tls.TLSCredentials.private_key_path": "a path to the encrypted key file",
    "quorumkeep.node.metrics.MetricsSnapshot.key_shares": "a count",
    "quorumkeep.node.metrics.MetricsSnapshot.signature_shares": "a count",
    "quorumkeep.node.backup_api.BackupNodeDeps.current_shares": "a callable",
    "quorumkeep.node.backup_api.BackupNodeDeps.import_shares": "a callable",
}
DELEGATED = {
    # fields whose type is a class that redacts itself (and is walked by this test)
    "quorumkeep.backup.client.FetchedBackup.shares": "list[KeyShare]",
    "quorumkeep.wire.backup.shares.VerifiedShares.shares": "tuple[KeyShare, ...]",
    "quorumkeep.node.messages_keygen.DkgRound2.share": "Round2Package",
    "quorumkeep.node.messages_keygen.ReshareDeal.sub_share": "SubShare",
    "quorumkeep.node.protocols.presign_batches.PoolKey.key": "KeyPackage",
    "quorumkeep.node.protocols.presign_batches.PendingBatch.nonces": "list[SigningNonces]",
    "quorumkeep.node.protocols.sign.SignJob.key": "KeyPackage",
    "quorumkeep.bench.crypto._SigningSetup.nonces": "dict[int, SigningNonces]",
}

SENTINEL = bytes(range(0xA0, 0xC0))


def _forms(secret: bytes) -> list[str]:
    return [
        repr(secret),
        secret.hex(),
        secret.hex().upper(),
        base64.b64encode(secret).decode(),
        base64.urlsafe_b64encode(secret).decode(),
    ]


class _Anything:
    """Stands in for a public field: supports whatever a custom ``__repr__`` does with it."""

    def __getattr__(self, name: str) -> _Anything:
        return self

    def __call__(self, *args: object, **kwargs: object) -> _Anything:
        return self

    def __repr__(self) -> str:
        return "…"

    def __format__(self, spec: str) -> str:
        return "…"

    def __len__(self) -> int:
        return 0

    def __iter__(self) -> Any:
        return iter(())

    def __int__(self) -> int:
        return 0

    def __getitem__(self, key: object) -> _Anything:
        return self


def _dataclasses() -> list[type]:
    found: dict[str, type] = {}
    for info in pkgutil.walk_packages(quorumkeep.__path__, "quorumkeep."):
        module = importlib.import_module(info.name)
        for obj in vars(module).values():
            if (
                inspect.isclass(obj)
                and dataclasses.is_dataclass(obj)
                and obj.__module__ == module.__name__
            ):
                found[f"{obj.__module__}.{obj.__qualname__}"] = obj
    return [found[name] for name in sorted(found)]


def _secret_value(annotation: object) -> object:
    text = str(annotation)
    if "SigningKey" in text:
        from nacl.signing import SigningKey

        return SigningKey(SENTINEL)
    if text.startswith("tuple"):
        return (SENTINEL,)
    if text.startswith("list"):
        return [SENTINEL]
    if text.startswith("dict"):
        return {1: SENTINEL}
    if text == "str":
        return SENTINEL.hex()
    return SENTINEL


def _secret_fields(cls: type) -> list[dataclasses.Field[Any]]:
    out = []
    for f in dataclasses.fields(cls):
        name = f"{cls.__module__}.{cls.__qualname__}.{f.name}"
        if not SECRET_NAME.search(f.name) or NOT_SECRET_NAME.search(f.name):
            continue
        if name in PUBLIC or name in DELEGATED:
            continue
        out.append(f)
    return out


CLASSES = [cls for cls in _dataclasses() if _secret_fields(cls)]


def test_the_walk_finds_the_classes_that_hold_secrets() -> None:
    names = {c.__qualname__ for c in CLASSES}
    expected = {"KeyPackage", "SigningNonces", "StoredKeyShare", "Presignature", "KeyShare"}
    assert expected <= names, names
    assert "RecoveredShare" in names


def test_the_allow_lists_name_fields_that_exist() -> None:
    fields = {
        f"{c.__module__}.{c.__qualname__}.{f.name}"
        for c in _dataclasses()
        for f in dataclasses.fields(c)
    }
    assert set(PUBLIC) <= fields, set(PUBLIC) - fields
    assert set(DELEGATED) <= fields, set(DELEGATED) - fields


@pytest.mark.parametrize("cls", CLASSES, ids=lambda c: f"{c.__module__}.{c.__qualname__}")
def test_repr_never_shows_a_secret(cls: type) -> None:
    secret = {f.name for f in _secret_fields(cls)}
    instance = object.__new__(cls)
    for f in dataclasses.fields(cls):
        value = _secret_value(f.type) if f.name in secret else _Anything()
        object.__setattr__(instance, f.name, value)
    shown = repr(instance)
    for form in _forms(SENTINEL):
        assert form not in shown, f"{cls.__qualname__} shows a secret field: {shown}"
    shown = str(instance)
    for form in _forms(SENTINEL):
        assert form not in shown, f"{cls.__qualname__} shows a secret field in str: {shown}"
