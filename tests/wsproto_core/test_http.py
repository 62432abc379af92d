"""HTTP/1.1 head parsing and building."""

from __future__ import annotations

import gc

import pytest

from wsproto_core.errors import HandshakeViolation
from wsproto_core.http import (
    Headers,
    build_request,
    build_response,
    parse_request_head,
    parse_response_head,
    take_head,
    token_list,
    value_list,
)


def parse(head: bytes, max_header_count: int = 100) -> Headers:
    return parse_request_head(head, max_header_count=max_header_count).headers


def test_headers_are_case_insensitive_ordered_and_keep_duplicates() -> None:
    headers = parse(b"GET / HTTP/1.1\r\nX-A: 1\r\nx-a: 2\r\nOther:  spaced \t")
    assert headers.get("X-A") == "1, 2"
    assert headers.get_all("x-A") == ["1", "2"]
    assert headers.get("other") == "spaced"
    assert headers.get("missing") is None
    assert headers.count("x-a") == 2
    assert "OTHER" in headers
    assert 3 not in headers
    assert len(headers) == 3
    assert list(headers) == [("X-A", "1"), ("x-a", "2"), ("Other", "spaced")]
    assert headers == Headers(headers.pairs)
    assert hash(headers) == hash(Headers(headers.pairs))
    assert headers != [("X-A", "1")]
    assert "X-A" in repr(headers)
    assert repr(Headers([("A", "1")])) == "Headers([('A', '1')])"
    assert Headers([("n", 1)]).pairs == (("n", "1"),)  # type: ignore[list-item]
    with pytest.raises(ValueError, match="too many values"):
        Headers([("a", "b", "c")])  # type: ignore[list-item]


def test_latin1_values_are_kept() -> None:
    assert parse(b"GET / HTTP/1.1\r\nX: caf\xe9").get("x") == "café"


@pytest.mark.parametrize(
    ("head", "status", "reason"),
    [
        (b"GET / HTTP/1.1\r\n folded: x", 400, "obsolete line folding in a header field"),
        (b"GET / HTTP/1.1\r\n\tfolded: x", 400, "obsolete line folding in a header field"),
        (b"GET / HTTP/1.1\r\nNo colon", 400, "malformed header field"),
        (b"GET / HTTP/1.1\r\nBad(name): x", 400, "malformed header field"),
        (b"GET / HTTP/1.1\r\n: empty name", 400, "malformed header field"),
        (b"GET / HTTP/1.1\r\nX: a\x00b", 400, "control character in header X"),
        # (only spaces and tabs around a value are its padding: the others
        # are control characters, and refused, at either end)
        (b"GET / HTTP/1.1\r\nX: a\x0c", 400, "control character in header X"),
        (b"GET / HTTP/1.1\r\nX:\x0b a", 400, "control character in header X"),
        (b"GET / HTTP/1.1\r\nX: a\nY: b", 400, "bare CR or LF in the message head"),
        (b"GET / HTTP/1.1\r\nX: a\rb", 400, "bare CR or LF in the message head"),
        (b"GET  / HTTP/1.1", 400, "malformed request line"),
        (b"GET / HTTP/1.1 extra", 400, "malformed request line"),
        (b"G@T / HTTP/1.1", 400, "malformed request line"),
        (b"GET /\x7f HTTP/1.1", 400, "malformed request line"),
        (b"GET / HTTX/1.1", 400, "malformed HTTP version"),
        (b"GET / HTTP/11", 400, "malformed HTTP version"),
        (b"GET / HTTP/3.0", 505, "only HTTP/1.x is supported"),
    ],
)
def test_malformed_request_heads(head: bytes, status: int, reason: str) -> None:
    with pytest.raises(HandshakeViolation) as caught:
        parse(head)
    assert (caught.value.status, caught.value.reason) == (status, reason)


def test_header_count_limit_is_431() -> None:
    head = b"GET / HTTP/1.1" + b"\r\nX: y" * 5
    assert len(parse(head, max_header_count=5)) == 5
    with pytest.raises(HandshakeViolation) as caught:
        parse(head, max_header_count=4)
    assert caught.value.status == 431


