"""The node's attestation rules, on contract states built by the real contract (no processes)."""

from __future__ import annotations

import asyncio
import hashlib
from typing import Any

from quorumkeep.attest.binding import Role, report_data
from quorumkeep.attest.dev import dev_platform_public_key
from quorumkeep.contract import CallContext, Contract
from quorumkeep.contract.state import ContractState
from quorumkeep.crypto.group import base_mul, scalar_from_int
from quorumkeep.daemon.attestation import DevQuoteSource
from quorumkeep.node.attestation import (
    NodeAttestation,
    attestation_summary,
    marked_peers,
    reattest_reason,
    usable_peers,
    verification_due,
)
from quorumkeep.node.backup_checks import backup_service_attestation_problem
from quorumkeep.node.decisions import peer_map
from quorumkeep.node.web import NodeStatus

SEED = hashlib.sha256(b"node test platform").digest()
APP = "quorumkeep-node test"
ACCOUNTS = ["alice", "bob", "carol", "dave"]
WEEK = 7 * 24 * 3600


def key(tag: str) -> bytes:
    return base_mul(scalar_from_int(int.from_bytes(hashlib.sha256(tag.encode()).digest())))


def info(account: str) -> dict[str, Any]:
    n = ACCOUNTS.index(account) if account in ACCOUNTS else 9
    return {
        "account": account,
        "url": f"127.0.0.1:{7000 + n}",
        "web_url": f"https://127.0.0.1:{8000 + n}",
        "tls_public_key": key(f"tls/{account}").hex(),
        "signer_public_key": key(f"sig/{account}").hex(),
    }


def ctx(account: str, at: int, full: bool = True) -> CallContext:
    signer = key(f"op/{account}") if full else key(f"sig/{account}")
    return CallContext(account, signer, full, at, at * 1000)


def source(app: str = APP) -> DevQuoteSource:
    return DevQuoteSource(SEED, app)


def evidence(account: str, app: str = APP) -> dict[str, Any]:
    rd = report_data(Role.NODE, key(f"tls/{account}"), key(f"sig/{account}"))
    return asyncio.run(source(app).evidence(rd))


def contract() -> Contract:
    c = Contract()
    genesis = {
        "allowed_measurements": {"node": [source().measurement.to_json()]},
        "dev_platform_public_key": dev_platform_public_key(SEED).hex(),
    }
    c.call(
        ctx("alice", 10),
        "init",
        {"participants": [info(a) for a in ACCOUNTS], "threshold": 3, "attestation": genesis},
    )
    return c


def attest(c: Contract, account: str, at: int) -> None:
    args = {"role": "node", "tls_public_key": info(account)["tls_public_key"]}
    c.call(
        ctx(account, at, full=False),
        "submit_attestation",
        {**args, "attestation": evidence(account)},
    )


def state(c: Contract) -> ContractState:
    return ContractState.from_json(c.to_json())


