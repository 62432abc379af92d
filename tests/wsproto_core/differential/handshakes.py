"""Opening handshakes: generated upgrade requests to the three servers and
generated responses to the three clients, each reduced to accept (with
whether permessage-deflate was agreed) or reject.

Every implementation offers, or is ready to accept, permessage-deflate with
its default settings and the subprotocol "chat". The parameters each
negotiates are not compared (each library's defaults differ: ours asks for
a 4 KiB window), only whether the extension was agreed.
"""

from __future__ import annotations

import base64
import re
from dataclasses import dataclass

import websockets.client as ws_client
import websockets.extensions.permessage_deflate as ws_deflate
import websockets.server as ws_server
import websockets.uri as ws_uri
import wsproto
import wsproto.events as wp_events
import wsproto.extensions as wp_extensions
import wsproto.utilities as wp_utilities
from hypothesis import strategies as st

from wsproto_core import (
    ClientConnection,
    HandshakeAccepted,
    HandshakeRequest,
    PerMessageDeflate,
    ServerConnection,
)

from .peers import accept_for

# ("accept", agreed permessage-deflate) / ("reject",) / ("error", exception name)
Verdict = tuple[object, ...]
KEY = base64.b64encode(bytes(range(16))).decode()


@dataclass(frozen=True, slots=True)
class Head:
    """A request or response head: the first line and header fields in
    order. `{accept}` in a value stands for the right Sec-WebSocket-Accept
    for the client reading it (each client makes its own key)."""

    first: str
    fields: tuple[tuple[str, str], ...]
    notes: frozenset[str] = frozenset()

    def render(self, key: str = "") -> bytes:
        lines = [self.first]
        lines += [
            f"{name}: {value.replace('{accept}', accept_for(key) if key else '')}"
            for name, value in self.fields
        ]
        return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")

    def describe(self) -> str:
        return f"{self.render(KEY)!r} notes={sorted(self.notes)}"


def _vary(
    draw: st.DrawFn, name: str, default: str, odd: tuple[str, ...]
) -> tuple[list[tuple[str, str]], set[str]]:
    mode = draw(st.sampled_from(("ok", "ok", "ok", "missing", "twice", "odd")))
    if mode == "ok":
        return [(name, default)], set()
    if mode == "missing":
        return [], {f"{name}:missing"}
    if mode == "twice":
        return [(name, default), (name, default)], {f"{name}:twice"}
    value = draw(st.sampled_from(odd))
    return [(name, value)], {f"{name}:odd={value}"}


REQUEST_ODD = {
    "Host": ("", "a b", "example.com:99999"),
    "Upgrade": ("WebSocket", "websocket, h2c", "h2c", "", "websocket/13"),
    "Connection": ("upgrade", "keep-alive, Upgrade", "close", "Upgrade2", ""),
    "Sec-WebSocket-Key": (
        base64.b64encode(bytes(15)).decode(),
        base64.b64encode(bytes(17)).decode(),
        "not base64 at all!",
        KEY.rstrip("="),
        "",
    ),
    "Sec-WebSocket-Version": ("8", "13, 8", "013", ""),
    "Sec-WebSocket-Extensions": (
        "permessage-deflate; client_max_window_bits",
        "permessage-deflate; server_max_window_bits=8",
        "permessage-deflate; server_max_window_bits=16",
        "permessage-deflate; client_max_window_bits=abc",
        "permessage-deflate; x=1",
        "permessage-deflate; server_no_context_takeover=1",
        "permessage-deflate; server_no_context_takeover; server_no_context_takeover",
        "permessage-deflate;;",
        "x-webkit-deflate-frame",
        'permessage-deflate; server_max_window_bits="10"',
        "foo, permessage-deflate; client_no_context_takeover",
    ),
}
REQUEST_DEFAULTS = {
    "Host": "example.com",
    "Upgrade": "websocket",
    "Connection": "Upgrade",
    "Sec-WebSocket-Key": KEY,
    "Sec-WebSocket-Version": "13",
    "Sec-WebSocket-Extensions": "permessage-deflate",
}


@st.composite
def requests(draw: st.DrawFn) -> Head:
    method = draw(st.sampled_from(("GET", "GET", "GET", "POST", "HEAD")))
    version = draw(st.sampled_from(("HTTP/1.1", "HTTP/1.1", "HTTP/1.0")))
    notes = set() if (method, version) == ("GET", "HTTP/1.1") else {f"{method} {version}"}
    fields: list[tuple[str, str]] = []
    for name, default in REQUEST_DEFAULTS.items():
        more, why = _vary(draw, name, default, REQUEST_ODD[name])
        fields += more
        notes |= why
    return Head(f"{method} /chat {version}", tuple(fields), frozenset(notes))


