"""Behaviour the rest of the suite ran but never checked, found by mutation
testing (`scripts/mutation-score`, docs/mutation.md): each test here pins a
default, a message, a boundary or a header rule whose change no other test
noticed. Fast on purpose: it runs in the normal suite."""

from __future__ import annotations

import random
import tracemalloc
import zlib

import pytest

from wsproto_core import (
    BytesMessage,
    ClientConnection,
    ConnectionFailed,
    HandshakeFailed,
    HandshakeRejected,
    HandshakeRequest,
    HttpRequest,
    LocalProtocolError,
    PerMessageDeflate,
    Pong,
    ServerConnection,
    State,
    TextMessage,
)
from wsproto_core.broadcast import PreparedMessage
from wsproto_core.http import parse_response_head

from .wire import frame, open_client, open_pair, open_server, upgrade_request


def answer_of(server: ServerConnection) -> tuple[int, dict[str, str], bytes]:
    head, _, body = server.data_to_send().partition(b"\r\n\r\n")
    parsed = parse_response_head(head, max_header_count=100)
    return parsed.status, {n.lower(): v for n, v in parsed.headers}, body


def pending_upgrade() -> ServerConnection:
    server = ServerConnection()
    server.receive_data(upgrade_request())
    return server


def pending_plain_request(target: str = "/") -> tuple[ServerConnection, HttpRequest]:
    server = ServerConnection()
    [event] = server.receive_data(f"GET {target} HTTP/1.1\r\nHost: h\r\n\r\n".encode())
    assert isinstance(event, HttpRequest)
    return server, event


# -- the server's answers ------------------------------------------------------


def test_reject_defaults_to_403_with_an_empty_body() -> None:
    server = pending_upgrade()
    server.reject()
    status, headers, body = answer_of(server)
    assert (status, headers["content-length"], body) == (403, "0", b"")
    assert (server.close_code, server.close_reason) == (None, "answered HTTP 403")


def test_respond_defaults_to_200_with_an_empty_body() -> None:
    server, _ = pending_plain_request()
    server.respond()
    status, headers, body = answer_of(server)
    assert (status, headers["content-length"], body) == (200, "0", b"")
    assert (server.close_code, server.close_reason) == (None, "answered HTTP 200")


@pytest.mark.parametrize("status", [200, 599])
def test_every_final_status_can_answer(status: int) -> None:
    server, _ = pending_plain_request()
    server.respond(status)
    assert answer_of(server)[0] == status
    assert server.state is State.CLOSED


def test_answering_the_wrong_request_names_the_method_called() -> None:
    server, _ = pending_plain_request()
    with pytest.raises(LocalProtocolError, match=r"^reject\(\) answers a HandshakeRequest"):
        server.reject()
    server = pending_upgrade()
    with pytest.raises(LocalProtocolError, match=r"^respond\(\) answers a HttpRequest"):
        server.respond()


def test_a_content_length_given_by_the_application_is_the_only_one() -> None:
    """One Content-Length per response (RFC 9110 section 8.6). An answer to
    HEAD gives the length of the body it leaves out: the core must not add
    its own (0) beside it, whatever the case of the name."""
    server = ServerConnection()
    server.receive_data(b"HEAD / HTTP/1.1\r\nHost: h\r\n\r\n")
    server.respond(200, headers=[("content-length", "1234")])
    head, _, body = server.data_to_send().partition(b"\r\n\r\n")
    parsed = parse_response_head(head, max_header_count=100)
    assert parsed.headers.get_all("Content-Length") == ["1234"]
    assert body == b""


def test_plain_request_query_starts_at_the_first_question_mark() -> None:
    _, event = pending_plain_request("/a?b=1?c")
    assert (event.path, event.query) == ("/a", "b=1?c")
    assert event.headers.get("host") == "h"


# -- the client reading a refusal ------------------------------------------------


def new_client() -> ClientConnection:
    client = ClientConnection("example.com", "/", max_message_size=100)
    client.data_to_send()
    return client


