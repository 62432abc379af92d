"""The server role: RFC 6455 section 4.2 one rule at a time, plain HTTP on
the same connection, and the application's answers."""

from __future__ import annotations

import pytest

from wsproto_core import (
    BytesMessage,
    ConnectionFailed,
    HandshakeFailed,
    HandshakeRequest,
    HttpRequest,
    LocalProtocolError,
    ServerConnection,
    State,
    TextMessage,
)
from wsproto_core.extensions import ExtensionOffer
from wsproto_core.http import parse_response_head

from .wire import RFC_ACCEPT, frame, upgrade_request


def response_of(server: ServerConnection) -> tuple[int, dict[str, str], bytes]:
    raw = server.data_to_send()
    head, _, body = raw.partition(b"\r\n\r\n")
    parsed = parse_response_head(head, max_header_count=100)
    return parsed.status, {n.lower(): v for n, v in parsed.headers}, body


def test_rfc_example_handshake() -> None:
    server = ServerConnection()
    [request] = server.receive_data(upgrade_request())
    assert isinstance(request, HandshakeRequest)
    assert (request.path, request.query, request.host) == ("/chat", "", "server.example.com")
    assert request.origin == "http://example.com"
    assert request.subprotocols == ("chat", "superchat")
    assert server.request is request
    server.accept(subprotocol="chat", extra_headers=[("X-Served-By", "test")])
    status, headers, body = response_of(server)
    assert status == 101
    assert headers["sec-websocket-accept"] == RFC_ACCEPT
    assert headers["upgrade"] == "websocket"
    assert headers["connection"] == "Upgrade"
    assert headers["sec-websocket-protocol"] == "chat"
    assert headers["x-served-by"] == "test"
    assert body == b""
    assert server.state is State.OPEN
    assert server.subprotocol == "chat"


def test_request_split_at_every_byte_gives_one_event() -> None:
    data = upgrade_request(target="/a?b=c")
    server = ServerConnection()
    events = [e for i in range(len(data)) for e in server.receive_data(data[i : i + 1])]
    assert len(events) == 1
    assert isinstance(events[0], HandshakeRequest)
    assert events[0].query == "b=c"


def test_offered_extensions_are_reported() -> None:
    data = upgrade_request(
        extra=(("Sec-WebSocket-Extensions", "permessage-deflate; client_max_window_bits, x-y"),)
    )
    [request] = ServerConnection().receive_data(data)
    assert request.extensions == (  # type: ignore[union-attr]
        ExtensionOffer(name="permessage-deflate", params=(("client_max_window_bits", None),)),
        ExtensionOffer(name="x-y"),
    )


def test_tokens_are_case_insensitive_lists() -> None:
    data = upgrade_request(
        replace={"Upgrade": "foo, WebSocket", "Connection": "keep-alive, UPGRADE"}
    )
    [event] = ServerConnection().receive_data(data)
    assert isinstance(event, HandshakeRequest)


BAD_REQUESTS = [
    (upgrade_request(method="POST"), 400, "must use GET"),
    (upgrade_request(version="HTTP/1.0"), 400, "needs HTTP/1.1"),
    (upgrade_request(target="http://x/chat"), 400, "absolute path"),
    (upgrade_request(drop=("Host",)), 400, "Host header is missing"),
    (upgrade_request(extra=(("Host", "other"),)), 400, "Host header is repeated"),
    (upgrade_request(replace={"Host": ""}), 400, "Host header is empty"),
    (upgrade_request(drop=("Connection",)), 400, "Connection header"),
    (upgrade_request(replace={"Connection": "keep-alive"}), 400, "Connection header"),
    (upgrade_request(drop=("Sec-WebSocket-Key",)), 400, "Sec-WebSocket-Key header is missing"),
    (
        upgrade_request(extra=(("Sec-WebSocket-Key", "x"),)),
        400,
        "Sec-WebSocket-Key header is repeated",
    ),
    (upgrade_request(replace={"Sec-WebSocket-Key": "c2hvcnQ="}), 400, "not 16 bytes"),
    # (found by fuzz/handshake.py: a name that is not a token could be chosen)
    (upgrade_request(extra=(("Sec-WebSocket-Protocol", "(chat, v2"),)), 400, "list of tokens"),
    (upgrade_request(extra=(("Sec-WebSocket-Protocol", "chat v2"),)), 400, "list of tokens"),
    (
        upgrade_request(replace={"Sec-WebSocket-Key": "not base64!!!!!!!!!!!!!=="}),
        400,
        "not 16 bytes",
    ),
    (upgrade_request(replace={"Sec-WebSocket-Key": "é"}), 400, "not 16 bytes"),
    (upgrade_request(extra=(("Origin", "http://evil"),)), 400, "Origin header is repeated"),
    (upgrade_request(extra=(("Content-Length", "5"),)), 400, "has no body"),
    (upgrade_request(extra=(("Transfer-Encoding", "chunked"),)), 400, "has no body"),
    (
        upgrade_request(extra=(("Sec-WebSocket-Extensions", "a; ="),)),
        400,
        "Sec-WebSocket-Extensions",
    ),
    (upgrade_request(version="HTTP/2.0"), 505, "HTTP/1.x"),
    (b"GET /\r\n\r\n", 400, "malformed request line"),
    (b"GET / HTTP/1.1\r\nBad Header: x\r\n\r\n", 400, "malformed header field"),
]


