"""Behaviour shared by both roles: commands, the close handshake, failure,
end of file, and the timers driven by the adapter's clock."""

from __future__ import annotations

import re
import zlib
from collections.abc import Callable

import pytest

from wsproto_core import (
    BytesMessage,
    ClientConnection,
    CloseReceived,
    Connection,
    ConnectionFailed,
    HandshakeFailed,
    LocalProtocolError,
    PerMessageDeflate,
    Ping,
    Pong,
    ServerConnection,
    State,
    TextMessage,
)
from wsproto_core.events import Event

from .wire import frame, open_client, open_pair, open_server, upgrade_request

# -- automatic replies -------------------------------------------------------


def test_ping_is_answered_with_identical_pong() -> None:
    client, server = open_pair()
    client.send_ping(b"are you there")
    assert server.receive_data(client.data_to_send()) == [Ping(payload=b"are you there")]
    assert client.receive_data(server.data_to_send()) == [Pong(payload=b"are you there")]


def test_unsolicited_pong_is_delivered() -> None:
    client, server = open_pair()
    server.send_pong(b"heartbeat")
    assert client.receive_data(server.data_to_send()) == [Pong(payload=b"heartbeat")]


def test_has_data_to_send_looks_without_taking() -> None:
    server = open_server()
    assert not server.has_data_to_send
    server.send_bytes(b"x")
    assert server.has_data_to_send
    assert server.data_to_send() == b"\x82\x01x"
    assert not server.has_data_to_send


def test_no_pong_after_we_started_closing() -> None:
    server = open_server()
    server.close()
    server.data_to_send()
    assert server.receive_data(frame(0x9, b"late")) == [Ping(payload=b"late")]
    assert server.data_to_send() == b""


# -- close handshake ---------------------------------------------------------


def test_client_initiated_close_handshake() -> None:
    client, server = open_pair()
    client.close(1001, "leaving")
    assert client.state is State.CLOSING
    events = server.receive_data(client.data_to_send())
    assert events == [CloseReceived(code=1001, reason="leaving")]
    assert server.state is State.CLOSED
    assert server.should_close_transport  # the server closes TCP first
    assert client.receive_data(server.data_to_send()) == [CloseReceived(code=1001, reason="")]
    assert client.state is State.CLOSED
    assert not client.should_close_transport  # waits for the server's TCP close
    assert client.receive_eof() == []
    assert client.should_close_transport
    assert (client.close_code, client.close_reason) == (1001, "")
    assert (server.close_code, server.close_reason) == (1001, "leaving")


def test_server_initiated_close_handshake() -> None:
    client, server = open_pair()
    server.close(4000, "custom")
    assert client.receive_data(server.data_to_send()) == [CloseReceived(code=4000, reason="custom")]
    assert not client.should_close_transport
    assert server.receive_data(client.data_to_send()) == [CloseReceived(code=4000, reason="")]
    assert server.should_close_transport


def test_close_without_code_is_received_as_1005_and_echoed_empty() -> None:
    client, server = open_pair()
    client.close(None)
    assert client.data_to_send()[1] == 0x80  # masked, empty payload
    assert server.receive_data(frame(0x8, b"")) == [CloseReceived(code=1005, reason="")]
    assert server.data_to_send() == b"\x88\x00"


def test_messages_still_arrive_while_closing() -> None:
    client, server = open_pair()
    server.send_text("in flight")
    client.close()
    events = client.receive_data(server.data_to_send())
    assert events == [TextMessage(data="in flight")]


def test_close_is_idempotent() -> None:
    client, _ = open_pair()
    client.close()
    first = client.data_to_send()
    client.close(1001)
    assert client.data_to_send() == b""
    assert first


@pytest.mark.parametrize("code", [999, 1004, 1005, 1006, 1015, 2000, 5000])
def test_close_with_unsendable_code_raises(code: int) -> None:
    client, _ = open_pair()
    with pytest.raises(LocalProtocolError, match=f"close code {code}"):
        client.close(code)
    assert client.state is State.OPEN


