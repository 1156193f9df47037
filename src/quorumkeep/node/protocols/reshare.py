"""Resharing one domain's key from the old participants to the new ones, over the mesh.

The group key stays; the new holders get a fresh ``new_threshold``-of-|new| sharing of it
(crypto.reshare does the math). Everyone in old ∪ new opens the session.

Leader. ``reshare_leader(old, new, attempt)`` = the ``attempt``-th (cyclically) of the old
holders that stay in the new set, in ascending id order. A staying holder is chosen because
it has the old share and a stake in the result, and departing holders may already be shutting
down; the attempt number lets the coordinator move the lead away from a dead node by retrying
(with a fresh session id).

Stages (formats: docs/node-protocols.md)::

    ready     every old holder with its share → leader: reshare_ready
    dealers   leader, after old_threshold readies (itself first, then in arrival order):
              reshare_dealers(dealers, old public key package) → everyone
    deal      each dealer → each new holder j: reshare_deal(public package, sub-share g_i(j))
    confirm   each new holder: crypto.reshare.receive, then reshare_confirm(hash of the new
              public key package, hash of every dealer's package) → the other new holders

Exactly ``old_threshold`` dealers is the cheapest set that works. A departing old holder
returns ``None`` once it has dealt (or learnt it is not a dealer); it must keep its old share
until the new epoch runs (the coordinator's job). A new holder returns its new KeyPackage and
PublicKeyPackage only after every new holder confirmed the same public package and the same
dealer packages, so a dealer that sent different packages to different receivers is named.

Newcomers have no old public key package (the contract holds only the group key): they take
the leader's, after checking its group key, threshold and participant set against the
contract's; the constant-term checks of crypto.reshare.receive and the confirm round make a
wrong package fail loudly instead of producing a wrong share.
"""

from __future__ import annotations

import logging
from collections.abc import Collection, Sequence

from quorumkeep.crypto import reshare
from quorumkeep.crypto.errors import CryptoError
from quorumkeep.crypto.group import Element, RandomBytes
from quorumkeep.crypto.keys import KeyPackage, PublicKeyPackage, check_parameters
from quorumkeep.node.key_packages import public_key_package_hash
from quorumkeep.node.messages import (
    CHANNEL_RESHARE,
    ReshareConfirm,
    ReshareDeal,
    ReshareDealers,
    ReshareReady,
    SessionAbort,
)
from quorumkeep.node.protocols.common import (
    Deadline,
    broadcast,
    check_participants,
    collect,
    id8,
    named,
    receive_one,
    send_each,
    tagged_hash,
    with_abort,
)
from quorumkeep.node.protocols.errors import (
    InvalidSessionParameters,
    ParticipantMisbehaved,
    ProtocolTimeout,
)
from quorumkeep.node.session_router import SessionRouter
from quorumkeep.node.sessions import Session

log = logging.getLogger("quorumkeep.node.protocols.reshare")

PACKAGE_HASH_TAG = b"quorumkeep reshare package v1"


def reshare_leader(
    old_participants: Sequence[int], new_participants: Sequence[int], attempt: int = 0
) -> int:
    """The leader of attempt ``attempt``: cyclically, the staying old holders by id."""
    staying = sorted(set(old_participants) & set(new_participants))
    if not staying:
        raise InvalidSessionParameters("no old participant stays in the new set")
    return staying[attempt % len(staying)]


def package_hash(dealer: int, package: reshare.ResharePublicPackage) -> bytes:
    return tagged_hash(PACKAGE_HASH_TAG, id8(dealer), package.to_bytes())


