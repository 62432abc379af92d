"""Frame parsing and message assembly: the RFC's examples and one test per
rule of RFC 6455 section 5, each checking the exact close code."""

from __future__ import annotations

import zlib

import pytest

from wsproto_core import (
    BytesFragment,
    BytesMessage,
    CloseReceived,
    ConnectionFailed,
    Ping,
    Pong,
    ServerConnection,
    State,
    TextFragment,
    TextMessage,
)
from wsproto_core.compression import MessageDecompressor
from wsproto_core.events import Event
from wsproto_core.reader import FrameReader

from .wire import MASK, frame, kinds, open_client, open_server


def compressed_reader(*, max_message_size: int | None, streaming: bool = False) -> FrameReader:
    """A server's reader with permessage-deflate."""
    return FrameReader(
        expect_masked=True,
        max_message_size=max_message_size,
        max_frame_size=None,
        streaming=streaming,
        decompressor=MessageDecompressor(window_bits=15, reset=False),
    )


def deflate_parts(*parts: bytes, level: int = 6) -> list[bytes]:
    """One message compressed as a peer does, flushed after each part so
    that each piece inflates to its part alone (the tail of the last one
    stripped, RFC 7692 section 7.2.1)."""
    stream = zlib.compressobj(level, zlib.DEFLATED, -15)
    pieces = [stream.compress(part) + stream.flush(zlib.Z_SYNC_FLUSH) for part in parts]
    pieces[-1] = pieces[-1][:-4]
    return pieces


def payload_of(sizes: list[int]) -> list[bytes]:
    """Distinct payloads of these sizes, so that a misparse shows."""
    return [bytes((i + n) % 251 for i in range(n)) for n in sizes]


def fragments(sizes: list[int]) -> bytes:
    """A binary message in frames of these payload sizes, all in one buffer."""
    last = len(sizes) - 1
    return b"".join(
        frame(0x2 if i == 0 else 0x0, payload, fin=i == last)
        for i, payload in enumerate(payload_of(sizes))
    )


# -- RFC 6455 section 5.7, byte for byte -------------------------------------


def test_rfc_single_frame_unmasked_text_to_client() -> None:
    client = open_client()
    assert client.receive_data(bytes.fromhex("810548656c6c6f")) == [TextMessage(data="Hello")]


def test_rfc_single_frame_masked_text_to_server() -> None:
    server = open_server()
    data = bytes.fromhex("818537fa213d7f9f4d5158")
    assert server.receive_data(data) == [TextMessage(data="Hello")]


def test_rfc_fragmented_unmasked_text() -> None:
    client = open_client()
    events = client.receive_data(bytes.fromhex("010348656c") + bytes.fromhex("80026c6f"))
    assert events == [TextMessage(data="Hello")]


def test_rfc_unmasked_ping_and_masked_pong() -> None:
    client = open_client()
    assert client.receive_data(bytes.fromhex("890548656c6c6f")) == [Ping(payload=b"Hello")]
    server = open_server()
    data = bytes.fromhex("8a8537fa213d7f9f4d5158")
    assert server.receive_data(data) == [Pong(payload=b"Hello")]


def test_rfc_256_bytes_binary_uses_16_bit_length() -> None:
    client = open_client()
    payload = bytes(range(256))
    data = bytes.fromhex("827e0100") + payload
    assert client.receive_data(data) == [BytesMessage(data=payload)]


def test_rfc_64_kib_binary_uses_64_bit_length() -> None:
    client = open_client()
    payload = bytes(65536)
    data = bytes.fromhex("827f0000000000010000") + payload
    assert client.receive_data(data) == [BytesMessage(data=payload)]


# -- masking direction -------------------------------------------------------


def test_server_fails_unmasked_frame_with_1002() -> None:
    server = open_server()
    events = server.receive_data(frame(0x1, b"hi", mask=None))
    assert events == [ConnectionFailed(code=1002, reason="unmasked frame from a client")]
    assert server.state is State.CLOSED
    assert server.should_close_transport
    assert server.data_to_send()[:4] == b"\x88\x1e\x03\xea"  # close, 1002, unmasked


def test_client_fails_masked_frame_with_1002() -> None:
    client = open_client()
    events = client.receive_data(frame(0x1, b"hi", mask=MASK))
    assert events == [ConnectionFailed(code=1002, reason="masked frame from a server")]


# -- opcodes, reserved bits, control frames ----------------------------------