def test_close_reason_too_long_raises() -> None:
    client, _ = open_pair()
    client.close(1000, "é" * 61)  # 122 bytes: fits
    _, other = open_pair()
    with pytest.raises(LocalProtocolError, match="123 bytes"):
        other.close(1000, "x" * 124)


def test_close_reason_without_code_raises() -> None:
    client, _ = open_pair()
    with pytest.raises(LocalProtocolError, match="needs a close code"):
        client.close(None, "why")


# -- local misuse ------------------------------------------------------------


@pytest.mark.parametrize(
    "command",
    [
        lambda c: c.send_text("x"),
        lambda c: c.send_bytes(b"x"),
        lambda c: c.send_ping(),
        lambda c: c.send_pong(),
        lambda c: c.close(),
    ],
)
def test_sending_before_handshake_raises(command: Callable[[ClientConnection], None]) -> None:
    client = ClientConnection("example.com")
    with pytest.raises(LocalProtocolError, match="handshake is not complete"):
        command(client)


@pytest.mark.parametrize("how", ["close", "failure", "eof"])
def test_sending_after_close_raises(how: str) -> None:
    client, _ = open_pair()
    if how == "close":
        client.close()
    elif how == "failure":
        client.receive_data(b"\x83\x00")  # reserved opcode
    else:
        client.receive_eof()
    with pytest.raises(LocalProtocolError, match="cannot send"):
        client.send_text("x")
    with pytest.raises(LocalProtocolError, match="cannot send"):
        client.send_ping()


def test_send_types_are_checked() -> None:
    client, _ = open_pair()
    with pytest.raises(TypeError):
        client.send_text(b"bytes")  # type: ignore[arg-type]
    with pytest.raises(TypeError):
        client.send_bytes("text")  # type: ignore[arg-type]


def test_control_payload_over_125_bytes_raises() -> None:
    client, _ = open_pair()
    with pytest.raises(LocalProtocolError, match="125 bytes"):
        client.send_ping(bytes(126))
    with pytest.raises(LocalProtocolError, match="125 bytes"):
        client.send_pong(bytes(126))


def test_fragmented_send_round_trip_and_type_mixing() -> None:
    client, server = open_pair()
    client.send_bytes(b"ab", final=False)
    client.send_ping(b"between")
    with pytest.raises(LocalProtocolError, match="fragmented binary message"):
        client.send_text("no")
    client.send_bytes(memoryview(b"cd"), final=False)
    client.send_bytes(bytearray(b"ef"))
    client.send_text("x", final=False)
    with pytest.raises(LocalProtocolError, match="fragmented text message"):
        client.send_bytes(b"no")
    client.send_text("y")
    events = server.receive_data(client.data_to_send())
    assert events == [
        Ping(payload=b"between"),
        BytesMessage(data=b"abcdef"),
        TextMessage(data="xy"),
    ]


def test_large_sends_use_every_length_encoding() -> None:
    client, server = open_pair(max_message_size=None)
    sizes = [0, 125, 126, 4095, 4096, 65535, 65536, 1 << 20]
    for size in sizes:
        client.send_bytes(bytes(size))
        server.send_bytes(b"\x01" * size)
    assert server.receive_data(client.data_to_send()) == [
        BytesMessage(data=bytes(s)) for s in sizes
    ]
    expected = [BytesMessage(data=b"\x01" * s) for s in sizes]
    assert client.receive_data(server.data_to_send()) == expected


def test_text_of_every_length_and_alphabet_round_trips() -> None:
    """A client masks ASCII text straight from the str and encodes any
    other first; the header's length must be the UTF-8 length either way."""
    client, server = open_pair(max_message_size=None)
    texts = [
        "a" * size + tail
        for size in [0, 123, 124, 125, 126, 4095, 65533, 65535, 65536, 1 << 20]
        for tail in ["", "\u00e9", "\U0001f600"]
    ]
    for text in texts:
        client.send_text(text)
        server.send_text(text)
    expected = [TextMessage(data=text) for text in texts]
    assert server.receive_data(client.data_to_send()) == expected
    assert client.receive_data(server.data_to_send()) == expected