async def run_reshare(
    router: SessionRouter,
    *,
    session_id: str,
    me: int,
    old_participants: list[int],
    old_threshold: int,
    old_public: PublicKeyPackage | None,
    old_key: KeyPackage | None,
    new_participants: list[int],
    new_threshold: int,
    random_bytes: RandomBytes,
    timeout: float,
    group_public_key: Element | None = None,
    attempt: int = 0,
    excluded_dealers: Collection[int] = (),
    absent: Collection[int] = (),
) -> tuple[KeyPackage, PublicKeyPackage] | None:
    """Take part in one resharing; returns the new key material, or None if ``me`` leaves.

    Old holders pass their ``old_key`` and ``old_public`` (an old participant that lost its
    share passes ``old_key=None`` and does not deal). Newcomers pass ``old_public=None`` and
    the contract's ``group_public_key``. ``excluded_dealers`` (say, a dealer named by an
    earlier attempt) are never chosen by the leader. ``absent`` departing old holders (say,
    ones the contract marked for a lapsed attestation, whose connections peers refuse) are
    left out of the session altogether: never a dealer, sent nothing, waited for by no one;
    an absent participant itself returns None at once. Errors as ``run_dkg``.
    """
    old = check_participants(old_participants, "old participants")
    new = check_participants(new_participants, "new participants")
    if me not in old and me not in new:
        raise InvalidSessionParameters(f"participant {me} is neither an old nor a new holder")
    try:
        check_parameters(new_threshold, new)
    except CryptoError as exc:
        raise InvalidSessionParameters(f"new set: {exc}") from None
    if not 2 <= old_threshold <= len(old):
        raise InvalidSessionParameters("old threshold out of range")
    if len(set(old) & set(new)) < old_threshold:
        raise InvalidSessionParameters(
            f"fewer than the old threshold ({old_threshold}) of old holders stay"
        )
    if old_public is not None:
        if old_public.identifiers != old or old_public.threshold != old_threshold:
            raise InvalidSessionParameters(
                "the old public key package does not match the old participants and threshold"
            )
        if group_public_key is not None and group_public_key != old_public.group_public_key:
            raise InvalidSessionParameters("the old public key package is for another key")
        group_public_key = old_public.group_public_key
    elif old_key is not None:
        raise InvalidSessionParameters("an old holder with its key must pass old_public too")
    elif group_public_key is None:
        raise InvalidSessionParameters("a newcomer must pass the contract's group_public_key")
    if old_key is not None:
        if me not in old:
            raise InvalidSessionParameters(f"participant {me} holds no share of the old key")
        if old_key.identifier != me or old_key.group_public_key != group_public_key:
            raise InvalidSessionParameters("the old key package is not this participant's")

    away = frozenset(absent)
    if away & set(new):
        raise InvalidSessionParameters("a new holder cannot be absent from its resharing")
    if me in away:
        return None  # reshared out: the others go on without us
    leader = reshare_leader(old, new, attempt)
    if me == leader and old_public is None:
        raise InvalidSessionParameters("the leader must pass the old public key package")
    everyone = sorted((set(old) | set(new)) - away)
    others = [p for p in everyone if p != me]
    if me in old and me not in new and old_key is None:
        return None  # nothing to deal, nothing to receive
    deadline = Deadline(timeout)
    with router.open(CHANNEL_RESHARE, session_id, everyone) as session:
        return await with_abort(
            session,
            others,
            _run(
                session,
                _Inputs(
                    me,
                    leader,
                    old,
                    old_threshold,
                    old_public,
                    old_key,
                    new,
                    new_threshold,
                    group_public_key,
                    frozenset(excluded_dealers) | away,
                ),
                others,
                random_bytes,
                deadline,
            ),
        )


class _Inputs:
    def __init__(
        self,
        me: int,
        leader: int,
        old: list[int],
        old_threshold: int,
        old_public: PublicKeyPackage | None,
        old_key: KeyPackage | None,
        new: list[int],
        new_threshold: int,
        group_public_key: Element,
        excluded: frozenset[int],
    ) -> None:
        self.me = me
        self.leader = leader
        self.old = old
        self.old_threshold = old_threshold
        self.old_public = old_public
        self.old_key = old_key
        self.new = new
        self.new_threshold = new_threshold
        self.group_public_key = group_public_key
        self.excluded = excluded


async def _choose_dealers(session: Session, p: _Inputs, deadline: Deadline) -> tuple[int, ...]:
    """Leader: the first ``old_threshold`` live old holders (itself first)."""
    ready: list[int] = [p.me] if p.old_key is not None and p.me not in p.excluded else []
    candidates = {q for q in p.old if q != p.me and q not in p.excluded}
    while len(ready) < p.old_threshold:
        waiting = candidates - set(ready)
        if len(waiting) < p.old_threshold - len(ready):
            raise ProtocolTimeout("ready (not enough old holders left)", waiting)
        try:
            sender, message = await session.recv(
                waiting, deadline.remaining(), expect=(ReshareReady, SessionAbort)
            )
        except TimeoutError:
            raise ProtocolTimeout("ready", waiting) from None
        if isinstance(message, SessionAbort):
            candidates.discard(sender)  # it gave up; others may still make the threshold
            continue
        ready.append(sender)
    return tuple(sorted(ready))


