"""The kind filter of ``GET /v1/events``: ``kinds=a,b`` (only these) or ``exclude_kinds=a,b``.

Shared by the server (which parses and applies it) and the client (which formats it). A kind
the contract never emitted is not an error (the contract may add kinds); a malformed list is
``InvalidRequest``.
"""

from __future__ import annotations

import re
import urllib.parse
from collections.abc import Iterable
from dataclasses import dataclass

from quorumkeep.ledger.errors import LedgerError

MAX_FILTER_KINDS = 32
MAX_KIND_LENGTH = 64
_KIND = re.compile(r"[a-z0-9_]+")


def _parse_list(name: str, value: str) -> frozenset[str]:
    items = value.split(",")
    if len(items) > MAX_FILTER_KINDS:
        raise LedgerError(
            "InvalidRequest", f"{name}: at most {MAX_FILTER_KINDS} kinds, got {len(items)}"
        )
    for item in items:
        if not item:
            raise LedgerError("InvalidRequest", f"{name}: empty kind in {value!r}")
        if len(item) > MAX_KIND_LENGTH:
            raise LedgerError(
                "InvalidRequest", f"{name}: a kind is at most {MAX_KIND_LENGTH} characters"
            )
        if _KIND.fullmatch(item) is None:
            raise LedgerError(
                "InvalidRequest", f"{name}: kind {item[:MAX_KIND_LENGTH]!r} is not [a-z0-9_]+"
            )
    return frozenset(items)


@dataclass(frozen=True)
class EventFilter:
    """Which event kinds an answer carries: ``kinds`` only, or all but ``kinds``."""

    kinds: frozenset[str]
    exclude: bool

    def matches(self, kind: str) -> bool:
        return (kind in self.kinds) != self.exclude

    @classmethod
    def parse(cls, kinds: list[str], exclude_kinds: list[str]) -> EventFilter | None:
        """From the values of the query parameters (each may be given at most once, and only
        one of the two); None when neither is given."""
        for name, values in (("kinds", kinds), ("exclude_kinds", exclude_kinds)):
            if len(values) > 1:
                raise LedgerError("InvalidRequest", f"{name} is given more than once")
        if kinds and exclude_kinds:
            raise LedgerError("InvalidRequest", "give kinds or exclude_kinds, not both")
        if kinds:
            return cls(_parse_list("kinds", kinds[0]), exclude=False)
        if exclude_kinds:
            return cls(_parse_list("exclude_kinds", exclude_kinds[0]), exclude=True)
        return None


def kind_tuple(name: str, value: Iterable[str] | None) -> tuple[str, ...] | None:
    """A client's ``kinds`` / ``exclude_kinds`` argument, checked to be a collection."""
    if value is None:
        return None
    if isinstance(value, str):
        raise TypeError(f"{name} must be a collection of event kinds, not a str")
    return tuple(value)


def filter_query(kinds: Iterable[str] | None, exclude_kinds: Iterable[str] | None) -> str:
    """The query-string suffix (``&kinds=a,b`` or ``&exclude_kinds=a,b``) for a client call."""
    suffix = ""
    for name, given in (("kinds", kinds), ("exclude_kinds", exclude_kinds)):
        value = kind_tuple(name, given)
        if value is None:
            continue
        # Valid kinds need no escaping; anything else is escaped, for the server to refuse.
        suffix += f"&{name}={urllib.parse.quote(','.join(sorted(value)), safe=',')}"
    return suffix
