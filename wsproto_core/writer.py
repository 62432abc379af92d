"""Frame serialization for the send path.

Headers are packed with precompiled structs, and client masks come from a
pool of os.urandom bytes refilled 1,024 masks at a time: the RFC asks for
masks from a strong source, and one system call per frame would cost more
than building the frame.
"""

from __future__ import annotations

import os
import struct
from typing import cast

from . import masking
from .masking import Buffer

_SHORT = struct.Struct("!BB")
_MEDIUM = struct.Struct("!BBH")
_LONG = struct.Struct("!BBQ")
_MASK_POOL_SIZE = 4096


class FrameWriter:
    """Appends serialized frames to a shared list of outbound chunks."""

    __slots__ = ("_mask_bit", "_out", "_pool", "_pool_pos")

    def __init__(self, *, mask: bool, out: list[bytes]) -> None:
        self._mask_bit = 0x80 if mask else 0
        self._out = out
        self._pool = b""
        self._pool_pos = _MASK_POOL_SIZE

    def _next_mask(self) -> bytes:
        pos = self._pool_pos
        if pos >= _MASK_POOL_SIZE:
            self._pool = os.urandom(_MASK_POOL_SIZE)
            pos = 0
        self._pool_pos = pos + 4
        return self._pool[pos : pos + 4]

    def write(self, opcode: int, payload: Buffer | str, fin: bool = True, rsv: int = 0) -> None:
        """One frame. A client's writer may take its text as an ASCII str,
        masked straight from the str: one pass over the payload and one
        buffer, where encoding and then masking took two of each (and a
        second fresh megabyte costs page faults). Only masking takes a str."""
        length = len(payload)
        b0 = (0x80 if fin else 0) | rsv | opcode
        mask_bit = self._mask_bit
        if length < 126:
            header = _SHORT.pack(b0, mask_bit | length)
        elif length < 0x10000:
            header = _MEDIUM.pack(b0, mask_bit | 126, length)
        else:
            header = _LONG.pack(b0, mask_bit | 127, length)
        if mask_bit:
            mask = self._next_mask()
            self._out.append(masking.apply_mask(payload, mask, header + mask))
        else:
            body = cast(Buffer, payload)
            if length < 4096:
                self._out.append(header + body)
            else:  # large: let data_to_send's join do the single copy
                self._out.append(header)
                self._out.append(bytes(body) if not isinstance(body, bytes) else body)


def frame_bytes(first_byte: int, payload: bytes) -> bytes:
    """One unmasked final frame, as a server sends it; `first_byte` holds
    the opcode and any RSV bits (FIN is added)."""
    length = len(payload)
    b0 = 0x80 | first_byte
    if length < 126:
        return _SHORT.pack(b0, length) + payload
    if length < 0x10000:
        return _MEDIUM.pack(b0, 126, length) + payload
    return _LONG.pack(b0, 127, length) + payload
