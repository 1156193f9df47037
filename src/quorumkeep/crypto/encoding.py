"""Byte and JSON encodings shared by the key-management packages (dkg, reshare, repair).

Two forms of every public package travel between parties: compact bytes and a JSON-able
dict of lowercase hex strings. Both decoders validate everything they read: exact sizes,
canonical scalars (``scalar_decode``), elements in the prime-order subgroup and not the
identity (``element_decode``), no trailing bytes, no missing or unknown dict keys. A
failure raises ``InvalidEncoding`` with a one-line message that names the field, never
its value (some of these fields are secret shares).

Byte-level building blocks:
    u16         2-byte big-endian unsigned integer (list lengths)
    scalar      32 bytes, little-endian, < L
    element     32 bytes, compressed edwards25519 point
    identifier  32 bytes, the identifier as a scalar (little-endian, 1 <= id < L)
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence

from quorumkeep.crypto.errors import InvalidEncoding
from quorumkeep.crypto.group import (
    ELEMENT_SIZE,
    SCALAR_SIZE,
    Element,
    Scalar,
    element_decode,
    identifier_scalar,
    scalar_decode,
    scalar_to_int,
)
from quorumkeep.encoding.fields import decode_hex, key_diff, parse_decimal

MAX_LIST = 0xFFFF

_Decoder = Callable[[bytes], bytes]


def u16(value: int) -> bytes:
    if not 0 <= value <= MAX_LIST:
        raise InvalidEncoding(f"list of {value} items does not fit the u16 length prefix")
    return value.to_bytes(2, "big")


def encode_elements(elements: Sequence[Element]) -> bytes:
    """u16 count || element*"""
    return u16(len(elements)) + b"".join(elements)


class Reader:
    """Reads a byte string front to back; every shortfall is an ``InvalidEncoding``."""

    def __init__(self, data: bytes, what: str) -> None:
        if not isinstance(data, bytes | bytearray | memoryview):
            raise InvalidEncoding(f"{what}: expected bytes, got {type(data).__name__}")
        self._data = bytes(data)
        self._pos = 0
        self._what = what

    def take(self, size: int, field: str) -> bytes:
        end = self._pos + size
        if end > len(self._data):
            raise InvalidEncoding(f"{self._what}: truncated in {field}")
        chunk = self._data[self._pos : end]
        self._pos = end
        return chunk

    def u16(self, field: str) -> int:
        return int.from_bytes(self.take(2, field), "big")

    def scalar(self, field: str) -> Scalar:
        return _named(scalar_decode, self.take(SCALAR_SIZE, field), f"{self._what}: {field}")

    def element(self, field: str) -> Element:
        return _named(element_decode, self.take(ELEMENT_SIZE, field), f"{self._what}: {field}")

    def identifier(self, field: str) -> int:
        return decode_identifier(self.take(SCALAR_SIZE, field), f"{self._what}: {field}")

    def elements(self, field: str) -> tuple[Element, ...]:
        count = self.u16(f"{field} length")
        return tuple(self.element(f"{field}[{k}]") for k in range(count))

    def finish(self) -> None:
        if self._pos != len(self._data):
            raise InvalidEncoding(f"{self._what}: {len(self._data) - self._pos} trailing bytes")


def encode_identifier(identifier: int) -> bytes:
    return identifier_scalar(identifier)


def decode_identifier(data: bytes, what: str) -> int:
    value = scalar_to_int(_named(scalar_decode, data, what))
    if value == 0:
        raise InvalidEncoding(f"{what}: identifier 0 is not allowed")
    return value


def _named(decode: _Decoder, data: bytes, what: str) -> bytes:
    try:
        return decode(data)
    except InvalidEncoding as exc:
        raise InvalidEncoding(f"{what}: {exc}") from None


# --- JSON-able dicts -------------------------------------------------------------------


def fields(obj: object, keys: Iterable[str], what: str) -> dict[str, object]:
    """``obj`` as a dict holding exactly ``keys``."""
    if not isinstance(obj, Mapping):
        raise InvalidEncoding(f"{what}: expected an object, got {type(obj).__name__}")
    missing, unknown = key_diff(obj, sorted(set(keys)))
    if missing or unknown:
        raise InvalidEncoding(f"{what}: missing keys {missing}, unknown keys {unknown}")
    return {str(k): obj[k] for k in obj}


def hex_bytes(value: object, size: int, what: str) -> bytes:
    if not isinstance(value, str):
        raise InvalidEncoding(f"{what}: expected a hex string, got {type(value).__name__}")
    if len(value) != 2 * size:
        raise InvalidEncoding(f"{what}: expected {2 * size} hex digits, got {len(value)}")
    try:
        return decode_hex(value)
    except ValueError:
        raise InvalidEncoding(f"{what}: not a hex string") from None


def hex_scalar(value: object, what: str) -> Scalar:
    return _named(scalar_decode, hex_bytes(value, SCALAR_SIZE, what), what)


def hex_element(value: object, what: str) -> Element:
    return _named(element_decode, hex_bytes(value, ELEMENT_SIZE, what), what)


def hex_elements(value: object, what: str) -> tuple[Element, ...]:
    if not isinstance(value, list):
        raise InvalidEncoding(f"{what}: expected a list, got {type(value).__name__}")
    if len(value) > MAX_LIST:
        raise InvalidEncoding(f"{what}: more than {MAX_LIST} items")
    return tuple(hex_element(v, f"{what}[{k}]") for k, v in enumerate(value))


def json_identifier(value: object, what: str) -> int:
    """Identifiers in dicts are decimal strings: JSON numbers lose precision above 2^53."""
    if not isinstance(value, str):
        raise InvalidEncoding(f"{what}: expected an identifier as a decimal string")
    try:
        parse_decimal(value, len(value), leading_zeros=True)
    except ValueError:
        raise InvalidEncoding(f"{what}: expected an identifier as a decimal string") from None
    try:
        identifier = parse_decimal(value, 78)
    except ValueError:
        raise InvalidEncoding(f"{what}: not a canonical decimal identifier") from None
    try:
        identifier_scalar(identifier)
    except InvalidEncoding as exc:
        raise InvalidEncoding(f"{what}: {exc}") from None
    return identifier
