"""Property-based tests of permessage-deflate.

- Round trips of any messages, compressed or not, fragmented and chunked
  any way, under any settings on either side (so every combination of the
  four RFC parameters gets negotiated), in both directions.
- Interop without sockets: the sans-IO protocols of websockets and wsproto
  compress, we decompress, and the reverse, with negotiation included.
"""

from __future__ import annotations

from typing import Any

import wsproto
import wsproto.events as wsp
from hypothesis import given
from hypothesis import strategies as st
from websockets.client import ClientProtocol
from websockets.extensions.permessage_deflate import (
    ClientPerMessageDeflateFactory,
    ServerPerMessageDeflateFactory,
)
from websockets.frames import Frame, Opcode
from websockets.server import ServerProtocol
from websockets.uri import parse_uri
from wsproto.extensions import PerMessageDeflate as WsprotoDeflate

from wsproto_core import (
    BytesMessage,
    ClientConnection,
    Connection,
    HandshakeRequest,
    PerMessageDeflate,
    ServerConnection,
    State,
    TextMessage,
)

from .test_connection_properties import as_message, feed, split, split_text

Message = str | bytes
# Repetitive text compresses; random binary does not: both paths matter.
message = (
    st.text(max_size=200)
    | st.binary(max_size=200)
    | st.builds(lambda word, n: word * n, st.text(min_size=1, max_size=8), st.integers(1, 400))
)
messages = st.lists(message, max_size=6)
cuts = st.lists(st.integers(min_value=0, max_value=3000), max_size=6)
settings = st.builds(
    PerMessageDeflate,
    window_bits=st.integers(9, 15),
    peer_window_bits=st.none() | st.integers(9, 15),
    no_context_takeover=st.booleans(),
    peer_no_context_takeover=st.booleans(),
    level=st.integers(0, 9),
    mem_level=st.integers(1, 9),
    min_size=st.integers(0, 64),
)


def open_compressed(
    client_settings: PerMessageDeflate, server_settings: PerMessageDeflate
) -> tuple[ClientConnection, ServerConnection]:
    client = ClientConnection(
        "server.example.com", compression=client_settings, max_message_size=None
    )
    server = ServerConnection(compression=server_settings, max_message_size=None)
    server.receive_data(client.data_to_send())
    server.accept()
    client.receive_data(server.data_to_send())
    assert client.state is State.OPEN
    assert server.state is State.OPEN
    return client, server


def send(sender: Connection, message: Message, points: list[int], compress: bool | None) -> None:
    if isinstance(message, str):
        pieces: list[Any] = split_text(message, points)
        for i, piece in enumerate(pieces):
            sender.send_text(piece, final=i == len(pieces) - 1, compress=compress)
    else:
        pieces = split(message, points)
        for i, piece in enumerate(pieces):
            sender.send_bytes(piece, final=i == len(pieces) - 1, compress=compress)


@given(
    settings,
    settings,
    messages,
    st.lists(cuts, max_size=6),
    st.lists(st.sampled_from([None, True, False]), max_size=6),
    cuts,
    st.booleans(),
)
def test_round_trip_under_any_negotiated_parameters(
    client_settings: PerMessageDeflate,
    server_settings: PerMessageDeflate,
    sent: list[Message],
    fragmentations: list[list[int]],
    switches: list[bool | None],
    chunking: list[int],
    to_server: bool,
) -> None:
    client, server = open_compressed(client_settings, server_settings)
    assert [e.name for e in client.extensions] == ["permessage-deflate"]
    sender, receiver = (client, server) if to_server else (server, client)
    for i, item in enumerate(sent):
        points = fragmentations[i] if i < len(fragmentations) else []
        compress = switches[i] if i < len(switches) else None
        send(sender, item, points, compress)
        sender.send_ping(b"between")
    events = feed(receiver, sender.data_to_send(), chunking)
    assert [as_message(e) for e in events if isinstance(e, TextMessage | BytesMessage)] == sent
    assert receiver.state is State.OPEN


# -- websockets' sans-IO protocol ---------------------------------------------

ws_client_factories = st.builds(
    ClientPerMessageDeflateFactory,
    server_no_context_takeover=st.booleans(),
    client_no_context_takeover=st.booleans(),
    server_max_window_bits=st.none() | st.integers(9, 15),
    client_max_window_bits=st.just(True) | st.integers(9, 15),
)
ws_server_factories = st.builds(
    ServerPerMessageDeflateFactory,
    server_no_context_takeover=st.booleans(),
    client_no_context_takeover=st.booleans(),
    server_max_window_bits=st.none() | st.integers(9, 15),
    client_max_window_bits=st.none() | st.integers(9, 15),
)