@pytest.mark.parametrize("opcode", [0x3, 0x4, 0x5, 0x6, 0x7, 0xB, 0xC, 0xD, 0xE, 0xF])
def test_reserved_opcode_fails_with_1002(opcode: int) -> None:
    server = open_server()
    [event] = server.receive_data(frame(opcode, b""))
    assert event == ConnectionFailed(code=1002, reason=f"reserved opcode {opcode:#x}")


@pytest.mark.parametrize("rsv", [0x40, 0x20, 0x10, 0x70])
@pytest.mark.parametrize("opcode", [0x1, 0x2, 0x9])
def test_reserved_bits_without_extension_fail_with_1002(rsv: int, opcode: int) -> None:
    server = open_server()
    [event] = server.receive_data(frame(opcode, b"x", rsv=rsv))
    if opcode & 0x8:
        assert event == ConnectionFailed(code=1002, reason="reserved bits set on a control frame")
    else:
        assert event == ConnectionFailed(code=1002, reason="reserved bits set without an extension")


def test_reader_with_a_decompressor_claims_rsv1_only() -> None:
    reader = FrameReader(
        expect_masked=True,
        max_message_size=None,
        max_frame_size=None,
        streaming=False,
        decompressor=MessageDecompressor(window_bits=15, reset=False),
    )
    deflated = b"\xaa\x02\x00"  # "z", raw deflate, sync tail stripped
    assert reader.feed(frame(0x2, deflated, rsv=0x40)) == [BytesMessage(data=b"z")]
    reader.feed(frame(0x2, b"z", rsv=0x20))
    assert reader.failure is not None
    assert reader.failure.code == 1002
    assert reader.failure.reason == "reserved bits set without an extension"


def test_rsv1_on_a_continuation_frame_fails_with_1002() -> None:
    reader = compressed_reader(max_message_size=None)
    reader.feed(frame(0x2, b"x", fin=False, rsv=0x40) + frame(0x0, b"y", rsv=0x40))
    assert reader.failure is not None
    assert (reader.failure.code, reader.failure.reason) == (
        1002,
        "RSV1 set on a continuation frame",
    )


@pytest.mark.parametrize("opcode", [0x8, 0x9, 0xA])
def test_control_frame_over_125_bytes_fails_with_1002(opcode: int) -> None:
    server = open_server()
    [event] = server.receive_data(frame(opcode, b"x" * 126))
    assert event == ConnectionFailed(code=1002, reason="control frame payload over 125 bytes")


@pytest.mark.parametrize("opcode", [0x8, 0x9, 0xA])
def test_fragmented_control_frame_fails_with_1002(opcode: int) -> None:
    server = open_server()
    [event] = server.receive_data(frame(opcode, b"", fin=False))
    assert event == ConnectionFailed(code=1002, reason="fragmented control frame")


def test_control_frame_of_exactly_125_bytes_is_fine() -> None:
    server = open_server()
    assert server.receive_data(frame(0x9, b"p" * 125)) == [Ping(payload=b"p" * 125)]


# -- lengths -----------------------------------------------------------------


def test_64_bit_length_with_top_bit_set_fails_with_1002() -> None:
    server = open_server(max_message_size=None)
    data = bytes([0x82, 0xFF]) + (1 << 63).to_bytes(8, "big") + MASK
    [event] = server.receive_data(data)
    assert event == ConnectionFailed(code=1002, reason="frame length has its top bit set")


@pytest.mark.parametrize(("length_bytes", "size"), [(2, 125), (2, 0), (8, 65535), (8, 126)])
def test_non_minimal_length_encoding_fails_with_1002(length_bytes: int, size: int) -> None:
    server = open_server()
    [event] = server.receive_data(frame(0x2, bytes(size), length_bytes=length_bytes))
    assert event == ConnectionFailed(code=1002, reason="frame length not minimally encoded")


# -- fragmentation -----------------------------------------------------------


def test_continuation_without_message_fails_with_1002() -> None:
    server = open_server()
    [event] = server.receive_data(frame(0x0, b"x"))
    assert event == ConnectionFailed(code=1002, reason="continuation frame without a message")


@pytest.mark.parametrize("second", [0x1, 0x2])
def test_new_data_frame_inside_fragmented_message_fails_with_1002(second: int) -> None:
    server = open_server()
    events = server.receive_data(frame(0x1, b"a", fin=False) + frame(second, b"b"))
    assert events == [ConnectionFailed(code=1002, reason="new message inside a fragmented one")]


