"""Wrapped export/import and the warm standby, without processes.

The format (wire/wrapped.py) with its bindings and refusals; the ``[export]`` policy; the
standby's import rule against hand-made contract states; and the standby component with an
in-memory contract (component_helpers.FakeLedger) and a real keystore: it keeps what fits,
hands shares to an open migration, and a fail-over migration concludes from what it holds.
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import os
from pathlib import Path

import pytest
from component_helpers import (
    DOMAINS,
    EPOCH,
    FakeLedger,
    member,
    metrics,
    migration_to,
    open_keystore,
    running,
    settle,
    share_secret,
)
from node_helpers import run

from quorumkeep.contract.state import ContractState, ParticipantInfo, Running
from quorumkeep.crypto.seal import KxKeyPair
from quorumkeep.node.config import ExportConfig
from quorumkeep.node.held_keys import HeldKeys
from quorumkeep.node.migration import MigrationImports
from quorumkeep.node.onboarding import NodeStanding
from quorumkeep.node.standby import WarmStandby, held_fits, standby_import_problem
from quorumkeep.operator.failover import standby_problem
from quorumkeep.wire.backup import Ed25519Signer, KeyShare
from quorumkeep.wire.wrapped import (
    WrappedExport,
    WrappedExportError,
    open_export,
    seal_export,
)

PRIMARY_TLS = Ed25519Signer(b"\x11" * 32)
OTHER_TLS = Ed25519Signer(b"\x22" * 32)
PRIMARY_WRAP = KxKeyPair.from_seed(b"\x33" * 32)
STANDBY_WRAP = KxKeyPair.from_seed(b"\x44" * 32)
STRANGER_WRAP = KxKeyPair.from_seed(b"\x55" * 32)
PRIMARY = dataclasses.replace(member("alice", 1), tls_public_key=PRIMARY_TLS.public_key)
STANDBY = member("alice", 1, generation=7)


def rng(size: int) -> bytes:
    return os.urandom(size)


def contract_with(
    alice: ParticipantInfo = PRIMARY, epoch: int = EPOCH, *, to: ParticipantInfo | None = None
) -> ContractState:
    base = running(epoch=epoch)
    members = tuple(alice if m.account == "alice" else m for m in base.parameters.members)
    protocol = dataclasses.replace(
        base, parameters=dataclasses.replace(base.parameters, members=members)
    )
    migrations = {"alice": migration_to(to)} if to is not None else {}
    return ContractState(protocol=protocol, migrations=migrations)


def shares(pid: int = 1, epoch: int = EPOCH) -> list[KeyShare]:
    return [KeyShare(d, epoch, pid, share_secret(d, pid, epoch)) for d in DOMAINS]


def export(
    *,
    epoch: int = EPOCH,
    pid: int = 1,
    to: bytes = STANDBY_WRAP.public_key,
    source: Ed25519Signer = PRIMARY_TLS,
    account: str = "alice",
) -> WrappedExport:
    return seal_export(
        account=account,
        participant_id=pid,
        keyset=running(epoch=epoch).keyset,
        shares=shares(pid, epoch),
        source=source,
        source_wrapping=PRIMARY_WRAP,
        destination_wrapping_public_key=to,
        now_ms=1_700_000_000_000,
        random_bytes=rng,
    )


# --- the format ------------------------------------------------------------------------------


def test_an_export_round_trips_and_opens_for_its_destination_only() -> None:
    wrapped = export()
    again = WrappedExport.from_bytes(wrapped.to_bytes())
    assert again == wrapped
    opened = open_export(again, STANDBY_WRAP, "alice")
    assert [(s.domain_id, s.epoch, s.participant_id) for s in opened] == [
        (0, EPOCH, 1),
        (1, EPOCH, 1),
    ]
    assert [s.signing_share for s in opened] == [s.signing_share for s in shares()]
    with pytest.raises(WrappedExportError) as other_node:
        open_export(again, STRANGER_WRAP, "alice")
    assert other_node.value.code == "wrong_destination" and other_node.value.status == 421
    with pytest.raises(WrappedExportError) as other_account:
        open_export(again, STANDBY_WRAP, "bob")
    assert other_account.value.code == "wrong_destination"


def test_no_share_appears_in_an_export_or_its_errors() -> None:
    wrapped = export()
    text = wrapped.to_bytes()
    for share in shares():
        assert share.signing_share.hex().encode() not in text
        assert share.signing_share not in text
        assert share.signing_share.hex() not in repr(wrapped)


def test_a_changed_field_breaks_the_signature() -> None:
    wrapped = export()
    for changed in (
        dataclasses.replace(wrapped, participant_id=2),
        dataclasses.replace(wrapped, created_at_ms=1),
        dataclasses.replace(wrapped, keyset=running(epoch=EPOCH + 1).keyset),
        dataclasses.replace(wrapped, destination_wrapping_public_key=STRANGER_WRAP.public_key),
    ):
        with pytest.raises(WrappedExportError) as refused:
            changed.verify()
        assert refused.value.code == "bad_signature"


def test_the_ad_binds_epoch_keyset_participant_and_source() -> None:
    """Re-signed by the source with another epoch (or participant), the sealed shares no
    longer open: the AD binds them to what they were sealed for."""
    wrapped = export()
    for changed in (
        dataclasses.replace(wrapped, keyset=running(epoch=EPOCH + 1).keyset),
        dataclasses.replace(wrapped, participant_id=2),
        dataclasses.replace(wrapped, account="alice2"),
    ):
        resigned = dataclasses.replace(changed, signature=PRIMARY_TLS.sign(changed.statement()))
        with pytest.raises(WrappedExportError) as refused:
            open_export(resigned, STANDBY_WRAP, changed.account)
        assert refused.value.code == "decryption_failed"
    # another source TLS key signing the same sealed shares: they do not open either
    moved = dataclasses.replace(wrapped, source_tls_public_key=OTHER_TLS.public_key)
    resigned = dataclasses.replace(moved, signature=OTHER_TLS.sign(moved.statement()))
    with pytest.raises(WrappedExportError) as refused:
        open_export(resigned, STANDBY_WRAP, "alice")
    assert refused.value.code == "decryption_failed"


def test_malformed_exports_are_refused_with_a_typed_error() -> None:
    good = export().to_json()
    for body in (
        b"",
        b"not json",
        b"[]",
        json.dumps({**good, "format": "other"}).encode(),
        json.dumps({**good, "extra": 1}).encode(),
        json.dumps({**good, "shares": []}).encode(),
        json.dumps({**good, "shares": good["shares"][::-1]}).encode(),
        json.dumps({**good, "signature": "00"}).encode(),
        json.dumps({**good, "destination_wrapping_public_key": "00" * 32}).encode(),
        json.dumps({k: v for k, v in good.items() if k != "keyset"}).encode(),
    ):
        with pytest.raises(WrappedExportError) as refused:
            WrappedExport.from_bytes(body)
        assert refused.value.code == "malformed_export"
    with pytest.raises(WrappedExportError) as large:
        WrappedExport.from_bytes(b" " * (256 * 1024 + 1))
    assert large.value.code == "body_too_large"


def test_sealing_needs_every_domain_of_the_keyset() -> None:
    with pytest.raises(WrappedExportError) as refused:
        seal_export(
            account="alice",
            participant_id=1,
            keyset=running().keyset,
            shares=shares()[:1],
            source=PRIMARY_TLS,
            source_wrapping=PRIMARY_WRAP,
            destination_wrapping_public_key=STANDBY_WRAP.public_key,
            now_ms=0,
            random_bytes=rng,
        )
    assert refused.value.code == "no_shares"


# --- [export] --------------------------------------------------------------------------------


def test_export_is_refused_unless_allowed_and_whitelisted() -> None:
    key = STANDBY_WRAP.public_key
    assert ExportConfig().refusal(key) == (
        "export_disabled",
        "this node does not export its shares ([export] allow = false)",
    )
    closed = ExportConfig(allow=False, whitelist=(key.hex(),))
    assert closed.refusal(key) is not None and closed.refusal(key)[0] == "export_disabled"  # type: ignore[index]
    other = ExportConfig(allow=True, whitelist=(STRANGER_WRAP.public_key.hex(),))
    assert other.refusal(key)[0] == "not_whitelisted"  # type: ignore[index]
    assert ExportConfig(allow=True, whitelist=(key.hex(),)).refusal(key) is None


def test_export_config_validation() -> None:
    with pytest.raises(ValueError):
        ExportConfig(whitelist=("zz",))
    with pytest.raises(ValueError):
        ExportConfig(whitelist=("00" * 32,))
    with pytest.raises(ValueError):
        ExportConfig(whitelist=("ab" * 32, "ab" * 32))
    with pytest.raises(ValueError):
        ExportConfig(standby_web_url="https://127.0.0.1:1")  # the keys are missing
    with pytest.raises(ValueError):
        ExportConfig(
            standby_web_url="http://127.0.0.1:1",
            standby_tls_public_key="ab" * 32,
            standby_wrapping_key="cd" * 32,
        )
    assert ExportConfig(
        standby_web_url="https://127.0.0.1:1/",
        standby_tls_public_key="ab" * 32,
        standby_wrapping_key="cd" * 32,
    ).pushes


# --- the import rule -------------------------------------------------------------------------


def problem(
    state: ContractState, wrapped: WrappedExport | None = None, *, warm: bool = True
) -> str | None:
    found = standby_import_problem(
        state, "alice", STANDBY.tls_public_key, wrapped or export(), warm_standby=warm
    )
    return None if found is None else found[0]


def test_a_current_export_from_the_listed_node_is_taken() -> None:
    assert problem(contract_with()) is None


def test_a_blob_for_another_epoch_is_refused() -> None:
    assert problem(contract_with(epoch=EPOCH + 1), export()) == "wrong_epoch"
    assert problem(contract_with(), export(epoch=EPOCH - 1)) == "wrong_epoch"


def test_an_export_signed_by_another_node_is_refused() -> None:
    assert problem(contract_with(), export(source=OTHER_TLS)) == "unknown_source"
    assert problem(contract_with(), export(pid=2)) == "shares_mismatch"


def test_a_participant_and_a_node_that_would_not_keep_them_refuse() -> None:
    listed = dataclasses.replace(PRIMARY, tls_public_key=STANDBY.tls_public_key)
    assert problem(contract_with(listed)) == "is_participant"
    assert problem(contract_with(), warm=False) == "not_standby"
    # ... unless a migration to it is open: the shares then conclude it
    assert problem(contract_with(to=STANDBY), warm=False) is None


def test_a_keyset_that_is_not_the_contracts_is_refused() -> None:
    base = contract_with()
    assert isinstance(base.protocol, Running)
    other_keys = dataclasses.replace(
        base.protocol.keyset,
        domains=(base.protocol.keyset.domains[0], *base.protocol.keyset.domains[:1]),
    )
    # same epoch, other keys: the hash differs
    protocol = dataclasses.replace(base.protocol, keyset=other_keys)
    assert problem(dataclasses.replace(base, protocol=protocol)) == "wrong_keyset"


def test_the_standby_keeps_only_shares_that_fit_the_keyset_in_force() -> None:
    from quorumkeep.node.decisions import RecoveredShare

    fitting = [RecoveredShare(d, EPOCH, 1, share_secret(d, 1)) for d in DOMAINS]
    assert held_fits(contract_with(), "alice", STANDBY.tls_public_key, fitting)
    assert not held_fits(contract_with(epoch=EPOCH + 1), "alice", STANDBY.tls_public_key, fitting)
    assert not held_fits(contract_with(), "alice", PRIMARY.tls_public_key, fitting)
    assert not held_fits(contract_with(), "alice", STANDBY.tls_public_key, fitting[:1])


# --- the component ---------------------------------------------------------------------------


class Standby:
    def __init__(self, tmp_path: Path, ledger: FakeLedger, *, warm: bool = True) -> None:
        self.ledger = ledger
        self.keystore = open_keystore(tmp_path)
        self.held = HeldKeys(self.keystore)
        standing = NodeStanding(
            account="alice",
            tls_public_key=STANDBY.tls_public_key,
            participant_info=dict,
            metadata=self.keystore,
            held=self.held,
            call=ledger.call,
            metrics=metrics(),
            exit_on_decommission=False,
        )
        self.imports = MigrationImports(
            account="alice",
            tls_public_key=STANDBY.tls_public_key,
            signer_public_key=STANDBY.signer_public_key,
            read_state=ledger.read_state,
            call=ledger.call,
            held=self.held,
            standing=standing,
            metrics=metrics(),
            backoff=0.01,
            on_settled=lambda: None,
            keep_held=lambda state: self.standby.keep(state),
        )
        self.standby = WarmStandby(
            account="alice",
            tls_public_key=STANDBY.tls_public_key,
            wrapping_key=STANDBY_WRAP,
            enabled=warm,
            read_state=ledger.read_state,
            held=self.held,
            migration=self.imports,
            metrics=metrics(),
        )

    def slots(self) -> list[tuple[int, int]]:
        return sorted((r.domain_id, r.epoch) for r in self.keystore.key_shares())

    async def until_idle(self, timeout: float = 10.0) -> None:
        async with asyncio.timeout(timeout):
            while self.imports.busy():
                await asyncio.sleep(0.005)


def test_the_standby_stores_an_export_and_reports_it_fresh(tmp_path: Path) -> None:
    ledger = FakeLedger(contract_with())
    node = Standby(tmp_path, ledger)
    answer = run(node.standby.import_export(export()))
    assert answer == {
        "account": "alice",
        "participant_id": 1,
        "epoch": EPOCH,
        "domains": list(DOMAINS),
        "migration": None,
    }
    assert node.slots() == [(0, EPOCH), (1, EPOCH)]
    status = node.standby.status(ledger.state, "waiting")
    assert status is not None and status["fresh"] is True and status["held_epoch"] == EPOCH
    # settling keeps them (no migration is open, but they fit)
    run(node.imports.settle_held_shares())
    assert node.slots() == [(0, EPOCH), (1, EPOCH)]
    assert ledger.calls == []
    # the keyset moves on: stale in status, and settling deletes them
    ledger.state = contract_with(epoch=EPOCH + 1)
    status = node.standby.status(ledger.state, "waiting")
    assert status is not None and status["fresh"] is False and status["current_epoch"] == EPOCH + 1
    run(node.imports.settle_held_shares())
    assert node.slots() == []


@pytest.mark.parametrize(
    ("state", "wrapped", "code"),
    [
        (contract_with(epoch=EPOCH + 1), export(), "wrong_epoch"),
        (contract_with(), export(to=STRANGER_WRAP.public_key), "wrong_destination"),
        (contract_with(), export(account="bob"), "wrong_destination"),
        (contract_with(), export(source=OTHER_TLS), "unknown_source"),
    ],
)
def test_refused_exports_store_nothing(
    tmp_path: Path, state: ContractState, wrapped: WrappedExport, code: str
) -> None:
    node = Standby(tmp_path, FakeLedger(state))
    with pytest.raises(WrappedExportError) as refused:
        run(node.standby.import_export(wrapped))
    assert refused.value.code == code
    assert node.slots() == []


def test_a_node_that_is_no_standby_refuses_unless_migrated_to(tmp_path: Path) -> None:
    node = Standby(tmp_path, FakeLedger(contract_with()), warm=False)
    with pytest.raises(WrappedExportError) as refused:
        run(node.standby.import_export(export()))
    assert refused.value.code == "not_standby"
    assert node.standby.status(node.ledger.state, "waiting") is None


def test_a_failover_concludes_from_the_shares_held(tmp_path: Path) -> None:
    """The standby holds the current epoch; the operator opens a migration to it; settling
    (what the coordinator does on that state) concludes it without any new import."""
    ledger = FakeLedger(contract_with())
    node = Standby(tmp_path, ledger)
    run(node.standby.import_export(export()))
    ledger.state = contract_with(to=STANDBY)
    ledger.effects["conclude_node_migration"] = lambda _s, _a: contract_with(STANDBY)

    async def main() -> None:
        await node.imports.settle_held_shares()
        await settle()
        await node.until_idle()

    run(main())
    assert ledger.called("conclude_node_migration") == [{"keyset": running().keyset.to_json()}]
    assert node.slots() == [(0, EPOCH), (1, EPOCH)]


def test_an_export_during_an_open_migration_concludes_it(tmp_path: Path) -> None:
    ledger = FakeLedger(contract_with(to=STANDBY))
    ledger.effects["conclude_node_migration"] = lambda _s, _a: contract_with(STANDBY)
    node = Standby(tmp_path, ledger, warm=False)

    async def main() -> None:
        answer = await node.standby.import_export(export())
        assert answer["migration"] == "concluding"
        await node.until_idle()

    run(main())
    assert len(ledger.called("conclude_node_migration")) == 1


# --- the operator's check before a fail-over -------------------------------------------------


def test_failover_needs_a_fresh_standby() -> None:
    assert standby_problem({"warm_standby": None})[0] == "not_standby"  # type: ignore[index]
    stale = {"warm_standby": {"active": False, "fresh": False, "held_epoch": 3, "current_epoch": 4}}
    assert standby_problem(stale)[0] == "standby_stale"  # type: ignore[index]
    active = {"warm_standby": {"active": True, "fresh": True}}
    assert standby_problem(active)[0] == "not_standby"  # type: ignore[index]
    assert standby_problem({"warm_standby": {"active": False, "fresh": True}}) is None


def test_the_wrapping_key_vector_of_docs_storage() -> None:
    from quorumkeep.node.identity import wrapping_key_pair
    from quorumkeep.node.storage_key import StorageKey

    storage_key = StorageKey(bytes(32))
    assert storage_key.subkey("wrapping key").hex() == (
        "ece500bab3a826a852df7ea115b072be4f2a6ec50c8f7f72f1e4544b7713fc8d"
    )
    pair = wrapping_key_pair(storage_key)
    assert pair.public_key.hex() == (
        "e1c4a3238ca799f0c128de662556fc505fd9d790ca978d1296a5f35e711dc813"
    )
    assert pair.secret_key.hex() not in repr(pair)


def test_golden_wrapped_export() -> None:
    """The vector of docs/wrapped-export.md §7."""
    import hashlib

    from quorumkeep.contract.state import DomainKey, Keyset
    from quorumkeep.crypto.group import base_mul, scalar_from_int
    from quorumkeep.crypto.seal import associated_data
    from quorumkeep.wire.wrapped import WRAP_LABEL, share_binding

    source = Ed25519Signer(b"\x11" * 32)
    source_wrapping = KxKeyPair.from_seed(b"\x33" * 32)
    destination = KxKeyPair.from_seed(b"\x44" * 32)
    keyset = Keyset(4, (DomainKey(0, "Ed25519", base_mul(scalar_from_int(5))),))
    wrapped = seal_export(
        account="op1",
        participant_id=2,
        keyset=keyset,
        shares=[KeyShare(0, 4, 2, scalar_from_int(7))],
        source=source,
        source_wrapping=source_wrapping,
        destination_wrapping_public_key=destination.public_key,
        now_ms=1733400000000,
        random_bytes=lambda n: b"\x55" * n,
    )
    assert keyset.hash.hex() == "dd871fd093b995e2e483c537ed35d67903cfcbc405d7dc6c428003128e02186a"
    assert wrapped.sealed[0][1].hex() == (
        "555555555555555555555555555555555555555555555555d8256e64aa1b4362"
        "7d2e9a504499330d1fcacc939b02f3eec574e92b91780ffa0801ec547fc7d8fd"
        "695ba806fa73a8ae"
    )
    assert hashlib.sha256(wrapped.statement()).hexdigest() == (
        "63c3b90b11d0419e0f9ec1ccfb9a6b931e9fa5a9f7177cd653c506c36a880875"
    )
    assert wrapped.signature.hex() == (
        "0cbc9955f67b87b34b26c6f223b30b9e6d2ba62ea12565352f3fb570fdac02c0"
        "9ee097343f0e332150a3f39134b807619307a92e440b38e924d8ace66585f00a"
    )
    assert hashlib.sha256(wrapped.to_bytes()).hexdigest() == (
        "e1eb74d889962ce9a1c659318eb0d352d9cd2b0cf4e91a52a6974cfbf2637c90"
    )
    binding = share_binding("op1", 0, keyset, 2, source.public_key)
    ad = associated_data(
        WRAP_LABEL,
        sender=source_wrapping.public_key,
        receiver=destination.public_key,
        binding=binding,
    )
    assert len(ad) == 368
    [opened] = open_export(WrappedExport.from_bytes(wrapped.to_bytes()), destination, "op1")
    assert opened.signing_share == scalar_from_int(7)
