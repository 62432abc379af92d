"""What the harnesses share: the input layout, chunking, instrumented
imports, opened connections, and the invariants of a connection reading
frames.

Every harness reads its input the same way, so that one seed format and one
corpus generator serve them all:

    byte 0      mode: which configuration the harness sets up (its bits
                are read differently by each harness)
    bytes 1-2   chunking seed (little-endian): 0 feeds the payload in one
                call, anything else seeds the chunk sizes
    bytes 3-    the payload: the bytes from outside the process

Chunking is fuzzer-chosen because the parsers are incremental: most of
their state (a split header, a partial UTF-8 sequence, an unfinished RESP
line) only exists between two calls.
"""

from __future__ import annotations

import functools
import os
import random
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import atheris

# Instrument the code under test so that libFuzzer sees its branches, but
# only when a harness runs as a fuzzer: under pytest the modules are
# already imported plainly (and coverage.py measures them), and rewriting
# their bytecode there would only slow the suite down.
INSTRUMENT = "pytest" not in sys.modules and not os.environ.get("FUZZ_NO_INSTRUMENT")

if INSTRUMENT:
    with atheris.instrument_imports():
        import wsproto_core
        import wsproto_core.client
        import wsproto_core.deflate
        import wsproto_core.extensions
        import wsproto_core.frames
        import wsproto_core.handshake
        import wsproto_core.server
else:
    import wsproto_core
    import wsproto_core.client
    import wsproto_core.deflate
    import wsproto_core.extensions
    import wsproto_core.frames
    import wsproto_core.handshake
    import wsproto_core.server

from wsproto_core import (  # noqa: E402 - after the instrumented imports
    BytesFragment,
    BytesMessage,
    ClientConnection,
    CloseReceived,
    ConnectionFailed,
    PerMessageDeflate,
    Ping,
    Pong,
    ServerConnection,
    State,
    TextFragment,
    TextMessage,
)
from wsproto_core.frames import is_sendable_close_code  # noqa: E402

FIXED_KEY = "dGhlIHNhbXBsZSBub25jZQ=="  # RFC 6455's example key
FIXED_ACCEPT = "s3pPLMBiTxaQ9kYGzzhZRbK+xOo="

# The harnesses use small limits so that the fuzzer reaches them with
# inputs of a few KiB; the mode byte picks one.
MESSAGE_LIMITS = (None, 16, 200, 1000)


@dataclass(frozen=True, slots=True)
class Input:
    mode: int
    chunk_seed: int
    payload: bytes


def split_input(data: bytes) -> Input:
    """The layout of the module docstring, read with FuzzedDataProvider."""
    fdp = atheris.FuzzedDataProvider(data)
    mode = fdp.ConsumeUInt(1)
    seed = fdp.ConsumeUInt(2)
    return Input(mode, seed, fdp.ConsumeBytes(fdp.remaining_bytes()))


def chunks(payload: bytes, seed: int) -> Iterator[bytes]:
    """`payload` cut into pieces whose sizes `seed` chooses (0: whole).

    Mostly small pieces (1-16 bytes), sometimes larger ones, so that a
    header, a mask or a UTF-8 sequence is often split.
    """
    if seed == 0 or not payload:
        yield payload
        return
    rng = random.Random(seed)  # noqa: S311 - a chunking schedule, not a secret
    pos = 0
    while pos < len(payload):
        size = rng.randint(1, 16) if rng.random() < 0.8 else rng.randint(17, 512)
        yield payload[pos : pos + size]
        pos += size


# -- opened connections ------------------------------------------------------

QUIET: dict[str, Any] = {
    "open_timeout": None,
    "ping_interval": None,
    "ping_timeout": None,
    "close_timeout": None,
}


def upgrade_request(extensions: str | None = None) -> bytes:
    lines = [
        "GET /chat HTTP/1.1",
        "Host: example.com",
        "Upgrade: websocket",
        "Connection: Upgrade",
        f"Sec-WebSocket-Key: {FIXED_KEY}",
        "Sec-WebSocket-Version: 13",
    ]
    if extensions is not None:
        lines.append(f"Sec-WebSocket-Extensions: {extensions}")
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")


