"""Fail-fast UTF-8 validation, checked against an independent oracle: a
hand-written DFA of the well-formed byte sequences (Unicode Table 3-7)."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from wsproto_core.errors import ProtocolViolation
from wsproto_core.utf8 import Utf8Validator


def first_bad_index(data: bytes) -> int | None:
    """Index of the first byte after which `data` can no longer be the
    start of valid UTF-8, else None (valid prefix). From Table 3-7."""
    i = 0
    while i < len(data):
        b = data[i]
        if b < 0x80:
            i += 1
            continue
        if 0xC2 <= b <= 0xDF:
            ranges = [(0x80, 0xBF)]
        elif b == 0xE0:
            ranges = [(0xA0, 0xBF), (0x80, 0xBF)]
        elif 0xE1 <= b <= 0xEC or 0xEE <= b <= 0xEF:
            ranges = [(0x80, 0xBF)] * 2
        elif b == 0xED:
            ranges = [(0x80, 0x9F), (0x80, 0xBF)]
        elif b == 0xF0:
            ranges = [(0x90, 0xBF), (0x80, 0xBF), (0x80, 0xBF)]
        elif 0xF1 <= b <= 0xF3:
            ranges = [(0x80, 0xBF)] * 3
        elif b == 0xF4:
            ranges = [(0x80, 0x8F), (0x80, 0xBF), (0x80, 0xBF)]
        else:
            return i
        for offset, (low, high) in enumerate(ranges, start=1):
            if i + offset >= len(data):
                return None
            if not low <= data[i + offset] <= high:
                return i + offset
        i += 1 + len(ranges)
    return None


def fails_at(data: bytes) -> int | None:
    """Feed byte by byte; the index of the byte whose arrival failed."""
    validator = Utf8Validator()
    for i in range(len(data)):
        try:
            validator.decode(data[i : i + 1], False)
        except ProtocolViolation as violation:
            assert violation.code == 1007  # noqa: PT017 - a helper that reports where it failed
            return i
    return None


@pytest.mark.parametrize(
    "data",
    [
        b"\xed\xa0\x80",
        b"\xed\xbf",
        b"\xf4\x90",
        b"\xe0\x80",
        b"\xf0\x80",
        b"\xc0",
        b"\xf5",
        b"a\xff",
    ],
)
def test_known_bad_prefixes_fail_at_the_first_impossible_byte(data: bytes) -> None:
    assert fails_at(data) == first_bad_index(data)
    assert fails_at(data) is not None


@given(st.binary(max_size=40))
def test_fails_exactly_where_the_oracle_says(data: bytes) -> None:
    assert fails_at(data) == first_bad_index(data)


@given(st.text(max_size=50), st.lists(st.integers(0, 200), max_size=5))
def test_valid_text_in_any_split_decodes_to_itself(text: str, cuts: list[int]) -> None:
    data = text.encode("utf-8", "surrogatepass")
    if first_bad_index(data) is not None:  # lone surrogates are not valid UTF-8
        return
    points = sorted({min(c, len(data)) for c in cuts})
    pieces = [data[a:b] for a, b in zip([0, *points], [*points, len(data)], strict=True)]
    validator = Utf8Validator()
    decoded = "".join(validator.decode(p, False) for p in pieces) + validator.decode(b"", True)
    assert decoded == text


def test_truncated_sequence_fails_only_when_final() -> None:
    validator = Utf8Validator()
    assert validator.decode(b"\xe2\x82", False) == ""
    with pytest.raises(ProtocolViolation):
        validator.decode(b"", True)
