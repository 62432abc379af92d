"""The client role: the request it builds and every check on the response."""

from __future__ import annotations

import base64

import pytest

from wsproto_core import (
    ClientConnection,
    HandshakeAccepted,
    HandshakeFailed,
    HandshakeRejected,
    PerMessageDeflate,
    State,
    TextMessage,
)
from wsproto_core.extensions import ExtensionOffer
from wsproto_core.handshake import accept_token
from wsproto_core.http import parse_request_head

from .wire import frame


def request_of(client: ClientConnection) -> dict[str, str]:
    head = client.data_to_send().split(b"\r\n\r\n")[0]
    parsed = parse_request_head(head, max_header_count=100)
    assert (parsed.method, parsed.version) == ("GET", (1, 1))
    return {"target": parsed.target} | {n.lower(): v for n, v in parsed.headers}


def response(key: str, *, drop: tuple[str, ...] = (), **replace: str) -> bytes:
    fields = {
        "Upgrade": "websocket",
        "Connection": "Upgrade",
        "Sec-WebSocket-Accept": accept_token(key),
    }
    fields.update({k.replace("_", "-"): v for k, v in replace.items()})
    lines = ["HTTP/1.1 101 Switching Protocols"]
    lines += [f"{k}: {v}" for k, v in fields.items() if k not in drop]
    return ("\r\n".join(lines) + "\r\n\r\n").encode()


def new_client(**kwargs: object) -> tuple[ClientConnection, str]:
    client = ClientConnection("example.com:8080", "/chat?room=1", **kwargs)  # type: ignore[arg-type]
    request = request_of(client)
    return client, request["sec-websocket-key"]


def test_request_has_every_required_header() -> None:
    client = ClientConnection(
        "example.com:8080",
        "/chat?room=1",
        subprotocols=["chat", "superchat"],
        origin="http://example.com",
        extra_headers=[("Authorization", "Bearer x")],
    )
    request = request_of(client)
    assert request["target"] == "/chat?room=1"
    assert request["host"] == "example.com:8080"
    assert request["upgrade"] == "websocket"
    assert request["connection"] == "Upgrade"
    assert request["sec-websocket-version"] == "13"
    assert len(base64.b64decode(request["sec-websocket-key"], validate=True)) == 16
    assert request["sec-websocket-protocol"] == "chat, superchat"
    assert request["origin"] == "http://example.com"
    assert request["authorization"] == "Bearer x"
    assert client.state is State.CONNECTING


def test_keys_are_fresh_per_connection() -> None:
    keys = {new_client()[1] for _ in range(20)}
    assert len(keys) == 20


def test_valid_response_opens_with_subprotocol() -> None:
    client, key = new_client(subprotocols=["a", "b"])
    events = client.receive_data(response(key, Sec_WebSocket_Protocol="b"))
    assert len(events) == 1
    assert isinstance(events[0], HandshakeAccepted)
    assert events[0].subprotocol == "b"
    assert client.state is State.OPEN
    assert client.subprotocol == "b"


def test_response_split_at_every_byte_and_frames_in_same_read() -> None:
    client, key = new_client()
    data = response(key) + frame(0x1, b"welcome", mask=None)
    events = [e for i in range(len(data)) for e in client.receive_data(data[i : i + 1])]
    assert [type(e) for e in events] == [HandshakeAccepted, TextMessage]
    client2, key2 = new_client()
    events = client2.receive_data(response(key2) + frame(0x1, b"welcome", mask=None))
    assert events[1] == TextMessage(data="welcome")


BAD_RESPONSES = [
    ({"drop": ("Upgrade",)}, "Upgrade header"),
    ({"Upgrade": "h2c"}, "Upgrade header"),
    ({"drop": ("Connection",)}, "Connection header"),
    ({"drop": ("Sec-WebSocket-Accept",)}, "wrong Sec-WebSocket-Accept"),
    ({"Sec_WebSocket_Accept": "s3pPLMBiTxaQ9kYGzzhZRbK+xOo="}, "wrong Sec-WebSocket-Accept"),
    ({"Sec_WebSocket_Protocol": "other"}, "not offered"),
    ({"Sec_WebSocket_Protocol": "a, b"}, "more than one subprotocol"),
    ({"Sec_WebSocket_Protocol": ""}, "not a subprotocol name"),  # (found by test_differential)
    ({"Sec_WebSocket_Protocol": "a,"}, "not a subprotocol name"),
    ({"Sec_WebSocket_Protocol": "a b"}, "not a subprotocol name"),
    ({"Sec_WebSocket_Extensions": "permessage-deflate"}, "not offered"),
    ({"Sec_WebSocket_Extensions": "a; ;"}, "Sec-WebSocket-Extensions"),
]


