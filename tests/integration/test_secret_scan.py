"""The demo's secret scan finds exactly what a plain search finds (in-process, no process)."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st
from secret_scan import BLOCK, Needles, Secret, encodings

secret_values = st.lists(st.binary(min_size=32, max_size=32), min_size=1, max_size=6)


@settings(max_examples=200, deadline=None)
@given(secret_values, st.data())
def test_finds_exactly_what_a_plain_search_finds(values: list[bytes], data: st.DataObject) -> None:
    secrets = [Secret(f"s{i}", v) for i, v in enumerate(values)]
    needles = [(s.what, form) for s in secrets for form in encodings(s.value)]
    # a haystack of noise with some forms planted at any offset, some cut short by one byte
    parts: list[bytes] = []
    for _ in range(data.draw(st.integers(0, 6))):
        parts.append(data.draw(st.binary(max_size=3 * BLOCK)))
        _, form = data.draw(st.sampled_from(needles))
        parts.append(form if data.draw(st.booleans()) else form[:-1])
    parts.append(data.draw(st.binary(max_size=3 * BLOCK)))
    haystack = b"".join(parts)
    expected = {what for what, form in needles if form in haystack}
    assert Needles(needles).found_in(haystack) == expected


def test_every_offset_of_a_planted_secret_is_found() -> None:
    secret = Secret("key", bytes(range(1, 33)))
    needles = Needles([(secret.what, form) for form in encodings(secret.value)])
    for form in encodings(secret.value):
        for offset in range(2 * BLOCK + 1):
            assert needles.found_in(b"\x00" * offset + form + b"\x00" * 3) == {"key"}
            assert needles.found_in(b"\x00" * offset + form[1:] + b"\x00" * 3) == set()
