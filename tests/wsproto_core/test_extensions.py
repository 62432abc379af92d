"""Sec-WebSocket-Extensions syntax."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from wsproto_core.errors import HandshakeViolation
from wsproto_core.extensions import ExtensionOffer, format_extension, parse_extensions


def test_offers_with_parameters_in_order() -> None:
    offers = parse_extensions(
        [
            "permessage-deflate; client_max_window_bits; server_max_window_bits=10",
            ' , x-foo ;a="b" ,, y',
        ]
    )
    assert offers == (
        ExtensionOffer(
            name="permessage-deflate",
            params=(("client_max_window_bits", None), ("server_max_window_bits", "10")),
        ),
        ExtensionOffer(name="x-foo", params=(("a", "b"),)),
        ExtensionOffer(name="y"),
    )


def test_quoted_value_with_escape() -> None:
    [offer] = parse_extensions(['e; p="\\1\\0"'])
    assert offer.params == (("p", "10"),)


def test_empty_header_means_no_offers() -> None:
    assert parse_extensions(["", " , "]) == ()


def test_commas_without_spaces_separate_offers() -> None:
    offers = parse_extensions([",a,,b;x=1,c", ",,d"])
    assert [offer.name for offer in offers] == ["a", "b", "c", "d"]
    assert offers[1].params == (("x", "1"),)


@pytest.mark.parametrize(
    ("value", "reason"),
    [
        ("; a", "expected an extension name in Sec-WebSocket-Extensions"),
        ("a;", "expected a parameter name in Sec-WebSocket-Extensions"),
        ("a; =b", "expected a parameter name in Sec-WebSocket-Extensions"),
        ("a; b=", "expected a parameter value in Sec-WebSocket-Extensions"),
        ('a; b="c d"', "quoted extension parameter is not a token"),
        ('a; b="unterminated', "expected a parameter value in Sec-WebSocket-Extensions"),
        ("a b", "malformed Sec-WebSocket-Extensions"),
        ("a; b=c d", "malformed Sec-WebSocket-Extensions"),
        ("a=b", "malformed Sec-WebSocket-Extensions"),
    ],
)
def test_syntax_errors_are_400_with_what_was_expected(value: str, reason: str) -> None:
    with pytest.raises(HandshakeViolation) as caught:
        parse_extensions([value])
    assert (caught.value.status, caught.value.reason) == (400, reason)


tokens = st.text(alphabet="abcdefghijklmnopqrstuvwxyz0123456789-_", min_size=1, max_size=12)


@given(
    st.lists(
        st.builds(
            ExtensionOffer,
            name=tokens,
            params=st.lists(st.tuples(tokens, st.none() | tokens), max_size=4).map(tuple),
        ),
        max_size=4,
    )
)
def test_format_then_parse_round_trips(offers: list[ExtensionOffer]) -> None:
    text = ", ".join(format_extension(offer) for offer in offers)
    assert parse_extensions([text]) == tuple(offers)
    assert all(str(offer) == format_extension(offer) for offer in offers)