@pytest.mark.parametrize(("data", "status", "reason"), BAD_REQUESTS)
def test_bad_handshake_is_answered_with_status(data: bytes, status: int, reason: str) -> None:
    server = ServerConnection()
    [event] = server.receive_data(data)
    assert isinstance(event, HandshakeFailed)
    assert event.status == status
    assert reason in event.reason
    got_status, headers, body = response_of(server)
    assert got_status == status
    assert headers["connection"] == "close"
    assert body.decode().strip() == event.reason
    assert server.should_close_transport
    assert server.state is State.CLOSED
    assert server.receive_data(b"more") == []


@pytest.mark.parametrize("version", [None, "8", "13, 8", "14"])
def test_wrong_version_is_answered_426_with_supported_version(version: str | None) -> None:
    if version is None:
        data = upgrade_request(drop=("Sec-WebSocket-Version",))
    else:
        data = upgrade_request(replace={"Sec-WebSocket-Version": version})
    server = ServerConnection()
    [event] = server.receive_data(data)
    assert event == HandshakeFailed(status=426, reason="unsupported Sec-WebSocket-Version")
    status, headers, _ = response_of(server)
    assert status == 426
    assert headers["sec-websocket-version"] == "13"


def test_oversized_head_is_answered_431_before_it_ends() -> None:
    server = ServerConnection(max_handshake_size=1024)
    assert server.receive_data(b"GET / HTTP/1.1\r\nX: " + b"a" * 1000) == []
    [event] = server.receive_data(b"a" * 100)  # still no blank line: no need to wait for one
    assert event == HandshakeFailed(status=431, reason="request head is over 1024 bytes")
    assert response_of(server)[0] == 431


def test_a_head_that_fills_the_limit_without_its_end_is_431_at_once() -> None:
    """`max_handshake_size` bytes with no blank line among them cannot be a
    head that fits: the answer is 431 now, not after one more byte. (It came
    one byte late, so a peer that sent exactly that much and closed got no
    431 at all.)"""
    data = upgrade_request()
    for cut in (1, 2, 3, 4):  # the blank line missing in part or in whole
        server = ServerConnection(max_handshake_size=len(data) - cut)
        [event] = server.receive_data(data[: len(data) - cut])
        assert event == HandshakeFailed(
            status=431, reason=f"request head is over {len(data) - cut} bytes"
        )
        assert response_of(server)[0] == 431
    server = ServerConnection(max_handshake_size=len(data))
    assert server.receive_data(data[:-1]) == []  # one byte short: it may still fit
    assert isinstance(server.receive_data(data[-1:])[0], HandshakeRequest)


def test_head_just_over_limit_with_blank_line_is_431() -> None:
    data = upgrade_request()
    server = ServerConnection(max_handshake_size=len(data) - 1)
    [event] = server.receive_data(data)
    assert event.status == 431  # type: ignore[union-attr]
    assert isinstance(
        ServerConnection(max_handshake_size=len(data)).receive_data(data)[0], HandshakeRequest
    )


def test_too_many_header_fields_is_431() -> None:
    extra = tuple((f"X-{i}", "v") for i in range(20))
    server = ServerConnection(max_header_count=20)
    [event] = server.receive_data(upgrade_request(extra=extra))
    assert event == HandshakeFailed(status=431, reason="more than 20 header fields")


def test_accept_validates_subprotocol_and_state() -> None:
    server = ServerConnection()
    with pytest.raises(LocalProtocolError, match="none is pending"):
        server.accept()
    server.receive_data(upgrade_request())
    with pytest.raises(LocalProtocolError, match="not offered"):
        server.accept(subprotocol="other")
    with pytest.raises(LocalProtocolError, match="answers a HttpRequest"):
        server.respond(200)
    server.accept()
    with pytest.raises(LocalProtocolError, match="none is pending"):
        server.accept()