def switching_response(extensions: str | None = None, accept: str = FIXED_ACCEPT) -> bytes:
    lines = [
        "HTTP/1.1 101 Switching Protocols",
        "Upgrade: websocket",
        "Connection: Upgrade",
        f"Sec-WebSocket-Accept: {accept}",
    ]
    if extensions is not None:
        lines.append(f"Sec-WebSocket-Extensions: {extensions}")
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")


# The offers a deflate harness negotiates, by mode: what the peer's
# compressed messages must then keep to (the window, the context reset).
DEFLATE_OFFERS = (
    "permessage-deflate; client_max_window_bits",  # receive window 12 (our peer_window_bits)
    "permessage-deflate; client_max_window_bits; client_no_context_takeover",
    "permessage-deflate",  # the client cannot be limited: window 15
    "permessage-deflate; client_max_window_bits=9; client_no_context_takeover",
)


def opened_server(*, streaming: bool, max_message_size: int | None, deflate: int | None) -> Any:
    """A ServerConnection past its handshake (permessage-deflate negotiated
    with offer `DEFLATE_OFFERS[deflate]` unless `deflate` is None)."""
    compression = None if deflate is None else PerMessageDeflate()
    server = ServerConnection(
        streaming=streaming, max_message_size=max_message_size, compression=compression, **QUIET
    )
    offer = None if deflate is None else DEFLATE_OFFERS[deflate]
    events = server.receive_data(upgrade_request(offer))
    assert len(events) == 1, events
    server.accept()
    server.data_to_send()
    assert server.state is State.OPEN
    assert (deflate is None) == (not server.extensions), server.extensions
    return server


def opened_client(*, streaming: bool, max_message_size: int | None, deflate: bool) -> Any:
    """A ClientConnection past its handshake, permessage-deflate accepted if `deflate`."""
    client, accept = new_client(
        streaming=streaming, max_message_size=max_message_size, deflate=deflate
    )
    answer = "permessage-deflate; server_max_window_bits=12" if deflate else None
    events = client.receive_data(with_accept(switching_response(answer), accept))
    assert len(events) == 1, events
    assert client.state is State.OPEN
    return client


def new_client(
    *,
    streaming: bool,
    max_message_size: int | None,
    deflate: bool,
    subprotocols: tuple[str, ...] = (),
) -> tuple[Any, bytes]:
    """A fresh ClientConnection, and the Sec-WebSocket-Accept that answers it.

    The client's key is random, so inputs carry `FIXED_ACCEPT` (the answer
    to RFC 6455's example key) and the harness puts this one in its place
    (`with_accept`): same length, so the input's cuts do not move. (Fixing
    the key instead, by patching the core, does not reach compiled code.)
    """
    client = ClientConnection(
        "example.com",
        "/chat",
        subprotocols=subprotocols,
        streaming=streaming,
        max_message_size=max_message_size,
        compression=PerMessageDeflate() if deflate else None,
        **QUIET,
    )
    request = client.data_to_send()
    key = request.split(b"Sec-WebSocket-Key: ", 1)[1].split(b"\r\n", 1)[0]
    return client, wsproto_core.handshake.accept_token(key.decode()).encode()


def with_accept(data: bytes, accept: bytes) -> bytes:
    """`data` answering the client whose accept value is `accept`."""
    return data.replace(FIXED_ACCEPT.encode(), accept)


# -- an independent reader of what the connection sends ------------------------


def parse_frames(data: bytes, *, masked: bool) -> list[tuple[int, int, bytes]]:
    """(fin+rsv+opcode byte, opcode, unmasked payload) of each frame in
    `data`, which must be whole frames; written apart from the core's
    reader so that a bug there cannot hide one in the writer."""
    frames = []
    pos = 0
    while pos < len(data):
        b0, b1 = data[pos], data[pos + 1]
        assert bool(b1 & 0x80) == masked, f"mask bit wrong in {data[pos : pos + 2]!r}"
        length = b1 & 0x7F
        pos += 2
        if length == 126:
            length = int.from_bytes(data[pos : pos + 2], "big")
            pos += 2
        elif length == 127:
            length = int.from_bytes(data[pos : pos + 8], "big")
            pos += 8
        key = b""
        if masked:
            key = data[pos : pos + 4]
            pos += 4
        payload = data[pos : pos + length]
        assert len(payload) == length, "truncated frame in data_to_send()"
        if masked:
            payload = bytes(c ^ key[i % 4] for i, c in enumerate(payload))
        pos += length
        frames.append((b0, b0 & 0x0F, payload))
    return frames


