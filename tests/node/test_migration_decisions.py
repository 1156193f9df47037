"""The migration rows of the onboarding table and the import checks, as pure functions.

The same rules run end to end with real processes in test_migration.py; here every
rejection of :func:`recovered_shares_problem` and every outcome of
:func:`migration_progress` is pinned down on hand-made contract states.
"""

from __future__ import annotations

from dataclasses import replace

from component_helpers import (
    ALICE_A,
    ALICE_B,
    BOB,
    CAROL,
    DOMAINS,
    EPOCH,
    key,
    member,
    migration_to,
    running,
    scalar,
    share_secret,
)

from quorumkeep.contract.state import (
    ContractState,
    ParticipantInfo,
    Participants,
    Resharing,
    Running,
)
from quorumkeep.node.decisions import (
    ConclusionProgress,
    RecoveredShare,
    Role,
    migration_progress,
    migration_to_me,
    onboarding_decision,
    recovered_shares_problem,
)


def state(protocol: object = None, *, to: ParticipantInfo | None = ALICE_B) -> ContractState:
    migrations = {"alice": migration_to(to)} if to is not None else {}
    return ContractState(protocol=protocol or running(), migrations=migrations)  # type: ignore[arg-type]


def recovered(pid: int = 1, epoch: int = EPOCH) -> list[RecoveredShare]:
    return [RecoveredShare(d, epoch, pid, share_secret(d, pid, epoch)) for d in DOMAINS]


def problem(shares: list[RecoveredShare], contract: ContractState | None = None) -> str | None:
    found = recovered_shares_problem(
        contract or state(),
        "alice",
        ALICE_B.tls_public_key,
        ALICE_B.signer_public_key,
        shares,
    )
    return None if found is None else found[0]


# --- onboarding -------------------------------------------------------------------------------


def test_the_replaced_node_wipes_once_then_stands_by() -> None:
    contract = state(running(ALICE_B), to=None)
    tls = ALICE_A.tls_public_key
    first = onboarding_decision(contract, "alice", tls, participated=True)
    assert (first.role, first.wipe) == (Role.DECOMMISSIONED, True)
    # After the wipe the node no longer counts as having taken part; it stands by.
    after = onboarding_decision(contract, "alice", tls, participated=False, decommissioned=True)
    assert (after.role, after.wipe) == (Role.DECOMMISSIONED, False)
    assert "stands by" in after.reason
    # Without the stand-by mark it is an ordinary waiting machine.
    plain = onboarding_decision(contract, "alice", tls, participated=False)
    assert plain.role is Role.WAITING and not plain.wipe


def test_a_migration_back_to_the_stand_by_node_is_waited_for_then_taken_part_in() -> None:
    back = state(running(ALICE_B), to=ALICE_A)
    tls = ALICE_A.tls_public_key
    waiting = onboarding_decision(back, "alice", tls, participated=False, decommissioned=True)
    assert (waiting.role, waiting.participant_id) == (Role.WAIT_FOR_MIGRATION, 1)
    concluded = state(running(ALICE_A), to=None)
    again = onboarding_decision(concluded, "alice", tls, participated=False, decommissioned=True)
    assert (again.role, again.participant_id, again.wipe) == (Role.PARTICIPANT, 1, False)


def test_a_node_replaced_while_down_wipes_before_it_waits_for_a_migration_back() -> None:
    back = state(running(ALICE_B), to=ALICE_A)
    decision = onboarding_decision(back, "alice", ALICE_A.tls_public_key, participated=True)
    assert (decision.role, decision.wipe) == (Role.DECOMMISSIONED, True)


def test_a_stand_by_whose_account_left_is_not_participant() -> None:
    gone = ContractState(
        protocol=Running(
            running().keyset, EPOCH + 1, Participants(2, (BOB, CAROL, member("dave", 4)))
        )
    )
    decision = onboarding_decision(
        gone, "alice", ALICE_A.tls_public_key, participated=False, decommissioned=True
    )
    assert decision.role is Role.NOT_PARTICIPANT


