"""Public key packages: verifying shares in vote_pk / vote_reshared, their storage and view."""

from __future__ import annotations

from typing import Any

import pytest
from contract_helpers import (
    Driver,
    domain_secret,
    node,
    operator,
    point,
    verifying_shares,
)

from quorumkeep.contract import (
    Contract,
    DomainNotFound,
    InvalidArguments,
    InvalidKeyPackage,
    NotInitialized,
)
from quorumkeep.crypto.group import IDENTITY, base_mul, scalar_from_int

ACCOUNTS = ["alice", "bob", "carol"]  # participant ids 1, 2, 3; threshold 2
KID = {"domain_id": 0, "epoch": 0, "attempt": 0}
PK = base_mul(domain_secret(0)).hex()
SMALL_ORDER = "c7176a703d4dd84fba3c0b760d10670f2a2053fa2c39ccc64ec7fd7792ac037a"  # order 8
MIXED_ORDER = "98519eadf35b995233b51b5cd23e9cc5a28b639b5a4af0ec903cb960d81b7819"  # G + that


def shares(salt: int = 0, ids: tuple[int, ...] = (1, 2, 3), threshold: int = 2) -> dict[str, str]:
    return verifying_shares(domain_secret(0), list(ids), threshold, salt)


def vote(package: Any = None, key_event_id: dict[str, int] = KID) -> dict[str, Any]:
    """vote_pk arguments for domain 0's key; by default its sound package."""
    return {
        "key_event_id": key_event_id,
        "public_key": PK,
        "verifying_shares": shares() if package is None else package,
    }


def keygen() -> Driver:
    """Three participants, threshold 2, generating domain 0."""
    d = Driver(ACCOUNTS, 2)
    for a in ACCOUNTS:
        d.call(operator(a), "vote_add_domains", {"domains": [{"scheme": "Ed25519"}]})
    return d


def generated() -> Driver:
    d = keygen()
    for a in ACCOUNTS:
        d.call(node(a), "vote_pk", vote())
    assert d.contract.protocol_state == "Running"
    return d


# --- key generation --------------------------------------------------------------------


def test_a_generated_key_stores_its_package() -> None:
    d = keygen()
    d.call(node("alice"), "vote_pk", vote())
    event = d.state["protocol_state"]["generating"][0]
    assert event["verifying_shares"] == shares() and event["public_key"] is None
    d.call(node("bob"), "vote_pk", vote())
    r = d.call(node("carol"), "vote_pk", vote())
    generated_event = next(e for e in r.events if e.kind == "key_generated")
    assert generated_event.data["threshold"] == 2
    assert generated_event.data["verifying_shares"] == shares()
    assert d.view("public_key_package", {"domain_id": 0}) == {
        "domain_id": 0,
        "epoch": 0,
        "public_key": PK,
        "threshold": 2,
        "verifying_shares": shares(),
    }
    domain = d.state["protocol_state"]["domains"][0]
    assert domain == {
        "domain_id": 0,
        "scheme": "Ed25519",
        "public_key": PK,
        "verifying_shares": shares(),
    }
    # the keyset keeps its shape: what conclude_node_migration compares
    assert d.view("keyset") == {
        "epoch": 0,
        "domains": [{"domain_id": 0, "scheme": "Ed25519", "public_key": PK}],
    }


@pytest.mark.parametrize(
    "package",
    [
        "00" * 32,  # not an object
        {},  # no shares at all
        {**shares(), "01": shares()["1"]},  # leading zero
        {**shares(), "0": shares()["1"]},  # ids start at 1
        {**shares(), "-1": shares()["1"]},
        {**shares(), "x": shares()["1"]},
        {**shares(), "4": 4},
        {**shares(), "3": shares()["3"].upper()},  # not lowercase hex
        {**shares(), "3": "00" * 31},  # 31 bytes
        {**shares(), "3": IDENTITY.hex()},  # the identity: small order
        {**shares(), "3": "ee" + "ff" * 30 + "7f"},  # y = p + 1: a non-canonical encoding
        {**shares(), "3": SMALL_ORDER},
        {**shares(), "3": MIXED_ORDER},
    ],
)
def test_malformed_verifying_shares_are_invalid_arguments(package: Any) -> None:
    d = keygen()
    before = d.state
    with pytest.raises(InvalidArguments, match="verifying_shares"):
        d.call(node("alice"), "vote_pk", vote(package))
    assert d.state == before


