"""Frame parsing and message assembly: the RFC's examples and one test per
rule of RFC 6455 section 5, each checking the exact close code."""

from __future__ import annotations

import pytest

from wsproto_core import (
    BytesFragment,
    BytesMessage,
    CloseReceived,
    ConnectionFailed,
    Ping,
    Pong,
    State,
    TextFragment,
    TextMessage,
)
from wsproto_core.compression import MessageDecompressor
from wsproto_core.reader import FrameReader

from .wire import MASK, frame, kinds, open_client, open_server

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
    assert isinstance(event, ConnectionFailed)
    assert event.code == 1002
    assert "reserved bits" in event.reason


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