def test_a_refusal_ends_the_connection_as_abnormal_closure() -> None:
    client = new_client()
    [event] = client.receive_data(b"HTTP/1.1 403 Forbidden\r\nContent-Length: 2\r\n\r\nno")
    assert event == HandshakeRejected(status=403, headers=event.headers, body=b"no")  # type: ignore[union-attr]
    assert (client.close_code, client.close_reason) == (1006, "server answered HTTP 403")
    assert client.receive_data(b"more") == []
    assert client.receive_eof() == []


def test_a_refusal_with_transfer_encoding_is_read_until_eof() -> None:
    """Content-Length is ignored beside Transfer-Encoding (RFC 9112 section 6.3)."""
    client = new_client()
    head = b"HTTP/1.1 500 Oops\r\nTransfer-Encoding: chunked\r\nContent-Length: 2\r\n\r\n"
    assert client.receive_data(head + b"2\r\nab") == []
    [event] = client.receive_eof()
    assert event.body == b"2\r\nab"  # type: ignore[union-attr]


@pytest.mark.parametrize("value", ["abc", "+2", "٢"])
def test_a_refusal_with_an_invalid_content_length_is_read_until_eof(value: str) -> None:
    client = new_client()
    head = f"HTTP/1.1 500 Oops\r\nContent-Length: {value}\r\n\r\n".encode()
    assert client.receive_data(head + b"abc") == []
    [event] = client.receive_eof()
    assert event.body == b"abc"  # type: ignore[union-attr]


def test_a_failed_handshake_ends_with_1006_and_its_reason() -> None:
    """A connection that fails before it opens closes abnormally (1006, RFC
    6455 section 7.1.5), and close_reason repeats the HandshakeFailed's."""
    client = new_client()
    assert client.receive_eof() == [
        HandshakeFailed(status=None, reason="connection closed before the handshake response")
    ]
    assert (client.close_code, client.close_reason) == (
        1006,
        "connection closed before the handshake response",
    )
    server = ServerConnection()
    [event] = server.receive_data(b"GET /\r\nHost: h\r\n\r\n")
    assert event == HandshakeFailed(status=400, reason="malformed request line")
    assert (server.close_code, server.close_reason) == (1006, "malformed request line")


# -- sending -------------------------------------------------------------------------


def test_send_pong_without_payload_sends_an_empty_pong() -> None:
    client, server = open_pair()
    server.send_pong()
    assert server.data_to_send() == frame(0xA, mask=None)
    assert client.receive_data(frame(0xA, mask=None)) == [Pong(payload=b"")]


def test_prepared_message_uses_the_zlib_level_and_mem_level_given() -> None:
    rng = random.Random(12)
    data = bytes(rng.choice(b"abcdefgh ") for _ in range(20_000))
    for level, mem_level in [(6, 4), (9, 8), (1, 1)]:
        stream = zlib.compressobj(level, zlib.DEFLATED, -15, mem_level)
        payload = (stream.compress(data) + stream.flush(zlib.Z_SYNC_FLUSH))[:-4]
        frame_bytes = PreparedMessage(data, level=level, mem_level=mem_level).frame(15)
        assert frame_bytes.endswith(payload)
        assert frame_bytes[0] == 0x80 | 0x40 | 0x2


def test_prepared_message_compresses_from_min_size_on() -> None:
    assert PreparedMessage(b"x" * 32, min_size=32).frame(15)[0] & 0x40
    assert not PreparedMessage(b"x" * 31, min_size=32).frame(15)[0] & 0x40


@pytest.mark.parametrize("size", [125, 126, 127, 0xFFFF, 0x10000])
def test_prepared_frames_use_the_shortest_length_encoding(size: int) -> None:
    """RFC 6455 section 5.2: 7 bits up to 125, then 16 bits, then 64 bits."""
    client, server = open_pair()
    server.send_prepared(PreparedMessage(b"\x07" * size, min_size=1 << 20))
    data = server.data_to_send()
    assert data == frame(0x2, b"\x07" * size, mask=None)
    assert client.receive_data(data)[0].data == b"\x07" * size  # type: ignore[union-attr]


