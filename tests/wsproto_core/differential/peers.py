"""The three implementations, each opened in the same configuration and fed
the same chunks, each reduced to an `Outcome`.

A configuration is the role of the implementation under test (a "server"
reads masked frames from a client) and the permessage-deflate agreement, if
any: negotiated with the peer's own negotiation where that is how the
library is meant to be driven (our core, wsproto's extension object), set
up directly where the library expects its user to (websockets' Protocol in
state OPEN with the extension object). Every peer enforces the same message
size limit but wsproto, which has none.
"""

from __future__ import annotations

import base64
import hashlib
import re
from dataclasses import dataclass
from typing import Literal

import websockets.extensions.permessage_deflate as ws_deflate
import websockets.frames as ws_frames
import websockets.protocol as ws_protocol
import wsproto.connection as wp_connection
import wsproto.events as wp_events
import wsproto.extensions as wp_extensions

from wsproto_core import (
    BytesMessage,
    ClientConnection,
    CloseReceived,
    ConnectionFailed,
    PerMessageDeflate,
    Ping,
    Pong,
    ServerConnection,
    State,
    TextMessage,
)
from wsproto_core.events import Event

from ..wire import upgrade_request
from .outcome import Item, Outcome, Sent, parse_sent

LIMIT = 4096  # max_message_size of ours and websockets' max_size
GUID = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"

Role = Literal["server", "client"]
Deflate = Literal["off", "takeover", "reset"]


@dataclass(frozen=True, slots=True)
class Config:
    """`role` is the role of the receiving implementations; `deflate` says
    whether permessage-deflate was agreed and, if so, whether the sender
    keeps its LZ77 window between messages ("takeover") or resets it
    ("reset": the sender's *_no_context_takeover was agreed)."""

    role: Role
    deflate: Deflate

    @property
    def masked(self) -> bool:
        """Whether the frames the receiver expects are masked."""
        return self.role == "server"


def _offer_or_answer(config: Config) -> str:
    sender = "client" if config.role == "server" else "server"
    if config.deflate == "reset":
        return f"permessage-deflate; {sender}_no_context_takeover"
    return "permessage-deflate"


# -- ours -------------------------------------------------------------------


def open_ours(config: Config) -> ServerConnection | ClientConnection:
    compression = None if config.deflate == "off" else PerMessageDeflate(peer_window_bits=None)
    if config.role == "server":
        server = ServerConnection(max_message_size=LIMIT, compression=compression)
        extra = (
            () if compression is None else (("Sec-WebSocket-Extensions", _offer_or_answer(config)),)
        )
        server.receive_data(upgrade_request(extra=extra))
        server.accept()
        server.data_to_send()
        connection: ServerConnection | ClientConnection = server
    else:
        client = ClientConnection(
            "example.com", "/", max_message_size=LIMIT, compression=compression
        )
        request = client.data_to_send().decode("latin-1")
        match = re.search(r"Sec-WebSocket-Key: (\S+)", request)
        assert match is not None
        fields = [
            "HTTP/1.1 101 Switching Protocols",
            "Upgrade: websocket",
            "Connection: Upgrade",
            f"Sec-WebSocket-Accept: {accept_for(match.group(1))}",
        ]
        if compression is not None:
            fields.append(f"Sec-WebSocket-Extensions: {_offer_or_answer(config)}")
        client.receive_data(("\r\n".join(fields) + "\r\n\r\n").encode("latin-1"))
        connection = client
    assert connection.state is State.OPEN
    assert bool(connection.extensions) == (config.deflate != "off")
    return connection


def accept_for(key: str) -> str:
    digest = hashlib.sha1((key + GUID).encode("ascii")).digest()
    return base64.b64encode(digest).decode("ascii")


def run_ours(config: Config, chunks: list[bytes]) -> Outcome:
    connection = open_ours(config)
    events: list[Event] = []
    for chunk in chunks:
        events += connection.receive_data(chunk)
    # An adapter asks for more once the application took every message,
    # which applies a failure held behind them (see `failure_pending`).
    events += connection.receive_data(b"")
    items: list[Item] = []
    failed = None
    for event in events:
        if isinstance(event, TextMessage):
            items.append(("text", event.data))
        elif isinstance(event, BytesMessage):
            items.append(("bytes", event.data))
        elif isinstance(event, Ping):
            items.append(("ping", event.payload))
        elif isinstance(event, Pong):
            items.append(("pong", event.payload))
        elif isinstance(event, CloseReceived):
            items.append(("close", event.code, event.reason))
        elif isinstance(event, ConnectionFailed):
            failed = event.code
        else:
            raise AssertionError(f"unexpected event {event!r}")
    sent = parse_sent(connection.data_to_send(), masked=config.role == "client")
    return Outcome(tuple(items), failed, sent)


# -- websockets -------------------------------------------------------------