def test_chunks_to_send_is_data_to_send_unjoined() -> None:
    client, server = open_pair()
    server.send_bytes(bytes(70000))
    server.send_text("after")
    chunks = server.chunks_to_send()
    assert len(chunks) == 3  # large payloads are kept apart from their header
    assert server.chunks_to_send() == []
    assert server.data_to_send() == b""
    events = client.receive_data(b"".join(chunks))
    assert events == [BytesMessage(data=bytes(70000)), TextMessage(data="after")]


@pytest.mark.parametrize("wrap", [bytearray, memoryview])
def test_receive_data_takes_any_bytes_like(wrap: Callable[[bytes], bytes]) -> None:
    client, server = open_pair()
    client.send_bytes(b"abc")
    client.send_text("déf")
    events = server.receive_data(wrap(client.data_to_send()))
    assert events == [BytesMessage(data=b"abc"), TextMessage(data="déf")]
    assert type(events[0].data) is bytes  # type: ignore[union-attr]
    fresh = ServerConnection()
    [request] = fresh.receive_data(wrap(ClientConnection("h").data_to_send()))
    assert request.host == "h"  # type: ignore[union-attr]


def test_options_are_validated() -> None:
    with pytest.raises(ValueError, match="max_message_size"):
        ServerConnection(max_message_size=0)
    with pytest.raises(ValueError, match="ping_interval"):
        ServerConnection(ping_interval=-1)
    with pytest.raises(ValueError, match="open_timeout"):
        ClientConnection("h", open_timeout=0)


_LIFTABLE_SIZE_OPTIONS = ("max_message_size", "max_frame_size")
_HEAD_OPTIONS = ("max_handshake_size", "max_header_count")
_SIZE_OPTIONS = _LIFTABLE_SIZE_OPTIONS + _HEAD_OPTIONS


def _size_message(option: str, value: object) -> str:
    lifted = " or None" if option in _LIFTABLE_SIZE_OPTIONS else ""
    return f"{option} must be a positive integer{lifted}, not {value!r}"


_DELAY_OPTIONS = ("open_timeout", "ping_interval", "ping_timeout", "close_timeout")


def _either_role(**options: object) -> list[Connection]:
    return [
        ServerConnection(**options),  # type: ignore[arg-type]
        ClientConnection("h", **options),  # type: ignore[arg-type]
    ]


@pytest.mark.parametrize(
    ("option", "value", "message"),
    [(name, 0, _size_message(name, 0)) for name in _SIZE_OPTIONS]
    + [
        (name, -2.5, f"{name} must be a positive number of seconds or None, not -2.5")
        for name in _DELAY_OPTIONS
    ],
)
def test_an_option_out_of_range_is_refused_with_its_name(
    option: str, value: float, message: str
) -> None:
    with pytest.raises(ValueError) as caught:
        ServerConnection(**{option: value})  # type: ignore[arg-type]
    assert str(caught.value) == message
    with pytest.raises(ValueError) as caught:
        ClientConnection("h", **{option: value})  # type: ignore[arg-type]
    assert str(caught.value) == message


@pytest.mark.parametrize("option", _SIZE_OPTIONS)
def test_a_size_option_of_a_wrong_type_is_refused(option: str) -> None:
    # ours names the option; the compiled build checks the type first
    ours = re.escape(_size_message(option, "3"))
    compiled = "int (or None )?object expected; got str"
    with pytest.raises((ValueError, TypeError), match=rf"^({ours}|{compiled})$"):
        ServerConnection(**{option: "3"})  # type: ignore[arg-type]


@pytest.mark.parametrize("option", _HEAD_OPTIONS)
def test_the_bounds_of_the_http_head_cannot_be_lifted(option: str) -> None:
    """None lifts the message and frame limits, but a head without bounds
    would let a peer send header lines for ever. (The source quietly took
    None as a limit of 0 and refused every handshake with 431.)"""
    ours = re.escape(_size_message(option, None))
    compiled = "int object expected; got None"
    for make in (ServerConnection, lambda **o: ClientConnection("h", **o)):
        with pytest.raises((ValueError, TypeError), match=rf"^({ours}|{compiled})$"):
            make(**{option: None})


def test_compression_takes_only_per_message_deflate() -> None:
    with pytest.raises(TypeError) as caught:
        ServerConnection(compression=True)  # type: ignore[arg-type]
    assert str(caught.value) == "compression takes PerMessageDeflate(...) or None"