def test_migration_to_me_is_by_destination_tls_key() -> None:
    contract = state()
    assert migration_to_me(contract, "alice", ALICE_B.tls_public_key) is not None
    assert migration_to_me(contract, "alice", ALICE_A.tls_public_key) is None
    assert migration_to_me(contract, "bob", ALICE_B.tls_public_key) is None


# --- import checks -----------------------------------------------------------------------------


def test_matching_shares_of_every_domain_are_accepted() -> None:
    assert problem(recovered()) is None


def test_no_open_migration_to_this_node_is_refused() -> None:
    assert problem(recovered(), state(to=None)) == "no_open_migration"
    assert problem(recovered(), state(to=member("alice", 1, generation=2))) == "no_open_migration"


def test_a_migration_naming_another_signer_key_is_refused() -> None:
    other_signer = replace(ALICE_B, signer_public_key=key("signer/alice/other"))
    assert problem(recovered(), state(to=other_signer)) == "no_open_migration"


def test_a_contract_that_is_not_running_is_refused() -> None:
    resharing = Resharing(running(), EPOCH + 1, Participants(2, (ALICE_A, BOB, CAROL)), [])
    assert problem(recovered(), state(resharing)) == "no_open_migration"


def test_shares_of_another_epoch_are_refused() -> None:
    assert problem(recovered(epoch=EPOCH - 1)) == "wrong_epoch"


def test_shares_that_do_not_reproduce_the_verifying_share_are_refused() -> None:
    shares = recovered()
    shares[1] = replace(shares[1], signing_share=scalar("forged"))
    assert problem(shares) == "shares_mismatch"
    # Another participant's genuine shares are not ours.
    assert problem(recovered(pid=2)) == "shares_mismatch"
    # Not a canonical scalar.
    shares = recovered()
    shares[0] = replace(shares[0], signing_share=b"\xff" * 32)
    assert problem(shares) == "shares_mismatch"


def test_missing_extra_and_duplicate_domains_are_refused() -> None:
    shares = recovered()
    assert problem(shares[:1]) == "shares_mismatch"
    assert problem([*shares, RecoveredShare(7, EPOCH, 1, scalar("x"))]) == "shares_mismatch"
    assert problem([shares[0], shares[0], shares[1]]) == "shares_mismatch"


def test_refusal_messages_never_show_a_share() -> None:
    shares = recovered()
    shares[0] = replace(shares[0], signing_share=scalar("forged"))
    found = recovered_shares_problem(
        state(), "alice", ALICE_B.tls_public_key, ALICE_B.signer_public_key, shares
    )
    assert found is not None
    for share in shares:
        assert share.signing_share.hex() not in found[1]


# --- concluding ---------------------------------------------------------------------------------


def progress(
    contract: ContractState, keyset: dict[str, object] | None = None
) -> ConclusionProgress:
    return migration_progress(
        contract,
        "alice",
        ALICE_B.tls_public_key,
        ALICE_B.signer_public_key,
        keyset if keyset is not None else running().keyset.to_json(),
    )


def test_progress_open_until_the_contract_lists_our_key() -> None:
    assert progress(state()) is ConclusionProgress.OPEN
    assert progress(state(running(ALICE_B), to=None)) is ConclusionProgress.CONCLUDED


def test_progress_gone_when_cancelled_replaced_or_the_keyset_moved_on() -> None:
    assert progress(state(to=None)) is ConclusionProgress.GONE
    assert progress(state(to=member("alice", 1, generation=2))) is ConclusionProgress.GONE
    other_signer = replace(ALICE_B, signer_public_key=key("signer/alice/other"))
    assert progress(state(to=other_signer)) is ConclusionProgress.GONE
    newer = state(running(epoch=EPOCH + 1))
    assert progress(newer) is ConclusionProgress.GONE
    resharing = Resharing(running(), EPOCH + 1, Participants(2, (ALICE_A, BOB, CAROL)), [])
    assert progress(state(resharing)) is ConclusionProgress.GONE
    # A replacement to this very node (the operator retried) at the same keyset stays open.
    assert progress(state(to=ALICE_B)) is ConclusionProgress.OPEN