def ws_frames_to_messages(frames: list[Frame]) -> list[Message]:
    out: list[Message] = []
    parts: list[bytes] = []
    kind = Opcode.TEXT
    for f in frames:
        if f.opcode in (Opcode.TEXT, Opcode.BINARY):
            kind = f.opcode
        if f.opcode in (Opcode.TEXT, Opcode.BINARY, Opcode.CONT):
            parts.append(f.data)
            if f.fin:
                data = b"".join(parts)
                out.append(data.decode() if kind == Opcode.TEXT else data)
                parts = []
    return out


def ws_send(peer: ClientProtocol | ServerProtocol, item: Message) -> None:
    if isinstance(item, str):
        peer.send_text(item.encode())
    else:
        peer.send_binary(item)


def ws_drain(peer: ClientProtocol | ServerProtocol) -> bytes:
    return b"".join(peer.data_to_send())


@given(ws_client_factories, settings, messages, messages)
def test_websockets_client_with_our_server(
    factory: ClientPerMessageDeflateFactory,
    ours: PerMessageDeflate,
    to_us: list[Message],
    to_them: list[Message],
) -> None:
    peer = ClientProtocol(parse_uri("ws://server.example.com/"), extensions=[factory])
    peer.send_request(peer.connect())
    server = ServerConnection(compression=ours, max_message_size=None)
    [request] = server.receive_data(ws_drain(peer))
    assert isinstance(request, HandshakeRequest)
    server.accept()
    peer.receive_data(server.data_to_send())
    assert peer.state.name == "OPEN"
    assert peer.events_received()[0].status_code == 101  # type: ignore[union-attr]
    negotiated = bool(server.extensions)
    assert negotiated == bool(peer.extensions)
    for item in to_us:
        ws_send(peer, item)
    events = server.receive_data(ws_drain(peer))
    assert [as_message(e) for e in events] == to_us
    for item in to_them:
        send(server, item, [len(item) // 2], None)
    peer.receive_data(server.data_to_send())
    assert ws_frames_to_messages(peer.events_received()) == to_them  # type: ignore[arg-type]


@given(ws_server_factories, settings, messages, messages)
def test_our_client_with_websockets_server(
    factory: ServerPerMessageDeflateFactory,
    ours: PerMessageDeflate,
    to_them: list[Message],
    to_us: list[Message],
) -> None:
    client = ClientConnection("server.example.com", compression=ours, max_message_size=None)
    peer = ServerProtocol(extensions=[factory])
    peer.receive_data(client.data_to_send())
    [request] = peer.events_received()
    response = peer.accept(request)  # type: ignore[arg-type]
    peer.send_response(response)
    client.receive_data(ws_drain(peer))
    assert client.state is State.OPEN, response
    assert bool(client.extensions) == bool(peer.extensions)
    for item in to_them:
        send(client, item, [len(item) // 3], None)
    peer.receive_data(client.data_to_send())
    assert ws_frames_to_messages(peer.events_received()) == to_them  # type: ignore[arg-type]
    for item in to_us:
        ws_send(peer, item)
    events = client.receive_data(ws_drain(peer))
    assert [as_message(e) for e in events] == to_us


# -- wsproto's sans-IO connection --------------------------------------------


def wsproto_messages(events: list[wsp.Event]) -> list[Message]:
    out: list[Message] = []
    parts: list[Any] = []
    for event in events:
        if isinstance(event, wsp.Message):
            parts.append(event.data)
            if event.message_finished:
                out.append(
                    "".join(parts) if isinstance(event, wsp.TextMessage) else b"".join(parts)
                )
                parts = []
    return out


@given(messages, messages, settings, st.booleans())
def test_wsproto_both_roles(
    to_us: list[Message], to_them: list[Message], ours: PerMessageDeflate, we_serve: bool
) -> None:
    role = wsproto.ConnectionType.CLIENT if we_serve else wsproto.ConnectionType.SERVER
    peer = wsproto.WSConnection(role)
    conn: Connection
    if we_serve:
        conn = ServerConnection(compression=ours, max_message_size=None)
        conn.receive_data(
            peer.send(
                wsp.Request(host="server.example.com", target="/", extensions=[WsprotoDeflate()])
            )
        )
        conn.accept()
        peer.receive_data(conn.data_to_send())
    else:
        conn = ClientConnection("server.example.com", compression=ours, max_message_size=None)
        peer.receive_data(conn.data_to_send())
        [request] = peer.events()
        assert isinstance(request, wsp.Request)
        conn.receive_data(peer.send(wsp.AcceptConnection(extensions=[WsprotoDeflate()])))
    assert [type(e) for e in peer.events()] in ([], [wsp.AcceptConnection])
    assert conn.state is State.OPEN
    assert [e.name for e in conn.extensions] == ["permessage-deflate"]
    wire = b"".join(peer.send(wsp.Message(data=item)) for item in to_us)
    assert [as_message(e) for e in conn.receive_data(wire)] == to_us
    for item in to_them:
        send(conn, item, [len(item) // 2], None)
    peer.receive_data(conn.data_to_send())
    assert wsproto_messages(list(peer.events())) == to_them