def test_verifying_shares_are_required() -> None:
    d = keygen()
    args = vote()
    del args["verifying_shares"]
    with pytest.raises(InvalidArguments, match="missing verifying_shares"):
        d.call(node("alice"), "vote_pk", args)


@pytest.mark.parametrize(
    ("package", "message"),
    [
        (shares(ids=(1, 2)), "missing participant"),
        ({**shares(), "4": point(4).hex()}, "not in the set"),
        (shares(ids=(1, 2, 4)), "missing participant\\(s\\) 3; participant\\(s\\) 4 not in"),
    ],
)
def test_shares_must_cover_exactly_the_participants(package: dict[str, str], message: str) -> None:
    d = keygen()
    before = d.state
    with pytest.raises(InvalidKeyPackage, match=message):
        d.call(node("alice"), "vote_pk", vote(package))
    assert d.state == before


@pytest.mark.parametrize(
    "package",
    [
        verifying_shares(scalar_from_int(5), [1, 2, 3], 2),  # shares of another key
        {**shares(), "1": point(7).hex()},  # one of the lowest t shares is off
        shares(threshold=3),  # a degree-2 polynomial: 2 shares do not determine the key
    ],
)
def test_an_inconsistent_package_is_refused(package: dict[str, str]) -> None:
    d = keygen()
    before = d.state
    with pytest.raises(InvalidKeyPackage, match="interpolate"):
        d.call(node("alice"), "vote_pk", vote(package))
    assert d.state == before


def test_different_verifying_shares_abort_the_attempt() -> None:
    d = keygen()
    d.call(node("alice"), "vote_pk", vote(shares(salt=0)))
    r = d.call(node("bob"), "vote_pk", vote(shares(salt=1)))  # sound, but another polynomial
    assert r.value == {"status": "aborted", "next_key_event_id": dict(KID, attempt=1)}
    assert r.events[-1].data["reason"] == "participants voted different verifying shares"
    event = d.state["protocol_state"]["generating"][0]
    assert event["attempt"] == 1 and event["votes"] == {} and event["verifying_shares"] is None
    for a in ACCOUNTS:
        d.call(node(a), "vote_pk", vote(shares(salt=1), dict(KID, attempt=1)))
    assert d.view("public_key_package", {"domain_id": 0})["verifying_shares"] == shares(salt=1)


def test_a_share_outside_the_checked_subset_is_caught_by_unanimity() -> None:
    # Only the lowest t shares are interpolated; a wrong share above them passes that check,
    # and the first honest vote, which differs, aborts the attempt.
    d = keygen()
    skewed = {**shares(), "3": point(7).hex()}
    assert d.call(node("alice"), "vote_pk", vote(skewed)).value == {"status": "voted"}
    r = d.call(node("bob"), "vote_pk", vote())
    assert r.value["status"] == "aborted"


def test_aborting_an_attempt_drops_its_package() -> None:
    d = keygen()
    d.call(node("alice"), "vote_pk", vote())
    d.call(node("bob"), "vote_abort_key_event", {"key_event_id": KID})
    assert d.state["protocol_state"]["generating"][0]["verifying_shares"] is None


def test_cancelled_keygen_keeps_the_finished_domains_packages() -> None:
    d = Driver(ACCOUNTS, 2)
    two = {"domains": [{"scheme": "Ed25519"}, {"scheme": "Ed25519"}]}
    for a in ACCOUNTS:
        d.call(operator(a), "vote_add_domains", two)
    for a in ACCOUNTS:
        d.call(node(a), "vote_pk", vote())
    for a in ACCOUNTS[:2]:
        d.call(operator(a), "vote_cancel_keygen", {})
    assert d.view("public_key_package", {"domain_id": 0})["verifying_shares"] == shares()
    with pytest.raises(DomainNotFound):
        d.view("public_key_package", {"domain_id": 1})


# --- the view --------------------------------------------------------------------------


def test_public_key_package_view_errors() -> None:
    with pytest.raises(NotInitialized):
        Contract().view("public_key_package", {"domain_id": 0})
    d = keygen()
    with pytest.raises(DomainNotFound):  # being generated: no key, no package yet
        d.view("public_key_package", {"domain_id": 0})
    for args in ({}, {"domain_id": -1}, {"domain_id": 0, "account": "alice"}):
        with pytest.raises(InvalidArguments):
            d.view("public_key_package", args)


# --- resharing -------------------------------------------------------------------------


