"""Compressed messages on the wire (RFC 7692 sections 6 and 7.2): what we
send, what we accept, and the bound on decompression."""

from __future__ import annotations

import tracemalloc
import zlib

import pytest

from wsproto_core import (
    BytesMessage,
    ClientConnection,
    ConnectionFailed,
    PerMessageDeflate,
    Pong,
    ServerConnection,
    State,
    TextFragment,
    TextMessage,
)

from .wire import frame, upgrade_request

TAIL = b"\x00\x00\xff\xff"


def deflate(data: bytes, *, final_block: bool = False, window_bits: int = 15) -> bytes:
    """What a peer's compressor sends for one message, tail stripped."""
    stream = zlib.compressobj(6, zlib.DEFLATED, -window_bits)
    if final_block:
        return stream.compress(data) + stream.flush(zlib.Z_FINISH)
    out = stream.compress(data) + stream.flush(zlib.Z_SYNC_FLUSH)
    assert out.endswith(TAIL)
    return out[:-4]


def inflate(payload: bytes) -> bytes:
    return zlib.decompressobj(-15).decompress(payload + TAIL)


def compressed_server(header: str = "permessage-deflate", **options: object) -> ServerConnection:
    options.setdefault("compression", PerMessageDeflate())
    server = ServerConnection(**options)  # type: ignore[arg-type]
    server.receive_data(upgrade_request(extra=(("Sec-WebSocket-Extensions", header),)))
    server.accept()
    server.data_to_send()
    assert server.state is State.OPEN
    return server


def sent_frames(data: bytes) -> list[tuple[int, bytes]]:
    """Split unmasked server output into (first byte, payload) pairs."""
    frames = []
    pos = 0
    while pos < len(data):
        length = data[pos + 1] & 0x7F
        start = pos + 2
        if length == 126:
            length, start = int.from_bytes(data[pos + 2 : pos + 4], "big"), pos + 4
        elif length == 127:
            length, start = int.from_bytes(data[pos + 2 : pos + 10], "big"), pos + 10
        frames.append((data[pos], data[start : start + length]))
        pos = start + length
    return frames


# -- sending ----------------------------------------------------------------


def test_a_compressed_message_sets_rsv1_and_strips_the_tail() -> None:
    server = compressed_server()
    text = "a chat message that says the same thing, the same thing, the same thing"
    server.send_text(text)
    [(b0, payload)] = sent_frames(server.data_to_send())
    assert b0 == 0x80 | 0x40 | 0x1
    assert not payload.endswith(TAIL)
    assert len(payload) < len(text)
    assert inflate(payload) == text.encode()


def test_rsv1_only_on_the_first_frame_and_never_on_control_frames() -> None:
    server = compressed_server()
    server.send_bytes(b"first part " * 10, final=False)
    server.send_ping(b"p")
    server.send_bytes(b"second part " * 10, final=False)
    server.send_bytes(b"end", final=True)
    frames = sent_frames(server.data_to_send())
    assert [b0 for b0, _ in frames] == [0x42, 0x89, 0x00, 0x80]
    payload = b"".join(p for b0, p in frames if b0 & 0x0F != 0x9)
    assert inflate(payload) == b"first part " * 10 + b"second part " * 10 + b"end"


def test_threshold_and_per_message_switch() -> None:
    server = compressed_server(compression=PerMessageDeflate(min_size=100))
    server.send_text("x" * 99)
    server.send_text("x" * 100)
    server.send_text("x" * 10, compress=True)
    server.send_text("x" * 1000, compress=False)
    firsts = [b0 for b0, _ in sent_frames(server.data_to_send())]
    assert firsts == [0x81, 0xC1, 0xC1, 0x81]


