"""The shared encoding rules (quorumkeep.encoding): strict JSON, length-prefixed fields,
account names, hex and decimal text. Pure: no processes."""

from __future__ import annotations

import json

import pytest
from hypothesis import given
from hypothesis import strategies as st

from quorumkeep.encoding.fields import (
    decode_hex,
    is_account_name,
    len32,
    parse_decimal,
)
from quorumkeep.encoding.json import MAX_DEPTH, JsonError, nesting_depth, parse_json


@pytest.mark.parametrize(
    "text",
    [
        "[" * 200_000,  # RecursionError in json.loads
        "[" * 1_000 + "]" * 1_000,
        '{"a":' * 1_000 + "1" + "}" * 1_000,
        "[" * (MAX_DEPTH + 1) + "]" * (MAX_DEPTH + 1),
        '{"a": 1, "a": 2}',
        "NaN",
        "[Infinity]",
        "{not json",
        "",
    ],
)
def test_parse_json_refuses_with_one_error_type(text: str) -> None:
    with pytest.raises(JsonError):
        parse_json(text)
    with pytest.raises(JsonError):
        parse_json(text.encode("utf-8"))


def test_parse_json_refuses_invalid_utf8() -> None:
    with pytest.raises(JsonError, match="UTF-8"):
        parse_json(b'"\xff"')


def test_parse_json_accepts_the_limit_and_brackets_in_strings() -> None:
    deepest = "[" * MAX_DEPTH + "]" * MAX_DEPTH
    assert nesting_depth(deepest) == MAX_DEPTH
    assert parse_json(deepest) == json.loads(deepest)
    text = json.dumps({"s": "[[[[" * 100 + '\\"{{{'})
    assert nesting_depth(text) == 1
    assert parse_json(text) == json.loads(text)
    assert parse_json('[1, {"a": [true, null, "x"]}]') == [1, {"a": [True, None, "x"]}]


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(max_size=8),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=5), inner),
    max_leaves=30,
)


@given(json_values)
def test_parse_json_reads_what_json_writes(value: object) -> None:
    assert parse_json(json.dumps(value)) == value


@given(st.text(alphabet='[]{}"\\ab,:', max_size=60))
def test_nesting_depth_never_underestimates(text: str) -> None:
    try:
        json.loads(text)
    except ValueError:
        return
    real = 0
    depth = 0
    in_string = escaped = False
    for char in text:
        if in_string:
            escaped, in_string = (False, True) if escaped else (char == "\\", char != '"')
        elif char == '"':
            in_string = True
        elif char in "[{":
            depth += 1
            real = max(real, depth)
        elif char in "]}":
            depth -= 1
    assert nesting_depth(text) >= real


def test_len32() -> None:
    assert len32(b"") == b"\x00\x00\x00\x00"
    assert len32(b"abc") == b"\x00\x00\x00\x03abc"


@pytest.mark.parametrize("name", ["al", "alice", "a.b-c_d", "x" * 64, "0123"])
def test_account_names(name: str) -> None:
    assert is_account_name(name)


@pytest.mark.parametrize("name", ["a", "x" * 65, "Alice", "al ice", "alicé", "", None, 5])
def test_not_account_names(name: object) -> None:
    assert not is_account_name(name)


def test_decode_hex() -> None:
    assert decode_hex("00ff") == b"\x00\xff"
    assert decode_hex("", 0, 0) == b""
    for bad in ["0", "0F", "zz", " 00", None, 12]:
        with pytest.raises(ValueError):
            decode_hex(bad)
    with pytest.raises(ValueError, match="at most 2"):
        decode_hex("000000", 0, 2)
    with pytest.raises(ValueError, match="at least 2"):
        decode_hex("00", 2)


def test_parse_decimal_is_ascii_only() -> None:
    assert parse_decimal("0", 3) == 0
    assert parse_decimal("1700000000000", 16) == 1_700_000_000_000
    assert parse_decimal("007", 3, leading_zeros=True) == 7
    for bad in ["²", "١٢٣", "-1", "+1", " 1", "1.0", "", "007", "1234"]:
        with pytest.raises(ValueError):
            parse_decimal(bad, 3)