@pytest.mark.parametrize("option", _SIZE_OPTIONS)
def test_a_size_limit_of_one_is_allowed(option: str) -> None:
    for connection in _either_role(**{option: 1}):
        assert getattr(connection, option) == 1


def test_a_message_size_limit_of_one_byte_holds() -> None:
    server = open_server(max_message_size=1)
    assert server.receive_data(frame(0x2, b"a")) == [BytesMessage(data=b"a")]
    assert server.receive_data(frame(0x2, b"ab")) == [
        ConnectionFailed(code=1009, reason="message exceeds the size limit")
    ]


def test_a_new_connection_reports_nothing_yet() -> None:
    for connection in _either_role():
        assert connection.state is State.CONNECTING
        assert connection.subprotocol is None
        assert connection.extensions == ()
        assert (connection.close_code, connection.close_reason) == (None, "")
        assert connection.failure_pending is False
        assert connection.should_close_transport is False
        assert connection.unsent_pong_bytes == 0


def test_keepalive_and_close_timers_default_to_20_20_and_10_seconds() -> None:
    client, server = open_pair()
    assert server.next_deadline(0.0) == 20.0  # ping_interval
    pinging = open_server(ping_interval=100.0)
    pinging.next_deadline(0.0)
    assert pinging.handle_timeout(100.0) == []
    assert pinging.data_to_send()[0] == 0x89
    assert pinging.next_deadline(100.0) == 120.0  # ping_timeout
    assert pinging.handle_timeout(119.9) == []
    [failed] = pinging.handle_timeout(120.0)
    assert failed == ConnectionFailed(code=1011, reason="keepalive ping timed out")
    closing = open_server(ping_interval=None)
    closing.close()
    assert closing.next_deadline(50.0) == 60.0  # close_timeout
    [timed_out] = closing.handle_timeout(60.0)
    assert timed_out == ConnectionFailed(code=1006, reason="close handshake timed out")
    assert client.next_deadline(0.0) == 20.0


# -- end of file -------------------------------------------------------------


def test_eof_while_open_is_abnormal_closure() -> None:
    server = open_server()
    assert server.receive_eof() == [
        ConnectionFailed(code=1006, reason="peer closed without a close frame")
    ]
    assert server.state is State.CLOSED
    assert server.should_close_transport
    assert server.data_to_send() == b""  # no close frame into a closed pipe


def test_eof_while_closing_is_abnormal_closure() -> None:
    server = open_server()
    server.close()
    [event] = server.receive_eof()
    assert event == ConnectionFailed(code=1006, reason="peer closed before answering our close")


def test_eof_mid_message_is_abnormal_closure() -> None:
    server = open_server()
    server.receive_data(frame(0x2, bytes(1000))[:100])
    [event] = server.receive_eof()
    assert event.code == 1006  # type: ignore[union-attr]


# -- timers ------------------------------------------------------------------


def test_no_deadline_when_timers_are_off() -> None:
    client, _server = open_pair(open_timeout=None, ping_interval=None, close_timeout=None)
    assert client.next_deadline(0.0) is None
    client.close()
    assert client.next_deadline(1.0) is None


def test_open_timeout_fails_the_server_handshake() -> None:
    server = ServerConnection(open_timeout=5.0)
    assert server.next_deadline(100.0) == 105.0
    assert server.handle_timeout(104.9) == []
    assert server.handle_timeout(105.0) == [
        HandshakeFailed(status=None, reason="opening handshake timed out")
    ]
    assert server.should_close_transport
    assert server.state is State.CLOSED


def test_open_timeout_fails_the_client_handshake() -> None:
    client = ClientConnection("example.com", open_timeout=2.0)
    client.next_deadline(0.0)
    [event] = client.handle_timeout(2.5)
    assert isinstance(event, HandshakeFailed)
    assert client.should_close_transport


def test_open_timeout_stops_once_open() -> None:
    _client, server = open_pair(open_timeout=1.0, ping_interval=None)
    assert server.next_deadline(0.0) is None
    assert server.handle_timeout(50.0) == []