def test_control_frames_between_fragments_are_delivered_in_order() -> None:
    server = open_server()
    data = (
        frame(0x1, b"Hel", fin=False)
        + frame(0x9, b"ping")
        + frame(0x0, b"", fin=False)
        + frame(0xA, b"pong")
        + frame(0x0, b"lo")
    )
    events = server.receive_data(data)
    assert events == [Ping(payload=b"ping"), Pong(payload=b"pong"), TextMessage(data="Hello")]
    assert server.data_to_send() == b"\x8a\x04ping"  # the automatic pong


def test_empty_messages() -> None:
    server = open_server()
    data = frame(0x1, b"") + frame(0x2, b"") + frame(0x1, b"", fin=False) + frame(0x0, b"")
    events = server.receive_data(data)
    assert events == [TextMessage(data=""), BytesMessage(data=b""), TextMessage(data="")]


def test_frame_split_at_every_byte_gives_same_message() -> None:
    data = frame(0x2, bytes(range(200))) + frame(0x1, "é".encode() * 70000, length_bytes=8)
    server = open_server()
    events = [e for i in range(len(data)) for e in server.receive_data(data[i : i + 1])]
    assert events == [BytesMessage(data=bytes(range(200))), TextMessage(data="é" * 70000)]


# -- UTF-8 -------------------------------------------------------------------


def test_invalid_utf8_in_single_frame_fails_with_1007() -> None:
    server = open_server()
    [event] = server.receive_data(frame(0x1, b"\xce\xba\xff"))
    assert event == ConnectionFailed(code=1007, reason="text message is not valid UTF-8")


def test_invalid_utf8_across_fragments_fails_with_1007() -> None:
    server = open_server()
    assert server.receive_data(frame(0x1, b"\xce", fin=False)) == []
    [event] = server.receive_data(frame(0x0, b"\x41"))
    assert event.code == 1007  # type: ignore[union-attr]


def test_invalid_utf8_fails_mid_frame_before_the_rest_arrives() -> None:
    server = open_server()
    data = frame(0x1, b"ok\xff" + b"x" * 1000)
    assert server.receive_data(data[:10]) == []  # 2 + 2 length + 4 mask bytes, then "ok"
    [event] = server.receive_data(data[10:11])  # the bad byte alone
    assert event.code == 1007  # type: ignore[union-attr]
    assert server.receive_data(data[11:]) == []  # the rest is ignored


def test_surrogate_prefix_fails_as_soon_as_its_second_byte_arrives() -> None:
    """CPython's decoder keeps ED A0 pending; the core must not."""
    server = open_server()
    first = frame(0x1, b"a\xed", fin=False)
    assert server.receive_data(first) == []
    [event] = server.receive_data(frame(0x0, b"\xa0", fin=False))
    assert event.code == 1007  # type: ignore[union-attr]


def test_incomplete_utf8_at_end_of_message_fails_with_1007() -> None:
    server = open_server()
    [event] = server.receive_data(frame(0x1, b"a\xe2\x82", fin=False) + frame(0x0, b""))
    assert event.code == 1007  # type: ignore[union-attr]


def test_utf8_split_across_fragments_is_fine() -> None:
    server = open_server()
    data = frame(0x1, b"\xe2", fin=False) + frame(0x0, b"\x82", fin=False) + frame(0x0, b"\xac")
    assert server.receive_data(data) == [TextMessage(data="€")]


# -- limits ------------------------------------------------------------------


def test_message_over_limit_fails_with_1009_from_the_header_alone() -> None:
    server = open_server(max_message_size=1000)
    header = frame(0x2, bytes(1001))[:8]  # 2 bytes + 2 length bytes + mask
    [event] = server.receive_data(header)
    assert event == ConnectionFailed(code=1009, reason="message exceeds the size limit")


def test_fragmented_message_over_limit_fails_with_1009() -> None:
    server = open_server(max_message_size=1000)
    assert server.receive_data(frame(0x2, bytes(600), fin=False)) == []
    [event] = server.receive_data(frame(0x0, bytes(600))[:8])
    assert event.code == 1009  # type: ignore[union-attr]


def test_message_of_exactly_the_limit_is_fine() -> None:
    server = open_server(max_message_size=1000)
    data = frame(0x2, bytes(500), fin=False) + frame(0x0, bytes(500))
    assert server.receive_data(data) == [BytesMessage(data=bytes(1000))]


def test_frame_over_frame_limit_fails_with_1009() -> None:
    server = open_server(max_frame_size=100, max_message_size=None)
    assert server.receive_data(frame(0x2, bytes(100), fin=False)) == []
    [event] = server.receive_data(frame(0x0, bytes(101))[:8])
    assert event == ConnectionFailed(code=1009, reason="frame of 101 bytes exceeds the limit")


