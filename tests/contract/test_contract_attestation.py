"""Attestation in the contract: records, allow-list votes, removal, migrations (pure)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from attestation_helpers import (
    PLATFORM_KEY,
    dev_attestation,
    genesis,
    info_with_attestation,
    measurement,
    node_attestation,
)
from contract_helpers import Driver, info, node, operator, signer_key, tls_key, user
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from quorumkeep.attest import Measurement
from quorumkeep.attest.binding import Role
from quorumkeep.contract import CallContext, Contract, ContractError
from quorumkeep.contract.attestation_state import DEFAULT_VALIDITY_SECONDS

ACCOUNTS = ["alice", "bob", "carol", "dave"]
WEEK = DEFAULT_VALIDITY_SECONDS
VECTORS = Path(__file__).resolve().parents[1] / "vectors" / "tdx"


class AttestedDriver(Driver):
    """A Driver whose contract was initialised with attestation, every node attested."""

    def __init__(self, accounts: list[str], threshold: int, **attestation: Any) -> None:
        self.contract = Contract()
        self.generation = {a: 0 for a in accounts}
        args = {
            "participants": [info(a) for a in accounts],
            "threshold": threshold,
            "attestation": genesis(**attestation),
        }
        self.call(operator(accounts[0]), "init", args)
        for a in accounts:
            self.attest(a)

    def attest(self, account: str, height: int = 10, build: str = "v1") -> Any:
        args = {
            "role": "node",
            "tls_public_key": tls_key(account, self.generation[account]).hex(),
            "attestation": node_attestation(account, self.generation[account], build),
        }
        return self.call(self.node(account, height), "submit_attestation", args)


def code_of(exc: pytest.ExceptionInfo[ContractError]) -> str:
    return exc.value.code


def test_dev_genesis_is_shown_insecure_and_records_every_node() -> None:
    d = AttestedDriver(ACCOUNTS, 3)
    view = d.view("attestations", {"at": 100})
    assert view["insecure_dev_attestation"] is True
    assert d.state["attestation"]["insecure_dev_attestation"] is True
    assert [e["status"] for e in view["entries"]] == ["valid"] * 4
    entry = view["entries"][0]
    assert entry["record"]["kind"] == "dev"
    assert entry["record"]["tcb_status"] == "Development"
    assert entry["record"]["expires_at"] == 10 + WEEK
    assert entry["record"]["measurement_id"] == measurement().measurement_id


def test_contract_without_attestation_says_so() -> None:
    d = Driver(ACCOUNTS, 3)
    assert d.view("attestations") == {"enforced": False, "insecure": True, "entries": []}
    assert "attestation" not in d.state


def test_production_contract_refuses_a_dev_quote() -> None:
    c = Contract()
    args = {
        "participants": [info(a) for a in ACCOUNTS],
        "threshold": 3,
        "attestation": genesis(dev=False),
    }
    c.call(operator("alice"), "init", args)
    assert c.view("attestations", {})["insecure_dev_attestation"] is False
    with pytest.raises(ContractError) as exc:
        c.call(node("erin"), "submit_participant_info", info_with_attestation("erin"))
    assert code_of(exc) == "DevAttestationRefused"
    assert "erin" not in c.to_json()["candidates"]


def test_a_dev_quote_of_another_platform_key_is_invalid() -> None:
    d = AttestedDriver(ACCOUNTS, 3)
    bad = dev_attestation(Role.NODE, tls_key("erin"), signer_key("erin"), seed=b"\x07" * 32)
    with pytest.raises(ContractError) as exc:
        d.call(node("erin"), "submit_participant_info", {**info("erin"), "attestation": bad})
    assert code_of(exc) == "AttestationInvalid"
    assert exc.value.message.startswith("[dev_quote_invalid]")


def test_unlisted_measurement_is_refused() -> None:
    d = AttestedDriver(ACCOUNTS, 3)
    with pytest.raises(ContractError) as exc:
        d.call(node("erin"), "submit_participant_info", info_with_attestation("erin", "evil"))
    assert code_of(exc) == "MeasurementNotAllowed"
    with pytest.raises(ContractError) as exc:
        d.attest("bob", build="evil")
    assert code_of(exc) == "MeasurementNotAllowed"


def test_quote_for_other_keys_is_refused() -> None:
    d = AttestedDriver(ACCOUNTS, 3)
    stolen = {**info("erin"), "attestation": node_attestation("bob")}
    with pytest.raises(ContractError) as exc:
        d.call(node("erin"), "submit_participant_info", stolen)
    assert exc.value.message.startswith("[report_data_mismatch]")


def test_real_tdx_quote_goes_through_dcap_and_is_refused_for_our_keys() -> None:
    import json

    d = AttestedDriver(ACCOUNTS, 3)
    quote = (VECTORS / "tdx_quote").read_bytes()
    collateral = json.loads((VECTORS / "tdx_quote_collateral.json").read_text())
    evidence = {"kind": "tdx", "quote": quote.hex(), "collateral": collateral, "event_log": []}
    height = 1750700000  # the contract's time is the block's: inside the collateral window
    with pytest.raises(ContractError) as exc:
        d.call(
            node("erin", height=height),
            "submit_participant_info",
            {**info("erin"), "attestation": evidence},
        )
    assert exc.value.message.startswith("[report_data_mismatch]")
    with pytest.raises(ContractError) as exc:
        d.call(
            node("erin", height=1790000000),
            "submit_participant_info",
            {**info("erin"), "attestation": evidence},
        )
    assert exc.value.message.startswith("[collateral_expired]")


def test_candidate_needs_an_attestation_and_a_valid_one_when_voted_in() -> None:
    d = AttestedDriver(ACCOUNTS, 3)
    with pytest.raises(ContractError) as exc:
        d.call(node("erin"), "submit_participant_info", info("erin"))
    assert code_of(exc) == "AttestationRequired"
    d.call(node("erin"), "submit_participant_info", info_with_attestation("erin"))
    epoch = d.state["protocol_state"]["next_epoch"]
    proposal = {"participants": [info(a) for a in [*ACCOUNTS, "erin"]], "threshold": 3}
    late = 10 + WEEK + 1
    with pytest.raises(ContractError) as exc:
        d.call(
            operator("alice", late), "vote_new_parameters", {"epoch": epoch, "proposal": proposal}
        )
    assert code_of(exc) == "AttestationRequired"
    d.call(operator("alice"), "vote_new_parameters", {"epoch": epoch, "proposal": proposal})


def test_expired_attestation_leads_to_a_resharing_without_that_node() -> None:
    d = AttestedDriver(ACCOUNTS, 3)
    d.add_domain()
    later = 10 + WEEK - 100
    for a in ["alice", "bob", "carol"]:
        d.attest(a, height=later)  # dave does not re-attest
    result = d.call(user("anyone", 10 + WEEK + 5), "verify_attestations", {})
    assert result.value["newly_marked"] == ["dave"]
    assert "expired" in result.value["marked"]["dave"]
    assert result.value["resharing"]["threshold"] == 3
    assert [p["account"] for p in result.value["resharing"]["participants"]] == ACCOUNTS[:3]
    assert d.contract.protocol_state == "Resharing"
    following = d.view("participants")["next"]
    assert [p["account"] for p in following["participants"]] == ["alice", "bob", "carol"]
    # The marked node cannot abort the resharing that removes it; the others can.
    kid = {
        k: d.state["protocol_state"]["resharing"][0][k] for k in ("domain_id", "epoch", "attempt")
    }
    with pytest.raises(ContractError) as exc:
        d.call(d.node("dave", 10 + WEEK + 6), "vote_abort_key_event", {"key_event_id": kid})
    assert code_of(exc) == "NotParticipant"
    d.call(d.node("alice", 10 + WEEK + 6), "vote_abort_key_event", {"key_event_id": kid})


def test_no_resharing_when_the_rest_are_below_threshold() -> None:
    d = AttestedDriver(ACCOUNTS, 3)
    d.attest("alice", height=WEEK)
    d.attest("bob", height=WEEK)
    result = d.call(user("anyone", WEEK + 20), "verify_attestations", {})
    assert sorted(result.value["marked"]) == ["carol", "dave"]
    assert result.value["resharing"] is None
    assert "fewer than the threshold" in result.value["reason"]
    assert d.contract.protocol_state == "Running"


def test_re_attesting_clears_a_mark() -> None:
    d = AttestedDriver(ACCOUNTS, 3)
    d.attest("alice", height=WEEK)
    d.attest("bob", height=WEEK)
    d.call(user("anyone", WEEK + 20), "verify_attestations", {})
    assert "carol" in d.state["attestation"]["marked"]
    d.attest("carol", height=WEEK + 30)
    assert "carol" not in d.state["attestation"]["marked"]


def test_genesis_members_have_a_grace_time_to_attest() -> None:
    c = Contract()
    args = {"participants": [info(a) for a in ACCOUNTS], "threshold": 3, "attestation": genesis()}
    c.call(operator("alice"), "init", args)
    assert [e["status"] for e in c.view("attestations", {"at": 100})["entries"]] == ["pending"] * 4
    result = c.call(user("anyone", 10 + 3600), "verify_attestations", {})
    assert sorted(result.value["marked"]) == ACCOUNTS


def test_allow_list_votes_add_then_remove_marks_and_reshares() -> None:
    d = AttestedDriver(ACCOUNTS, 3)
    v2 = measurement("v2").to_json()
    for a in ["alice", "bob"]:
        r = d.call(
            operator(a), "vote_measurement", {"action": "add", "role": "node", "measurement": v2}
        )
        assert r.value["applied"] is False
    with pytest.raises(ContractError) as exc:
        d.call(
            operator("bob"),
            "vote_measurement",
            {"action": "add", "role": "node", "measurement": v2},
        )
    assert code_of(exc) == "DuplicateVote"
    r = d.call(
        operator("carol"), "vote_measurement", {"action": "add", "role": "node", "measurement": v2}
    )
    assert r.value["applied"] is True
    for a in ["alice", "bob", "carol"]:
        d.attest(a, build="v2")
    v1 = measurement("v1").to_json()
    for a in ["alice", "bob", "carol"]:
        d.call(
            operator(a), "vote_measurement", {"action": "remove", "role": "node", "measurement": v1}
        )
    allowed = d.state["attestation"]["allowed_measurements"]["node"]
    assert allowed == [measurement("v2").to_json()]
    result = d.call(user("anyone"), "verify_attestations", {})
    assert "removed" in result.value["marked"]["dave"]
    # No domain yet: the resharing completes at once, without dave.
    assert d.running_accounts() == ["alice", "bob", "carol"]


def test_a_removal_that_locks_out_the_network_is_refused() -> None:
    d = AttestedDriver(ACCOUNTS, 3)
    v1 = measurement("v1").to_json()
    with pytest.raises(ContractError) as exc:
        d.call(
            operator("alice"),
            "vote_measurement",
            {"action": "remove", "role": "node", "measurement": v1},
        )
    assert code_of(exc) == "WouldLockOut"
    assert "empty" in exc.value.message
    v2 = measurement("v2").to_json()
    for a in ["alice", "bob", "carol"]:
        d.call(
            operator(a), "vote_measurement", {"action": "add", "role": "node", "measurement": v2}
        )
    d.attest("alice", build="v2")  # one on v2: removing v1 leaves 1 < 3 attested
    with pytest.raises(ContractError) as exc:
        d.call(
            operator("alice"),
            "vote_measurement",
            {"action": "remove", "role": "node", "measurement": v1},
        )
    assert code_of(exc) == "WouldLockOut"
    assert "fewer than the threshold" in exc.value.message


def test_tcb_policy_vote_shows_advisory_ids_and_refuses_bad_policies() -> None:
    d = AttestedDriver(ACCOUNTS, 3)
    policy = {"statuses": ["UpToDate", "SWHardeningNeeded"], "advisory_ids": ["INTEL-SA-00615"]}
    for a in ["alice", "bob", "carol"]:
        d.call(operator(a), "vote_tcb_policy", {"policy": policy})
    shown = d.view("attestation_policy")["tcb_policy"]
    assert shown == {"statuses": sorted(policy["statuses"]), "advisory_ids": ["INTEL-SA-00615"]}
    with pytest.raises(ContractError) as exc:
        d.call(
            operator("alice"), "vote_tcb_policy", {"policy": {"statuses": ["Revoked", "UpToDate"]}}
        )
    assert code_of(exc) == "InvalidArguments"


def test_migration_needs_a_valid_attestation_of_the_destination() -> None:
    d = AttestedDriver(ACCOUNTS, 3)
    d.add_domain()
    d.call(operator("bob"), "start_node_migration", d.migrate("bob"))
    keyset = d.view("keyset")
    with pytest.raises(ContractError) as exc:
        d.call(d.node("bob"), "conclude_node_migration", {"keyset": keyset})
    assert code_of(exc) == "AttestationRequired"
    unlisted = node_attestation("bob", 1, build="evil")
    with pytest.raises(ContractError) as exc:
        d.call(
            d.node("bob"), "conclude_node_migration", {"keyset": keyset, "attestation": unlisted}
        )
    assert code_of(exc) == "MeasurementNotAllowed"
    assert d.state["migrations"]["bob"]
    # The destination attests first (submit_attestation), then concludes.
    d.attest("bob")
    late = 10 + WEEK
    with pytest.raises(ContractError) as exc:
        d.call(d.node("bob", late), "conclude_node_migration", {"keyset": keyset})
    assert code_of(exc) == "AttestationRequired"
    d.call(d.node("bob"), "conclude_node_migration", {"keyset": keyset})
    assert d.view("attestations", {"at": 20})["entries"][1]["status"] == "valid"
    # The replaced node's record is forgotten at the next change (the set stays bounded).
    d.attest("alice")
    keys = {r["key"] for r in d.state["attestation"]["records"]}
    assert tls_key("bob", 0).hex() not in keys and tls_key("bob", 1).hex() in keys


def test_tee_backup_services_required() -> None:
    d = AttestedDriver(ACCOUNTS, 3, require_tee_backup_services=True)
    identity, encryption = tls_key("bk"), signer_key("bk")
    keys = {"identity_public_key": identity.hex(), "encryption_public_key": encryption.hex()}
    with pytest.raises(ContractError) as exc:
        d.call(operator("alice"), "register_backup_service", keys)
    assert code_of(exc) == "AttestationRequired"
    wrong_role = dev_attestation(Role.NODE, identity, encryption)
    with pytest.raises(ContractError) as exc:
        d.call(operator("alice"), "register_backup_service", {**keys, "attestation": wrong_role})
    assert exc.value.message.startswith("[report_data_mismatch]")
    v = measurement().to_json()
    for a in ["alice", "bob", "carol"]:
        d.call(
            operator(a),
            "vote_measurement",
            {"action": "add", "role": "backup_service", "measurement": v},
        )
    good = dev_attestation(Role.BACKUP_SERVICE, identity, encryption)
    d.call(operator("alice"), "register_backup_service", {**keys, "attestation": good})
    entries = d.view("attestations", {"at": 20})["entries"]
    assert entries[-1]["role"] == "backup_service" and entries[-1]["status"] == "valid"
    d.call(operator("alice"), "submit_attestation", {"role": "backup_service", "attestation": good})
    # The service renews its attestation itself, signed by its identity key (an access key the
    # operator granted); the node's key may not do it for it.
    service_key = CallContext("alice", identity, False, 20, 20_000)
    d.call(service_key, "submit_attestation", {"role": "backup_service", "attestation": good})
    with pytest.raises(ContractError) as exc:
        d.call(
            d.node("alice"), "submit_attestation", {"role": "backup_service", "attestation": good}
        )
    assert code_of(exc) == "SignerKeyMismatch"


def test_state_round_trips_with_attestation() -> None:
    d = AttestedDriver(ACCOUNTS, 3)
    d.call(
        operator("alice"),
        "vote_measurement",
        {"action": "add", "role": "node", "measurement": measurement("v2").to_json()},
    )
    data = d.contract.to_json()
    assert Contract.from_json(data).to_json() == data
    assert data["attestation"]["dev_platform_public_key"] == PLATFORM_KEY.hex()


def test_a_record_whose_measurement_id_is_not_its_measurements_is_refused() -> None:
    data = AttestedDriver(ACCOUNTS, 3).contract.to_json()
    record = data["attestation"]["records"][0]
    assert record["measurement_id"] == Measurement.from_json(record["measurement"]).measurement_id
    record["measurement_id"] = "00" * 32
    with pytest.raises(ValueError, match=r"records\[0\]\.measurement_id: not the id of"):
        Contract.from_json(data)


JSON = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**60), 2**60) | st.text(max_size=20),
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4)
    ),
    max_leaves=12,
)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    st.one_of(
        JSON,
        st.fixed_dictionaries(
            {"kind": st.sampled_from(["dev", "tdx", "sev"]), "quote": st.text(max_size=40)},
            optional={"collateral": JSON, "event_log": JSON},
        ),
    )
)
def test_any_attestation_argument_is_a_contract_error_and_changes_nothing(value: Any) -> None:
    d = AttestedDriver(ACCOUNTS, 3)
    before = d.contract.to_json()
    with pytest.raises(ContractError):
        d.call(node("erin"), "submit_participant_info", {**info("erin"), "attestation": value})
    assert d.contract.to_json() == before


def test_tee_key_providers_once_their_measurements_are_allow_listed() -> None:
    d = AttestedDriver(ACCOUNTS, 3)
    keys: dict[str, dict[str, str]] = {}
    for a in ["bob", "carol"]:
        identity, encryption = tls_key(f"kp-{a}"), signer_key(f"kp-{a}")
        keys[a] = {
            "identity_public_key": identity.hex(),
            "encryption_public_key": encryption.hex(),
            "url": f"http://127.0.0.1:9{len(a)}00",
        }
    # No key-provider measurement listed: providers register without a quote.
    d.call(operator("bob"), "register_key_provider", keys["bob"])
    v = measurement().to_json()
    for a in ["alice", "bob", "carol"]:
        d.call(
            operator(a),
            "vote_measurement",
            {"action": "add", "role": "key_provider", "measurement": v},
        )
    with pytest.raises(ContractError) as exc:
        d.call(operator("carol"), "register_key_provider", keys["carol"])
    assert code_of(exc) == "AttestationRequired"

    def quote(a: str, role: Role = Role.KEY_PROVIDER) -> dict[str, Any]:
        k = keys[a]
        return dev_attestation(
            role, bytes.fromhex(k["identity_public_key"]), bytes.fromhex(k["encryption_public_key"])
        )

    with pytest.raises(ContractError) as exc:
        d.call(
            operator("carol"),
            "register_key_provider",
            {**keys["carol"], "attestation": quote("carol", Role.BACKUP_SERVICE)},
        )
    assert exc.value.message.startswith("[report_data_mismatch]")
    d.call(
        operator("carol"), "register_key_provider", {**keys["carol"], "attestation": quote("carol")}
    )
    # A deal needs every holder attested: bob registered before the list existed.
    deal_args = {
        "epoch": 1,
        "threshold": 2,
        "commitment": [tls_key("c0").hex(), tls_key("c1").hex()],
        "holders": [{"index": 1, "provider": "bob"}, {"index": 2, "provider": "carol"}],
        "signer_public_key": signer_key("alice").hex(),
        "release_public_key": tls_key("release").hex(),
    }
    with pytest.raises(ContractError) as exc:
        d.call(d.node("alice"), "record_key_providers", deal_args)
    assert code_of(exc) == "AttestationRequired" and "bob" in exc.value.message
    # bob's provider attests by its identity key; the node's key may not do it for it.
    with pytest.raises(ContractError) as exc:
        d.call(
            d.node("bob"),
            "submit_attestation",
            {"role": "key_provider", "attestation": quote("bob")},
        )
    assert code_of(exc) == "SignerKeyMismatch"
    provider_key = CallContext(
        "bob", bytes.fromhex(keys["bob"]["identity_public_key"]), False, 10, 10_000
    )
    d.call(
        provider_key, "submit_attestation", {"role": "key_provider", "attestation": quote("bob")}
    )
    d.call(d.node("alice"), "record_key_providers", deal_args)
    entries = d.view("attestations", {"at": 20})["entries"]
    assert {e["account"] for e in entries if e["role"] == "key_provider"} == {"bob", "carol"}
    with pytest.raises(ContractError) as exc:
        d.call(
            operator("dave"),
            "submit_attestation",
            {"role": "key_provider", "attestation": quote("bob")},
        )
    assert code_of(exc) == "NotParticipant"
