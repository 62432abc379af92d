"""The zlib streams behind permessage-deflate, one per direction.

Both are made on first use, so a connection that never carries a compressed
message in a direction costs no zlib memory for it. Decompression is bounded
by the message size limit *while* it runs (zlib's `max_length`): a bomb of a
few bytes that would expand to gigabytes fails with 1009 once the output
passes the limit, having allocated no more than the limit plus one byte.
"""

from __future__ import annotations

import zlib

from .deflate import ZLIB_MIN_WINDOW_BITS
from .errors import ProtocolViolation
from .frames import CloseCode


class InflatedTooBig(ProtocolViolation):
    """1009: a message inflates past its budget. `within` is what it
    inflated to up to the budget, in pieces (not joined: a bomb must not
    cost the limit twice). A text message is checked as UTF-8 that
    far first, so that the first fault in the message decides the close
    code, however its frames were cut (the peer sees 1007 for bad text at
    its start, not 1009 for a size it only reached later)."""

    def __init__(self, within: list[bytes]) -> None:
        super().__init__(
            CloseCode.MESSAGE_TOO_BIG, "message exceeds the size limit once decompressed"
        )
        self.within = within


# The end of a sync flush: section 7.2.1 strips it from every message we
# send, section 7.2.2 puts it back on every message we receive.
TAIL = b"\x00\x00\xff\xff"
_STEP = 64 * 1024


class MessageCompressor:
    """Compresses the messages one side sends (RFC 7692 section 7.2.1)."""

    __slots__ = ("_level", "_mem_level", "_reset", "_stream", "_window_bits")

    def __init__(self, *, window_bits: int, level: int, mem_level: int, reset: bool) -> None:
        self._window_bits = window_bits
        self._level = level
        self._mem_level = mem_level
        self._reset = reset
        self._stream: zlib._Compress | None = None

    def compress(self, data: bytes, final: bool) -> bytes:
        """Compress one fragment; `final` ends the message.

        Every fragment is sync-flushed so the peer can decode it on arrival.
        Without context takeover the last flush is a full flush, which
        empties the window, so the next message refers to nothing before it.
        """
        stream = self._stream
        if stream is None:
            stream = self._stream = zlib.compressobj(
                self._level, zlib.DEFLATED, -self._window_bits, self._mem_level
            )
        mode = zlib.Z_FULL_FLUSH if final and self._reset else zlib.Z_SYNC_FLUSH
        out = stream.compress(data) + stream.flush(mode)
        return out[:-4] if final else out


class MessageDecompressor:
    """Decompresses the messages one side receives (RFC 7692 section 7.2.2)."""

    __slots__ = ("_reset", "_stream", "_window_bits")

    def __init__(self, *, window_bits: int, reset: bool) -> None:
        # zlib's compressor turns a requested 8 into 9, and peers built on
        # it do the same; decoding with 9 accepts both.
        self._window_bits = max(window_bits, ZLIB_MIN_WINDOW_BITS)
        self._reset = reset
        self._stream: zlib._Decompress | None = None

    def decompress(self, data: bytes, final: bool, budget: int | None) -> bytes:
        """Decompress one piece of a message, giving at most `budget` bytes.

        Raises ProtocolViolation: 1009 past the budget, 1007 on data that is
        not a valid deflate stream.
        """
        stream = self._stream
        if stream is None:
            stream = self._stream = zlib.decompressobj(-self._window_bits)
        if final:
            data += TAIL
        try:
            out = stream.decompress(data) if budget is None else self._bounded(stream, data, budget)
        except zlib.error as error:
            raise ProtocolViolation(
                CloseCode.INVALID_FRAME_PAYLOAD_DATA, f"invalid compressed data ({error})"
            ) from None
        if stream.eof:
            # The peer ended its deflate stream (a final block). Anything
            # after it but our own tail is garbage, and would otherwise pile
            # up in `unused_data`.
            if stream.unused_data not in (b"", TAIL) or (stream.unused_data and not final):
                raise ProtocolViolation(
                    CloseCode.INVALID_FRAME_PAYLOAD_DATA, "data after the end of a deflate stream"
                )
            if final:
                self._stream = None  # a finished stream takes no more input
        elif final and self._reset:
            self._stream = None  # the peer starts each message afresh: free the window
        return out

    @staticmethod
    def _bounded(stream: zlib._Decompress, data: bytes, budget: int) -> bytes:
        """Inflate at most `budget` bytes, in steps, failing past it.

        One call capped at the budget would do, but CPython builds its
        result from blocks and then copies them into one bytes object, so
        a bomb would briefly cost twice the limit. Steps of `_STEP` keep the
        peak at the limit plus one step.
        """
        pieces: list[bytes] = []
        size = 0
        while True:
            cap = min(budget + 1 - size, _STEP)
            piece = stream.decompress(data, cap)
            size += len(piece)
            if size > budget:
                pieces.append(piece[: len(piece) - (size - budget)])
                raise InflatedTooBig(pieces)
            pieces.append(piece)
            if len(piece) < cap:  # zlib ran out of input, not of room
                break
            data = stream.unconsumed_tail
        return pieces[0] if len(pieces) == 1 else b"".join(pieces)
