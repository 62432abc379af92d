"""Messages framed once for many server connections (`PreparedMessage`)."""

from __future__ import annotations

import pytest

from wsproto_core import (
    BytesMessage,
    ClientConnection,
    LocalProtocolError,
    PerMessageDeflate,
    PreparedMessage,
    ServerConnection,
    TextMessage,
)

from .wire import open_client, open_server

TEXT = '{"type": "message", "nick": "ann", "text": "' + "hello everyone " * 20 + '"}'


def pair(
    server_settings: PerMessageDeflate | None, client_settings: PerMessageDeflate | None
) -> tuple[ClientConnection, ServerConnection]:
    client = ClientConnection("example.com", compression=client_settings)
    server = ServerConnection(compression=server_settings)
    server.receive_data(client.data_to_send())
    server.accept()
    client.receive_data(server.data_to_send())
    return client, server


SHARED = PerMessageDeflate(no_context_takeover=True)


def test_a_plain_server_gets_the_same_bytes_as_send_text() -> None:
    server = open_server()
    server.send_prepared(PreparedMessage(TEXT))
    prepared = server.data_to_send()
    server.send_text(TEXT)
    assert prepared == server.data_to_send()


def test_one_frame_per_kind_of_connection_and_every_peer_reads_it() -> None:
    message = PreparedMessage(TEXT)
    pairs = [
        pair(SHARED, PerMessageDeflate()),  # compressed, window 12
        pair(SHARED, PerMessageDeflate()),
        pair(SHARED, PerMessageDeflate(peer_window_bits=9)),  # compressed, window 9
        pair(PerMessageDeflate(), PerMessageDeflate()),  # context takeover: plain
        pair(SHARED, None),  # no compression: plain
    ]
    assert [s.shared_frame_window for _, s in pairs] == [12, 12, 9, 0, 0]
    frames = []
    for client, server in pairs:
        server.send_prepared(message)
        frames.append(server.data_to_send())
        assert client.receive_data(frames[-1]) == [TextMessage(data=TEXT)]
    assert frames[0] is frames[1]  # framed once, shared
    assert frames[0][0] == 0xC1  # RSV1: compressed
    assert len(frames[0]) < len(TEXT) / 2
    assert frames[2] is not frames[0]  # compressed again, for the 9-bit window
    assert frames[2][0] == 0xC1
    assert frames[3] is frames[4]
    assert frames[3][0] == 0x81


def test_a_plain_broadcast_leaves_a_context_takeover_stream_intact() -> None:
    client, server = pair(PerMessageDeflate(), PerMessageDeflate())
    server.send_text(TEXT)
    server.send_prepared(PreparedMessage(TEXT))
    server.send_text(TEXT)
    assert client.receive_data(server.data_to_send()) == [TextMessage(data=TEXT)] * 3


def test_small_and_binary_messages() -> None:
    client, server = pair(SHARED, PerMessageDeflate())
    server.send_prepared(PreparedMessage("hi"))
    server.send_prepared(PreparedMessage(b"\x00" * 70_000))
    data = server.data_to_send()
    assert data[:4] == b"\x81\x02hi"  # under min_size: plain
    assert client.receive_data(data) == [TextMessage(data="hi"), BytesMessage(data=bytes(70_000))]


def test_misuse_is_refused() -> None:
    with pytest.raises(TypeError):
        PreparedMessage(42)  # type: ignore[arg-type]
    client = open_client()
    assert client.shared_frame_window is None
    with pytest.raises(LocalProtocolError, match="masks"):
        client.send_prepared(PreparedMessage("x"))
    server = open_server()
    server.send_text("part", final=False)
    with pytest.raises(LocalProtocolError, match="fragmented"):
        server.send_prepared(PreparedMessage("x"))
    server = ServerConnection()
    with pytest.raises(LocalProtocolError, match="handshake"):
        server.send_prepared(PreparedMessage("x"))
