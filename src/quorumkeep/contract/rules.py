"""Numeric and structural rules on participant sets, shared by `init` and resharing."""

from __future__ import annotations

from collections.abc import Iterable

from quorumkeep.contract.state import ParticipantInfo


def min_resharing_threshold(n: int) -> int:
    """ceil(0.6·n), in integers: a resharing may not lower the threshold below 60 %."""
    return (3 * n + 4) // 5


def threshold_problem(threshold: int, n: int, resharing: bool) -> str | None:
    """Why (threshold, n) is not allowed, or None."""
    if not 2 <= threshold <= n:
        return f"threshold must satisfy 2 <= t <= n = {n}, got {threshold}"
    if resharing and threshold < min_resharing_threshold(n):
        return f"threshold {threshold} is below ceil(0.6 * {n}) = {min_resharing_threshold(n)}"
    return None


def duplicate_problem(members: Iterable[ParticipantInfo]) -> str | None:
    """Why the infos cannot form one participant set (a shared account, id, key or url)."""
    seen: dict[str, dict[object, str]] = {
        "account": {},
        "participant_id": {},
        "url": {},
        "tls_public_key": {},
        "signer_public_key": {},
    }
    for m in members:
        values: dict[str, object] = {
            "account": m.account,
            "participant_id": m.participant_id,
            "url": m.url,
            "tls_public_key": m.tls_public_key,
            "signer_public_key": m.signer_public_key,
        }
        for name, value in values.items():
            if name == "participant_id" and value == 0:
                continue
            other = seen[name].get(value)
            if other is not None:
                return f"{m.account} and {other} have the same {name}"
            seen[name][value] = m.account
    return None


def key_clash(
    info: ParticipantInfo | None,
    tls_public_key: bytes,
    signer_public_key: bytes,
    others: Iterable[ParticipantInfo],
) -> str | None:
    """Which of ``others`` (skipping ``info``'s account) already uses one of these keys."""
    skip = None if info is None else info.account
    for o in others:
        if o.account == skip:
            continue
        if o.tls_public_key == tls_public_key:
            return f"the TLS key is already used by {o.account}"
        if o.signer_public_key == signer_public_key:
            return f"the signer key is already used by {o.account}"
    return None
