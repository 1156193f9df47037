"""The proposer lease of a replicated ledger server: when to renew, drop and step down.

Pure rules (no I/O; the caller passes its monotonic clock): the campaign loop in
replicated.py asks them each round, and tests call them directly.

A server holds one etcd lease of ``ttl_s`` seconds and binds the ``proposer`` key to it
when it wins. etcd forgets the lease ``ttl_s`` after the last keep-alive it received; a
put bound to a forgotten lease is refused ("requested lease not found"), and a
keep-alive of one is answered with no TTL. The server cannot see the expiry happen, so
it keeps ``confirmed_at``: the clock read just *before* sending the grant or keep-alive
that etcd last answered with a TTL. etcd received that request after ``confirmed_at``, so
the lease lives at least until ``confirmed_at + ttl`` (the TTL etcd answered).

Rules:

- **renew first** — a round that holds a lease sends its keep-alive before anything else,
  so an expired lease is noticed (no TTL in the answer) before it is offered to a put;
- **drop** — the lease is dropped, and a new one granted at once, when a keep-alive
  answers no TTL or etcd refuses the lease as not found. (A server that kept offering a
  forgotten lease would never win the key again: every create it sends is refused.)
- **step down** — the proposer stops producing once no keep-alive was confirmed for half
  the TTL, well before the lease can expire and another server take the key. (Safety does
  not depend on it: every block write compares the proposer key with this server's value.)
- **won** — the server is the proposer only while the key holds its value *and* is bound
  to its current lease (a key left bound to a dropped lease is about to disappear).
"""

from __future__ import annotations

import math
from dataclasses import dataclass


@dataclass
class ProposerLease:
    """One server's lease; ``lease_id`` 0 means none is held."""

    ttl_s: float
    lease_id: int = 0
    confirmed_at: float = -math.inf

    @property
    def held(self) -> bool:
        return self.lease_id != 0

    def granted(self, lease_id: int, sent_at: float) -> None:
        """etcd granted ``lease_id`` (of ``ttl_s``) to a request sent at ``sent_at``."""
        self.lease_id = lease_id
        self.confirmed_at = sent_at

    def renewed(self, ttl_s: int, sent_at: float) -> bool:
        """A keep-alive sent at ``sent_at`` was answered with ``ttl_s`` (0: no TTL, the
        lease is gone). Whether the lease is still held; if not, it was dropped."""
        if ttl_s <= 0:
            self.drop()
            return False
        self.confirmed_at = max(self.confirmed_at, sent_at)
        return True

    def drop(self) -> None:
        self.lease_id = 0
        self.confirmed_at = -math.inf

    def must_step_down(self, now: float) -> bool:
        """A proposer must stop producing: no lease confirmed within half the TTL."""
        return not self.held or now - self.confirmed_at > self.ttl_s / 2

    def wins(self, key_value: bytes | None, key_lease: int, ours: bytes) -> bool:
        """Whether the proposer key, as read, makes this server the proposer."""
        return self.held and key_value == ours and key_lease == self.lease_id