def shared_compressed_server(**options: object) -> ServerConnection:
    """A server with permessage-deflate whose compressed frames are shared
    (the client allowed server_no_context_takeover)."""
    server = ServerConnection(compression=PerMessageDeflate(), **options)  # type: ignore[arg-type]
    offer = "permessage-deflate; server_no_context_takeover"
    server.receive_data(upgrade_request(extra=(("Sec-WebSocket-Extensions", offer),)))
    server.accept()
    server.data_to_send()
    assert server.state is State.OPEN
    return server


@pytest.mark.parametrize("size", [20_000, 32, 31])
def test_prepared_frames_are_what_the_connection_would_send(size: int) -> None:
    """PreparedMessage's defaults are PerMessageDeflate's (level 6,
    mem_level 4, min_size 32), so a broadcast frame is byte for byte the
    frame the connection makes for the same message. The random "ab" text
    compresses differently at level 7 or mem_level 5."""
    rng = random.Random(12)
    data = bytes(rng.choice(b"ab") for _ in range(size))
    server = shared_compressed_server()
    window = server.shared_frame_window
    assert window
    server.send_bytes(data)
    sent = server.data_to_send()
    assert PreparedMessage(data).frame(window) == sent
    assert bool(sent[0] & 0x40) is (size >= 32)


def test_send_prepared_says_which_rule_it_refuses() -> None:
    """Both refusals are LocalProtocolError: only the message tells a client
    (whose frames are masked) from a fragmented message in progress."""
    client, server = open_pair()
    message = PreparedMessage(b"hello")
    with pytest.raises(
        LocalProtocolError, match=r"^a client masks each frame; prepared messages are for servers$"
    ):
        client.send_prepared(message)
    server.send_bytes(b"part", final=False)
    with pytest.raises(LocalProtocolError, match=r"^a fragmented message is still being sent$"):
        server.send_prepared(message)


def test_preparing_a_non_message_names_its_type() -> None:
    # ours says "not int"; the compiled build checks the type first ("got int")
    with pytest.raises(TypeError, match=r"(not|got) int$"):
        PreparedMessage(42)  # type: ignore[arg-type]


# -- reading the upgrade request ------------------------------------------------------


def test_subprotocol_names_keep_every_character_but_spaces_around() -> None:
    extra = (("Sec-WebSocket-Protocol", " XMPP,chatX ,\tX-1"),)
    [request] = ServerConnection().receive_data(upgrade_request(target="/chat?a=b", extra=extra))
    assert isinstance(request, HandshakeRequest)
    assert request.subprotocols == ("chat", "superchat", "XMPP", "chatX", "X-1")
    assert (request.target, request.path, request.query) == ("/chat?a=b", "/chat", "a=b")


@pytest.mark.parametrize(
    "line", [b"GET /", b"GET  / HTTP/1.1", b"G@T / HTTP/1.1", b"GET \x7f HTTP/1.1"]
)
def test_a_malformed_request_line_is_refused_with_400(line: bytes) -> None:
    server = ServerConnection()
    [event] = server.receive_data(line + b"\r\nHost: h\r\n\r\n")
    assert event == HandshakeFailed(status=400, reason="malformed request line")


def test_the_opening_handshake_times_out_after_10_seconds_by_default() -> None:
    assert ServerConnection().next_deadline(100.0) == 110.0
    assert ClientConnection("example.com").next_deadline(5.0) == 15.0


def test_a_malformed_extension_list_is_refused_by_name() -> None:
    extra = (("Sec-WebSocket-Extensions", "permessage-deflate x"),)
    [event] = ServerConnection().receive_data(upgrade_request(extra=extra))
    assert event == HandshakeFailed(status=400, reason="malformed Sec-WebSocket-Extensions")