def test_keepalive_pings_at_interval_and_pong_clears_timeout() -> None:
    client, server = open_pair(ping_interval=10.0, ping_timeout=5.0)
    assert server.next_deadline(0.0) == 10.0
    assert server.handle_timeout(10.0) == []
    ping = server.data_to_send()
    assert ping[0] == 0x89  # the keepalive ping
    assert server.next_deadline(10.0) == 15.0  # pong deadline comes first
    events = client.receive_data(ping)
    assert isinstance(events[0], Ping)
    [pong] = server.receive_data(client.data_to_send())
    assert isinstance(pong, Pong)
    assert server.next_deadline(11.0) == 20.0  # only the next ping remains
    assert server.handle_timeout(16.0) == []
    assert server.state is State.OPEN


def test_keepalive_pong_timeout_fails_with_1011() -> None:
    server = open_server(ping_interval=10.0, ping_timeout=5.0)
    server.next_deadline(0.0)
    server.handle_timeout(10.0)
    server.data_to_send()
    assert server.handle_timeout(14.0) == []
    events = server.handle_timeout(15.0)
    assert events == [ConnectionFailed(code=1011, reason="keepalive ping timed out")]
    assert server.data_to_send()[:4] == b"\x88\x1a\x03\xf3"  # close 1011
    assert server.should_close_transport


def test_unrelated_pong_does_not_clear_keepalive() -> None:
    server = open_server(ping_interval=10.0, ping_timeout=5.0)
    server.next_deadline(0.0)
    server.handle_timeout(10.0)
    server.receive_data(frame(0xA, b"nope"))
    [event] = server.handle_timeout(15.0)
    assert event.code == 1011  # type: ignore[union-attr]


def test_close_timeout_without_reply_is_abnormal_closure() -> None:
    server = open_server(close_timeout=3.0)
    server.close()
    server.next_deadline(0.0)
    assert server.handle_timeout(2.9) == []
    events = server.handle_timeout(3.0)
    assert events == [ConnectionFailed(code=1006, reason="close handshake timed out")]
    assert server.should_close_transport


def test_client_closes_transport_if_server_lingers_after_close() -> None:
    client = open_client(close_timeout=3.0, ping_interval=None)
    client.close()
    client.receive_data(frame(0x8, b"\x03\xe8", mask=None))
    assert not client.should_close_transport
    assert client.next_deadline(10.0) == 13.0
    assert client.handle_timeout(13.0) == []  # clean close already reported
    assert client.should_close_transport


def test_keepalive_timeout_and_next_ping_due_together_fail_once() -> None:
    """Regression: a ping due in the same step as the pong deadline must not
    be sent after the failure, nor re-arm the pong timer."""
    server = open_server(ping_interval=5.0, ping_timeout=3.0)
    server.next_deadline(0.0)
    server.handle_timeout(6.0)  # first keepalive ping; next ping 11, pong 9
    server.data_to_send()
    events = server.handle_timeout(12.0)  # both due
    assert events == [ConnectionFailed(code=1011, reason="keepalive ping timed out")]
    assert server.data_to_send()[0] == 0x88  # only the close frame, no ping
    assert server.next_deadline(12.0) is None
    assert server.handle_timeout(100.0) == []


def test_failure_reason_is_cut_on_a_character_boundary() -> None:
    client, server = open_pair()
    events: list[Event] = []
    server._fail(1011, "é" * 100, events)  # 200 bytes: must be cut to fit 123
    [event] = client.receive_data(server.data_to_send())
    assert event == CloseReceived(code=1011, reason="é" * 61)


def test_roles_are_reported() -> None:
    client, server = open_pair()
    assert client.is_client
    assert not server.is_client


def test_keepalive_pong_deadline_is_not_pushed_back_by_later_pings() -> None:
    """With the interval shorter than the timeout, an unanswered first ping
    still fails the connection on time."""
    server = open_server(ping_interval=2.0, ping_timeout=5.0)
    server.next_deadline(0.0)
    server.handle_timeout(2.0)  # ping 1, pong due at 7
    server.handle_timeout(4.0)  # ping 2: the pong deadline stays at 7
    assert server.data_to_send().count(b"\x89\x04") == 2
    assert server.handle_timeout(6.9) == []
    [event] = server.handle_timeout(7.0)
    assert event.code == 1011  # type: ignore[union-attr]


