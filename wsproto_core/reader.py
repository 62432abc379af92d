"""Incremental frame parser and message assembler: bytes in, events out.

This is the receive hot path, so it is written as one loop over an index into
the caller's buffer rather than as a generator or a chain of small objects:
a whole small frame costs a few integer operations, one slice and one event.

Payload is processed as it arrives rather than when a frame is complete, so
that (1) invalid UTF-8 fails the connection in the `feed` call that brought
the first bad byte, even in the middle of a frame, (2) streaming mode can
hand out partial frames, and (3) nothing but a header fragment (under 14
bytes) or a small control frame (under 132 bytes) is ever kept between calls
besides the message being assembled, whose size the limits bound before its
payload is read.

A peer chooses how finely it fragments, so nothing here is kept per frame:
the payload that one `feed` call brings for the current message is gathered
into one run and handed over once, when the call ends or a control frame or
the message's end comes first. A million one-byte fragments then cost one
event per `feed` call in streaming mode, and a message being assembled costs
about its size: one piece per call (small ones merged), not one per fragment.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Final, Protocol, Self, TypeVar

from . import masking
from .compression import InflatedTooBig, MessageDecompressor
from .errors import ProtocolViolation
from .events import (
    CloseReceived,
    Event,
    Ping,
    Pong,
    new_bytes_fragment,
    new_bytes_message,
    new_text_fragment,
    new_text_message,
)
from .frames import CloseCode, parse_close_payload
from .masking import Buffer
from .utf8 import INVALID_UTF8, Utf8Validator

_PROTOCOL_ERROR: Final = CloseCode.PROTOCOL_ERROR
_TOO_BIG: Final = CloseCode.MESSAGE_TOO_BIG

# Opcodes as plain ints: comparing ints is cheaper than IntEnum members.
# (Final: compiled, the constants are inlined instead of looked up.)
_CONT: Final = 0x0
_TEXT: Final = 0x1
_BINARY: Final = 0x2
_CLOSE: Final = 0x8
_PING: Final = 0x9
_PONG: Final = 0xA
_RSV1: Final = 0x40


# A piece of a message of at least this many characters or bytes is kept as
# it is until the message ends; smaller pieces are merged (see `_merge_small`).
_SETTLED: Final = 16 * 1024


class _Joinable(Protocol):
    """str or bytes (a constrained TypeVar would do for mypy, not for mypyc)."""

    def __len__(self) -> int: ...
    def __add__(self, other: Self, /) -> Self: ...


_Piece = TypeVar("_Piece", bound=_Joinable)


def _merge_small(pieces: list[_Piece]) -> None:
    """Merge the small pieces at the end of a message's pieces, pairwise
    and geometrically, so that no object is kept per small piece.

    A peer that sends one byte per TCP segment would otherwise make one
    object per byte. A merged byte is copied O(log _SETTLED) times at most,
    and a large piece is never copied before the final join, so a message
    arriving in large reads costs what a list of them would.
    """
    while (
        len(pieces) > 1
        and len(pieces[-1]) < _SETTLED
        and len(pieces[-2]) < _SETTLED
        and len(pieces[-2]) <= 2 * len(pieces[-1])
    ):
        last = pieces.pop()
        pieces[-1] += last


class FrameReader:
    """Parses frames for one direction of one connection.

    `feed` never raises: a violation stops parsing and is left in `failure`
    for the connection to act on. `control_seen` tells the connection that
    the last batch holds a Ping or a CloseReceived it must react to, so the
    common batch of only data messages is returned without being scanned.
    """

    __slots__ = (
        "_chunks",
        "_decompressor",
        "_expect_mask",
        "_frame_fin",
        "_inflating",
        "_mask",
        "_mask_phase",
        "_max_frame",
        "_max_message",
        "_message_opcode",
        "_message_size",
        "_remaining",
        "_rsv_allowed",
        "_run",
        "_streaming",
        "_tail",
        "_texts",
        "_utf8",
        "closed",
        "control_seen",
        "failure",
    )

    def __init__(
        self,
        *,
        expect_masked: bool,
        max_message_size: int | None,
        max_frame_size: int | None,
        streaming: bool,
        decompressor: MessageDecompressor | None = None,
    ) -> None:
        self._expect_mask = 0x80 if expect_masked else 0
        self._max_message = max_message_size
        self._max_frame = max_frame_size
        self._streaming = streaming
        # permessage-deflate owns RSV1: set on the first frame of a
        # compressed message (RFC 7692 section 6).
        self._decompressor = decompressor
        self._rsv_allowed = _RSV1 if decompressor is not None else 0
        self._tail = b""
        # The data frame whose payload is being read (when _remaining > 0).
        self._remaining = 0
        self._frame_fin = False
        self._mask: bytes | None = None
        self._mask_phase = 0
        # The message being assembled (when _message_opcode is not 0).
        self._message_opcode = 0
        self._message_size = 0  # decompressed size, for a compressed message
        self._inflating = False
        self._utf8: Utf8Validator | None = None  # set for a text message
        # Payload of the current message that this `feed` call brought and
        # nobody has seen yet: the first piece as is, a bytearray once a
        # second one joins it (see `_deliver`).
        self._run: bytes | bytearray = b""
        # Whole-message mode: what earlier calls brought of the message
        # (text decoded), one piece per call, merged when small: see `_merge_small`.
        self._chunks: list[bytes] = []
        self._texts: list[str] = []
        self.closed = False
        self.control_seen = False
        self.failure: ProtocolViolation | None = None

    def feed(self, data: Buffer) -> list[Event]:
        events: list[Event] = []
        if self.closed or self.failure is not None:
            return events
        if type(data) is not bytes:  # slices of it become the events' payloads
            data = bytes(data)
        if self._tail:
            data = self._tail + data
            self._tail = b""
        try:
            self._parse(data, events)
            if self._run:
                self._flush(events)
        except ProtocolViolation as violation:
            self.failure = violation
            if self._run:
                # The gathered payload came before the violation: hand it
                # over, and if it is bad UTF-8 that is the first failure.
                try:
                    self._flush(events)
                except ProtocolViolation as earlier:
                    self.failure = earlier
        return events

    def _parse(self, data: bytes, events: list[Event]) -> None:
        pos = 0
        end = len(data)
        expect_mask = self._expect_mask
        apply_mask = masking.apply_mask
        while pos < end:
            if self._remaining:
                pos = self._continue_payload(data, pos, end, events)
                continue

            if end - pos < 2:
                self._tail = data[pos:]
                return
            b0 = data[pos]
            b1 = data[pos + 1]
            length = b1 & 0x7F
            header = 2 if length < 126 else 4 if length == 126 else 10
            masked = b1 & 0x80
            if masked != expect_mask:
                raise ProtocolViolation(
                    _PROTOCOL_ERROR,
                    "unmasked frame from a client" if expect_mask else "masked frame from a server",
                )
            start = pos + header + (4 if masked else 0)
            if start > end:
                self._tail = data[pos:]
                return
            if header == 4:
                length = (data[pos + 2] << 8) | data[pos + 3]
                if length < 126:
                    raise ProtocolViolation(_PROTOCOL_ERROR, "frame length not minimally encoded")
            elif header == 10:
                length = int.from_bytes(data[pos + 2 : pos + 10], "big")
                if length >> 63:
                    raise ProtocolViolation(_PROTOCOL_ERROR, "frame length has its top bit set")
                if length < 0x10000:
                    raise ProtocolViolation(_PROTOCOL_ERROR, "frame length not minimally encoded")
            opcode = b0 & 0x0F
            rsv = b0 & 0x70
            fin = b0 & 0x80

            if opcode & 0x8:  # control frame
                if opcode not in (_CLOSE, _PING, _PONG):
                    raise ProtocolViolation(_PROTOCOL_ERROR, f"reserved opcode {opcode:#x}")
                if rsv:
                    raise ProtocolViolation(_PROTOCOL_ERROR, "reserved bits set on a control frame")
                if not fin:
                    raise ProtocolViolation(_PROTOCOL_ERROR, "fragmented control frame")
                if length > 125:
                    raise ProtocolViolation(_PROTOCOL_ERROR, "control frame payload over 125 bytes")
                if end - start < length:
                    self._tail = data[pos:]  # at most 2 + 4 + 125 bytes
                    return
                payload = data[start : start + length]
                if masked:
                    payload = apply_mask(payload, data[start - 4 : start])
                pos = start + length
                if self._run:  # the data before it is delivered before it
                    self._flush(events)
                self.control_seen = True
                if opcode == _PING:
                    events.append(Ping(payload=payload))
                elif opcode == _PONG:
                    events.append(Pong(payload=payload))
                else:
                    code, reason = parse_close_payload(payload)
                    events.append(CloseReceived(code=code, reason=reason))
                    self.closed = True
                    return
                continue

            if rsv & ~self._rsv_allowed:
                raise ProtocolViolation(_PROTOCOL_ERROR, "reserved bits set without an extension")
            if opcode == _CONT:
                if not self._message_opcode:
                    raise ProtocolViolation(_PROTOCOL_ERROR, "continuation frame without a message")
                if rsv:
                    raise ProtocolViolation(_PROTOCOL_ERROR, "RSV1 set on a continuation frame")
            elif opcode in (_TEXT, _BINARY):
                if self._message_opcode:
                    raise ProtocolViolation(_PROTOCOL_ERROR, "new message inside a fragmented one")
            else:
                raise ProtocolViolation(_PROTOCOL_ERROR, f"reserved opcode {opcode:#x}")
            if self._max_frame is not None and length > self._max_frame:
                raise ProtocolViolation(_TOO_BIG, f"frame of {length} bytes exceeds the limit")
            # A compressed message is measured as it inflates instead.
            if (
                self._max_message is not None
                and self._message_size + length > self._max_message
                and not (rsv or self._inflating)
            ):
                raise ProtocolViolation(_TOO_BIG, "message exceeds the size limit")

            stop = start + length
            if fin and opcode and stop <= end:
                # Fast path: a whole unfragmented message in the buffer.
                payload = data[start:stop]
                if masked:
                    payload = apply_mask(payload, data[start - 4 : start])
                pos = stop
                if rsv:
                    assert self._decompressor is not None  # RSV1 is only allowed with it
                    try:
                        payload = self._decompressor.decompress(payload, True, self._max_message)
                    except InflatedTooBig as too_big:
                        if opcode == _TEXT:  # bad text before the limit is the first fault
                            _check_text(Utf8Validator(), too_big.within)
                        raise
                if opcode == _TEXT:
                    try:
                        text = payload.decode("utf-8")
                    except UnicodeDecodeError:
                        raise ProtocolViolation(
                            CloseCode.INVALID_FRAME_PAYLOAD_DATA, INVALID_UTF8
                        ) from None
                    if self._streaming:
                        events.append(new_text_fragment(text, True))
                    else:
                        events.append(new_text_message(text))
                elif self._streaming:
                    events.append(new_bytes_fragment(payload, True))
                else:
                    events.append(new_bytes_message(payload))
                continue

            # Slow path: a fragment, or a frame whose payload is still arriving.
            if opcode:
                self._message_opcode = opcode
                self._utf8 = Utf8Validator() if opcode == _TEXT else None
                self._inflating = bool(rsv)
            if not self._inflating:
                self._message_size += length
            if stop <= end:  # the whole fragment is here: nothing to remember
                payload = data[start:stop]
                if masked:
                    payload = apply_mask(payload, data[start - 4 : start])
                pos = stop
                self._deliver(payload, fin, events)
                if not (fin or self._inflating):
                    pos = self._gather(data, pos, end)
                continue
            self._frame_fin = bool(fin)
            self._mask = data[start - 4 : start] if masked else None
            self._mask_phase = 0
            self._remaining = length
            pos = start

    def _gather(self, data: bytes, pos: int, end: int) -> int:
        """Take a series of small, whole, non-final continuation frames at once.

        That is what a peer fragmenting finely sends, and the general loop
        would spend most of its time on checks that such frames cannot
        fail. Anything else (the last fragment, a control frame, a frame not
        all here, one that breaks a rule or a limit) ends the series and is
        left to the general loop, which reports any violation. Payloads go
        straight into the run, so the series is never held twice.
        """
        expect_mask = self._expect_mask
        header = 6 if expect_mask else 2
        longest = 125 if self._max_frame is None else min(125, self._max_frame)
        room = (1 << 63) if self._max_message is None else self._max_message - self._message_size
        before = room
        apply_mask = masking.apply_mask
        run: bytearray | None = None
        start = pos + header
        while start <= end:
            b1 = data[pos + 1]
            length = b1 & 0x7F
            stop = start + length
            if data[pos] or (b1 & 0x80) != expect_mask or length > longest or length > room:
                break
            if stop > end:
                break
            if run is None:  # made only once a frame qualifies: a lone big piece stays uncopied
                current = self._run
                run = self._run = current if type(current) is bytearray else bytearray(current)
            if expect_mask:
                run += apply_mask(data[start:stop], data[pos + 2 : start])
            else:
                run += data[start:stop]
            room -= length
            pos = stop
            start = stop + header
        self._message_size += before - room
        return pos

    def _continue_payload(self, data: bytes, pos: int, end: int, events: list[Event]) -> int:
        take = min(self._remaining, end - pos)
        mask = self._mask
        if mask is None:
            chunk = data[pos : pos + take]
        else:
            window = memoryview(data)[pos : pos + take]
            chunk = masking.apply_mask(window, masking.rotate(mask, self._mask_phase))
            self._mask_phase = (self._mask_phase + take) & 3
        self._remaining -= take
        pos += take
        if pos == end and self._remaining and not (self._run or self._inflating):
            # The call ends inside this frame, so nothing can join this
            # piece: pass it on at once (a large frame, read by read).
            self._pass_on(chunk, events)
        else:
            self._deliver(chunk, self._frame_fin and not self._remaining, events)
        return pos

    def _deliver(self, chunk: bytes, final: int, events: list[Event]) -> None:
        """Add a piece of the current message's payload to the run.

        The first piece is kept as is, so a frame arriving in one piece per
        call is never copied here; a second one makes the run a bytearray,
        which grows in place however many pieces follow.
        """
        if self._inflating:
            chunk = self._inflate(chunk, bool(final))
        run = self._run
        if run:
            if type(run) is not bytearray:
                run = self._run = bytearray(run)
            run += chunk
            if final:
                self._run = b""
                self._end_message(run, events)
        elif final:
            self._end_message(chunk, events)
        else:
            self._run = chunk

    def _flush(self, events: list[Event]) -> None:
        run = self._run
        self._run = b""  # taken even if it proves to be bad UTF-8
        self._pass_on(run, events)

    def _pass_on(self, piece: bytes | bytearray, events: list[Event]) -> None:
        """Hand over a piece of a message that is not over yet: as one
        fragment in streaming mode, else into the message being assembled."""
        utf8 = self._utf8
        if utf8 is not None:
            text = utf8.decode(piece, False)
            if self._streaming:
                if text:
                    events.append(new_text_fragment(text, False))
            elif text:
                texts = self._texts
                texts.append(text)
                if len(texts) > 1:
                    _merge_small(texts)
        else:
            if type(piece) is not bytes:  # a bytearray run: events carry bytes
                piece = bytes(piece)
            if self._streaming:
                events.append(new_bytes_fragment(piece, False))
            else:
                chunks = self._chunks
                chunks.append(piece)
                if len(chunks) > 1:
                    _merge_small(chunks)

    def _end_message(self, last: bytes | bytearray, events: list[Event]) -> None:
        """Hand over the message's `last` piece and close the message."""
        utf8 = self._utf8
        if utf8 is not None:
            text = utf8.decode(last, True)
            if self._streaming:
                events.append(new_text_fragment(text, True))
            else:
                texts = self._texts
                if texts:
                    texts.append(text)
                    text = "".join(texts)
                    self._texts = []
                events.append(new_text_message(text))
        elif self._streaming:
            events.append(new_bytes_fragment(last if type(last) is bytes else bytes(last), True))
        else:
            chunks = self._chunks
            if chunks:
                chunks.append(last)  # type: ignore[arg-type]  # join takes a bytearray too
                message = b"".join(chunks)
                self._chunks = []
            else:
                message = last if type(last) is bytes else bytes(last)
            events.append(new_bytes_message(message))
        self._message_opcode = 0
        self._message_size = 0
        self._utf8 = None
        self._inflating = False

    def _inflate(self, chunk: bytes, final: bool) -> bytes:
        decompressor = self._decompressor
        assert decompressor is not None  # a message only inflates with it
        limit = self._max_message
        budget = None if limit is None else limit - self._message_size
        try:
            chunk = decompressor.decompress(chunk, final, budget)
        except InflatedTooBig as too_big:
            if self._utf8 is not None:  # bad text before the limit is the first fault
                _check_text(self._utf8, [self._run, *too_big.within])
            raise
        self._message_size += len(chunk)
        return chunk

    @property
    def in_message(self) -> bool:
        """True while a fragmented or partially received message is open."""
        return bool(self._message_opcode)


def _check_text(utf8: Utf8Validator, pieces: Sequence[bytes | bytearray]) -> None:
    """Raise 1007 if `pieces`, in order, are not the start of valid UTF-8."""
    for piece in pieces:
        utf8.decode(piece, False)
