"""One message framed once, sent to many server connections.

A server frame is unmasked, so the same bytes are valid on every server
connection, with one catch: compression. A compressed frame is only valid
for a peer whose decompressor does not expect our previous messages in its
window (we negotiated no context takeover for what we send) and whose window
is at least as large as ours. An uncompressed frame is valid everywhere,
even on a connection with context takeover: a message sent plain is simply
not part of the compressed stream. So a broadcast keeps at most one plain
frame and one compressed frame per window size, made on first need.
"""

from __future__ import annotations

import zlib

from .compression import TAIL
from .frames import Opcode
from .writer import frame_bytes

_RSV1 = 0x40


class PreparedMessage:
    """A text or binary message ready to be queued on many connections with
    `Connection.send_prepared(message)`.

    `min_size` is the size from which the compressed form is used, where a
    connection allows it; `level` and `mem_level` are zlib's knobs.
    """

    __slots__ = ("_frames", "_level", "_mem_level", "_min_size", "_opcode", "_payload")

    def __init__(
        self, message: str | bytes, *, level: int = 6, mem_level: int = 4, min_size: int = 32
    ) -> None:
        if isinstance(message, str):
            self._opcode = int(Opcode.TEXT)
            self._payload = message.encode("utf-8")
        elif isinstance(message, bytes | bytearray | memoryview):
            self._opcode = int(Opcode.BINARY)
            self._payload = bytes(message)
        else:
            raise TypeError(f"a message is str or bytes, not {type(message).__name__}")
        self._level = level
        self._mem_level = mem_level
        self._min_size = min_size
        self._frames: dict[int, bytes] = {}  # window bits (0: plain) -> frame

    def frame(self, window_bits: int) -> bytes:
        """The frame for connections whose shared-frame window is
        `window_bits` (see `Connection.shared_frame_window`)."""
        if window_bits and len(self._payload) < self._min_size:
            window_bits = 0
        frame = self._frames.get(window_bits)
        if frame is None:
            if window_bits:
                stream = zlib.compressobj(self._level, zlib.DEFLATED, -window_bits, self._mem_level)
                payload = stream.compress(self._payload) + stream.flush(zlib.Z_SYNC_FLUSH)
                assert payload.endswith(TAIL)
                frame = frame_bytes(self._opcode | _RSV1, payload[:-4])
            else:
                frame = frame_bytes(self._opcode, self._payload)
            self._frames[window_bits] = frame
        return frame
