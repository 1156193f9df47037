"""Strict JSON parsing of untrusted bytes.

:func:`parse_json` accepts RFC 8259 JSON in UTF-8 and refuses, with a :class:`JsonError`
(a ``ValueError``):

- text that is not UTF-8 or not JSON;
- nesting deeper than ``max_depth`` arrays and objects, checked on the text *before* it is
  parsed, so a body of 200 KB of ``[`` is a clear refusal rather than a ``RecursionError``;
- duplicate object keys (two readers could disagree on which one counts);
- ``NaN``, ``Infinity`` and ``-Infinity`` (not JSON).
"""

from __future__ import annotations

import json
import re
from typing import Any

MAX_DEPTH = 64
"""Default nesting limit: far beyond any document of the project (they nest 4 or 5 deep)."""

_STRING = re.compile(r'"[^"\\]*(?:\\.[^"\\]*)*"', re.DOTALL)
_NOT_BRACKET = re.compile(r"[^\[\]{}]+")


class JsonError(ValueError):
    """Bytes that are not a strict JSON document; the message is one line, holds no value."""


def nesting_depth(text: str) -> int:
    """How deep arrays and objects nest in ``text`` (brackets inside strings do not count).

    Linear in the text and never recursive. On malformed text the answer may be too large,
    never too small, so a limit checked with it is never bypassed.
    """
    openers = text.count("[") + text.count("{")
    if openers <= 1:
        return openers
    brackets = _NOT_BRACKET.sub("", _STRING.sub("", text))
    depth = deepest = 0
    for char in brackets:
        if char in "[{":
            depth += 1
            deepest = max(deepest, depth)
        else:
            depth -= 1
    return deepest


def _reject_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    result: dict[str, Any] = {}
    for key, item in pairs:
        if key in result:
            raise JsonError(f"duplicate key {key[:32]!r}")
        result[key] = item
    return result


def _reject_constant(name: str) -> Any:
    raise JsonError(f"{name} is not a JSON number")


def parse_json(data: bytes | bytearray | str, *, max_depth: int = MAX_DEPTH) -> Any:
    """The value of a strict JSON document (see the module docstring), or :class:`JsonError`."""
    if isinstance(data, bytes | bytearray):
        try:
            text = bytes(data).decode("utf-8")
        except UnicodeDecodeError:
            raise JsonError("not UTF-8") from None
    else:
        text = data
    # Fewer openers than the limit cannot nest past it: the common case costs two counts.
    if text.count("[") + text.count("{") > max_depth and nesting_depth(text) > max_depth:
        raise JsonError(f"nested deeper than {max_depth} levels")
    try:
        return json.loads(
            text, object_pairs_hook=_reject_duplicates, parse_constant=_reject_constant
        )
    except JsonError:
        raise
    except RecursionError:  # pragma: no cover - the depth check comes first
        raise JsonError(f"nested deeper than {max_depth} levels") from None
    except ValueError as exc:
        reason = str(exc).splitlines()[0] if str(exc) else "malformed"
        raise JsonError(f"not JSON: {reason}") from None