def test_context_takeover_shrinks_a_repeated_message() -> None:
    text = "the quick brown fox jumps over the lazy dog, " * 3
    sizes = {}
    for reset in (False, True):
        server = compressed_server(compression=PerMessageDeflate(no_context_takeover=reset))
        server.send_text(text)
        server.send_text(text)
        sizes[reset] = [len(p) for _, p in sent_frames(server.data_to_send())]
    first, second = sizes[False]
    assert second < first / 3  # refers back to the first message
    assert sizes[True][0] == sizes[True][1]  # starts from an empty window each time


def test_without_context_takeover_each_message_inflates_on_its_own() -> None:
    server = compressed_server(compression=PerMessageDeflate(no_context_takeover=True))
    for _ in range(3):
        server.send_text("independent " * 20)
    for _, payload in sent_frames(server.data_to_send()):
        assert inflate(payload) == b"independent " * 20


def test_a_peer_asking_for_an_8_bit_window_gets_plain_messages() -> None:
    server = compressed_server("permessage-deflate; server_max_window_bits=8")
    server.send_text("y" * 500, compress=True)
    [(b0, payload)] = sent_frames(server.data_to_send())
    assert b0 == 0x81
    assert payload == b"y" * 500
    # and its own compressed messages still arrive
    assert server.receive_data(frame(0x1, deflate(b"z" * 500), rsv=0x40)) == [
        TextMessage(data="z" * 500)
    ]


# -- receiving --------------------------------------------------------------


def test_receives_a_compressed_message_split_over_frames_and_reads() -> None:
    body = ("fragmented and compressed " * 50).encode()
    payload = deflate(body)
    third = len(payload) // 3
    wire = (
        frame(0x1, payload[:third], fin=False, rsv=0x40)
        + frame(0x0, payload[third : 2 * third], fin=False)
        + frame(0x0, payload[2 * third :])
    )
    server = compressed_server()
    events = []
    for i in range(0, len(wire), 7):
        events += server.receive_data(wire[i : i + 7])
    assert events == [TextMessage(data=body.decode())]


def test_streaming_delivers_inflated_fragments() -> None:
    body = bytes(range(256)) * 40
    payload = deflate(body)
    server = compressed_server(streaming=True)
    events = server.receive_data(frame(0x2, payload[:100], fin=False, rsv=0x40))
    events += server.receive_data(frame(0x0, payload[100:]))
    assert b"".join(e.data for e in events) == body  # type: ignore[union-attr]
    assert events[-1].final  # type: ignore[union-attr]


def test_streamed_text_is_validated_after_inflating() -> None:
    server = compressed_server(streaming=True)
    events = server.receive_data(frame(0x1, deflate("héllo".encode()), rsv=0x40))
    assert events == [TextFragment(data="héllo", final=True)]


def test_a_message_ending_with_a_final_block_resets_the_stream() -> None:
    server = compressed_server()
    first = frame(0x2, deflate(b"one", final_block=True), rsv=0x40)
    second = frame(0x2, deflate(b"two"), rsv=0x40)
    assert server.receive_data(first + second) == [
        BytesMessage(data=b"one"),
        BytesMessage(data=b"two"),
    ]


def test_uncompressed_messages_still_pass_between_compressed_ones() -> None:
    server = compressed_server()
    wire = frame(0x1, b"plain") + frame(0x1, deflate(b"packed"), rsv=0x40) + frame(0x1, b"again")
    assert server.receive_data(wire) == [
        TextMessage(data="plain"),
        TextMessage(data="packed"),
        TextMessage(data="again"),
    ]