# -- the invariants of a connection reading frames ----------------------------

_OPEN_EVENTS = (TextMessage, BytesMessage, Ping, Pong, CloseReceived, ConnectionFailed)
_STREAM_EVENTS = (TextFragment, BytesFragment, Ping, Pong, CloseReceived, ConnectionFailed)
_CONTROL = (Ping, Pong, CloseReceived)
# The codes the core fails a connection with when the peer is at fault
# (RFC 6455 section 7.4.1): protocol error, bad data, too big; and 1006
# for an end of file with no close frame.
_FAILURE_CODES = frozenset({1002, 1007, 1009, 1006})


class FrameChecker:
    """Feeds one opened connection and checks every call against the
    documented behaviour; `summary()` is what must not depend on the
    chunking."""

    def __init__(self, conn: Any, *, streaming: bool, max_message_size: int | None) -> None:
        self.conn = conn
        self.streaming = streaming
        self.limit = max_message_size
        self.masked = conn.is_client  # a client masks what it sends
        self.close_sent = False
        self.ended = False  # ConnectionFailed or CloseReceived seen
        self.log: list[tuple[object, ...]] = []  # completed messages and control events
        self.pieces: list[str | bytes] = []  # the streaming message being assembled
        self.piece_kind: type | None = None

    def feed(self, chunk: bytes) -> None:
        conn = self.conn
        before = conn.state
        was_pending = conn.failure_pending
        events = conn.receive_data(chunk)  # documented never to raise
        self._check_batch(events, before, was_pending)

    def finish(self) -> None:
        """Apply a held failure and end the input, as an adapter would."""
        conn = self.conn
        before = conn.state
        if conn.failure_pending:
            events = conn.apply_pending_failure()
            assert len(events) == 1, events
            assert type(events[0]) is ConnectionFailed, events
            self._check_batch(events, before, True)
            before = conn.state
        assert not conn.failure_pending
        events = conn.receive_eof()
        self._check_batch(events, before, False, eof=True)
        assert conn.state is State.CLOSED
        if not conn.is_client:
            assert conn.should_close_transport
        # Nothing more comes out of a closed connection.
        assert conn.receive_data(b"\x81\x80\x00\x00\x00\x00") == []
        assert conn.data_to_send() == b""

    def summary(self) -> list[tuple[object, ...]]:
        return [*self.log, ("state", self.conn.state, self.conn.close_code)]

    def _check_batch(
        self, events: list[Any], before: State, was_pending: bool, *, eof: bool = False
    ) -> None:
        conn = self.conn
        out = parse_frames(conn.data_to_send(), masked=self.masked)
        if self.ended or before is State.CLOSED:
            assert events == [], events
            assert out == [], out
            return
        allowed = _STREAM_EVENTS if self.streaming else _OPEN_EVENTS
        expected_out: list[tuple[int, bytes | int | None]] = []
        fragments = finals = controls = 0
        event: Any
        for index, event in enumerate(events):
            assert type(event) in allowed, f"unexpected event {event!r}"
            last = index == len(events) - 1
            if type(event) is TextMessage:
                self._check_size(len(event.data.encode("utf-8")))  # strict: no surrogates
                self.log.append(("text", event.data))
            elif type(event) is BytesMessage:
                assert type(event.data) is bytes
                self._check_size(len(event.data))
                self.log.append(("bytes", event.data))
            elif type(event) in (TextFragment, BytesFragment):
                fragments += 1
                finals += event.final
                self._piece(event)
            elif type(event) is Ping or type(event) is Pong:
                controls += 1
                assert type(event.payload) is bytes
                assert len(event.payload) <= 125
                self.log.append((type(event).__name__, event.payload))
                if type(event) is Ping:
                    expected_out.append((0xA, event.payload))
            elif type(event) is CloseReceived:
                controls += 1
                assert last, "events after CloseReceived"
                assert event.code == 1005 or is_sendable_close_code(event.code), event
                event.reason.encode("utf-8")
                assert len(event.reason.encode("utf-8")) <= 123
                self.log.append(("close", event.code, event.reason))
                if before is State.OPEN:
                    expected_out.append((0x8, None if event.code == 1005 else event.code))
                assert conn.state is State.CLOSED
                assert conn.close_code == event.code
                assert conn.should_close_transport != conn.is_client
                self.ended = True
            else:  # ConnectionFailed
                assert last, "events after ConnectionFailed"
                assert event.code in _FAILURE_CODES, event
                assert (event.code == 1006) == eof, event
                self.log.append(("failed", event.code))
                if event.code != 1006:
                    expected_out.append((0x8, event.code))
                assert conn.state is State.CLOSED
                assert conn.should_close_transport
                assert conn.close_code == event.code
                self.ended = True
        # One piece per message per call, more only where a control frame
        # cuts a message (TextFragment's documented promise).
        assert fragments <= controls + finals + 1, (fragments, controls, finals)
        if conn.failure_pending:
            # Held only behind messages of the same batch.
            assert any(
                isinstance(e, (TextMessage, BytesMessage, TextFragment, BytesFragment))
                for e in events
            ), events
            assert conn.state is State.OPEN
        if was_pending and events:
            assert type(events[-1]) is ConnectionFailed
        self._check_out(out, expected_out)

    def _check_out(self, out: list[tuple[int, int, bytes]], expected: list[Any]) -> None:
        assert len(out) == len(expected), (out, expected)
        for (b0, opcode, payload), (want_op, want) in zip(out, expected, strict=True):
            assert not self.close_sent, "a frame after our close frame"
            assert b0 & 0xF0 == 0x80, f"control frame with RSV or without FIN: {b0:#x}"
            assert opcode == want_op, (opcode, want_op)
            assert len(payload) <= 125
            if opcode == 0xA:
                assert payload == want, "pong payload differs from the ping's"
                continue
            self.close_sent = True
            if want is None:
                assert payload == b""
                continue
            assert int.from_bytes(payload[:2], "big") == want
            assert is_sendable_close_code(want)
            payload[2:].decode("utf-8")

    def _check_size(self, size: int) -> None:
        if self.limit is not None:
            assert size <= self.limit, f"message of {size} bytes over the {self.limit} limit"

    def _piece(self, event: Any) -> None:
        kind = type(event)
        if self.piece_kind is None:
            self.piece_kind = kind
        assert kind is self.piece_kind, "text and binary pieces mixed in one message"
        if kind is TextFragment:
            event.data.encode("utf-8")  # whole characters only
        else:
            assert type(event.data) is bytes
        self.pieces.append(event.data)
        if event.final:
            whole: Any = "".join(self.pieces) if kind is TextFragment else b"".join(self.pieces)  # type: ignore[arg-type]
            size = len(whole.encode("utf-8")) if kind is TextFragment else len(whole)
            self._check_size(size)
            self.log.append(("text" if kind is TextFragment else "bytes", whole))
            self.pieces = []
            self.piece_kind = None
        else:
            size = sum(len(p.encode("utf-8") if isinstance(p, str) else p) for p in self.pieces)
            self._check_size(size)


