"""The proposer lease rules of a replicated ledger server (ledger/proposer_lease.py), pure:
times are a monotonic clock in seconds, etcd's answers are given as values."""

from __future__ import annotations

import httpx
import pytest

from quorumkeep.ledger.etcd import EtcdError, EtcdLeaseNotFound, _check
from quorumkeep.ledger.proposer_lease import ProposerLease

TTL = 2.0
OURS = b'{"id":"aa","url":"http://127.0.0.1:1"}'
THEIRS = b'{"id":"bb","url":"http://127.0.0.1:2"}'


def held(lease_id: int = 7, at: float = 100.0) -> ProposerLease:
    lease = ProposerLease(TTL)
    lease.granted(lease_id, at)
    return lease


def test_a_new_server_holds_no_lease_and_wins_nothing() -> None:
    lease = ProposerLease(TTL)
    assert not lease.held
    assert not lease.wins(OURS, 0, OURS)
    assert lease.must_step_down(0.0)


def test_a_keepalive_without_ttl_drops_the_lease() -> None:
    """etcd answers a keep-alive of a lease it forgot without a TTL: the server must take a
    new lease instead of offering the forgotten one to every create (etcd refuses those)."""
    lease = held()
    assert not lease.renewed(0, 103.0)
    assert not lease.held and lease.lease_id == 0
    lease.granted(8, 103.1)
    assert lease.held and lease.lease_id == 8


def test_a_keepalive_with_ttl_confirms_the_lease_from_when_it_was_sent() -> None:
    lease = held(at=100.0)
    assert lease.renewed(2, 100.4)
    assert lease.confirmed_at == 100.4
    assert lease.renewed(2, 100.2)  # an older request answered late confirms nothing newer
    assert lease.confirmed_at == 100.4


def test_the_key_is_won_only_with_our_value_bound_to_our_current_lease() -> None:
    lease = held(lease_id=7)
    assert lease.wins(OURS, 7, OURS)
    assert not lease.wins(THEIRS, 9, OURS)
    assert not lease.wins(None, 0, OURS)
    # Our value, but bound to a lease we dropped: it disappears when that lease expires.
    assert not lease.wins(OURS, 6, OURS)


def test_a_proposer_steps_down_after_half_the_ttl_without_a_renewal() -> None:
    lease = held(at=100.0)
    assert not lease.must_step_down(100.0 + TTL / 2)
    assert lease.must_step_down(100.0 + TTL / 2 + 0.01)
    assert lease.renewed(2, 100.9)
    assert not lease.must_step_down(101.5)
    lease.drop()
    assert lease.must_step_down(101.5)


def test_etcd_refusing_an_unknown_lease_is_a_typed_error() -> None:
    """The JSON gateway's answer to a put bound to an expired lease (etcd 3.4)."""
    body = b'{"error":"etcdserver: requested lease not found","code":5}'
    with pytest.raises(EtcdLeaseNotFound):
        _check(httpx.Response(404, content=body))
    with pytest.raises(EtcdError) as other:
        _check(httpx.Response(400, content=b'{"error":"bad","code":3}'))
    assert not isinstance(other.value, EtcdLeaseNotFound)