def test_reject_sends_status_headers_and_body_then_closes() -> None:
    server = ServerConnection()
    server.receive_data(upgrade_request())
    server.reject(403, headers=[("Content-Type", "text/plain")], body=b"go away")
    status, headers, body = response_of(server)
    assert (status, body) == (403, b"go away")
    assert headers["content-length"] == "7"
    assert headers["content-type"] == "text/plain"
    assert server.should_close_transport
    assert server.state is State.CLOSED


@pytest.mark.parametrize("status", [101, 199, 600])
def test_reject_needs_a_final_status(status: int) -> None:
    server = ServerConnection()
    server.receive_data(upgrade_request())
    with pytest.raises(LocalProtocolError, match="final HTTP status"):
        server.reject(status)


def test_accept_returns_the_events_of_early_frames() -> None:
    server = ServerConnection()
    [request] = server.receive_data(upgrade_request() + frame(0x1, b"early"))
    assert isinstance(request, HandshakeRequest)
    assert server.accept() == [TextMessage(data="early")]
    assert server.receive_data(b"") == []


def test_the_head_ends_at_the_first_blank_line_even_if_early_data_holds_another() -> None:
    early = frame(0x2, b"\r\n\r\n", mask=b"\x00\x00\x00\x00")  # the bytes as sent
    assert b"\r\n\r\n" in early
    server = ServerConnection()
    [request] = server.receive_data(upgrade_request() + early)
    assert isinstance(request, HandshakeRequest)
    assert server.accept() == [BytesMessage(data=b"\r\n\r\n")]


def test_early_frames_can_be_left_unread_for_the_adapter() -> None:
    server = ServerConnection()
    early = frame(0x1, b"early") + frame(0x2, b"two")
    server.receive_data(upgrade_request() + early)
    assert server.accept(read_early=False) == []
    assert server.state is State.OPEN
    assert server.take_early_data() == early
    assert server.take_early_data() == b""  # handed over once
    assert server.receive_data(early) == [TextMessage(data="early"), BytesMessage(data=b"two")]


def test_accept_without_early_frames_returns_nothing() -> None:
    server = ServerConnection()
    server.receive_data(upgrade_request())
    assert server.accept() == []


def test_an_early_violation_fails_the_connection_from_accept() -> None:
    server = ServerConnection()
    server.receive_data(upgrade_request() + frame(0x3, b""))
    [failed] = server.accept()
    assert failed == ConnectionFailed(code=1002, reason="reserved opcode 0x3")
    assert server.should_close_transport


def test_flood_before_the_answer_is_refused() -> None:
    server = ServerConnection(max_handshake_size=2048)
    server.receive_data(upgrade_request())
    [event] = server.receive_data(b"x" * 2049)
    assert event == HandshakeFailed(
        status=400, reason="data sent before the handshake was answered"
    )


def test_eof_during_handshake() -> None:
    server = ServerConnection()
    server.receive_data(b"GET / HT")
    assert server.receive_eof() == [
        HandshakeFailed(status=None, reason="connection closed during the opening handshake")
    ]
    assert server.should_close_transport


# -- plain HTTP on the same port ---------------------------------------------


def test_plain_request_is_reported_and_answered() -> None:
    server = ServerConnection()
    [event] = server.receive_data(b"GET /index.html?x=1 HTTP/1.1\r\nHost: h\r\n\r\n")
    assert event == HttpRequest(
        method="GET",
        target="/index.html?x=1",
        path="/index.html",
        query="x=1",
        headers=event.headers,  # type: ignore[union-attr]
        body=b"",
    )
    server.respond(200, headers=[("Content-Type", "text/html")], body=b"<p>hi</p>")
    status, headers, body = response_of(server)
    assert (status, body) == (200, b"<p>hi</p>")
    assert headers["content-length"] == "9"
    assert headers["connection"] == "close"
    assert server.should_close_transport


def test_upgrade_to_something_else_is_plain_http() -> None:
    data = b"GET / HTTP/1.1\r\nHost: h\r\nUpgrade: h2c\r\nConnection: Upgrade\r\n\r\n"
    [event] = ServerConnection().receive_data(data)
    assert isinstance(event, HttpRequest)


def test_head_request_gets_headers_only() -> None:
    server = ServerConnection()
    server.receive_data(b"HEAD / HTTP/1.1\r\nHost: h\r\n\r\n")
    server.respond(200, body=b"12345")
    status, headers, body = response_of(server)
    assert (status, headers["content-length"], body) == (200, "5", b"")