@pytest.mark.parametrize(
    ("wire", "code", "reason"),
    [
        (frame(0x1, b"\xff\xff\xff\xff", rsv=0x40), 1007, "invalid compressed data"),
        (frame(0x1, deflate(b"\xff\xfe"), rsv=0x40), 1007, "UTF-8"),
        (frame(0x2, deflate(b"x", final_block=True) + b"junk", rsv=0x40), 1007, "after the end"),
        (
            frame(0x2, deflate(b"x", final_block=True), fin=False, rsv=0x40) + frame(0x0, b"more"),
            1007,
            "after the end",
        ),
        (frame(0x2, b"x", fin=False, rsv=0x40) + frame(0x0, b"y", rsv=0x40), 1002, "continuation"),
        (frame(0x2, b"x", rsv=0x20), 1002, "reserved bits"),
        (frame(0x9, b"x", rsv=0x40), 1002, "control frame"),
    ],
)
def test_bad_compressed_input_fails_with_the_rfc_code(wire: bytes, code: int, reason: str) -> None:
    server = compressed_server()
    events = server.receive_data(wire)
    assert isinstance(events[-1], ConnectionFailed)
    assert events[-1].code == code
    assert reason in events[-1].reason


def test_rsv1_without_the_extension_is_a_protocol_error() -> None:
    server = ServerConnection()
    server.receive_data(
        upgrade_request(extra=(("Sec-WebSocket-Extensions", "permessage-deflate"),))
    )
    server.accept()
    [event] = server.receive_data(frame(0x1, deflate(b"x"), rsv=0x40))
    assert isinstance(event, ConnectionFailed)
    assert event.code == 1002


def test_limit_applies_to_the_decompressed_size() -> None:
    limit = 10_000
    at_limit = frame(0x2, deflate(b"a" * limit), rsv=0x40)
    over = frame(0x2, deflate(b"a" * (limit + 1)), rsv=0x40)
    assert len(over) < 200  # the wire size alone would pass
    assert compressed_server(max_message_size=limit).receive_data(at_limit) == [
        BytesMessage(data=b"a" * limit)
    ]
    [failed] = compressed_server(max_message_size=limit).receive_data(over)
    assert isinstance(failed, ConnectionFailed)
    assert failed.code == 1009


def test_limit_spans_the_frames_of_a_compressed_message() -> None:
    payload = deflate(b"b" * 3000)
    wire = frame(0x2, payload[:5], fin=False, rsv=0x40) + frame(0x0, payload[5:])
    [failed] = compressed_server(max_message_size=2999).receive_data(wire)
    assert isinstance(failed, ConnectionFailed)
    assert failed.code == 1009


def close_code_in_pieces(wire: bytes, cut: int, **options: object) -> int:
    """The close code of a server given `wire` in two calls, cut at `cut`."""
    server = compressed_server(**options)
    events = server.receive_data(wire[:cut]) + server.receive_data(wire[cut:])
    assert isinstance(events[-1], ConnectionFailed)
    return events[-1].code


@pytest.mark.parametrize("streaming", [False, True])
def test_text_over_the_limit_is_1009_when_valid_and_1007_when_not_however_cut(
    streaming: bool,
) -> None:
    """The first fault in the message decides: bad UTF-8 before the size
    limit is 1007, even when the limit is passed in the same piece (found
    by fuzz/server_deflate.py: the code once depended on the cuts)."""
    for text, code in ((b"\xc3\xa9" * 200, 1009), (b"ok \xff" + b"a" * 400, 1007)):
        wire = frame(0x1, deflate(text), rsv=0x40)
        codes = {
            close_code_in_pieces(wire, cut, max_message_size=64, streaming=streaming)
            for cut in range(1, len(wire))
        }
        whole = compressed_server(max_message_size=64, streaming=streaming).receive_data(wire)
        assert isinstance(whole[-1], ConnectionFailed)
        assert codes == {whole[-1].code} == {code}


