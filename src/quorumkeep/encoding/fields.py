"""Field rules: length-prefixed bytes, account names, lowercase hex and decimal text.

Each function raises a plain :class:`ValueError` whose message says what was expected
(never echoing the value); callers map it to their own typed error and wording.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from typing import TypeGuard

ACCOUNT_PATTERN = re.compile(r"^[a-z0-9_\-.]{2,64}$")
"""An account name: 2 to 64 of lowercase ASCII letters, digits, ``_``, ``-`` and ``.``."""

HEX_PATTERN = re.compile(r"^(?:[0-9a-f]{2})*$")
"""Lowercase hex with an even number of digits: one spelling per byte string."""

_DECIMAL = re.compile(r"^(?:0|[1-9][0-9]*)$")
_DIGITS = re.compile(r"^[0-9]+$")


def len32(data: bytes) -> bytes:
    """``u32be(len(data)) ‖ data``: the length-prefixed field every signed or hashed byte
    layout of the project is built from, so that concatenations stay unambiguous."""
    if len(data) > 0xFFFFFFFF:
        raise ValueError("a length-prefixed field holds at most 2^32 - 1 bytes")
    return len(data).to_bytes(4, "big") + data


def is_account_name(value: object) -> TypeGuard[str]:
    return isinstance(value, str) and ACCOUNT_PATTERN.match(value) is not None


def decode_hex(value: object, min_size: int = 0, max_size: int | None = None) -> bytes:
    """Lowercase hex of ``min_size`` to ``max_size`` bytes (the length is checked before
    anything is decoded, so an oversized string costs nothing)."""
    if not isinstance(value, str):
        raise ValueError("expected a lowercase hex string")
    if max_size is not None and len(value) > 2 * max_size:
        raise ValueError(f"expected at most {max_size} bytes of hex")
    if not HEX_PATTERN.match(value):
        raise ValueError("expected lowercase hex with an even number of digits")
    data = bytes.fromhex(value)
    if len(data) < min_size:
        raise ValueError(f"expected at least {min_size} bytes of hex")
    return data


def parse_decimal(text: str, max_digits: int, *, leading_zeros: bool = False) -> int:
    """A non-negative integer written in ASCII decimal (without leading zeros unless
    ``leading_zeros``: HTTP header values may carry them).

    ``str.isdigit`` is not this test: it accepts ``²`` and other Unicode digits, which
    ``int()`` then refuses (``²``) or reads (``١٢٣``), so one value had several spellings.
    """
    pattern = _DIGITS if leading_zeros else _DECIMAL
    if not isinstance(text, str) or len(text) > max_digits or not pattern.match(text):
        raise ValueError(f"expected ASCII decimal digits, at most {max_digits}")
    return int(text)


def key_diff(
    obj: Mapping[str, object], required: Iterable[str], optional: Iterable[str] = ()
) -> tuple[list[str], list[str]]:
    """The required keys ``obj`` lacks (in the order given) and the keys it has that are
    neither required nor optional (sorted): the one rule behind every "exactly these keys"
    check; each family words the refusal."""
    required = list(required)
    allowed = {*required, *optional}
    return [k for k in required if k not in obj], sorted(str(k) for k in obj if k not in allowed)