def test_plain_request_body_waits_for_content_length() -> None:
    server = ServerConnection()
    assert server.receive_data(b"POST /x HTTP/1.1\r\nHost: h\r\nContent-Length: 5\r\n\r\nab") == []
    [event] = server.receive_data(b"cde")
    assert isinstance(event, HttpRequest)
    assert (event.method, event.body) == ("POST", b"abcde")


def test_plain_request_body_over_limit_is_413() -> None:
    server = ServerConnection(max_message_size=10)
    [event] = server.receive_data(b"POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 11\r\n\r\n")
    assert event.status == 413  # type: ignore[union-attr]


@pytest.mark.parametrize("value", ["abc", "-1", "1, 2", "٣"])
def test_invalid_content_length_is_400(value: str) -> None:
    server = ServerConnection()
    head = f"POST / HTTP/1.1\r\nHost: h\r\nContent-Length: {value}\r\n\r\n"
    [event] = server.receive_data(head.encode())
    assert event == HandshakeFailed(status=400, reason="invalid Content-Length")


def test_chunked_plain_request_is_501() -> None:
    server = ServerConnection()
    [event] = server.receive_data(
        b"POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n"
    )
    assert event.status == 501  # type: ignore[union-attr]


def test_respond_only_answers_plain_requests() -> None:
    server = ServerConnection()
    server.receive_data(b"GET / HTTP/1.1\r\nHost: h\r\n\r\n")
    with pytest.raises(LocalProtocolError, match="answers a HandshakeRequest"):
        server.accept()
    with pytest.raises(LocalProtocolError):
        server.reject()


def test_small_data_while_an_answer_is_pending_is_kept() -> None:
    server = ServerConnection()
    server.receive_data(upgrade_request())
    assert server.receive_data(frame(0x1, b"one")) == []
    assert server.receive_data(frame(0x1, b"two")) == []
    assert server.accept() == [TextMessage(data="one"), TextMessage(data="two")]


def test_application_headers_win_over_defaults() -> None:
    server = ServerConnection()
    server.receive_data(b"GET / HTTP/1.1\r\nHost: h\r\n\r\n")
    server.respond(
        200, headers=[("Content-Length", "3"), ("Connection", "keep-alive")], body=b"abc"
    )
    _, headers, body = response_of(server)
    assert (headers["content-length"], headers["connection"], body) == ("3", "keep-alive", b"abc")


@pytest.mark.parametrize(
    ("data", "expected"),
    [
        (
            upgrade_request(extra=(("Content-Length", "5"),)),
            HandshakeFailed(status=400, reason="a WebSocket handshake has no body"),
        ),
        (
            upgrade_request(extra=(("Transfer-Encoding", "chunked"),)),
            HandshakeFailed(status=400, reason="a WebSocket handshake has no body"),
        ),
        (
            b"POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n",
            HandshakeFailed(status=501, reason="chunked request bodies are not supported"),
        ),
    ],
)
def test_a_request_body_the_core_refuses_is_answered_with_its_exact_reason(
    data: bytes, expected: HandshakeFailed
) -> None:
    server = ServerConnection()
    assert server.receive_data(data) == [expected]
    status, _, body = response_of(server)
    assert (status, body) == (expected.status, (expected.reason + "\n").encode())


def test_accept_without_a_pending_handshake_says_so() -> None:
    server = ServerConnection()
    with pytest.raises(LocalProtocolError) as raised:
        server.accept()
    assert str(raised.value) == "accept() answers a HandshakeRequest, and none is pending"


def test_plain_request_body_of_exactly_the_limit_is_read() -> None:
    server = ServerConnection(max_message_size=10)
    head = b"POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 10\r\n\r\n"
    [event] = server.receive_data(head + b"0123456789")
    assert isinstance(event, HttpRequest)
    assert event.body == b"0123456789"


def test_data_up_to_the_handshake_limit_waits_for_the_answer() -> None:
    server = ServerConnection(max_handshake_size=2048)
    server.receive_data(upgrade_request())
    early = frame(0x2, bytes(2040))  # 2 + 2 + 4 + 2040 = 2048 bytes
    assert len(early) == 2048
    assert server.receive_data(early) == []
    assert server.accept() == [BytesMessage(data=bytes(2040))]


def test_a_new_server_has_no_request_no_early_data_and_is_not_a_client() -> None:
    server = ServerConnection()
    assert server.request is None
    assert server.is_client is False
    assert server.take_early_data() == b""
    server.receive_data(b"GET / HTTP/1.1\r\nHost: h\r\n\r\n")
    assert server.request is None  # a plain request is not a HandshakeRequest
    upgraded = ServerConnection()
    upgraded.receive_data(upgrade_request())
    upgraded.accept()
    assert upgraded.take_early_data() == b""  # accept() read it all