def test_no_limit_allows_large_messages() -> None:
    server = open_server(max_message_size=None)
    payload = bytes(3 << 20)
    assert server.receive_data(frame(0x2, payload)) == [BytesMessage(data=payload)]


# -- close frames ------------------------------------------------------------


def test_close_with_one_byte_payload_fails_with_1002() -> None:
    server = open_server()
    [event] = server.receive_data(frame(0x8, b"\x03"))
    assert event == ConnectionFailed(code=1002, reason="close frame with a 1-byte payload")


@pytest.mark.parametrize("code", [0, 999, 1004, 1005, 1006, 1015, 1016, 2000, 2999, 5000, 65535])
def test_close_with_invalid_code_fails_with_1002(code: int) -> None:
    server = open_server()
    [event] = server.receive_data(frame(0x8, code.to_bytes(2, "big")))
    assert event == ConnectionFailed(code=1002, reason=f"invalid close code {code}")


@pytest.mark.parametrize("code", [1000, 1001, 1002, 1003, 1007, 1011, 1012, 1013, 1014, 3000, 4999])
def test_close_with_valid_code_is_reported(code: int) -> None:
    server = open_server()
    events = server.receive_data(frame(0x8, code.to_bytes(2, "big") + b"why"))
    assert events == [CloseReceived(code=code, reason="why")]


def test_close_with_invalid_utf8_reason_fails_with_1007() -> None:
    server = open_server()
    [event] = server.receive_data(frame(0x8, b"\x03\xe8\xff"))
    assert event == ConnectionFailed(code=1007, reason="close reason is not valid UTF-8")


def test_bytes_after_a_close_frame_are_ignored() -> None:
    server = open_server()
    events = server.receive_data(frame(0x8, b"\x03\xe8") + frame(0x1, b"late") + b"\xff\xff")
    assert events == [CloseReceived(code=1000, reason="")]
    assert server.receive_data(frame(0x1, b"later")) == []


def test_input_after_failure_is_ignored() -> None:
    server = open_server()
    server.receive_data(frame(0x1, b"x", mask=None))
    assert server.receive_data(frame(0x1, b"valid")) == []


# -- streaming mode ----------------------------------------------------------


def test_streaming_delivers_partial_payloads_as_they_arrive() -> None:
    server = open_server(streaming=True)
    data = frame(0x1, "añb".encode(), fin=False) + frame(0x0, b"cd")
    events = [e for i in range(len(data)) for e in server.receive_data(data[i : i + 1])]
    assert "".join(e.data for e in events) == "añbcd"  # type: ignore[union-attr]
    assert all(isinstance(e, TextFragment) for e in events)
    assert [e.final for e in events] == [False] * (len(events) - 1) + [True]  # type: ignore[union-attr]


def test_streaming_binary_and_single_frames() -> None:
    server = open_server(streaming=True)
    events = server.receive_data(frame(0x2, b"ab") + frame(0x1, b"t"))
    assert events == [BytesFragment(data=b"ab", final=True), TextFragment(data="t", final=True)]
    events = server.receive_data(frame(0x2, b"a", fin=False) + frame(0x0, b""))
    assert events == [BytesFragment(data=b"a", final=True)]  # one call, one run
    assert server.receive_data(frame(0x2, b"b", fin=False)) == [
        BytesFragment(data=b"b", final=False)
    ]
    assert server.receive_data(frame(0x0, b"")) == [BytesFragment(data=b"", final=True)]


def test_reader_reports_open_message() -> None:
    reader = FrameReader(
        expect_masked=False, max_message_size=None, max_frame_size=None, streaming=False
    )
    assert not reader.in_message
    reader.feed(frame(0x2, b"a", fin=False, mask=None))
    assert reader.in_message
    assert kinds(reader.feed(frame(0x0, b"b", mask=None))) == ["BytesMessage"]
    assert not reader.in_message


def test_reader_ignores_input_after_close_or_failure() -> None:
    reader = FrameReader(
        expect_masked=True, max_message_size=None, max_frame_size=None, streaming=False
    )
    assert reader.feed(frame(0x8, b"")) == [CloseReceived(code=1005, reason="")]
    assert reader.feed(frame(0x1, b"late")) == []
    broken = FrameReader(
        expect_masked=True, max_message_size=None, max_frame_size=None, streaming=False
    )
    broken.feed(frame(0x1, b"x", mask=None))
    assert broken.failure is not None
    assert broken.feed(frame(0x1, b"late")) == []