def check_frames(
    payload: bytes,
    seed: int,
    make: Any,
    *,
    streaming: bool,
    max_message_size: int | None,
) -> None:
    """Feed `payload` to a connection from `make()` in the chunks `seed`
    picks and check each call; then feed it whole to another and require
    the same messages, control events and ending (chunking invariance)."""
    chunked = FrameChecker(make(), streaming=streaming, max_message_size=max_message_size)
    for chunk in chunks(payload, seed):
        chunked.feed(chunk)
    chunked.finish()
    if seed == 0:
        return
    whole = FrameChecker(make(), streaming=streaming, max_message_size=max_message_size)
    whole.feed(payload)
    whole.finish()
    a, b = chunked.summary(), whole.summary()
    assert a == b, (a, b)


def server_frames(data: bytes, *, streaming: bool) -> None:
    """The input of `server_whole` and `server_streaming`: mode byte (bits
    0-1 pick max_message_size from `MESSAGE_LIMITS`), chunking seed, then
    what a client sends after its upgrade request, without compression."""
    given = split_input(data)
    limit = MESSAGE_LIMITS[given.mode & 3]
    make = functools.partial(
        opened_server, streaming=streaming, max_message_size=limit, deflate=None
    )
    check_frames(given.payload, given.chunk_seed, make, streaming=streaming, max_message_size=limit)


def main(test_one_input: Any) -> None:
    """Run a harness under libFuzzer with the command line's arguments."""
    atheris.Setup(sys.argv, test_one_input)
    atheris.Fuzz()