# -- a violation after messages in the same batch ----------------------------


def test_failure_after_messages_waits_until_they_are_handled() -> None:
    """Autobahn 3.2 and friends: a message, then a bad frame, in one read.
    The message is delivered and may be answered before the connection fails."""
    server = open_server()
    data = frame(0x1, b"Hello") + frame(0x1, b"x", rsv=0x20) + frame(0x9, b"never")
    assert server.receive_data(data) == [TextMessage(data="Hello")]
    assert server.failure_pending
    assert server.state is State.OPEN
    server.send_text("Hello")  # the echo goes out first
    assert server.receive_data(b"more bytes are ignored") == [
        ConnectionFailed(code=1002, reason="reserved bits set without an extension")
    ]
    assert not server.failure_pending
    assert server.should_close_transport
    out = server.data_to_send()
    assert out.startswith(b"\x81\x05Hello\x88")  # echo, then the close frame
    assert b"\x8a" not in out  # the ping after the bad frame got no pong


def test_close_applies_a_pending_failure() -> None:
    server = open_server()
    server.receive_data(frame(0x2, b"ok") + frame(0x2, b"x", mask=None))
    server.close(1000)
    assert server.close_code == 1002
    assert server.data_to_send()[:4] == b"\x88\x1e\x03\xea"


def test_eof_applies_a_pending_failure() -> None:
    server = open_server()
    server.receive_data(frame(0x2, b"ok") + frame(0x3, b""))
    assert server.receive_eof() == [ConnectionFailed(code=1002, reason="reserved opcode 0x3")]


def test_failure_without_messages_before_it_is_immediate() -> None:
    server = open_server()
    events = server.receive_data(frame(0x9, b"p") + frame(0x3, b""))
    assert events == [Ping(payload=b"p"), ConnectionFailed(code=1002, reason="reserved opcode 0x3")]
    assert not server.failure_pending


def test_defer_failure_holds_a_violation_for_the_next_call() -> None:
    """A threaded adapter whose application took a message but has not
    answered it yet: the violation waits, the answer goes out first."""
    server = open_server()
    assert server.receive_data(frame(0x1, b"Hello")) == [TextMessage(data="Hello")]
    assert server.receive_data(frame(0x3, b""), defer_failure=True) == []
    assert server.failure_pending
    server.send_text("Hello")
    assert server.apply_pending_failure() == [
        ConnectionFailed(code=1002, reason="reserved opcode 0x3")
    ]
    assert server.apply_pending_failure() == []
    assert server.data_to_send().startswith(b"\x81\x05Hello\x88")


def test_every_ping_is_answered_and_unsent_pongs_are_counted() -> None:
    client, server = open_pair()
    for i in range(10):
        server.receive_data(frame(0x9, str(i).encode()))
    assert server.unsent_pong_bytes == 10 * 3
    events = client.receive_data(server.data_to_send())
    assert events == [Pong(payload=str(i).encode()) for i in range(10)]
    assert server.unsent_pong_bytes == 0
    server.receive_data(frame(0x9, b"x"))
    server.chunks_to_send()
    assert server.unsent_pong_bytes == 0


# -- exact messages, boundaries and defaults ----------------------------------


def _opened_client() -> ClientConnection:
    return open_pair()[0]


@pytest.mark.parametrize(
    ("make", "command", "error", "message"),
    [
        (
            lambda: ClientConnection("h"),
            lambda c: c.send_text("x"),
            LocalProtocolError,
            r"^the opening handshake is not complete$",
        ),
        (
            lambda: ClientConnection("h"),
            lambda c: c.close(),
            LocalProtocolError,
            r"^the opening handshake is not complete; nothing to close$",
        ),
        (
            _opened_client,
            lambda c: c.send_ping(bytes(126)),
            LocalProtocolError,
            r"^control frame payloads are limited to 125 bytes$",
        ),
        (
            _opened_client,
            lambda c: c.send_text(b"x"),
            TypeError,
            # the compiled build checks the type first, in its own words
            r"^(send_text takes str, not|str object expected; got) bytes$",
        ),
        (
            _opened_client,
            lambda c: c.send_bytes("x"),
            TypeError,
            r"^send_bytes takes bytes, not str$",
        ),
    ],
)
def test_local_misuse_is_refused_with_its_exact_message(
    make: Callable[[], ClientConnection],
    command: Callable[[ClientConnection], None],
    error: type[Exception],
    message: str,
) -> None:
    client = make()
    with pytest.raises(error, match=message):
        command(client)