# -- limits, however the fragments arrive ------------------------------------
# A series of small fragments in one buffer is taken by a fast path
# (`_gather`), larger ones one by one: both must count every byte.


def receive_all(server: ServerConnection, data: bytes) -> list[Event]:
    """The events of `data`, with a failure held after messages (see
    `failure_pending`) applied at once."""
    return server.receive_data(data) + server.apply_pending_failure()


def received(events: list[Event], *, streaming: bool) -> bytes:
    """The payload of `events`, checked to be one whole message."""
    [event] = events
    if streaming:
        assert isinstance(event, BytesFragment)
        assert event.final
    else:
        assert isinstance(event, BytesMessage)
    return event.data


@pytest.mark.parametrize("streaming", [False, True])
@pytest.mark.parametrize(
    ("limit", "sizes"),
    [
        (100, [10, 20, 30, 40]),  # small fragments, taken together
        (100, [60, 40, 0]),  # the one reaching the limit is not the last
        (1000, [300, 300, 300, 100]),  # large fragments, taken one by one
    ],
)
def test_fragments_may_reach_the_message_limit_but_not_pass_it(
    limit: int, sizes: list[int], streaming: bool
) -> None:
    assert sum(sizes) == limit
    server = open_server(max_message_size=limit, streaming=streaming)
    events = receive_all(server, fragments(sizes))
    assert received(events, streaming=streaming) == b"".join(payload_of(sizes))
    # One byte more, in the fragment that reaches the limit: its header
    # fails the message, and only the fragments before it are delivered.
    reaching = len(sizes) - 1 if sizes[-1] else len(sizes) - 2
    over = [size + (i == reaching) for i, size in enumerate(sizes)]
    server = open_server(max_message_size=limit, streaming=streaming)
    failed = ConnectionFailed(code=1009, reason="message exceeds the size limit")
    before = b"".join(payload_of(over)[:reaching])
    expected = [BytesFragment(data=before, final=False), failed] if streaming else [failed]
    assert receive_all(server, fragments(over)) == expected


@pytest.mark.parametrize(
    ("limit", "sizes"),
    [
        (50, [10, 50, 0]),  # small fragments, taken together
        (200, [10, 126, 200, 0]),  # one with a 16-bit length among them
    ],
)
def test_fragments_may_reach_the_frame_limit_but_not_pass_it(limit: int, sizes: list[int]) -> None:
    server = open_server(max_frame_size=limit, max_message_size=None)
    events = receive_all(server, fragments(sizes))
    assert events == [BytesMessage(data=b"".join(payload_of(sizes)))]
    over = [size + (size == limit) for size in sizes]
    server = open_server(max_frame_size=limit, max_message_size=None)
    assert receive_all(server, fragments(over)) == [
        ConnectionFailed(code=1009, reason=f"frame of {limit + 1} bytes exceeds the limit")
    ]


def test_each_message_has_the_whole_limit() -> None:
    """What a fragmented message counted against the limit ends with it."""
    first = frame(0x2, b"ab", fin=False) + frame(0x0, b"cd")
    server = open_server(max_message_size=100)
    assert receive_all(server, first + frame(0x2, bytes(100))) == [
        BytesMessage(data=b"abcd"),
        BytesMessage(data=bytes(100)),
    ]
    server = open_server(max_message_size=100)
    assert receive_all(server, first + frame(0x2, bytes(101))) == [
        BytesMessage(data=b"abcd"),
        ConnectionFailed(code=1009, reason="message exceeds the size limit"),
    ]


# -- the masking direction, within a series of fragments ---------------------


@pytest.mark.parametrize("payload", [b"", b"xyz"])
@pytest.mark.parametrize("role", ["server", "client"])
def test_a_fragment_masked_the_wrong_way_fails_among_good_ones(payload: bytes, role: str) -> None:
    good = MASK if role == "server" else None
    bad = None if role == "server" else MASK
    data = (
        frame(0x2, b"a", fin=False, mask=good)
        + frame(0x0, payload, fin=False, mask=bad)
        + bytes(4)  # what a reader misled by the mask bit would take for a mask
        + frame(0x0, b"bcdefgh", mask=good)
    )
    connection = open_server() if role == "server" else open_client()
    reason = "unmasked frame from a client" if role == "server" else "masked frame from a server"
    events = connection.receive_data(data) + connection.apply_pending_failure()
    assert events == [ConnectionFailed(code=1002, reason=reason)]