@pytest.mark.parametrize(("change", "reason"), BAD_RESPONSES)
def test_invalid_101_fails_the_connection(change: dict[str, object], reason: str) -> None:
    client, key = new_client(subprotocols=["a", "b"])
    change = dict(change)  # (the parameter is shared: a second run must see it whole)
    drop = change.pop("drop", ())
    data = response(key, drop=drop, **change)  # type: ignore[arg-type]
    [event] = client.receive_data(data)
    assert isinstance(event, HandshakeFailed)
    assert event.status == 101
    assert reason in event.reason
    assert client.should_close_transport
    assert client.state is State.CLOSED


def test_malformed_status_line_fails() -> None:
    client, _ = new_client()
    [event] = client.receive_data(b"HTTP/1.1 abc\r\n\r\n")
    assert event == HandshakeFailed(status=None, reason="malformed status line")


def test_oversized_response_head_fails() -> None:
    client, _ = new_client(max_handshake_size=100)
    [event] = client.receive_data(b"HTTP/1.1 101 OK\r\nX: " + b"a" * 100)
    assert event == HandshakeFailed(status=None, reason="response head is over 100 bytes")


def test_a_response_head_that_fills_the_limit_without_its_end_fails_at_once() -> None:
    client, _ = new_client(max_handshake_size=100)
    [event] = client.receive_data(b"HTTP/1.1 101 OK\r\nX: " + b"a" * 77 + b"\r\n\r")
    assert event == HandshakeFailed(status=None, reason="response head is over 100 bytes")


def test_rejection_with_content_length_reports_body() -> None:
    client, _ = new_client()
    head = b"HTTP/1.1 403 Forbidden\r\nContent-Length: 9\r\n\r\n"
    assert client.receive_data(head + b"forbi") == []
    [event] = client.receive_data(b"dden")
    assert isinstance(event, HandshakeRejected)
    assert (event.status, event.body) == (403, b"forbidden")
    assert event.headers.get("content-length") == "9"
    assert client.should_close_transport


def test_rejection_without_length_reads_until_eof() -> None:
    client, _ = new_client()
    assert client.receive_data(b"HTTP/1.1 500 Oops\r\n\r\npartial ") == []
    assert client.receive_data(b"body") == []
    [event] = client.receive_eof()
    assert event == HandshakeRejected(status=500, headers=event.headers, body=b"partial body")  # type: ignore[union-attr]


def test_rejection_body_is_cut_at_the_limit() -> None:
    client, _ = new_client(max_message_size=10)
    [event] = client.receive_data(b"HTTP/1.1 404 Not Found\r\n\r\n" + b"x" * 50)
    assert event.body == b"x" * 10  # type: ignore[union-attr]
    client2, _ = new_client(max_message_size=10)
    head = b"HTTP/1.1 404 Not Found\r\nContent-Length: 5000\r\n\r\n"
    [event] = client2.receive_data(head + b"y" * 20)
    assert event.body == b"y" * 10  # type: ignore[union-attr]


def test_eof_before_response_fails() -> None:
    client, _ = new_client()
    client.receive_data(b"HTTP/1.1 10")
    assert client.receive_eof() == [
        HandshakeFailed(status=None, reason="connection closed before the handshake response")
    ]


def test_handshake_accepted_reports_the_agreed_extensions_and_the_headers() -> None:
    client, key = new_client(compression=PerMessageDeflate())
    data = response(key, Sec_WebSocket_Extensions="permessage-deflate", X_Served_By="test")
    [event] = client.receive_data(data)
    assert isinstance(event, HandshakeAccepted)
    assert event.extensions == (ExtensionOffer(name="permessage-deflate"),)
    assert event.extensions == client.extensions
    assert event.headers.get("x-served-by") == "test"
    assert event.headers.get("sec-websocket-accept") == accept_token(key)