def test_a_bare_line_feed_in_the_head_is_refused_by_name() -> None:
    [event] = ServerConnection().receive_data(b"GET / HTTP/1.1\r\nX: a\nY: b\r\n\r\n")
    assert event == HandshakeFailed(status=400, reason="bare CR or LF in the message head")


# -- reading frames -------------------------------------------------------------------


def test_a_message_read_two_bytes_at_a_time_costs_about_its_size() -> None:
    """reader._merge_small: a peer that sends a few bytes per TCP segment
    must not make one object per read (test_fragment_memory.py reads 64 KiB
    at a time, too coarse to see that). What the half-read message keeps
    is measured with tracemalloc: about 4 KiB; one object per read would be
    some 20 times that."""
    size = 4096
    data = frame(0x2, bytes(range(256)) * (size // 256), mask=None)
    client = open_client()
    client.receive_data(data[:4])  # the header: a frame still arriving
    tracemalloc.start()
    try:
        for i in range(4, len(data) - 2, 2):
            client.receive_data(data[i : i + 2])
        kept, _ = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert kept < 2 * size, f"{kept} bytes kept for {size} bytes of message"
    assert client.receive_data(data[-2:]) == [BytesMessage(data=data[4:])]


def test_frames_split_at_every_byte_give_the_same_messages() -> None:
    """test_reader's 140 KB version, small enough for every mutant to run:
    a 7-bit and a 16-bit length, masked and cut anywhere."""
    data = frame(0x2, bytes(range(120))) + frame(0x1, "é".encode() * 150)
    server = open_server()
    events = [e for i in range(len(data)) for e in server.receive_data(data[i : i + 1])]
    assert events == [BytesMessage(data=bytes(range(120))), TextMessage(data="é" * 150)]


# -- receiving compressed messages ----------------------------------------------------


def deflated(data: bytes) -> bytes:
    """One message as a peer's compressor sends it (RFC 7692 section 7.2.1)."""
    stream = zlib.compressobj(6, zlib.DEFLATED, -15)
    return (stream.compress(data) + stream.flush(zlib.Z_SYNC_FLUSH))[:-4]


TOO_BIG_INFLATED = ConnectionFailed(
    code=1009, reason="message exceeds the size limit once decompressed"
)


def test_only_the_text_within_the_limit_is_checked_as_utf8() -> None:
    """A text message inflating past max_message_size fails with 1009,
    named as such, unless its text up to the limit is bad UTF-8 (1007). The
    byte just past the limit is not part of that text, bad as it is."""
    limit = 64
    server = shared_compressed_server(max_message_size=limit)
    wire = frame(0x1, deflated(b"a" * limit + b"\xff"), rsv=0x40)
    assert server.receive_data(wire) == [TOO_BIG_INFLATED]


@pytest.mark.parametrize("limit", [1000, 100_000])
def test_inflating_past_the_limit_produces_one_byte_more_at_most(
    limit: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    """compression.py's promise: a bomb costs no more than the limit plus
    one byte of output, in one step or in several (a step is 64 KiB).
    zlib's output is counted by wrapping the decompressor it makes."""
    produced: list[int] = []
    make = zlib.decompressobj

    class Counted:
        def __init__(self, wbits: int) -> None:
            self._stream = make(wbits)

        def decompress(self, data: bytes, max_length: int = 0) -> bytes:
            out = self._stream.decompress(data, max_length)
            produced.append(len(out))
            return out

        def __getattr__(self, name: str) -> object:
            return getattr(self._stream, name)

    monkeypatch.setattr(zlib, "decompressobj", Counted)
    server = shared_compressed_server(max_message_size=limit)
    wire = frame(0x2, deflated(bytes(3 * limit)), rsv=0x40)
    assert server.receive_data(wire) == [TOO_BIG_INFLATED]
    assert sum(produced) == limit + 1
