"""What both roles share once the handshake is done: messages, control frames,
the close handshake, failing the connection, and the timers.

The connection is a state machine with one outbound buffer. Everything it
must send on its own (a Pong, the Close reply, a close frame with an error
code, a keepalive Ping) goes into that buffer, so an adapter's whole job is:
feed bytes in, act on events, write `data_to_send()`, close the transport
when `should_close_transport` says so, and sleep until `next_deadline(now)`.

States and transitions, in one place (the handshake phases of each role are
in `server.py` and `client.py`; "transport" means: `should_close_transport`
becomes True, so flush and close it):

    CONNECTING --HandshakeAccepted (client) / accept() (server)--> OPEN
    CONNECTING --HandshakeRejected, HandshakeFailed, respond(), reject(),
                 open timer, receive_eof()--> CLOSED + transport
    OPEN --close()--> CLOSING (close frame queued, close timer started)
    OPEN --CloseReceived--> CLOSED (close echoed); server: + transport;
                            client: close timer, transport on EOF or timer
    OPEN --violation, pong timer, receive_eof()--> CLOSED + transport
         (ConnectionFailed; a close frame with the code unless it is 1006)
    OPEN --violation after messages of the same batch, or with
           `defer_failure`--> OPEN with `failure_pending`
    OPEN with `failure_pending` --apply_pending_failure(), receive_data(),
           close(), receive_eof()--> CLOSED + transport (ConnectionFailed)
    CLOSING --CloseReceived--> CLOSED; server: + transport (client as above)
    CLOSING --violation, close timer, receive_eof()--> CLOSED + transport
    CLOSED --receive_eof() (client), close timer (client)--> transport

A held failure (`failure_pending`) is the one state an adapter steers: the
peer broke the protocol right after messages the application has not
answered yet, and RFC 6455's strict reading (and the Autobahn testsuite)
wants those answers written before the close frame. The core holds the
failure when the same batch carried messages; an adapter whose application
still holds one (taken, not yet answered) asks for it with
`receive_data(..., defer_failure=True)`; and it calls
`apply_pending_failure()` once the application asks for more and there is
nothing left to give it.
"""

from __future__ import annotations

import enum
import os
from typing import TypedDict

from .broadcast import PreparedMessage
from .compression import MessageCompressor, MessageDecompressor
from .deflate import ZLIB_MIN_WINDOW_BITS, Agreement, PerMessageDeflate
from .errors import LocalProtocolError
from .events import (
    BytesFragment,
    BytesMessage,
    CloseReceived,
    ConnectionFailed,
    Event,
    HandshakeFailed,
    Ping,
    Pong,
    TextFragment,
    TextMessage,
)
from .extensions import ExtensionOffer
from .frames import MAX_CONTROL_PAYLOAD, CloseCode, Opcode, build_close_payload
from .masking import Buffer
from .reader import FrameReader
from .timers import Timer, TimerSet
from .writer import FrameWriter

DEFAULT_MAX_MESSAGE_SIZE = 1 << 20
DEFAULT_MAX_HANDSHAKE_SIZE = 16 * 1024
DEFAULT_MAX_HEADER_COUNT = 100


# The reason of the HandshakeFailed that `open_timeout` ends a handshake with.
OPEN_TIMED_OUT = "opening handshake timed out"


class ConnectionOptions(TypedDict, total=False):
    """The keyword options every connection takes, for both roles and all adapters."""

    max_message_size: int | None
    max_frame_size: int | None
    max_handshake_size: int
    max_header_count: int
    streaming: bool
    open_timeout: float | None
    ping_interval: float | None
    ping_timeout: float | None
    close_timeout: float | None
    compression: PerMessageDeflate | None


class State(enum.Enum):
    CONNECTING = "connecting"  # opening handshake in progress
    OPEN = "open"
    CLOSING = "closing"  # we sent a close frame and wait for the peer's
    CLOSED = "closed"  # close handshake done, connection failed, or HTTP answered


