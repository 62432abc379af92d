"""Inputs the fuzz harnesses found that broke an invariant, one test each.

Each keeps the minimized input as a bytes literal. All three faults found
so far were in wsproto_core, and are fixed.
"""

from __future__ import annotations

import sys
import zlib

import pytest

from wsproto_core import ConnectionFailed, HandshakeFailed, PerMessageDeflate, ServerConnection

from .loading import harness as _harness


def _deflate_server(max_message_size: int) -> ServerConnection:
    server = ServerConnection(
        max_message_size=max_message_size,
        compression=PerMessageDeflate(),
        open_timeout=None,
        ping_interval=None,
    )
    server.receive_data(
        b"GET / HTTP/1.1\r\nHost: example.com\r\nUpgrade: websocket\r\n"
        b"Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
        b"Sec-WebSocket-Version: 13\r\n"
        b"Sec-WebSocket-Extensions: permessage-deflate; client_max_window_bits\r\n\r\n"
    )
    server.accept()
    server.data_to_send()
    return server


# server_deflate, found after 57,733 executions: mode 0x41 (max_message_size
# 16, whole messages, offer 0), chunking seed 7, then one masked compressed
# text frame of 11 bytes that inflates to b"hell\xbeq\x00" + 44 * b"\x07":
# invalid UTF-8 at its 5th byte, and 51 bytes, over the limit of 16.
DEFLATE_ORDER_CRASH = bytes.fromhex("410700c18b37fa213dfdb2ecf4eeade9fd79f821")


def test_deflate_close_code_does_not_depend_on_chunking() -> None:
    # A text message whose first inflated byte is already invalid UTF-8,
    # and whose inflated size (101 bytes) is over the limit (16).
    compressor = zlib.compressobj(6, zlib.DEFLATED, -9)
    body = compressor.compress(b"\xff" + b"a" * 100) + compressor.flush(zlib.Z_SYNC_FLUSH)
    key = b"\x01\x02\x03\x04"
    payload = body[:-4]
    frame = bytes([0xC1, 0x80 | len(payload)]) + key
    frame += bytes(c ^ key[i % 4] for i, c in enumerate(payload))

    def close_code(pieces: list[bytes]) -> int:
        server = _deflate_server(16)
        events = [event for piece in pieces for event in server.receive_data(piece)]
        assert isinstance(events[-1], ConnectionFailed)
        return events[-1].code

    byte_by_byte = close_code([frame[i : i + 1] for i in range(len(frame))])
    assert byte_by_byte == 1007  # the first violation in the message is its first byte
    assert close_code([frame]) == byte_by_byte


def test_deflate_order_crash_input() -> None:
    _harness("server_deflate").TestOneInput(DEFLATE_ORDER_CRASH)


# handshake, found after 4,803 executions: mode 0x01 (the client role),
# chunking seed 0, then a 101 response whose status digits were mutated to
# "066", followed by a text frame.
STATUS_066_CRASH = (
    b"\x01\x00\x00HTTP/1.1 066 Switching Protocols\r\nUpgrade: websocket\r\n"
    b"Connection: Upgrade\r\nSec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\n\r\n"
    b"\x81\x02hi"
)


@pytest.mark.parametrize("status", [b"066", b"000"])
def test_status_below_100_is_not_a_refusal(status: bytes) -> None:
    _harness("handshake")
    common = sys.modules["_common"]  # as the harness imported it
    given = common.split_input(STATUS_066_CRASH.replace(b"066", status))
    client, accept = common.new_client(streaming=False, max_message_size=None, deflate=False)
    events = client.receive_data(common.with_accept(given.payload, accept)) + client.receive_eof()
    assert len(events) == 1
    assert isinstance(events[0], HandshakeFailed), events


# handshake, found after 3,867 executions (once the client began to check
# the chosen subprotocol): mode 0x08 (the server role, accept with the
# first offered subprotocol), chunking seed 7, then an upgrade request
# whose Sec-WebSocket-Protocol is "(chat, suchat".
SUBPROTOCOL_CRASH = (
    b"\x08\x07\x00GET /chat HTTP/1.1\r\nHost: example.com\r\nUpgrade: websocket\r\n"
    b"Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
    b"Sec-WebSocket-Version: 13\r\nSec-WebSocket-Protocol:(chat, suchat\r\n\r\n"
    b"perchat\r\n\r\n"
)


def test_offered_subprotocols_are_tokens() -> None:
    _harness("handshake")
    common = sys.modules["_common"]  # as the harness imported it
    server = ServerConnection(**common.QUIET)
    events = server.receive_data(common.split_input(SUBPROTOCOL_CRASH).payload)
    assert len(events) == 1
    request = events[0]
    if isinstance(request, HandshakeFailed):
        assert request.status == 400
        return
    assert request.subprotocols == ("suchat",) or not request.subprotocols, request
