"""Property-based tests of the connection as a whole.

- Round trips: any messages, any fragmentation, any chunking of the bytes.
- Chunking invariance: however a byte stream (valid or not) is split, the
  events are the same, failures included.
- Robustness: arbitrary bytes never raise, and always leave a state that
  tells the adapter what to do.
"""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from wsproto_core import (
    BytesFragment,
    BytesMessage,
    ClientConnection,
    CloseReceived,
    Connection,
    ConnectionFailed,
    HandshakeFailed,
    ServerConnection,
    State,
    TextFragment,
    TextMessage,
    masking,
)
from wsproto_core.events import Event

from .wire import frame, open_client, open_pair, open_server

Message = str | bytes
messages = st.lists(st.text(max_size=300) | st.binary(max_size=300), max_size=8)
cuts = st.lists(st.integers(min_value=0, max_value=5000), max_size=8)


@pytest.fixture(params=["accelerated", "pure-python"])
def mask_implementation(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    """Run a test with the C accelerator and with the fallback."""
    if request.param == "pure-python":
        monkeypatch.setattr(masking, "apply_mask", masking.apply_mask_python)
    return str(request.param)


def split(data: bytes, points: list[int]) -> list[bytes]:
    marks = sorted({min(p, len(data)) for p in points})
    return [data[a:b] for a, b in zip([0, *marks], [*marks, len(data)], strict=True)]


def send_fragmented(sender: Connection, message: Message, points: list[int]) -> None:
    pieces = split(message.encode() if isinstance(message, str) else message, points)
    if isinstance(message, str):
        # Fragment on character boundaries: send_text takes whole str pieces.
        text_pieces = split_text(message, points)
        for i, piece in enumerate(text_pieces):
            sender.send_text(piece, final=i == len(text_pieces) - 1)
    else:
        for i, chunk in enumerate(pieces):
            sender.send_bytes(chunk, final=i == len(pieces) - 1)


def split_text(text: str, points: list[int]) -> list[str]:
    marks = sorted({min(p, len(text)) for p in points})
    return [text[a:b] for a, b in zip([0, *marks], [*marks, len(text)], strict=True)]


def feed(receiver: Connection, data: bytes, points: list[int]) -> list[Event]:
    """Feed `data` in chunks, then once more with b"" as an adapter does when
    the application asks for the next message (which applies a failure the
    core deferred until the messages before it were handled)."""
    events = [event for chunk in split(data, points) for event in receiver.receive_data(chunk)]
    return events + receiver.receive_data(b"")


def as_message(event: Event) -> Message:
    assert isinstance(event, TextMessage | BytesMessage)
    return event.data


@pytest.mark.usefixtures("mask_implementation")
@given(messages, st.lists(cuts, max_size=8), cuts, st.booleans())
def test_round_trip_any_fragmentation_any_chunking(
    sent: list[Message], fragmentations: list[list[int]], chunking: list[int], to_server: bool
) -> None:
    client, server = open_pair(max_message_size=None)
    sender, receiver = (client, server) if to_server else (server, client)
    for i, message in enumerate(sent):
        points = fragmentations[i] if i < len(fragmentations) else []
        send_fragmented(sender, message, points)
        sender.send_ping(b"interleaved")
    events = feed(receiver, sender.data_to_send(), chunking)
    received = [as_message(e) for e in events if isinstance(e, TextMessage | BytesMessage)]
    assert received == sent
    assert receiver.state is State.OPEN


@given(messages, cuts)
def test_streaming_round_trip_reassembles(sent: list[Message], chunking: list[int]) -> None:
    client, server = open_pair(streaming=True, max_message_size=None)
    for message in sent:
        send_fragmented(client, message, [len(message) // 2])
    events = feed(server, client.data_to_send(), chunking)
    received: list[Message] = []
    current: list[Message] = []
    for event in events:
        assert isinstance(event, TextFragment | BytesFragment)
        current.append(event.data)
        if event.final:
            received.append(
                "".join(current) if isinstance(event, TextFragment) else b"".join(current)
            )  # type: ignore[arg-type]
            current = []
    assert received == sent


# A soup of frames, valid and invalid, to drive the parser everywhere.
frame_specs = st.tuples(
    st.sampled_from([0x0, 0x1, 0x2, 0x3, 0x8, 0x9, 0xA, 0xB]),
    st.binary(max_size=140) | st.sampled_from([b"\xff", b"\xed\xa0\x80", b"\x03\xe8", b"\x03"]),
    st.booleans(),  # fin
    st.sampled_from([0, 0, 0, 0x40]),  # rsv
    st.booleans(),  # masked correctly
)


def soup(specs: list[tuple[int, bytes, bool, int, bool]], client_side: bool, tail: bytes) -> bytes:
    out = b""
    for opcode, payload, fin, rsv, right_mask in specs:
        masked = (not client_side) == right_mask
        out += frame(
            opcode, payload, fin=fin, rsv=rsv, mask=b"\x0f\xf0\xaa\x55" if masked else None
        )
    return out + tail


def assert_defined_state(conn: Connection, events: list[Event]) -> None:
    terminal = [e for e in events if isinstance(e, ConnectionFailed | CloseReceived)]
    assert len(terminal) <= 1
    if terminal:
        assert events[-1] is terminal[0]  # nothing is reported after the end
        assert conn.state is State.CLOSED
        if isinstance(terminal[0], ConnectionFailed):
            assert conn.should_close_transport
            assert terminal[0].code in {1002, 1007, 1009}
    else:
        assert conn.state is State.OPEN


@given(st.lists(frame_specs, max_size=12), st.binary(max_size=20), cuts, st.booleans())
def test_any_frame_soup_is_chunking_invariant_and_never_raises(
    specs: list[tuple[int, bytes, bool, int, bool]],
    tail: bytes,
    chunking: list[int],
    client_side: bool,
) -> None:
    data = soup(specs, client_side, tail)
    make = open_client if client_side else open_server
    whole = make(max_message_size=300)
    expected = feed(whole, data, [])
    chunked = make(max_message_size=300)
    assert feed(chunked, data, chunking) == expected
    assert_defined_state(chunked, expected)
    # Same pongs, same close frame (decoded: client frames carry random masks).
    sent_chunked, sent_whole = chunked.data_to_send(), whole.data_to_send()
    if client_side:
        assert open_server().receive_data(sent_chunked) == open_server().receive_data(sent_whole)
    else:
        assert sent_chunked == sent_whole


@given(st.binary(max_size=300), cuts)
def test_arbitrary_bytes_after_handshake_never_raise(data: bytes, chunking: list[int]) -> None:
    server = open_server()
    events = feed(server, data, chunking)
    assert_defined_state(server, events)


@given(
    st.binary(max_size=300)
    | st.builds(lambda a, b: a + b"\r\n\r\n" + b, st.binary(max_size=100), st.binary(max_size=50))
)
def test_arbitrary_bytes_before_handshake_never_raise(data: bytes) -> None:
    server = ServerConnection()
    events = server.receive_data(data)
    for event in events:
        if isinstance(event, HandshakeFailed):
            assert server.should_close_transport
            assert server.data_to_send().startswith(f"HTTP/1.1 {event.status} ".encode())
    client = ClientConnection("h")
    client.data_to_send()
    events = client.receive_data(data) + client.receive_eof()
    assert client.state is State.CLOSED
    assert client.should_close_transport or events
