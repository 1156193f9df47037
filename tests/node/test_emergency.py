"""The node's emergency-recovery rule (which parts are due) and its background submitter,
against the real contract state machine (no processes)."""

from __future__ import annotations

import asyncio
import os
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from quorumkeep.contract import Contract, ContractError
from quorumkeep.contract.context import CallContext
from quorumkeep.contract.recovery_state import RecoveryKey
from quorumkeep.contract.state import ContractState, Resharing
from quorumkeep.crypto import pve
from quorumkeep.crypto.group import scalar_from_int
from quorumkeep.crypto.keys import KeyPackage, PublicKeyPackage, trusted_dealer_keygen
from quorumkeep.ledger.errors import ContractCallFailed
from quorumkeep.node.emergency import EmergencyParts, make_part, parts_due

KEY_FILE = Path(__file__).parent.parent / "crypto" / "data" / "ers-test-rsa2048.pem"
_private = serialization.load_pem_private_key(KEY_FILE.read_bytes(), password=None)
assert isinstance(_private, rsa.RSAPrivateKey)
PUBLIC = pve.RecoveryPublicKey.from_private(_private)
ACCOUNTS = ["alice", "bob", "carol"]
SECRET = scalar_from_int(987654321)


def _info(account: str, i: int) -> dict[str, Any]:
    from quorumkeep.crypto.group import base_mul

    return {
        "account": account,
        "url": f"127.0.0.1:{9000 + i}",
        "web_url": f"http://127.0.0.1:{9100 + i}",
        "tls_public_key": base_mul(scalar_from_int(100 + i)).hex(),
        "signer_public_key": base_mul(scalar_from_int(200 + i)).hex(),
    }


def _ctx(account: str, full: bool, i: int = 0) -> CallContext:
    from quorumkeep.crypto.group import base_mul

    return CallContext(account, base_mul(scalar_from_int(200 + i)), full, 5, 5000)


def network() -> tuple[Contract, dict[int, KeyPackage]]:
    """A Running contract with domain 0 generated from a trusted dealer's shares."""
    c = Contract()
    infos = [_info(a, i) for i, a in enumerate(ACCOUNTS)]
    c.call(_ctx("alice", True), "init", {"participants": infos, "threshold": 2})
    packages, public, _ = trusted_dealer_keygen(SECRET, 2, [1, 2, 3], os.urandom)
    for a in ACCOUNTS:
        c.call(_ctx(a, True), "vote_add_domains", {"domains": [{"scheme": "Ed25519"}]})
    args = {
        "key_event_id": {"domain_id": 0, "epoch": 0, "attempt": 0},
        "public_key": public.group_public_key.hex(),
        "verifying_shares": {str(k): v.hex() for k, v in public.verifying_shares.items()},
    }
    for i, a in enumerate(ACCOUNTS):
        c.call(_ctx(a, False, i), "vote_pk", args)
    assert c.protocol_state == "Running"
    return c, packages


def vote_key(c: Contract) -> None:
    args = {
        "domain_id": 0,
        "public_key": PUBLIC.spki_der.hex(),
        "fingerprint": PUBLIC.fingerprint.hex(),
    }
    for a in ACCOUNTS:
        c.call(_ctx(a, True), "vote_recovery_key", args)


def state_of(c: Contract) -> ContractState:
    return ContractState.from_json(c.to_json())


def test_nothing_due_without_a_recovery_key() -> None:
    c, _ = network()
    assert parts_due(state_of(c), "alice") == []


def test_due_part_is_accepted_by_the_contract() -> None:
    c, packages = network()
    vote_key(c)
    [job] = parts_due(state_of(c), "bob")
    assert (job.domain_id, job.epoch, job.participant_id) == (0, 0, 2)
    part = make_part(job, packages[2], os.urandom)
    c.call(
        _ctx("bob", False, 1),
        "submit_recovery_part",
        {"domain_id": 0, "epoch": 0, "part": part.hex()},
    )
    assert parts_due(state_of(c), "bob") == []
    assert len(parts_due(state_of(c), "alice")) == 1
    assert parts_due(state_of(c), "zed") == []


def test_new_key_makes_parts_due_again() -> None:
    c, packages = network()
    vote_key(c)
    [job] = parts_due(state_of(c), "alice")
    c.call(
        _ctx("alice", False, 0),
        "submit_recovery_part",
        {"domain_id": 0, "epoch": 0, "part": make_part(job, packages[1], os.urandom).hex()},
    )
    state = state_of(c)
    state.recovery.keys[0] = RecoveryKey(b"other", bytes(32))
    assert [j.fingerprint for j in parts_due(state, "alice")] == [bytes(32)]


def test_nothing_due_outside_running() -> None:
    c, _ = network()
    vote_key(c)
    state = state_of(c)
    running = state.protocol
    state.protocol = Resharing(running, 1, running.parameters, [])  # type: ignore[arg-type]
    assert parts_due(state, "alice") == []


def test_make_part_refuses_another_share() -> None:
    c, packages = network()
    vote_key(c)
    [job] = parts_due(state_of(c), "alice")
    try:
        make_part(job, packages[2], os.urandom)
    except ValueError as exc:
        assert "not the one" in str(exc)
    else:
        raise AssertionError("a foreign share was encrypted")


def test_background_submitter_records_every_part_once() -> None:
    """Each node's EmergencyParts, calling the real contract, records its part; a second
    update after the record starts nothing."""
    c, packages = network()
    vote_key(c)
    calls: list[str] = []

    def load(account_index: int) -> Any:
        def loader(domain_id: int, epoch: int) -> tuple[KeyPackage, PublicKeyPackage]:
            return packages[account_index + 1], None  # type: ignore[return-value]

        return loader

    def caller(account: str, i: int) -> Any:
        async def call(method: str, args: dict[str, Any]) -> Any:
            calls.append(account)
            try:
                return c.call(_ctx(account, False, i), method, args)
            except ContractError as exc:
                raise ContractCallFailed(exc.code, exc.message) from None

        return call

    async def main() -> None:
        nodes = [
            EmergencyParts(a, load(i), caller(a, i), os.urandom) for i, a in enumerate(ACCOUNTS)
        ]
        for n in nodes:
            n.update(state_of(c))
        for _ in range(200):
            await asyncio.sleep(0.02)
            if all(not n._tasks for n in nodes):
                break
        for n in nodes:
            n.update(state_of(c))
            await n.close()

    asyncio.run(main())
    assert sorted(calls) == ACCOUNTS
    view = c.view("recovery_parts", {"domain_id": 0})
    assert set(view["parts"]) == set(ACCOUNTS) and view["complete"]
