"""Memory and event count under fine fragmentation (issue 9, item 7).

A peer chooses how finely it fragments; a message being assembled must cost
about its size whatever that choice, and one `receive_data` call must not
turn N tiny frames into N events. Peaks are measured with tracemalloc
(deterministic, unlike RSS or time); no test asserts a duration.
"""

from __future__ import annotations

import itertools
import tracemalloc

import pytest
from hypothesis import given
from hypothesis import strategies as st

from wsproto_core import (
    BytesFragment,
    BytesMessage,
    CloseReceived,
    ConnectionFailed,
    Ping,
    Pong,
    TextFragment,
    TextMessage,
)
from wsproto_core.events import Event
from wsproto_core.reader import FrameReader

from .wire import frame, one_byte_frames, open_client, open_pair, open_server

CHUNK = 64 * 1024  # read as the adapters read
MIB = 1 << 20


def text_payload(size: int) -> str:
    """Text of `size` UTF-8 bytes, its characters cut by every fragment
    boundary (and beyond Latin-1, whose one-character strings CPython caches)."""
    return "€" * (size // 3) + "a" * (size % 3)


def receive(data: bytes, *, masked: bool, streaming: bool, chunk: int) -> list[Event]:
    receiver = (open_server if masked else open_client)(streaming=streaming)
    chunks = [data[i : i + chunk] for i in range(0, len(data), chunk)]
    return [event for piece in chunks for event in receiver.receive_data(piece)]


def joined(events: list[Event]) -> str | bytes:
    texts = [e.data for e in events if isinstance(e, TextFragment | TextMessage)]
    if len(texts) == len(events):
        return "".join(texts)
    return b"".join(e.data for e in events if isinstance(e, BytesFragment | BytesMessage))


def message_of(size: int, text: bool) -> tuple[str | bytes, bytes]:
    message: str | bytes = text_payload(size) if text else b"\x00\xff" * (size // 2)
    return message, message.encode() if isinstance(message, str) else message


@pytest.mark.parametrize("masked", [True, False], ids=["masked", "unmasked"])
@pytest.mark.parametrize("streaming", [False, True], ids=["whole", "streaming"])
@pytest.mark.parametrize("text", [False, True], ids=["binary", "text"])
def test_a_million_one_byte_fragments_make_one_event_per_read(
    text: bool, streaming: bool, masked: bool
) -> None:
    """A 1 MiB message as 1,048,576 one-byte frames (the issue's case)."""
    message, payload = message_of(MIB, text)
    data = one_byte_frames(payload, 0x1 if text else 0x2, masked=masked)
    events = receive(data, masked=masked, streaming=streaming, chunk=CHUNK)
    assert joined(events) == message
    if streaming:
        assert len(events) <= -(-len(data) // CHUNK)  # one per read, not one per frame
        assert [e.final for e in events] == [False] * (len(events) - 1) + [True]  # type: ignore[union-attr]
    else:
        assert len(events) == 1
    [whole] = receive(data, masked=masked, streaming=streaming, chunk=len(data))
    assert whole.data == message  # type: ignore[union-attr]


def case(text: bool, streaming: bool, masked: bool, chunk: int | None) -> object:
    name = "-".join(
        [
            "text" if text else "binary",
            "streaming" if streaming else "whole",
            "masked" if masked else "unmasked",
            "one-read" if chunk is None else "64KiB-reads",
        ]
    )
    return pytest.param(text, streaming, masked, chunk, id=name)


@pytest.mark.parametrize(
    ("text", "streaming", "masked", "chunk"),
    [
        *[
            case(t, s, m, CHUNK)
            for t in (False, True)
            for s in (False, True)
            for m in (True, False)
        ],
        # One read of the whole wire: binary only, as decoding one large run
        # of text costs CPython up to three times its size in passing,
        # however the message was fragmented.
        *[case(False, s, m, None) for s in (False, True) for m in (True, False)],
    ],
)
def test_one_byte_fragments_cost_about_the_message_size(
    text: bool, streaming: bool, masked: bool, chunk: int | None
) -> None:
    """tracemalloc's peak while receiving a message cut in one-byte frames.

    Tracing makes each allocation some 25 times dearer, so this runs on
    256 KiB (262,144 frames) to stay within seconds; any cost per fragment
    would show at this count as 10 MiB or more.
    """
    size = 256 * 1024
    bound = 3 * size + 64 * 1024
    message, payload = message_of(size, text)
    data = one_byte_frames(payload, 0x1 if text else 0x2, masked=masked)
    receiver = (open_server if masked else open_client)(streaming=streaming)
    chunks = [data[i : i + (chunk or len(data))] for i in range(0, len(data), chunk or len(data))]
    events: list[Event] = []
    tracemalloc.start()
    try:
        for piece in chunks:
            events += receiver.receive_data(piece)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < bound, f"peak of {peak} bytes for a message of {size}"
    assert joined(events) == message


def test_one_call_coalesces_fragments_and_control_frames_split_the_run() -> None:
    server = open_server(streaming=True)
    pieces = [frame(0x2, b"a", fin=False)] + [frame(0x0, b"b", fin=False)] * 500
    data = b"".join(pieces) + frame(0x9, b"p") + frame(0x0, b"c" * 300, fin=False)
    data += frame(0xA, b"q") + frame(0x0, b"d", fin=False) * 3
    assert server.receive_data(data) == [
        BytesFragment(data=b"a" + b"b" * 500, final=False),
        Ping(payload=b"p"),
        BytesFragment(data=b"c" * 300, final=False),
        Pong(payload=b"q"),
        BytesFragment(data=b"ddd", final=False),
    ]
    data = frame(0x0, b"e", fin=False) * 4 + frame(0x0, b"f") + frame(0x1, b"next")
    assert server.receive_data(data) == [
        BytesFragment(data=b"eeeef", final=True),
        TextFragment(data="next", final=True),
    ]


def test_a_close_frame_inside_a_message_comes_after_its_data() -> None:
    server = open_server(streaming=True)
    data = frame(0x1, "€".encode()[:1], fin=False) + frame(0x0, "€".encode()[1:], fin=False)
    data += frame(0x0, b"x", fin=False) + frame(0x8, b"\x03\xe8")
    assert server.receive_data(data) == [
        TextFragment(data="€x", final=False),
        CloseReceived(code=1000, reason=""),
    ]


def test_a_frame_arriving_in_pieces_is_delivered_as_it_arrives() -> None:
    reader = FrameReader(
        expect_masked=False, max_message_size=None, max_frame_size=None, streaming=True
    )
    data = frame(0x2, bytes(range(256)) * 64, mask=None)
    [first] = reader.feed(data[:1000])
    [second] = reader.feed(data[1000:])
    assert first == BytesFragment(data=data[4:1000], final=False)
    assert second == BytesFragment(data=data[1000:], final=True)


@pytest.mark.parametrize("streaming", [False, True])
def test_bad_utf8_in_a_run_wins_over_a_later_violation(streaming: bool) -> None:
    """The run is checked when a later frame breaks a rule in the same call:
    the first violation on the wire is the one reported."""
    server = open_server(streaming=streaming)
    data = frame(0x1, b"ok", fin=False) + frame(0x0, b"\xff", fin=False) * 3
    data += frame(0x3, b"")  # reserved opcode: 1002, but the 1007 came first
    assert server.receive_data(data) == [
        ConnectionFailed(code=1007, reason="text message is not valid UTF-8")
    ]


def test_a_valid_run_is_delivered_before_a_later_violation() -> None:
    server = open_server(streaming=True)
    data = frame(0x1, b"ok", fin=False) + frame(0x0, b"!", fin=False) + frame(0x3, b"")
    assert server.receive_data(data) == [TextFragment(data="ok!", final=False)]
    assert server.failure_pending  # the application sees the data first
    [failed] = server.receive_data(b"")
    assert failed == ConnectionFailed(code=1002, reason="reserved opcode 0x3")


def test_limits_stop_a_series_of_small_fragments_where_the_frame_crosses_them() -> None:
    server = open_server(max_message_size=100)
    data = frame(0x2, b"a", fin=False) + frame(0x0, b"b" * 50, fin=False) * 2
    [failed] = server.receive_data(data)
    assert failed == ConnectionFailed(code=1009, reason="message exceeds the size limit")
    server = open_server(max_frame_size=10, max_message_size=None)
    data = (
        frame(0x2, b"a", fin=False)
        + frame(0x0, b"b" * 10, fin=False)
        + frame(0x0, b"c" * 11, fin=False)
    )
    [failed] = server.receive_data(data)
    assert failed == ConnectionFailed(code=1009, reason="frame of 11 bytes exceeds the limit")


def test_a_text_message_fed_one_byte_per_call_keeps_few_pieces() -> None:
    """Whole-message text is decoded per call; the pieces are merged so
    that a peer sending one byte per segment does not make one str per byte."""
    reader = FrameReader(
        expect_masked=False, max_message_size=None, max_frame_size=None, streaming=False
    )
    message = text_payload(60_000) + "z" * 20_000
    data = frame(0x1, message.encode(), mask=None)
    most = 0
    for i in range(len(data) - 1):
        assert reader.feed(data[i : i + 1]) == []
        most = max(most, len(reader._texts))
    assert most <= 32
    assert reader.feed(data[-1:]) == [TextMessage(data=message)]


def test_large_decoded_pieces_are_kept_without_merging() -> None:
    client = open_client()
    message = "x" * 40_000
    data = frame(0x1, message[:20_000].encode(), fin=False, mask=None)
    data += frame(0x0, message[20_000:].encode(), mask=None)
    events = [
        e for i in range(0, len(data), 17_000) for e in client.receive_data(data[i : i + 17_000])
    ]
    assert events == [TextMessage(data=message)]


# -- properties --------------------------------------------------------------

messages = st.lists(st.text(max_size=60) | st.binary(max_size=60), min_size=1, max_size=5)
cuts = st.lists(st.integers(min_value=0, max_value=400), max_size=10)


@given(messages, st.lists(cuts, max_size=5), cuts, st.booleans(), st.booleans())
def test_streaming_any_fragmentation_any_chunking_reassembles_and_coalesces(
    sent: list[str | bytes],
    fragmentations: list[list[int]],
    chunking: list[int],
    to_server: bool,
    pings: bool,
) -> None:
    client, server = open_pair(streaming=True, max_message_size=None)
    sender, receiver = (client, server) if to_server else (server, client)
    for i, message in enumerate(sent):
        cut = fragmentations[i] if i < len(fragmentations) else []
        points = sorted({min(p, len(message)) for p in cut})
        bounds = list(zip([0, *points], [*points, len(message)], strict=True))
        for j, (a, b) in enumerate(bounds):
            final = j == len(bounds) - 1
            if isinstance(message, str):
                sender.send_text(message[a:b], final=final)
            else:
                sender.send_bytes(message[a:b], final=final)
            if pings:
                sender.send_ping(b"p")
    data = sender.data_to_send()
    marks = sorted({min(c, len(data)) for c in chunking})
    received: list[str | bytes] = []
    current: list[Event] = []
    for a, b in zip([0, *marks], [*marks, len(data)], strict=True):
        events = receiver.receive_data(data[a:b])
        for this, after in itertools.pairwise(events):
            if isinstance(this, TextFragment | BytesFragment) and not this.final:
                # Within one call a partial run ends only where a control frame does.
                assert isinstance(after, Ping)
        for event in events:
            if isinstance(event, TextFragment | BytesFragment):
                current.append(event)
                if event.final:
                    received.append(joined(current))
                    current = []
    assert received == sent
    assert not current