@pytest.mark.parametrize("streaming", [False, True])
def test_a_compression_bomb_fails_with_1009_within_the_limit(streaming: bool) -> None:
    """A 100 KiB frame that inflates to 100 MiB, against a 1 MiB limit."""
    limit = 1 << 20
    stream = zlib.compressobj(9, zlib.DEFLATED, -15)
    block = bytes(1 << 20)
    bomb = b"".join(stream.compress(block) for _ in range(100))
    bomb += stream.flush(zlib.Z_SYNC_FLUSH)[:-4]
    assert len(bomb) < 120_000
    wire = frame(0x2, bomb, rsv=0x40)
    server = compressed_server(max_message_size=limit, streaming=streaming)
    tracemalloc.start()
    try:
        events = server.receive_data(wire)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert isinstance(events[-1], ConnectionFailed)
    assert events[-1].code == 1009
    # The output buffer is capped at limit + 1; the rest is the frame itself
    # (and its unmasked copy) and zlib's bookkeeping.
    assert peak < limit + 4 * len(wire) + 256 * 1024, peak


def test_pings_inside_a_compressed_message_are_answered_plain() -> None:
    server = compressed_server()
    payload = deflate(b"c" * 300)
    events = server.receive_data(
        frame(0x2, payload[:4], fin=False, rsv=0x40) + frame(0x9, b"hi") + frame(0x0, payload[4:])
    )
    assert server.data_to_send() == b"\x8a\x02hi"
    assert events[-1] == BytesMessage(data=b"c" * 300)


def test_client_and_server_talk_compressed_both_ways() -> None:
    client = ClientConnection("server.example.com", compression=PerMessageDeflate(min_size=0))
    server = ServerConnection(compression=PerMessageDeflate(min_size=0))
    server.receive_data(client.data_to_send())
    server.accept()
    client.receive_data(server.data_to_send())
    for text in ["", "a", "hello " * 100]:
        client.send_text(text)
        sent = client.data_to_send()
        assert sent[0] == 0xC1
        assert server.receive_data(sent) == [TextMessage(data=text)]
        server.send_bytes(text.encode())
        assert client.receive_data(server.data_to_send()) == [BytesMessage(data=text.encode())]
    client.send_ping(b"x")
    assert server.receive_data(client.data_to_send())
    assert client.receive_data(server.data_to_send()) == [Pong(payload=b"x")]


def test_a_final_block_may_end_in_a_frame_before_the_last() -> None:
    """A peer may end its deflate stream with a final block (RFC 7692
    section 7.2.3.4). Nothing follows it but the tail, even when the
    block ends before the message's last frame."""
    server = compressed_server()
    first = frame(0x2, deflate(b"x", final_block=True), fin=False, rsv=0x40)
    assert server.receive_data(first) == []
    assert server.receive_data(frame(0x0, b"")) == [BytesMessage(data=b"x")]


def test_data_after_the_end_of_a_deflate_stream_is_named() -> None:
    server = compressed_server()
    [failed] = server.receive_data(frame(0x2, deflate(b"x", final_block=True) + b"junk", rsv=0x40))
    assert failed == ConnectionFailed(code=1007, reason="data after the end of a deflate stream")


def test_without_context_takeover_a_reference_to_the_last_message_is_invalid() -> None:
    """Once the server answered client_no_context_takeover, it inflates each
    message from an empty window. A back-reference into the previous message
    is then invalid data (1007). With context takeover it is a message."""
    stream = zlib.compressobj(6, zlib.DEFLATED, -15)
    text = b"the same words, the same words, again and again"
    first = frame(0x2, (stream.compress(text) + stream.flush(zlib.Z_SYNC_FLUSH))[:-4], rsv=0x40)
    second = frame(0x2, (stream.compress(text) + stream.flush(zlib.Z_SYNC_FLUSH))[:-4], rsv=0x40)

    server = compressed_server("permessage-deflate")
    assert server.receive_data(first) == [BytesMessage(data=text)]
    assert server.receive_data(second) == [BytesMessage(data=text)]

    server = compressed_server("permessage-deflate; client_no_context_takeover")
    assert server.receive_data(first) == [BytesMessage(data=text)]
    [failed] = server.receive_data(second)
    assert isinstance(failed, ConnectionFailed)
    assert failed.code == 1007
    assert failed.reason.startswith("invalid compressed data (")