# -- what is delivered before a control frame, a violation or the end --------


@pytest.mark.parametrize("streaming", [False, True])
def test_fragments_joined_in_one_call_are_delivered_as_bytes(streaming: bool) -> None:
    server = open_server(streaming=streaming)
    events = server.receive_data(frame(0x2, b"ab", fin=False) + frame(0x0, b"cd", fin=False))
    events += server.receive_data(frame(0x0, b"ef", fin=False) + frame(0x0, b"gh"))
    events += server.receive_data(frame(0x2, b"ij", fin=False) + frame(0x0, b"kl"))
    if streaming:
        assert events == [
            BytesFragment(data=b"abcd", final=False),
            BytesFragment(data=b"efgh", final=True),
            BytesFragment(data=b"ijkl", final=True),
        ]
    else:
        assert events == [BytesMessage(data=b"abcdefgh"), BytesMessage(data=b"ijkl")]
    # bytes == bytearray, so equality alone would not tell
    data = [event.data for event in events if isinstance(event, BytesFragment | BytesMessage)]
    assert [type(piece) for piece in data] == [bytes] * len(events)


@pytest.mark.parametrize(
    ("after", "then"),
    [
        (
            frame(0x9, b"hi") + frame(0x0, b"cd"),
            [Ping(payload=b"hi"), BytesFragment(data=b"cd", final=True)],
        ),
        (frame(0x3, b""), [ConnectionFailed(code=1002, reason="reserved opcode 0x3")]),
    ],
    ids=["ping", "violation"],
)
def test_streaming_delivers_the_payload_before_a_control_frame_or_a_violation(
    after: bytes, then: list[Event]
) -> None:
    server = open_server(streaming=True)
    events = receive_all(server, frame(0x2, b"ab", fin=False) + after)
    assert events == [BytesFragment(data=b"ab", final=False), *then]


@pytest.mark.parametrize("streaming", [False, True])
def test_bad_utf8_gathered_before_a_violation_is_the_failure(streaming: bool) -> None:
    """The text before the violation came first: its 1007 wins over the 1002."""
    server = open_server(streaming=streaming)
    events = receive_all(server, frame(0x1, b"a\xff", fin=False) + frame(0x3, b""))
    assert events == [ConnectionFailed(code=1007, reason="text message is not valid UTF-8")]


# -- compressed messages -----------------------------------------------------


@pytest.mark.parametrize(("sizes", "fits"), [([40, 40, 20], True), ([40, 40, 21], False)])
def test_the_limit_counts_what_every_compressed_fragment_inflates_to(
    sizes: list[int], fits: bool
) -> None:
    parts = payload_of(sizes)
    pieces = deflate_parts(*parts, level=0)
    wire = frame(0x2, pieces[0], fin=False, rsv=0x40)
    wire += frame(0x0, pieces[1], fin=False) + frame(0x0, pieces[2])
    reader = compressed_reader(max_message_size=100)
    events = reader.feed(wire)
    if fits:
        assert events == [BytesMessage(data=b"".join(parts))]
        assert reader.failure is None
    else:
        assert events == []
        assert reader.failure is not None
        assert (reader.failure.code, reader.failure.reason) == (
            1009,
            "message exceeds the size limit once decompressed",
        )


def test_a_compressed_message_is_limited_by_its_inflated_size_not_its_wire_size() -> None:
    [payload] = payload_of([100])
    [stored] = deflate_parts(payload, level=0)  # stored as is: longer on the wire
    assert len(stored) > 100
    reader = compressed_reader(max_message_size=100)
    assert reader.feed(frame(0x2, stored, rsv=0x40)) == [BytesMessage(data=payload)]


def test_a_compressed_text_past_the_limit_fails_with_1009_after_a_fragmented_one() -> None:
    """The first message ends joined from two pieces; the second must still
    be checked as UTF-8 up to the limit, then fail with 1009."""
    reader = compressed_reader(max_message_size=100)
    first = deflate_parts(b"hello ", b"world")
    assert reader.feed(frame(0x1, first[0], fin=False, rsv=0x40) + frame(0x0, first[1])) == [
        TextMessage(data="hello world")
    ]
    [second] = deflate_parts(b"a" * 200)
    assert reader.feed(frame(0x1, second, fin=False, rsv=0x40)) == []
    assert reader.failure is not None
    assert (reader.failure.code, reader.failure.reason) == (
        1009,
        "message exceeds the size limit once decompressed",
    )