def run_websockets(config: Config, chunks: list[bytes]) -> Outcome:
    side = ws_protocol.Side.SERVER if config.role == "server" else ws_protocol.Side.CLIENT
    protocol = ws_protocol.Protocol(side, state=ws_protocol.State.OPEN, max_size=LIMIT)
    if config.deflate != "off":
        protocol.extensions = [
            ws_deflate.PerMessageDeflate(
                remote_no_context_takeover=config.deflate == "reset",
                local_no_context_takeover=False,
                remote_max_window_bits=15,
                local_max_window_bits=15,
            )
        ]
    frames: list[ws_frames.Frame] = []
    writes: list[bytes] = []
    for chunk in chunks:
        protocol.receive_data(chunk)
        frames += protocol.events_received()
        writes += protocol.data_to_send()
    items: list[Item] = []
    opcode: ws_frames.Opcode | None = None
    pieces: list[bytes] = []
    for frame in frames:
        if frame.opcode in (ws_frames.Opcode.TEXT, ws_frames.Opcode.BINARY):
            opcode, pieces = frame.opcode, []
        if frame.opcode in ws_frames.DATA_OPCODES:
            pieces.append(bytes(frame.data))
            if frame.fin:
                items.append(_websockets_message(opcode, b"".join(pieces)))
        elif frame.opcode is ws_frames.Opcode.PING:
            items.append(("ping", bytes(frame.data)))
        elif frame.opcode is ws_frames.Opcode.PONG:
            items.append(("pong", bytes(frame.data)))
        else:
            close = ws_frames.Close.parse(bytes(frame.data))
            items.append(("close", close.code, close.reason))
    failed = None
    if protocol.parser_exc is not None:
        assert protocol.close_sent is not None  # it fails with a close frame in OPEN
        failed = protocol.close_sent.code
    sent = parse_sent(b"".join(writes), masked=config.role == "client")
    return Outcome(tuple(items), failed, sent)


def _websockets_message(opcode: ws_frames.Opcode | None, data: bytes) -> Item:
    """websockets' protocol layer hands text over as bytes: it is decoded by
    the application layer above it (whose recv() raises UnicodeDecodeError).
    Decoding here shows what that layer would get."""
    if opcode is ws_frames.Opcode.BINARY:
        return ("bytes", data)
    try:
        return ("text", data.decode("utf-8"))
    except UnicodeDecodeError:
        return ("text-invalid", data)


# -- wsproto ----------------------------------------------------------------


def run_wsproto(config: Config, chunks: list[bytes]) -> Outcome:
    extensions: list[wp_extensions.Extension] = []
    if config.deflate != "off":
        extension = wp_extensions.PerMessageDeflate()
        if config.role == "server":
            assert extension.accept(_offer_or_answer(config)) is not None
        else:
            extension.finalize(_offer_or_answer(config))
        extensions.append(extension)
    kind = wp_connection.SERVER if config.role == "server" else wp_connection.CLIENT
    connection = wp_connection.Connection(kind, extensions=extensions)
    items: list[Item] = []
    failed = None
    out = bytearray()
    pieces: list[bytes | str] = []
    for chunk in chunks:
        if failed is not None or connection.state is not wp_connection.ConnectionState.OPEN:
            break  # failed, or a close frame came: nothing more is read
        connection.receive_data(chunk)
        for event in connection.events():
            if isinstance(event, wp_events.Message):
                pieces.append(event.data)
                if event.message_finished:
                    items.append(_wsproto_message(pieces))
                    pieces = []
            elif isinstance(event, wp_events.Ping):
                items.append(("ping", bytes(event.payload)))
                out += connection.send(event.response())  # wsproto leaves the pong to us
            elif isinstance(event, wp_events.Pong):
                items.append(("pong", bytes(event.payload)))
            elif isinstance(event, wp_events.CloseConnection):
                if connection.state is wp_connection.ConnectionState.REMOTE_CLOSING:
                    items.append(("close", int(event.code), event.reason or ""))
                    out += connection.send(event.response())
                else:
                    # A parse failure: wsproto reports the code and leaves
                    # sending the close frame to its user.
                    failed = int(event.code)
                    out += connection.send(wp_events.CloseConnection(code=event.code))
            else:
                raise AssertionError(f"unexpected wsproto event {event!r}")
    sent: tuple[Sent, ...] = parse_sent(bytes(out), masked=config.role == "client")
    return Outcome(tuple(items), failed, sent)


def _wsproto_message(pieces: list[bytes | str]) -> Item:
    if isinstance(pieces[0], str):
        return ("text", "".join(p for p in pieces if isinstance(p, str)))
    return ("bytes", b"".join(p for p in pieces if isinstance(p, bytes)))


PEERS = {"websockets": run_websockets, "wsproto": run_wsproto}