# What browsers and clients send, in both cases a name may come in. The
# peer's own text (a host, a key, an agent) is never one of the common.
CHROME = (
    b"GET /chat HTTP/1.1\r\nHost: host.example\r\nConnection: Upgrade\r\n"
    b"Pragma: no-cache\r\nCache-Control: no-cache\r\nUser-Agent: agent/1\r\n"
    b"Upgrade: websocket\r\nOrigin: https://o.example\r\nSec-WebSocket-Version: 13\r\n"
    b"Accept-Encoding: gzip, deflate, br, zstd\r\nAccept-Language: en-US\r\n"
    b"Cookie: cookie=1\r\nSec-WebSocket-Key: key==\r\n"
    b"Sec-WebSocket-Extensions: permessage-deflate; client_max_window_bits\r\n"
    b"Sec-WebSocket-Protocol: chat.v1\r\nAuthorization: Basic xyz\r\n"
    b"X-Forwarded-For: 10.0.0.1\r\nX-Forwarded-Proto: https\r\nX-Real-IP: 10.0.0.2"
)
FIREFOX = (
    b"GET /chat HTTP/1.1\r\nhost: host.example\r\nconnection: keep-alive, Upgrade\r\n"
    b"accept: */*\r\naccept-encoding: gzip, deflate, br\r\nsec-fetch-dest: websocket\r\n"
    b"sec-fetch-mode: websocket\r\nsec-fetch-site: same-origin\r\n"
    b"Sec-Fetch-Site: same-site\r\nsec-fetch-site: cross-site\r\nupgrade: upgrade\r\n"
    b"accept-encoding: gzip, deflate\r\nsec-websocket-extensions: permessage-deflate\r\n"
    b"SEC-WEBSOCKET-KEY: key=="
)
PEER_TEXT = {
    "SEC-WEBSOCKET-KEY",
    "host.example",
    "agent/1",
    "https://o.example",
    "en-US",
    "cookie=1",
    "key==",
    "chat.v1",
    "Basic xyz",
    "10.0.0.1",
    "https",
    "10.0.0.2",
}


@pytest.mark.parametrize("head", [CHROME, FIREFOX])
def test_common_names_and_values_are_shared_by_every_request(head: bytes) -> None:
    """A connection keeps its request: the names and values most requests
    repeat are one string for all of them, equal to what decoding gives."""
    first = parse_request_head(head, max_header_count=100)
    second = parse_request_head(head, max_header_count=100)
    lines = head.split(b"\r\n")[1:]
    fields = (line.split(b":", 1) for line in lines)
    assert list(first.headers) == [
        (name.decode(), value.strip().decode()) for name, value in fields
    ]
    assert first.method is second.method
    # One flat tuple of strings, no tuple per field (56 bytes each, kept
    # for the connection's life).
    fields = first.headers._fields
    assert type(fields) is tuple
    assert all(type(text) is str for text in gc.get_referents(fields))
    assert len(fields) == 2 * len(lines)
    for (name, value), (name_again, value_again) in zip(first.headers, second.headers, strict=True):
        assert (name is name_again) == (name not in PEER_TEXT), name
        assert (value is value_again) == (value not in PEER_TEXT), value


def test_uncommon_text_is_decoded_as_latin1() -> None:
    head = parse_request_head(b"PUT / HTTP/1.1\r\nX-Odd: caf\xe9", max_header_count=1)
    assert head.method == "PUT"
    assert list(head.headers) == [("X-Odd", "caf\xe9")]


def test_request_line_fields() -> None:
    head = parse_request_head(b"OPTIONS /a?b HTTP/1.0", max_header_count=1)
    assert (head.method, head.target, head.version) == ("OPTIONS", "/a?b", (1, 0))


def test_response_heads() -> None:
    head = parse_response_head(b"HTTP/1.1 404 Not Found\r\nA: b", max_header_count=10)
    assert (head.version, head.status, head.reason) == ((1, 1), 404, "Not Found")
    assert head.headers.get("a") == "b"
    assert parse_response_head(b"HTTP/1.0 204", max_header_count=1).reason == ""
    for bad in (b"HTTP/1.1 20 OK", b"HTTP/1.1 200OK", b"HTTP 200 OK", b"HTTP/1.1 abc OK"):
        with pytest.raises(HandshakeViolation):
            parse_response_head(bad, max_header_count=1)


