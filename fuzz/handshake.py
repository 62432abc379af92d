"""Fuzz the opening handshake: the HTTP head parser and both roles' checks.

The input (see `_common`): mode byte, chunking seed, then the peer's bytes.
Mode bit 0 picks the role: 0, the bytes are a request to a fresh
ServerConnection; 1, they are the response to a fresh ClientConnection
(whose Sec-WebSocket-Key is fixed, so the fuzzer can produce a valid
Sec-WebSocket-Accept). Bit 1: permessage-deflate configured. Bits 2-3: the
server's answer (accept, accept with the first subprotocol, reject) or the
client's subprotocols. Bits 4-5: max_message_size from `MESSAGE_LIMITS`
(it bounds a plain request's body and a refusal's body).

Invariants: nothing raises; at most one request event, then perhaps a
HandshakeFailed; a refused request is answered with the event's status
(one of 400, 413, 426, 431, 501, 505) and the connection closes; what the
server accepts, a client that made that offer accepts (the 101 response
passes the client's checks, the deflate response its validation); bodies
respect their limits; a client opens only on a 101 that names what it
offered.
"""

from __future__ import annotations

import re
from typing import Any

from _common import (
    MESSAGE_LIMITS,
    QUIET,
    chunks,
    main,
    new_client,
    split_input,
    with_accept,
)

from wsproto_core import (
    BytesFragment,
    BytesMessage,
    CloseReceived,
    ConnectionFailed,
    HandshakeAccepted,
    HandshakeFailed,
    HandshakeRejected,
    HandshakeRequest,
    HttpRequest,
    PerMessageDeflate,
    Ping,
    Pong,
    ServerConnection,
    State,
    TextFragment,
    TextMessage,
)
from wsproto_core.deflate import client_agreement
from wsproto_core.handshake import ClientOffer, accept_token, check_accept_response
from wsproto_core.http import parse_response_head

_TOKEN = re.compile(r"[!#$%&'*+\-.^_`|~0-9A-Za-z]+")
_REFUSALS = frozenset({400, 413, 426, 431, 501, 505})
_FRAME_EVENTS = (
    TextMessage,
    BytesMessage,
    TextFragment,
    BytesFragment,
    Ping,
    Pong,
    CloseReceived,
    ConnectionFailed,
)


def _response(data: bytes) -> tuple[int, dict[str, list[str]], bytes]:
    """Status, fields and body of the one HTTP response in `data`."""
    head, sep, body = data.partition(b"\r\n\r\n")
    assert sep, f"no complete response head in {data[:200]!r}"
    parsed = parse_response_head(head, max_header_count=1000)
    fields: dict[str, list[str]] = {}
    for name, value in parsed.headers:
        fields.setdefault(name.lower(), []).append(value)
    return parsed.status, fields, body


def _check_refusal(server: Any, out: bytes, event: HandshakeFailed) -> None:
    assert event.status in _REFUSALS, event
    assert server.state is State.CLOSED
    assert server.should_close_transport
    status, fields, body = _response(out)
    assert status == event.status, (status, event)
    assert fields["content-length"] == [str(len(body))]
    assert body == (event.reason + "\n").encode("utf-8")


def fuzz_server(payload: bytes, seed: int, mode: int, limit: int | None) -> None:
    compression = PerMessageDeflate() if mode & 2 else None
    server = ServerConnection(max_message_size=limit, compression=compression, **QUIET)
    events: list[Any] = []
    out = b""
    for chunk in chunks(payload, seed):
        if server.state is State.CLOSED:
            assert server.receive_data(chunk) == []
            continue
        events += server.receive_data(chunk)
        out += server.data_to_send()
    assert len(events) <= 2, events
    if events and type(events[-1]) is HandshakeFailed:
        _check_refusal(server, out, events[-1])
        assert all(type(e) in (HandshakeRequest, HttpRequest) for e in events[:-1]), events
        return
    assert out == b"", "the server answered before the application did"
    if not events:
        eof = server.receive_eof()
        assert len(eof) == 1
        assert type(eof[0]) is HandshakeFailed
        assert eof[0].status is None
        assert server.state is State.CLOSED
        assert server.data_to_send() == b""
        return
    [event] = events
    if type(event) is HttpRequest:
        assert event.path + ("?" if "?" in event.target else "") + event.query == event.target
        assert limit is None or len(event.body) <= limit
        declared = event.headers.get_all("Content-Length")
        assert len(event.body) == (int(declared[0]) if declared else 0)
        server.respond(200, body=b"ok")
        status, _, body = _response(server.data_to_send())
        assert status == 200
        assert body == (b"" if event.method == "HEAD" else b"ok")
        assert server.state is State.CLOSED
        assert server.should_close_transport
        return
    assert type(event) is HandshakeRequest
    _answer_upgrade(server, event, (mode >> 2) & 3)