RESPONSE_ODD = {
    "Upgrade": ("h2c", "WebSocket", "websocket, h2c"),
    "Connection": ("close", "keep-alive, upgrade", "upgrade"),
    "Sec-WebSocket-Accept": ("AAAAAAAAAAAAAAAAAAAAAAAAAAA=", "", "{accept}x"),
    "Sec-WebSocket-Extensions": (
        "permessage-deflate; server_no_context_takeover",
        "x-unknown",
        "permessage-deflate; bogus",
        "permessage-deflate, permessage-deflate",
        "permessage-deflate; client_max_window_bits",
        "permessage-deflate; server_max_window_bits=9",
    ),
    # (The empty value was a bug of ours: test_empty_subprotocol_answer_is_refused.)
    "Sec-WebSocket-Protocol": ("other", "chat, chat", "", "chat,"),
}
RESPONSE_DEFAULTS = {
    "Upgrade": "websocket",
    "Connection": "Upgrade",
    "Sec-WebSocket-Accept": "{accept}",
    "Sec-WebSocket-Extensions": "permessage-deflate",
    "Sec-WebSocket-Protocol": "chat",
}


@st.composite
def responses(draw: st.DrawFn) -> Head:
    status = draw(st.sampled_from((101, 101, 101, 101, 200, 404)))
    notes = set() if status == 101 else {f"status {status}"}
    fields: list[tuple[str, str]] = []
    for name, default in RESPONSE_DEFAULTS.items():
        more, why = _vary(draw, name, default, RESPONSE_ODD[name])
        fields += more
        notes |= why
    if status != 101:
        fields.append(("Content-Length", "0"))
    return Head(f"HTTP/1.1 {status} Whatever", tuple(fields), frozenset(notes))


# -- servers ----------------------------------------------------------------


def server_ours(head: Head) -> Verdict:
    server = ServerConnection(compression=PerMessageDeflate())
    events = server.receive_data(head.render())
    if len(events) == 1 and isinstance(events[0], HandshakeRequest):
        server.accept()
        return ("accept", bool(server.extensions))
    return ("reject",)


def server_websockets(head: Head) -> Verdict:
    protocol = ws_server.ServerProtocol(extensions=[ws_deflate.ServerPerMessageDeflateFactory()])
    protocol.receive_data(head.render())
    events = protocol.events_received()
    if not events:
        return ("reject",)
    response = protocol.accept(events[0])  # type: ignore[arg-type]
    if response.status_code != 101:
        return ("reject",)
    return ("accept", "Sec-WebSocket-Extensions" in response.headers)


def server_wsproto(head: Head) -> Verdict:
    connection = wsproto.WSConnection(wsproto.ConnectionType.SERVER)
    try:
        connection.receive_data(head.render())
        events = list(connection.events())
        if not (len(events) == 1 and isinstance(events[0], wp_events.Request)):
            return ("reject",)
        data = connection.send(
            wp_events.AcceptConnection(extensions=[wp_extensions.PerMessageDeflate()])
        )
    except wp_utilities.RemoteProtocolError:
        return ("reject",)
    except Exception as error:
        return ("error", type(error).__name__)
    return ("accept", b"sec-websocket-extensions" in data.lower())


# -- clients ----------------------------------------------------------------


def _key_of(request: bytes) -> str:
    match = re.search(rb"(?i)sec-websocket-key: *(\S+)", request)
    assert match is not None
    return match.group(1).decode()


def client_ours(head: Head) -> Verdict:
    client = ClientConnection(
        "example.com", "/chat", subprotocols=["chat"], compression=PerMessageDeflate()
    )
    events = client.receive_data(head.render(_key_of(client.data_to_send())))
    if not events:
        events = client.receive_eof()
    if isinstance(events[0], HandshakeAccepted):
        return ("accept", bool(client.extensions))
    return ("reject",)


def client_websockets(head: Head) -> Verdict:
    protocol = ws_client.ClientProtocol(
        ws_uri.parse_uri("ws://example.com/chat"),
        extensions=[ws_deflate.ClientPerMessageDeflateFactory()],
        subprotocols=["chat"],  # type: ignore[list-item]
    )
    request = protocol.connect()
    protocol.send_request(request)
    protocol.receive_data(head.render(request.headers["Sec-WebSocket-Key"]))
    protocol.events_received()
    if protocol.handshake_exc is not None or protocol.state is not ws_client.OPEN:
        return ("reject",)
    return ("accept", bool(protocol.extensions))


def client_wsproto(head: Head) -> Verdict:
    connection = wsproto.WSConnection(wsproto.ConnectionType.CLIENT)
    request = connection.send(
        wp_events.Request(
            host="example.com",
            target="/chat",
            subprotocols=["chat"],
            extensions=[wp_extensions.PerMessageDeflate()],
        )
    )
    try:
        connection.receive_data(head.render(_key_of(request)))
        events = list(connection.events())
    except wp_utilities.RemoteProtocolError:
        return ("reject",)
    except Exception as error:
        return ("error", type(error).__name__)
    if events and isinstance(events[0], wp_events.AcceptConnection):
        return ("accept", bool(events[0].extensions))
    return ("reject",)


SERVERS = {"websockets": server_websockets, "wsproto": server_wsproto}
CLIENTS = {"websockets": client_websockets, "wsproto": client_wsproto}
