"""Canonical JSON: the one byte encoding every signed or hashed ledger object uses.

``json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False)`` in UTF-8:
object keys sorted by Unicode code point, no whitespace, strings with only ``"``, ``\\``
and control characters escaped. Values from outside (transactions) are first checked to be
I-JSON (RFC 7493): no floats, integers within ±(2^53 - 1), strings that are valid Unicode,
so that any other JSON implementation reads the same value and re-encodes the same bytes.
"""

from __future__ import annotations

import json
from typing import Any

from quorumkeep.encoding.json import JsonError
from quorumkeep.encoding.json import parse_json as strict_json

MAX_SAFE_INTEGER = 2**53 - 1
MAX_DEPTH = 32
PARSE_DEPTH = 2 * MAX_DEPTH
"""Nesting read from bytes: a transaction's arguments (at most :data:`MAX_DEPTH`) inside
a stored block's envelope."""


class NotCanonical(ValueError):
    """A value that has no canonical encoding (float, huge int, lone surrogate, ...)."""


def check_ijson(value: Any, *, where: str = "value", depth: int = 0) -> None:
    """Raise NotCanonical unless ``value`` is plain I-JSON that re-encodes identically."""
    if depth > MAX_DEPTH:
        raise NotCanonical(f"{where}: nested deeper than {MAX_DEPTH} levels")
    if value is None or isinstance(value, bool):
        return
    if isinstance(value, int):
        if not -MAX_SAFE_INTEGER <= value <= MAX_SAFE_INTEGER:
            raise NotCanonical(f"{where}: integer outside ±(2^53 - 1)")
        return
    if isinstance(value, float):
        raise NotCanonical(f"{where}: floating-point numbers are not allowed")
    if isinstance(value, str):
        _check_unicode(value, where)
        return
    if isinstance(value, list):
        for i, item in enumerate(value):
            check_ijson(item, where=f"{where}[{i}]", depth=depth + 1)
        return
    if isinstance(value, dict):
        for key, item in value.items():
            if not isinstance(key, str):
                raise NotCanonical(f"{where}: object keys must be strings")
            _check_unicode(key, where)
            check_ijson(item, where=f"{where}.{key}", depth=depth + 1)
        return
    raise NotCanonical(f"{where}: {type(value).__name__} is not a JSON value")


def _check_unicode(text: str, where: str) -> None:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        raise NotCanonical(f"{where}: string is not valid Unicode (lone surrogate)") from None


def canonical_json(value: Any) -> bytes:
    """The canonical bytes of a JSON value (callers check outside input with check_ijson)."""
    return json.dumps(
        value, sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False
    ).encode("utf-8")


def parse_json(data: bytes | str) -> Any:
    """Strict JSON parsing (:func:`quorumkeep.encoding.json.parse_json`): duplicate keys,
    NaN and Infinity, invalid UTF-8, nesting deeper than :data:`PARSE_DEPTH` and malformed
    text all raise ``NotCanonical`` (a ValueError)."""
    try:
        return strict_json(data, max_depth=PARSE_DEPTH)
    except JsonError as exc:
        raise NotCanonical(str(exc)) from None