def _adopt_old_public(p: _Inputs, message: ReshareDealers) -> PublicKeyPackage:
    offered = message.old_public
    if p.old_public is not None:
        if offered != p.old_public:
            raise ParticipantMisbehaved(p.leader, "sent an old public key package unlike ours")
        return p.old_public
    if (
        offered.group_public_key != p.group_public_key
        or offered.identifiers != p.old
        or offered.threshold != p.old_threshold
    ):
        raise ParticipantMisbehaved(
            p.leader, "sent an old public key package that is not the contract's key and set"
        )
    return offered


async def _run(
    session: Session,
    p: _Inputs,
    others: list[int],
    random_bytes: RandomBytes,
    deadline: Deadline,
) -> tuple[KeyPackage, PublicKeyPackage] | None:
    sid = session.session_id
    me = p.me
    if me == p.leader:
        assert p.old_public is not None  # checked in run_reshare
        dealers = await _choose_dealers(session, p, deadline)
        old_public = p.old_public
        await broadcast(
            session, others, ReshareDealers(sid, dealers, old_public), deadline, "dealers"
        )
    else:
        if p.old_key is not None:
            await broadcast(session, [p.leader], ReshareReady(sid), deadline, "ready")
        choice = await receive_one(session, p.leader, ReshareDealers, deadline, "dealers")
        old_public = _adopt_old_public(p, choice)
        dealers = choice.dealers
        if set(dealers) & p.excluded:
            raise ParticipantMisbehaved(p.leader, "chose an excluded dealer")
    try:
        reshare.check_resharing(old_public, dealers, p.new, p.new_threshold)
    except CryptoError as exc:
        raise ParticipantMisbehaved(p.leader, f"chose an invalid dealer set: {exc}") from None

    own_deal: ReshareDeal | None = None
    if me in dealers:
        if p.old_key is None:
            raise ParticipantMisbehaved(p.leader, "chose a dealer that did not say it was ready")
        try:
            package, sub_shares = reshare.deal(
                p.old_key, old_public, dealers, p.new, p.new_threshold, random_bytes
            )
        except CryptoError as exc:
            raise InvalidSessionParameters(str(exc)) from None
        deals = {j: ReshareDeal(sid, package, sub_shares[j]) for j in p.new if j != me}
        own_deal = ReshareDeal(sid, package, sub_shares[me]) if me in p.new else None
        del sub_shares
        await send_each(session, deals, deadline, "deal")
        del deals
    if me not in p.new:
        log.info("reshare %s: dealt=%s, leaving the signing set", sid, me in dealers)
        return None

    received = await collect(
        session, [d for d in dealers if d != me], ReshareDeal, deadline, "deal"
    )
    if own_deal is not None:
        received[me] = own_deal
    packages = {d: m.package for d, m in received.items()}
    try:
        key, public = reshare.receive(
            me,
            old_public,
            dealers,
            p.new,
            p.new_threshold,
            packages,
            {d: m.sub_share for d, m in received.items()},
        )
    except CryptoError as exc:
        raise named(exc) from None
    del received, own_deal

    receivers = [j for j in p.new if j != me]
    digest = public_key_package_hash(public)
    dealer_hashes = {d: package_hash(d, packages[d]) for d in dealers}
    confirm = ReshareConfirm(sid, digest, dealer_hashes)
    await broadcast(session, receivers, confirm, deadline, "confirm")

    def check_confirm(j: int, confirm: ReshareConfirm) -> None:
        theirs = dict(confirm.packages)
        if set(theirs) != set(dealer_hashes):
            raise ParticipantMisbehaved(j, "confirmed another dealer set")
        for d in dealers:
            if theirs[d] != dealer_hashes[d]:
                if d in (j, me):
                    raise ParticipantMisbehaved(j, f"misreports the package of dealer {d}")
                raise ParticipantMisbehaved(
                    d, "sent different packages to different receivers", reported_by=j
                )
        if confirm.public_key_package_hash != digest:
            raise ParticipantMisbehaved(j, "confirmed a different public key package")

    await collect(session, receivers, ReshareConfirm, deadline, "confirm", check_confirm)
    log.info(
        "reshare %s: key %s… now %s-of-%s over %s (dealers %s)",
        sid,
        public.group_public_key.hex()[:16],
        p.new_threshold,
        len(p.new),
        p.new,
        list(dealers),
    )
    return key, public
