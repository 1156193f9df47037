"""Strict readers for JSON arguments: each returns a typed value or raises InvalidArguments.

Arguments arrive from anyone on the network, so nothing is coerced: an int is a JSON
integer (never a bool or a string), bytes are lowercase hex of an exact or bounded length,
and an object with a field the method does not know is refused rather than ignored.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from typing import Any

from quorumkeep.contract.errors import InvalidArguments
from quorumkeep.crypto.errors import InvalidEncoding
from quorumkeep.crypto.group import element_decode
from quorumkeep.encoding.fields import ACCOUNT_PATTERN, decode_hex, is_account_name, key_diff

_DECIMAL_ID = re.compile(r"^[1-9][0-9]{0,15}$")
_HOST_PORT = re.compile(r"^[A-Za-z0-9.\-]{1,253}:[0-9]{1,5}$|^\[[0-9A-Fa-f:.]{2,45}\]:[0-9]{1,5}$")
_WEB_URL = re.compile(r"^https?://[\x21-\x7e]{1,500}$")

MAX_INT = 2**53 - 1
"""Largest integer accepted anywhere: exactly representable by every JSON implementation."""


def expect_object(value: Any, name: str) -> dict[str, Any]:
    if not isinstance(value, dict) or not all(isinstance(k, str) for k in value):
        raise InvalidArguments(f"{name} must be a JSON object")
    return value


def check_fields(
    obj: Mapping[str, Any], name: str, required: Iterable[str], optional: Iterable[str] = ()
) -> None:
    missing, unknown = key_diff(obj, required, optional)
    if missing:
        raise InvalidArguments(f"{name} is missing {', '.join(missing)}")
    if unknown:
        raise InvalidArguments(f"{name} has unknown field(s) {', '.join(unknown)}")


def expect_bool(value: Any, name: str) -> bool:
    if not isinstance(value, bool):
        raise InvalidArguments(f"{name} must be true or false")
    return value


def expect_int(value: Any, name: str, minimum: int = 0, maximum: int = MAX_INT) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise InvalidArguments(f"{name} must be an integer")
    if not minimum <= value <= maximum:
        raise InvalidArguments(f"{name} must be in [{minimum}, {maximum}], got {value}")
    return value


def expect_str(value: Any, name: str, max_length: int) -> str:
    if not isinstance(value, str):
        raise InvalidArguments(f"{name} must be a string")
    if len(value) > max_length:
        raise InvalidArguments(f"{name} is longer than {max_length} characters")
    return value


def expect_list(value: Any, name: str, min_length: int, max_length: int) -> list[Any]:
    if not isinstance(value, list):
        raise InvalidArguments(f"{name} must be a JSON array")
    if not min_length <= len(value) <= max_length:
        raise InvalidArguments(
            f"{name} must have {min_length} to {max_length} entries, got {len(value)}"
        )
    return value


def expect_account(value: Any, name: str) -> str:
    if not is_account_name(value):
        raise InvalidArguments(f"{name} must be an account name matching {ACCOUNT_PATTERN.pattern}")
    return value


def expect_hex(value: Any, name: str, min_size: int, max_size: int) -> bytes:
    """Lowercase hex of min_size..max_size bytes (the length is checked before decoding)."""
    if not isinstance(value, str):
        raise InvalidArguments(f"{name} must be a lowercase hex string")
    if len(value) > 2 * max_size + 2:
        raise InvalidArguments(f"{name} is longer than {max_size} bytes")
    try:
        data = decode_hex(value)
    except ValueError:
        raise InvalidArguments(
            f"{name} must be lowercase hex with an even number of digits"
        ) from None
    if not min_size <= len(data) <= max_size:
        if min_size == max_size:
            raise InvalidArguments(f"{name} must be {min_size} bytes, got {len(data)}")
        raise InvalidArguments(f"{name} must be {min_size} to {max_size} bytes, got {len(data)}")
    return data


def expect_ed25519_key(value: Any, name: str) -> bytes:
    """A 32-byte Ed25519 public key: a canonical point of the prime-order subgroup.

    Small-order and non-canonical points are refused: such a key would make signature
    checks by it meaningless (a small-order key verifies forged signatures).
    """
    data = expect_hex(value, name, 32, 32)
    try:
        return element_decode(data)
    except InvalidEncoding as exc:
        raise InvalidArguments(f"{name} is not a valid Ed25519 public key") from exc


def expect_verifying_shares(value: Any, name: str, max_count: int) -> tuple[tuple[int, bytes], ...]:
    """``{"<participant id>": hex32}`` → (id, point) pairs in ascending id order.

    Ids are decimal without leading zeros (JSON keys are strings); every share must be a
    canonical point of the prime-order subgroup, not the identity, so a share checked
    against it later cannot be one of the small-order points that anything matches.
    """
    obj = expect_object(value, name)
    if not 1 <= len(obj) <= max_count:
        raise InvalidArguments(f"{name} must have 1 to {max_count} entries, got {len(obj)}")
    pairs: list[tuple[int, bytes]] = []
    for key, item in obj.items():
        if not _DECIMAL_ID.match(key) or int(key) > MAX_INT:
            raise InvalidArguments(
                f"{name} keys must be participant ids in decimal, got {key[:24]!r}"
            )
        data = expect_hex(item, f"{name}[{key}]", 32, 32)
        try:
            pairs.append((int(key), element_decode(data)))
        except InvalidEncoding as exc:
            raise InvalidArguments(
                f"{name}[{key}] is not a canonical point of the prime-order subgroup"
            ) from exc
    return tuple(sorted(pairs))


def expect_x25519_key(value: Any, name: str) -> bytes:
    data = expect_hex(value, name, 32, 32)
    if data == bytes(32):
        raise InvalidArguments(f"{name} must not be the all-zero X25519 key")
    return data


def expect_host_port(value: Any, name: str) -> str:
    if not isinstance(value, str) or not _HOST_PORT.match(value):
        raise InvalidArguments(f"{name} must be host:port")
    port = int(value.rsplit(":", 1)[1])
    if not 1 <= port <= 65535:
        raise InvalidArguments(f"{name} has a port outside 1..65535")
    return value


def expect_web_url(value: Any, name: str) -> str:
    if not isinstance(value, str) or not _WEB_URL.match(value):
        raise InvalidArguments(f"{name} must be an http(s):// URL without spaces")
    return value
