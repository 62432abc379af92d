"""Fail-fast incremental UTF-8 validation for text messages.

The stdlib's UTF-8 codec does the work in C. One gap needs closing: CPython
keeps a trailing ``ED A0..BF`` pending as "maybe incomplete", though
every sequence that starts so encodes a UTF-16 surrogate and is invalid. RFC
6455 section 8.1 asks us to fail as soon as the bytes can no longer be valid,
so that one prefix is checked by hand. (Every other invalid prefix, such as
``F4 90`` or ``E0 80``, the decoder already rejects at once.)
"""

from __future__ import annotations

import codecs

from .errors import ProtocolViolation
from .frames import CloseCode

_utf8_decode = codecs.utf_8_decode

INVALID_UTF8 = "text message is not valid UTF-8"


class Utf8Validator:
    """Decodes one text message piece by piece.

    The codec is called directly rather than through an incremental
    decoder object, which would copy every piece once more to prepend its
    (almost always empty) buffer: pieces can be a whole message's run.
    """

    __slots__ = ("_pending",)

    def __init__(self) -> None:
        self._pending = b""  # the start of a character cut by a piece boundary

    def decode(self, data: bytes | bytearray, final: bool) -> str:
        """Decode `data`, raising ProtocolViolation(1007) as early as possible."""
        if self._pending:
            data = self._pending + data
        try:
            text, consumed = _utf8_decode(data, "strict", final)
        except UnicodeDecodeError:
            raise ProtocolViolation(CloseCode.INVALID_FRAME_PAYLOAD_DATA, INVALID_UTF8) from None
        if consumed == len(data):
            self._pending = b""
        else:  # not final: at most 3 bytes of a character still to come
            pending = self._pending = bytes(data[consumed:])
            if len(pending) >= 2 and pending[0] == 0xED and pending[1] >= 0xA0:
                raise ProtocolViolation(CloseCode.INVALID_FRAME_PAYLOAD_DATA, INVALID_UTF8)
        return text