def test_reattest_when_missing_and_well_before_expiry() -> None:
    c = contract()
    tls = key("tls/bob")
    assert (
        reattest_reason(state(c), "bob", tls, 20)
        == "the contract holds no attestation of this node"
    )
    attest(c, "bob", 20)
    assert reattest_reason(state(c), "bob", tls, 21) is None
    # A quarter of the validity gone: re-attest, days before the attestation lapses.
    due = reattest_reason(state(c), "bob", tls, 20 + WEEK // 4 + 1)
    assert due is not None and "expires in" in due
    assert reattest_reason(state(c), "erin", key("tls/erin"), 20) is None  # unknown to it


def test_marked_peers_are_dropped_from_the_mesh_and_verification_is_due() -> None:
    c = contract()
    for a in ["alice", "bob"]:
        attest(c, a, 20)
    s = state(c)
    assert not verification_due(s, 100)  # carol and dave are within the genesis grace time
    late = 10 + 3600 + 1
    assert verification_due(s, late)  # they never attested
    result = c.call(ctx("erin", late), "verify_attestations", {})
    assert result.value["resharing"] is None  # 2 left, below the threshold 3: marks only
    s = state(c)
    assert not verification_due(s, late)
    assert marked_peers(s) == {"carol", "dave"}
    kept = usable_peers(s, peer_map(s), me=1)
    assert sorted(p.account for p in kept.values()) == ["alice", "bob"]
    # Our own entry stays even if we are a marked one (the others refuse us).
    assert 4 in usable_peers(s, peer_map(s), me=4)


def test_unlisted_measurement_is_refused_and_the_peer_stays_marked() -> None:
    c = contract()
    for a in ["alice", "bob", "carol"]:
        attest(c, a, 20)
    rogue = evidence("dave", app="quorumkeep-node rogue")
    args = {"role": "node", "tls_public_key": info("dave")["tls_public_key"], "attestation": rogue}
    try:
        c.call(ctx("dave", 30, full=False), "submit_attestation", args)
    except Exception as exc:
        assert getattr(exc, "code", None) == "MeasurementNotAllowed"
    else:
        raise AssertionError("an unlisted measurement was accepted")
    c.call(ctx("erin", 4000), "verify_attestations", {})
    assert "dave" not in {p.account for p in usable_peers(state(c), peer_map(state(c)), 1).values()}


def test_summary_fits_the_status_model_and_the_metrics() -> None:
    c = contract()
    attest(c, "bob", 20)
    summary = attestation_summary(state(c), key("tls/bob"), 30)
    assert summary["kind"] == "dev" and summary["tcb_status"] == "Development"
    assert summary["expires_in"] == WEEK - 10
    assert summary["insecure_dev_attestation"] is True
    assert summary["problem"] is None
    assert NodeStatus.model_fields["attestation"]


def test_node_attestation_submits_once_per_start_and_when_due() -> None:
    c = contract()
    calls: list[str] = []
    now = [20.0]

    async def call(method: str, args: dict[str, Any]) -> Any:
        calls.append(method)
        return c.call(ctx("bob", int(now[0]), full=False), method, args)

    na = NodeAttestation(
        source(),
        account="bob",
        tls_public_key=key("tls/bob"),
        signer_public_key=key("sig/bob"),
        call=call,
        clock=lambda: now[0],
    )

    async def steps() -> None:
        await na._step(state(c))
        await na._step(state(c))
        now[0] = 20 + WEEK // 2
        await na._step(state(c))

    asyncio.run(steps())
    # Attested at start, not again while fresh, again when a quarter was gone; by then the
    # genesis grace is over and the others never attested: it asks for verification too.
    assert calls == ["submit_attestation", "submit_attestation", "verify_attestations"]
    assert state(c).attestation.records[key("tls/bob")].expires_at == 20 + WEEK // 2 + WEEK  # type: ignore[union-attr]


def test_backup_gate_only_when_the_contract_requires_tee_services() -> None:
    identity = key("backup")
    entry = {"role": "backup_service", "key": identity.hex(), "status": "valid"}
    assert (
        backup_service_attestation_problem({"require_tee_backup_services": False}, identity) is None
    )
    view = {"require_tee_backup_services": True, "entries": [entry]}
    assert backup_service_attestation_problem(view, identity) is None
    expired = {**view, "entries": [{**entry, "status": "attestation expired at 5"}]}
    assert "expired" in str(backup_service_attestation_problem(expired, identity))
    assert "no attestation" in str(
        backup_service_attestation_problem({**view, "entries": []}, identity)
    )


def test_a_mark_that_outlived_its_participant_asks_for_verification() -> None:
    c = contract()
    for a in ["alice", "bob", "carol"]:
        attest(c, a, 20)
    late = 10 + 3600 + 1
    c.call(ctx("erin", late), "verify_attestations", {})  # dave marked, reshared out at once
    s = state(c)
    assert "dave" not in {m.account for m in s.serving().parameters.members}  # type: ignore[union-attr]
    assert marked_peers(s) == {"dave"}
    assert verification_due(s, late)
    c.call(ctx("erin", late + 1), "verify_attestations", {})
    assert marked_peers(state(c)) == frozenset()
    assert not verification_due(state(c), late + 1)