def test_token_and_value_lists() -> None:
    headers = Headers([("Connection", "keep-alive, ,Upgrade"), ("connection", "  TE ")])
    assert token_list(headers, "connection") == ["keep-alive", "upgrade", "te"]
    headers = Headers([("P", "Chat, SuperChat"), ("p", "x")])
    assert value_list(headers, "p") == ["Chat", "SuperChat", "x"]


def test_value_lists_strip_only_spaces_and_tabs() -> None:
    """Other characters, even ones Python counts as white space (NEL and
    NBSP, which a latin-1 value can hold), are part of an element."""
    headers = Headers([("P", " X ,\t\xa0, chat\x85 , ,\tXX\t")])
    assert value_list(headers, "p") == ["X", "\xa0", "chat\x85", "XX"]


def test_token_lists_strip_only_spaces_and_tabs() -> None:
    """So "Upgrade\xa0" (NBSP, which a latin-1 value can hold) is not the
    upgrade token."""
    headers = Headers([("Connection", "\tUpgrade\xa0, keep-alive\x85 ")])
    assert token_list(headers, "connection") == ["upgrade\xa0", "keep-alive\x85"]


def test_an_empty_head_is_taken_as_an_empty_head() -> None:
    """A blank line at the very start ends an empty head, which the parser
    then refuses as malformed; it does not count as too long."""
    buffer = bytearray(b"\r\n\r\nrest")
    assert take_head(buffer, max_size=100, what="request", status=431) == b""
    assert buffer == b"rest"
    with pytest.raises(HandshakeViolation) as caught:
        parse_request_head(b"", max_header_count=10)
    assert (caught.value.status, caught.value.reason) == (400, "malformed request line")


def test_build_response_and_request_round_trip() -> None:
    raw = build_response(404, [("A", "b")], b"body")
    head, _, body = raw.partition(b"\r\n\r\n")
    parsed = parse_response_head(head, max_header_count=10)
    assert (parsed.status, parsed.reason, body) == (404, "Not Found", b"body")
    assert build_response(299, []).startswith(b"HTTP/1.1 299 Unknown\r\n")
    raw = build_request("GET", "/x", [("Host", "h")])
    assert raw == b"GET /x HTTP/1.1\r\nHost: h\r\n\r\n"


@pytest.mark.parametrize(
    "fields", [[("X", "a\r\nInjected: yes")], [("Bad Name", "v")], [("X", "\x00")]]
)
def test_building_refuses_header_injection(fields: list[tuple[str, str]]) -> None:
    with pytest.raises(ValueError, match="invalid header field"):
        build_response(200, fields)


@pytest.mark.parametrize("status", [100, 999])
def test_build_response_takes_any_three_digit_status(status: int) -> None:
    """Any three-digit status without a leading zero is built (the
    bounds are 100 and 999); 99 and 1000 are refused below."""
    assert build_response(status, []) == f"HTTP/1.1 {status} Unknown\r\n\r\n".encode()


def test_building_refuses_bad_status_and_request_line() -> None:
    with pytest.raises(ValueError, match="invalid HTTP status"):
        build_response(42, [])
    for status in (99, 1000):
        with pytest.raises(ValueError, match=f"invalid HTTP status {status}"):
            build_response(status, [])
    with pytest.raises(ValueError, match="invalid request line"):
        build_request("GET", "/a b", [])
    with pytest.raises(ValueError, match="invalid request line"):
        build_request("G T", "/", [])


@pytest.mark.parametrize("status", [b"000", b"066", b"600", b"999"])
def test_a_status_outside_100_to_599_is_a_malformed_status_line(status: bytes) -> None:
    """RFC 9110, section 15 (found by fuzz/handshake.py: 066 was a refusal,
    and 000 collided with the client's "no status")."""
    with pytest.raises(HandshakeViolation) as caught:
        parse_response_head(b"HTTP/1.1 " + status + b" Odd", max_header_count=10)
    # 0: there is no status to report (the client's "no status").
    assert (caught.value.status, caught.value.reason) == (0, "malformed status line")