def _answer_upgrade(server: Any, request: HandshakeRequest, action: int) -> None:
    assert request.target.startswith("/")
    assert request.host
    assert request.path + ("?" if "?" in request.target else "") + request.query == request.target
    for name in request.subprotocols:
        assert name
        assert name == name.strip(" \t")
        assert "," not in name
    if action == 3:
        server.reject(403)
        status, _, _ = _response(server.data_to_send())
        assert status == 403
        assert server.state is State.CLOSED
        return
    subprotocol = request.subprotocols[0] if action == 2 and request.subprotocols else None
    assert subprotocol is None or _TOKEN.fullmatch(subprotocol), subprotocol
    early = server.accept(subprotocol=subprotocol)
    assert server.state in (State.OPEN, State.CLOSED)  # early frames may close it at once
    assert all(isinstance(e, _FRAME_EVENTS) for e in early), early
    out = server.data_to_send()
    status, fields, _ = _response(out)
    assert status == 101
    key = request.headers.get("Sec-WebSocket-Key")
    assert key is not None
    assert fields["sec-websocket-accept"] == [accept_token(key)]
    # What the server accepted, the client that offered it accepts.
    head = parse_response_head(out.partition(b"\r\n\r\n")[0], max_header_count=1000)
    offer = ClientOffer(key=key, subprotocols=request.subprotocols, extensions=request.extensions)
    chosen, accepted = check_accept_response(head, offer)
    assert chosen == subprotocol
    assert accepted == server.extensions
    if accepted:
        assert server.compression_settings is not None
        agreement = client_agreement(accepted, PerMessageDeflate(peer_window_bits=None))
        assert agreement is not None


def fuzz_client(payload: bytes, seed: int, mode: int, limit: int | None) -> None:
    compression = bool(mode & 2)
    subprotocols = (("chat", "superchat"), (), ("v1",), ("a", "b", "c"))[(mode >> 2) & 3]
    client, accept = new_client(
        streaming=False, max_message_size=limit, deflate=compression, subprotocols=subprotocols
    )
    events: list[Any] = []
    for chunk in chunks(with_accept(payload, accept), seed):
        events += client.receive_data(chunk)
    events += client.receive_eof()
    assert events, "the end of input must end the handshake"
    first = events[0]
    if type(first) is HandshakeAccepted:
        assert first.subprotocol is None or first.subprotocol in subprotocols
        for extension in first.extensions:
            assert compression, extension
            assert extension.name == "permessage-deflate", extension
        assert len(first.extensions) <= 1
        rest = events[1:]
        assert all(isinstance(e, _FRAME_EVENTS) for e in rest), rest
        assert rest
        assert type(rest[-1]) in (ConnectionFailed, CloseReceived)
    else:
        assert len(events) == 1, events
        if type(first) is HandshakeRejected:
            assert first.status != 101
            assert 100 <= first.status <= 599  # (RFC 9110, section 15)
            assert len(first.body) <= (limit or 1 << 20)
        else:
            assert type(first) is HandshakeFailed, first
        assert client.state is State.CLOSED
        assert client.should_close_transport
    assert client.receive_data(b"x") == []


def TestOneInput(data: bytes) -> None:  # noqa: N802 - the name atheris and libFuzzer use
    given = split_input(data)
    limit = MESSAGE_LIMITS[(given.mode >> 4) & 3]
    if given.mode & 1:
        fuzz_client(given.payload, given.chunk_seed, given.mode, limit)
    else:
        fuzz_server(given.payload, given.chunk_seed, given.mode, limit)


if __name__ == "__main__":
    main(TestOneInput)