def test_resharing_replaces_the_package() -> None:
    d = generated()
    old = d.view("public_key_package", {"domain_id": 0})
    d.propose([*ACCOUNTS, "dave"], 3, [*ACCOUNTS, "dave"])
    assert d.contract.protocol_state == "Resharing"
    new = shares(salt=1, ids=(1, 2, 3, 4), threshold=3)
    assert d.next_shares(0) == new
    kid = {"domain_id": 0, "epoch": 1, "attempt": 0}
    for a in ["alice", "bob", "carol"]:
        d.call(node(a), "vote_reshared", {"key_event_id": kid, "verifying_shares": new})
        # the previous epoch's package is the one in force until the resharing completes
        assert d.view("public_key_package", {"domain_id": 0}) == old
    assert d.state["protocol_state"]["resharing"][0]["verifying_shares"] == new
    r = d.call(node("dave"), "vote_reshared", {"key_event_id": kid, "verifying_shares": new})
    assert r.value == {"status": "completed"}
    reshared = next(e for e in r.events if e.kind == "domain_reshared")
    assert reshared.data["threshold"] == 3 and reshared.data["verifying_shares"] == new
    assert d.view("public_key_package", {"domain_id": 0}) == {
        "domain_id": 0,
        "epoch": 1,
        "public_key": PK,
        "threshold": 3,
        "verifying_shares": new,
    }


def test_cancelled_resharing_keeps_the_package() -> None:
    d = generated()
    before = d.view("public_key_package", {"domain_id": 0})
    d.propose(ACCOUNTS, 2, ACCOUNTS)
    kid = {"domain_id": 0, "epoch": 1, "attempt": 0}
    d.call(node("alice"), "vote_reshared", {"key_event_id": kid, "verifying_shares": shares(5)})
    for a in ACCOUNTS[:2]:
        d.call(operator(a), "vote_cancel_resharing", {})
    assert d.view("public_key_package", {"domain_id": 0}) == before


def test_vote_reshared_package_rules() -> None:
    d = generated()
    d.propose(["alice", "bob", "carol", "dave"], 3, ["alice", "bob", "carol", "dave"])
    kid = {"domain_id": 0, "epoch": 1, "attempt": 0}
    new = d.next_shares(0)
    before = d.state
    with pytest.raises(InvalidArguments, match="missing verifying_shares"):
        d.call(node("alice"), "vote_reshared", {"key_event_id": kid})
    with pytest.raises(InvalidArguments):
        d.call(node("alice"), "vote_reshared", {"key_event_id": kid, "verifying_shares": []})
    with pytest.raises(InvalidKeyPackage, match="missing participant\\(s\\) 4"):
        d.call(node("alice"), "vote_reshared", {"key_event_id": kid, "verifying_shares": shares()})
    other_key = verifying_shares(scalar_from_int(5), [1, 2, 3, 4], 3)  # the key must not change
    with pytest.raises(InvalidKeyPackage, match="interpolate"):
        d.call(node("alice"), "vote_reshared", {"key_event_id": kid, "verifying_shares": other_key})
    assert d.state == before
    d.call(node("alice"), "vote_reshared", {"key_event_id": kid, "verifying_shares": new})
    other = shares(salt=2, ids=(1, 2, 3, 4), threshold=3)
    r = d.call(node("bob"), "vote_reshared", {"key_event_id": kid, "verifying_shares": other})
    assert r.value == {"status": "aborted", "next_key_event_id": dict(kid, attempt=1)}
    assert [e.kind for e in r.events] == ["reshared_voted", "key_event_aborted"]
    assert r.events[1].data["reason"] == "participants voted different verifying shares"
    assert d.state["protocol_state"]["resharing"][0]["verifying_shares"] is None


# --- migrations ------------------------------------------------------------------------


def test_verifying_shares_stay_valid_across_a_concluded_migration() -> None:
    d = generated()
    before = d.view("public_key_package", {"domain_id": 0})
    d.call(operator("bob"), "start_node_migration", d.migrate("bob"))
    r = d.call(d.node("bob"), "conclude_node_migration", {"keyset": d.view("keyset")})
    assert r.value["participant_id"] == 2
    assert d.view("public_key_package", {"domain_id": 0}) == before
    # the migrated node votes in the next resharing with the same id and share
    d.reshare(ACCOUNTS, 2)
    assert set(d.view("public_key_package", {"domain_id": 0})["verifying_shares"]) == {
        "1",
        "2",
        "3",
    }