_TEXT, _BINARY, _CONT = int(Opcode.TEXT), int(Opcode.BINARY), int(Opcode.CONTINUATION)
_RSV1 = 0x40
_OPEN = State.OPEN
_DATA_EVENTS = (TextMessage, BytesMessage, TextFragment, BytesFragment)
_BYTES_LIKE = (bytes, bytearray, memoryview)


def _check_size(name: str, value: int | None) -> int | None:
    if value is not None and (not isinstance(value, int) or value <= 0):
        raise ValueError(f"{name} must be a positive integer or None, not {value!r}")
    return value


def _check_head_limit(name: str, value: int) -> int:
    """A bound on the HTTP head is never lifted: a peer could send headers
    for ever before the connection knows what it is."""
    if not isinstance(value, int) or value <= 0:
        raise ValueError(f"{name} must be a positive integer, not {value!r}")
    return value


def _check_delay(name: str, value: float | None) -> float | None:
    if value is not None and not value > 0:
        raise ValueError(f"{name} must be a positive number of seconds or None, not {value!r}")
    return value


class Connection:
    """Base of `ServerConnection` and `ClientConnection`; not made directly.

    Limits: `max_message_size` bounds a reassembled message (1009 past it,
    decided from frame headers before any payload is kept); `max_frame_size`
    bounds one frame; None lifts either. `max_handshake_size` and
    `max_header_count` bound the HTTP head, always.

    Timers, in seconds on whatever monotonic clock the adapter uses (None
    turns one off): `open_timeout` for the opening handshake;
    `ping_interval` between keepalive pings and `ping_timeout` for their
    pong (1011 past it); `close_timeout` for the close handshake and, on the
    client, for the server to close TCP afterwards.

    `streaming=True` delivers TextFragment/BytesFragment as payload arrives
    instead of whole messages.

    `compression`: permessage-deflate settings to offer (client) or accept
    (server); None, the default here, leaves the extension out. With it,
    `max_message_size` bounds the decompressed size.
    """

    # Slotted: a server holds one per client, and a dict per connection
    # cost more than websockets' whole idle connection.
    __slots__ = (
        "_client",
        "_close_timeout",
        "_compressor",
        "_keepalive_payloads",
        "_min_compressed_size",
        "_out",
        "_ping_interval",
        "_ping_timeout",
        "_reader",
        "_reading_frames",
        "_sending_opcode",
        "_sending_rsv",
        "_shared_window",
        "_should_close_transport",
        "_state",
        "_timers",
        "_unsent_pong_bytes",
        "_writer",
        "close_code",
        "close_reason",
        "compression_settings",
        "extensions",
        "max_frame_size",
        "max_handshake_size",
        "max_header_count",
        "max_message_size",
        "streaming",
        "subprotocol",
    )

    def _configure(
        self,
        *,
        client: bool,
        max_message_size: int | None = DEFAULT_MAX_MESSAGE_SIZE,
        max_frame_size: int | None = None,
        max_handshake_size: int = DEFAULT_MAX_HANDSHAKE_SIZE,
        max_header_count: int = DEFAULT_MAX_HEADER_COUNT,
        streaming: bool = False,
        open_timeout: float | None = 10.0,
        ping_interval: float | None = 20.0,
        ping_timeout: float | None = 20.0,
        close_timeout: float | None = 10.0,
        compression: PerMessageDeflate | None = None,
    ) -> None:
        """The base's part of `__init__`, called by each role's `__init__`.

        Not `__init__` itself: a compiled (mypyc) subclass forwarding
        `**options` to a compiled `super().__init__` passes them wrongly.
        """
        self._client = client
        self.max_message_size = _check_size("max_message_size", max_message_size)
        self.max_frame_size = _check_size("max_frame_size", max_frame_size)
        self.max_handshake_size = _check_head_limit("max_handshake_size", max_handshake_size)
        self.max_header_count = _check_head_limit("max_header_count", max_header_count)
        self.streaming = streaming
        self._ping_interval = _check_delay("ping_interval", ping_interval)
        self._ping_timeout = _check_delay("ping_timeout", ping_timeout)
        self._close_timeout = _check_delay("close_timeout", close_timeout)
        if compression is not None and not isinstance(compression, PerMessageDeflate):
            raise TypeError("compression takes PerMessageDeflate(...) or None")
        self.compression_settings = compression
        self._compressor: MessageCompressor | None = None
        self._min_compressed_size = 0
        self._sending_rsv = 0  # RSV1 while a compressed fragmented message is being sent
        self._shared_window: int | None = None if client else 0

        self._state = State.CONNECTING
        self._out: list[bytes] = []
        self._writer = FrameWriter(mask=client, out=self._out)
        self._reader: FrameReader | None = None
        self._reading_frames = False
        self._sending_opcode = 0  # opcode of a fragmented message we are sending
        self._keepalive_payloads: set[bytes] = set()
        self._unsent_pong_bytes = 0
        self._should_close_transport = False
        self._timers = TimerSet()
        self._timers.start(Timer.OPEN, _check_delay("open_timeout", open_timeout))

        self.subprotocol: str | None = None
        self.extensions: tuple[ExtensionOffer, ...] = ()
        self.close_code: int | None = None
        self.close_reason: str = ""

    # -- what the adapter asks ------------------------------------------------

    @property
    def state(self) -> State:
        return self._state

    @property
    def is_client(self) -> bool:
        return self._client

    @property
    def should_close_transport(self) -> bool:
        """Flush `data_to_send()`, then close the socket.

        True after failing the connection, after an HTTP response, and after
        the close handshake: at once on the server (which closes TCP first,
        RFC 6455 section 7.1.1), and on the client once the server has
        closed its side (`receive_eof`) or `close_timeout` has passed.
        """
        return self._should_close_transport

    @property
    def failure_pending(self) -> bool:
        """The peer broke the protocol after messages that the last
        `receive_data` returned (or with `defer_failure`): see the state
        table at the top of this module. `apply_pending_failure()` (or any
        later `receive_data`, whose bytes are then ignored) fails the
        connection; `close()` and `receive_eof()` apply it first.
        """
        reader = self._reader
        return self._reading_frames and reader is not None and reader.failure is not None

    def apply_pending_failure(self) -> list[Event]:
        """Fail the connection for a held violation, now that the application
        has answered the messages before it; [ConnectionFailed], or [] if
        no failure is pending."""
        if not self.failure_pending:
            return []
        reader = self._reader
        assert reader is not None
        events: list[Event] = []
        self._react_to_frames(reader, events)
        return events

    @property
    def unsent_pong_bytes(self) -> int:
        """Bytes of pongs queued and not yet taken by `data_to_send()`.

        Each is owed (Autobahn expects every ping answered), so a peer that
        floods pings while not reading would grow this without bound; an
        adapter that cannot write should stop reading once it passes its
        write limit."""
        return self._unsent_pong_bytes

    @property
    def has_data_to_send(self) -> bool:
        """Whether `data_to_send()` would return anything (without taking it)."""
        return bool(self._out)

    def data_to_send(self) -> bytes:
        """Everything queued for the wire since the last call, in order."""
        out = self._out
        if not out:
            return b""
        data = out[0] if len(out) == 1 else b"".join(out)
        out.clear()
        self._unsent_pong_bytes = 0
        return data

    def chunks_to_send(self) -> list[bytes]:
        """Like `data_to_send()`, but the pieces unjoined, for scatter-gather
        writes (`socket.sendmsg`, `transport.writelines`): a large payload
        then reaches the kernel without being copied once more."""
        chunks = self._out[:]
        self._out.clear()
        self._unsent_pong_bytes = 0
        return chunks

    # -- input ---------------------------------------------------------------

    def receive_data(self, data: Buffer, *, defer_failure: bool = False) -> list[Event]:
        """Feed bytes from the transport; never raises on anything the peer sent.

        Any bytes-like object is accepted (bytes, bytearray, memoryview).
        With `defer_failure`, a violation found in these bytes is held as
        `failure_pending` even if no message came before it in this batch:
        for an adapter whose application has a message in hand it has not
        answered yet (a thread that took it, say), so that its answer goes
        out before the close frame, as it would had the bytes come later."""
        if self._reading_frames:
            reader = self._reader
            assert reader is not None
            events = reader.feed(data)
            if reader.control_seen or reader.failure is not None:
                self._react_to_frames(reader, events, defer_failure)
            return events
        if self._state is State.CONNECTING:
            return self._receive_handshake_data(data)
        return []  # after the close, input is ignored

    def receive_eof(self) -> list[Event]:
        """The transport reached end of file (the peer closed or shut down writing)."""
        if self.failure_pending:
            return self.apply_pending_failure()
        events: list[Event] = []
        if self._state is State.CONNECTING:
            self._receive_handshake_eof(events)
        elif self._state is State.CLOSED:
            self._should_close_transport = True
        elif self._state is State.CLOSING:
            self._fail(CloseCode.ABNORMAL_CLOSURE, "peer closed before answering our close", events)
        else:
            self._fail(CloseCode.ABNORMAL_CLOSURE, "peer closed without a close frame", events)
        return events

    def _receive_handshake_data(self, data: Buffer) -> list[Event]:
        raise NotImplementedError  # pragma: no cover - each role implements it

    def _receive_handshake_eof(self, events: list[Event]) -> None:
        raise NotImplementedError  # pragma: no cover - each role implements it

    def _react_to_frames(
        self, reader: FrameReader, events: list[Event], defer_failure: bool = False
    ) -> None:
        """Do what the RFC asks when control frames or an error arrive."""
        if reader.control_seen:
            reader.control_seen = False
            for event in events:
                if type(event) is Ping:
                    if self._state is State.OPEN:
                        self._queue_pong(event.payload)
                elif type(event) is Pong:
                    if event.payload in self._keepalive_payloads:
                        self._keepalive_payloads.clear()
                        self._timers.cancel(Timer.PONG)
                elif type(event) is CloseReceived:
                    self._close_received(event)
        if reader.failure is not None:
            if defer_failure or any(type(event) in _DATA_EVENTS for event in events):
                return  # reported by the next call: see `failure_pending`
            self._fail(reader.failure.code, reader.failure.reason, events)

    def _queue_pong(self, payload: bytes) -> None:
        """Answer a ping, counting what we owe: see `unsent_pong_bytes`."""
        out = self._out
        self._writer.write(Opcode.PONG, payload)
        self._unsent_pong_bytes += len(out[-1])

    def _close_received(self, event: CloseReceived) -> None:
        if self._state is State.OPEN:
            # Echo the code (without the reason), or nothing if none came.
            code = None if event.code == CloseCode.NO_STATUS_RCVD else event.code
            self._writer.write(Opcode.CLOSE, build_close_payload(code, ""))
        self._reading_frames = False
        self._state = State.CLOSED
        self.close_code, self.close_reason = event.code, event.reason
        self._timers.cancel_all()
        if self._client:
            self._timers.start(Timer.CLOSE, self._close_timeout)
        else:
            self._should_close_transport = True

    def _fail(self, code: int, reason: str, events: list[Event]) -> None:
        """Fail the WebSocket connection (RFC 6455 section 7.1.7)."""
        if self._state is State.OPEN and code != CloseCode.ABNORMAL_CLOSURE:
            # Cut the reason to fit, on a character boundary: a close frame
            # with broken UTF-8 would make the peer fail us with 1007.
            encoded = reason.encode("utf-8")[: MAX_CONTROL_PAYLOAD - 2]
            encoded = encoded.decode("utf-8", "ignore").encode("utf-8")
            self._writer.write(Opcode.CLOSE, code.to_bytes(2, "big") + encoded)
        self._end(code, reason)
        events.append(ConnectionFailed(code=code, reason=reason))

    def _fail_handshake(self, status: int | None, reason: str, events: list[Event]) -> None:
        self._end(CloseCode.ABNORMAL_CLOSURE, reason)
        events.append(HandshakeFailed(status=status, reason=reason))

    def _end(self, code: int | None, reason: str) -> None:
        """Enter CLOSED for good, with nothing left to wait for: the
        transport should close once what is queued has been written."""
        self._reading_frames = False
        self._state = State.CLOSED
        self.close_code, self.close_reason = code, reason
        self._timers.cancel_all()
        self._should_close_transport = True

    def _open(
        self,
        subprotocol: str | None,
        extensions: tuple[ExtensionOffer, ...],
        agreement: Agreement | None = None,
    ) -> None:
        self._state = State.OPEN
        self.subprotocol = subprotocol
        self.extensions = extensions
        decompressor = None
        settings = self.compression_settings
        if agreement is not None and settings is not None:
            decompressor = MessageDecompressor(
                window_bits=agreement.receive_window_bits, reset=agreement.reset_receive
            )
            if agreement.send_window_bits >= ZLIB_MIN_WINDOW_BITS:
                self._compressor = MessageCompressor(
                    window_bits=agreement.send_window_bits,
                    level=settings.level,
                    mem_level=settings.mem_level,
                    reset=agreement.reset_send,
                )
                self._min_compressed_size = settings.min_size
                if agreement.reset_send and not self._client:
                    self._shared_window = agreement.send_window_bits
        self._reader = FrameReader(
            expect_masked=not self._client,
            max_message_size=self.max_message_size,
            max_frame_size=self.max_frame_size,
            streaming=self.streaming,
            decompressor=decompressor,
        )
        self._reading_frames = True
        self._timers.cancel(Timer.OPEN)
        self._timers.start(Timer.PING, self._ping_interval)

    # -- commands ------------------------------------------------------------

    def _require_open(self) -> None:
        if self._state is not State.OPEN:
            if self._state is State.CONNECTING:
                raise LocalProtocolError("the opening handshake is not complete")
            raise LocalProtocolError(f"cannot send: the connection is {self._state.value}")

    def send_text(self, data: str, *, final: bool = True, compress: bool | None = None) -> None:
        """Send a text message, or with final=False the next fragment of one.

        `compress` matters only once permessage-deflate is negotiated: None
        compresses messages of at least `min_size` bytes, True compresses
        whatever the size, False sends this one plain. For a fragmented
        message the first fragment decides for the whole message.
        """
        if self._state is not _OPEN:
            self._require_open()
        if not isinstance(data, str):
            raise TypeError(f"send_text takes str, not {type(data).__name__}")
        if final and not self._sending_opcode and self._compressor is None:
            # A client masks ASCII text straight from the str (FrameWriter.write).
            self._writer.write(_TEXT, data if self._client and data.isascii() else data.encode())
        else:
            self._send_fragment(_TEXT, data.encode("utf-8"), final, compress)

    def send_bytes(self, data: Buffer, *, final: bool = True, compress: bool | None = None) -> None:
        """Send a binary message, or with final=False the next fragment of
        one; `compress` as for `send_text`."""
        if self._state is not _OPEN:
            self._require_open()
        if type(data) is not bytes and not isinstance(data, _BYTES_LIKE):
            raise TypeError(f"send_bytes takes bytes, not {type(data).__name__}")
        if final and not self._sending_opcode and self._compressor is None:
            self._writer.write(_BINARY, data)
        else:
            self._send_fragment(_BINARY, data, final, compress)

    def _send_fragment(
        self, opcode: int, payload: Buffer, final: bool, compress: bool | None
    ) -> None:
        sending = self._sending_opcode
        if sending:
            if sending != opcode:
                kind = "text" if sending == _TEXT else "binary"
                raise LocalProtocolError(f"a fragmented {kind} message is still being sent")
            rsv = 0
            compressed = self._sending_rsv
        else:
            compressor = self._compressor
            compressed = rsv = (
                _RSV1
                if compressor is not None
                and (compress or (compress is None and len(payload) >= self._min_compressed_size))
                else 0
            )
        if compressed:
            assert self._compressor is not None  # RSV1 is only chosen with one
            payload = self._compressor.compress(bytes(payload), final)
        self._writer.write(_CONT if sending else opcode, payload, final, rsv)
        self._sending_opcode = 0 if final else opcode
        self._sending_rsv = 0 if final else compressed

    @property
    def shared_frame_window(self) -> int | None:
        """Which frames of a `PreparedMessage` this connection can send:
        None on a client (its frames are masked, so never shared), 0 for
        plain frames only, or the window of the compressed frames its peer
        accepts (we negotiated no context takeover for what we send)."""
        return self._shared_window

    def send_prepared(self, message: PreparedMessage) -> int:
        """Queue a message framed once for many connections (a broadcast):
        the frame is built once per kind of connection, not once per
        connection. Server connections only. Returns the frame's size."""
        if self._state is not _OPEN:
            self._require_open()
        window = self._shared_window
        if window is None:
            raise LocalProtocolError("a client masks each frame; prepared messages are for servers")
        if self._sending_opcode:
            raise LocalProtocolError("a fragmented message is still being sent")
        frame = message.frame(window)
        self._out.append(frame)
        return len(frame)

    def send_ping(self, payload: Buffer = b"") -> None:
        self._require_open()
        self._send_control(Opcode.PING, payload)

    def send_pong(self, payload: Buffer = b"") -> None:
        """An unsolicited Pong (a unidirectional heartbeat, RFC 6455 section 5.5.3)."""
        self._require_open()
        self._send_control(Opcode.PONG, payload)

    def _send_control(self, opcode: Opcode, payload: Buffer) -> None:
        if len(payload) > MAX_CONTROL_PAYLOAD:
            raise LocalProtocolError("control frame payloads are limited to 125 bytes")
        self._writer.write(opcode, payload)

    def close(self, code: int | None = CloseCode.NORMAL_CLOSURE, reason: str = "") -> None:
        """Start the close handshake. Does nothing if it has already started.

        code=None sends a close frame without a status code (the peer sees 1005).
        """
        if self._state is State.CLOSING or self._state is State.CLOSED:
            return
        if self._state is State.CONNECTING:
            raise LocalProtocolError("the opening handshake is not complete; nothing to close")
        if self.failure_pending:
            self.apply_pending_failure()  # the peer's violation decides the close code
            return
        self._writer.write(Opcode.CLOSE, build_close_payload(code, reason))
        self._state = State.CLOSING
        self._timers.cancel_all()
        self._timers.start(Timer.CLOSE, self._close_timeout)

    # -- time ----------------------------------------------------------------

    def next_deadline(self, now: float) -> float | None:
        """When `handle_timeout` must next be called, on the adapter's clock.

        Timers started since the last call are counted from `now`, so call
        this after every step (feeding data, sending, accepting).
        """
        return self._timers.next_deadline(now)

    def handle_timeout(self, now: float) -> list[Event]:
        events: list[Event] = []
        while (timer := self._timers.pop_due(now)) is not None:
            if timer is Timer.OPEN:
                self._fail_handshake(None, OPEN_TIMED_OUT, events)
            elif timer is Timer.PING:
                self._send_keepalive(now)
            elif timer is Timer.PONG:
                self._fail(CloseCode.INTERNAL_ERROR, "keepalive ping timed out", events)
            elif self._state is State.CLOSING:
                self._fail(CloseCode.ABNORMAL_CLOSURE, "close handshake timed out", events)
            else:  # client after a clean close: the server did not close TCP in time
                self._should_close_transport = True
        return events

    def _send_keepalive(self, now: float) -> None:
        payload = os.urandom(4)
        self._keepalive_payloads.add(payload)
        self._writer.write(Opcode.PING, payload)
        self._timers.start(Timer.PING, self._ping_interval)
        if not self._timers.is_running(Timer.PONG):
            self._timers.start(Timer.PONG, self._ping_timeout)
        self._timers.next_deadline(now)  # count the new timers from now, not the next step
