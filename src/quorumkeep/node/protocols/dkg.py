"""PedPoP key generation for one key event, over the mesh (crypto.dkg does the math).

Stages, all participants alike (message formats: docs/node-protocols.md)::

    round 1   broadcast dkg_round1 (commitment + proof of knowledge)     collect n-1
              crypto.dkg.part2 verifies every proof                       → cheater named
    echo      broadcast dkg_echo: SHA-256 of every round-1 package seen   collect n-1
              any difference names the equivocating sender               → cheater named
    round 2   send dkg_round2 (f_i(j)) to each j over TLS                 collect n-1
              crypto.dkg.part3 checks the shares                          → cheater named
    confirm   broadcast dkg_confirm: hash of the PublicKeyPackage         collect n-1

A run returns only when every participant confirmed the same public key package, so either
all participants keep a share of the same key or none does. Whoever detects a problem sends an
``abort`` naming the culprit (if known) to everyone, and every participant raises a typed
error. The DKG context bound into the proofs of knowledge is derived from the session id, so a
proof from another session cannot be replayed into this one: the coordinator must use a fresh
session id for every attempt (the router refuses to reopen one).
"""

from __future__ import annotations

import logging

from quorumkeep.crypto import dkg
from quorumkeep.crypto.errors import CryptoError
from quorumkeep.crypto.group import RandomBytes
from quorumkeep.crypto.keys import KeyPackage, PublicKeyPackage, check_parameters
from quorumkeep.node.key_packages import public_key_package_hash
from quorumkeep.node.messages import (
    CHANNEL_DKG,
    DkgConfirm,
    DkgEcho,
    DkgRound1,
    DkgRound2,
)
from quorumkeep.node.protocols.common import (
    Deadline,
    broadcast,
    check_participants,
    collect,
    id8,
    named,
    send_each,
    tagged_hash,
    with_abort,
)
from quorumkeep.node.protocols.errors import InvalidSessionParameters, ParticipantMisbehaved
from quorumkeep.node.session_router import SessionRouter
from quorumkeep.node.sessions import Session

log = logging.getLogger("quorumkeep.node.protocols.dkg")

CONTEXT_PREFIX = b"quorumkeep dkg v1\x00"
ROUND1_HASH_TAG = b"quorumkeep dkg round1 v1"


def dkg_context(session_id: str) -> bytes:
    """The context crypto.dkg binds into every proof of knowledge of this session."""
    return CONTEXT_PREFIX + session_id.encode("ascii")


def round1_hash(sender: int, package: dkg.Round1Package) -> bytes:
    """What the echo carries for each sender: SHA-256(tag ‖ 0 ‖ u64 sender ‖ package bytes)."""
    return tagged_hash(ROUND1_HASH_TAG, id8(sender), package.to_bytes())


def check_echo(
    me: int, sender: int, mine: dict[int, bytes], theirs: dict[int, bytes] | object
) -> None:
    """Compare another participant's echo with ours; name whoever must have lied.

    A different hash for participant k's package, reported by j: if k is j itself or us, j
    is lying (we know what we sent; j knows what it sent); otherwise k sent different
    packages to j and to us.
    """
    if not isinstance(theirs, dict) or set(theirs) != set(mine):
        raise ParticipantMisbehaved(sender, "echo does not cover exactly the participants")
    for k in sorted(mine):
        if theirs[k] != mine[k]:
            if k in (sender, me):
                raise ParticipantMisbehaved(
                    sender, f"echo misreports the round-1 package of participant {k}"
                )
            raise ParticipantMisbehaved(
                k, "sent different round-1 packages to different participants", reported_by=sender
            )


async def run_dkg(
    router: SessionRouter,
    *,
    session_id: str,
    me: int,
    participants: list[int],
    threshold: int,
    random_bytes: RandomBytes,
    timeout: float,
) -> tuple[KeyPackage, PublicKeyPackage]:
    """Run PedPoP with ``participants`` (``me`` among them) for a ``threshold``-of-n key.

    Raises ``ParticipantMisbehaved`` naming a cheater, ``ProtocolTimeout`` listing who was
    missing, ``SessionAborted`` when another participant gave up, or
    ``InvalidSessionParameters`` for inconsistent inputs. Nothing is stored: the caller
    stores the returned KeyPackage (sealed) before voting for the public key.
    """
    ids = check_participants(participants, "participants")
    if me not in ids:
        raise InvalidSessionParameters(f"participant {me} is not in the participant list")
    try:
        check_parameters(threshold, ids)
    except CryptoError as exc:
        raise InvalidSessionParameters(str(exc)) from None
    deadline = Deadline(timeout)
    others = [p for p in ids if p != me]
    with router.open(CHANNEL_DKG, session_id, ids) as session:
        return await with_abort(
            session,
            others,
            _run(session, me, ids, others, threshold, random_bytes, deadline),
        )


async def _run(
    session: Session,
    me: int,
    ids: list[int],
    others: list[int],
    threshold: int,
    random_bytes: RandomBytes,
    deadline: Deadline,
) -> tuple[KeyPackage, PublicKeyPackage]:
    sid = session.session_id
    try:
        secret1, package = dkg.part1(me, ids, threshold, random_bytes, context=dkg_context(sid))
    except CryptoError as exc:
        raise InvalidSessionParameters(str(exc)) from None
    await broadcast(session, others, DkgRound1(sid, package), deadline, "round 1")
    round1 = await collect(session, others, DkgRound1, deadline, "round 1")
    packages = {j: m.package for j, m in round1.items()}
    try:
        secret2, shares = dkg.part2(secret1, packages)
    except CryptoError as exc:
        raise named(exc) from None
    del secret1

    packages[me] = package
    hashes = {k: round1_hash(k, packages[k]) for k in ids}
    await broadcast(session, others, DkgEcho(sid, hashes), deadline, "echo")
    await collect(
        session,
        others,
        DkgEcho,
        deadline,
        "echo",
        lambda j, echo: check_echo(me, j, hashes, dict(echo.hashes)),
    )

    await send_each(session, {j: DkgRound2(sid, shares[j]) for j in others}, deadline, "round 2")
    del shares
    round2 = await collect(session, others, DkgRound2, deadline, "round 2")
    del packages[me]
    try:
        key, public = dkg.part3(secret2, packages, {j: m.share for j, m in round2.items()})
    except CryptoError as exc:
        raise named(exc) from None
    del secret2, round2

    digest = public_key_package_hash(public)
    await broadcast(session, others, DkgConfirm(sid, digest), deadline, "confirm")

    def check_confirm(j: int, confirm: DkgConfirm) -> None:
        if confirm.public_key_package_hash != digest:
            raise ParticipantMisbehaved(j, "confirmed a different public key package")

    await collect(session, others, DkgConfirm, deadline, "confirm", check_confirm)
    log.info(
        "dkg %s: key %s… generated with %s (threshold %s)",
        sid,
        public.group_public_key.hex()[:16],
        ids,
        threshold,
    )
    return key, public