def test_control_frames_carry_up_to_125_bytes() -> None:
    client, server = open_pair()
    client.send_ping(b"p" * 125)
    client.send_pong(b"q" * 125)
    assert server.receive_data(client.data_to_send()) == [
        Ping(payload=b"p" * 125),
        Pong(payload=b"q" * 125),
    ]


def test_send_ping_without_argument_sends_an_empty_ping() -> None:
    client, server = open_pair()
    client.send_ping()
    assert server.receive_data(client.data_to_send()) == [Ping(payload=b"")]


def test_a_failure_sets_close_code_and_close_reason() -> None:
    server = open_server()
    server.receive_data(frame(0x3, b""))
    assert (server.close_code, server.close_reason) == (1002, "reserved opcode 0x3")
    eof = open_server()
    eof.receive_eof()
    assert (eof.close_code, eof.close_reason) == (1006, "peer closed without a close frame")


def test_failure_reason_is_cut_to_the_123_bytes_a_close_frame_holds() -> None:
    client, server = open_pair()
    events: list[Event] = []
    server._fail(1011, "x" * 200, events)
    assert events == [ConnectionFailed(code=1011, reason="x" * 200)]
    [event] = client.receive_data(server.data_to_send())
    assert event == CloseReceived(code=1011, reason="x" * 123)


def test_failure_pending_stays_a_bool_once_closed() -> None:
    failed = open_server()
    failed.receive_data(frame(0x3, b""))
    assert failed.failure_pending is False
    client, server = open_pair()
    client.close()
    server.receive_data(client.data_to_send())
    assert server.state is State.CLOSED
    assert server.failure_pending is False


def test_send_bytes_compress_overrides_the_size_threshold() -> None:
    server = ServerConnection(compression=PerMessageDeflate(min_size=32))
    offer = (("Sec-WebSocket-Extensions", "permessage-deflate"),)
    server.receive_data(upgrade_request(extra=offer))
    server.accept()
    server.data_to_send()
    server.send_bytes(b"short", compress=True)
    server.send_bytes(b"long enough to be compressed" * 4, compress=False)
    out = server.data_to_send()
    assert out[0] == 0xC2  # FIN, RSV1, binary: compressed though short
    second = out[2 + out[1] :]
    assert second[:2] == b"\x82\x70"  # FIN, binary, 112 bytes: sent as is
    assert second[2:] == b"long enough to be compressed" * 4


def test_a_peer_that_agreed_to_no_context_takeover_may_not_refer_back() -> None:
    """RFC 7692 section 7.1.1.1: after client_no_context_takeover, each
    message the client sends starts from an empty window. A message that
    refers back to the previous one is invalid, and we must not decode it
    with a window we should have dropped."""
    server = ServerConnection(compression=PerMessageDeflate())
    offer = (("Sec-WebSocket-Extensions", "permessage-deflate; client_no_context_takeover"),)
    server.receive_data(upgrade_request(extra=offer))
    server.accept()
    stream = zlib.compressobj(6, zlib.DEFLATED, -9)  # keeps its window: breaks the deal
    text = b"the same words, the same words, the same words"
    first = stream.compress(text) + stream.flush(zlib.Z_SYNC_FLUSH)
    second = stream.compress(text) + stream.flush(zlib.Z_SYNC_FLUSH)
    assert server.receive_data(frame(0x1, first[:-4], rsv=0x40)) == [
        TextMessage(data=text.decode())
    ]
    [event] = server.receive_data(frame(0x1, second[:-4], rsv=0x40))
    assert isinstance(event, ConnectionFailed)
    assert event.code == 1007
    assert event.reason.startswith("invalid compressed data")
