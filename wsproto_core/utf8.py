"""Fail-fast incremental UTF-8 validation for text messages.

The stdlib incremental decoder does the work in C. One gap needs closing:
CPython keeps a trailing ``ED A0..BF`` pending as "maybe incomplete", though
every sequence that starts so encodes a UTF-16 surrogate and is invalid. RFC
6455 section 8.1 asks us to fail as soon as the bytes can no longer be valid,
so that one prefix is checked by hand. (Every other invalid prefix, such as
``F4 90`` or ``E0 80``, the decoder already rejects at once.)
"""

from __future__ import annotations

import codecs

from .errors import ProtocolViolation
from .frames import CloseCode

_Decoder = codecs.getincrementaldecoder("utf-8")

INVALID_UTF8 = "text message is not valid UTF-8"


class Utf8Validator:
    __slots__ = ("_decoder",)

    def __init__(self) -> None:
        self._decoder = _Decoder()

    def decode(self, data: bytes, final: bool) -> str:
        """Decode `data`, raising ProtocolViolation(1007) as early as possible."""
        try:
            text: str = self._decoder.decode(data, final)
        except UnicodeDecodeError:
            raise ProtocolViolation(CloseCode.INVALID_FRAME_PAYLOAD_DATA, INVALID_UTF8) from None
        if not final:
            pending = self._decoder.getstate()[0]
            if len(pending) >= 2 and pending[0] == 0xED and pending[1] >= 0xA0:
                raise ProtocolViolation(CloseCode.INVALID_FRAME_PAYLOAD_DATA, INVALID_UTF8)
        return text
