"""The rotation rule of a node's key providers (pure, no processes)."""

from __future__ import annotations

from typing import Any

from quorumkeep.node.key_provider_rotation import RotationPlan, rotation_plan


def deal(providers: list[str], threshold: int = 2, epoch: int = 1) -> dict[str, Any]:
    return {
        "epoch": epoch,
        "threshold": threshold,
        "holders": [{"index": i + 1, "provider": p} for i, p in enumerate(providers)],
    }


EVERYONE = {"alice", "bob", "carol", "dave", "erin"}


def test_nothing_to_do_while_every_holder_is_there() -> None:
    assert rotation_plan(None, ["bob"], EVERYONE, "alice") is None
    assert (
        rotation_plan(deal(["bob", "carol", "dave"]), ["bob", "carol", "dave"], EVERYONE, "alice")
        is None
    )


def test_a_deregistered_holder_is_replaced_by_a_spare() -> None:
    plan = rotation_plan(
        deal(["bob", "carol", "dave"]), ["alice", "bob", "carol", "erin"], EVERYONE, "alice"
    )
    assert plan == RotationPlan(2, 2, ("dave",), ("bob", "carol", "erin"))


def test_an_operator_reshared_out_counts_as_left() -> None:
    plan = rotation_plan(
        deal(["bob", "carol", "dave"], epoch=4),
        ["bob", "carol", "dave", "erin"],
        EVERYONE - {"carol"},
        "alice",
    )
    assert plan == RotationPlan(5, 2, ("carol",), ("bob", "dave", "erin"))


def test_never_the_own_operator_and_the_set_may_shrink_to_k() -> None:
    plan = rotation_plan(
        deal(["bob", "carol", "dave"]), ["alice", "bob", "carol"], EVERYONE, "alice"
    )
    assert plan == RotationPlan(2, 2, ("dave",), ("bob", "carol"))


def test_fewer_than_k_left_keeps_the_deal() -> None:
    assert rotation_plan(deal(["bob", "carol"]), ["alice", "bob"], EVERYONE, "alice") is None
