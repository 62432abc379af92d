"""Wire constants of RFC 6455 section 5 and 7.4, and close-payload codecs.

Frame *parsing* lives in `reader.py` and frame *building* in `writer.py`,
because each is a hot path tuned on its own; this module holds what both
share and what a user may want to name (opcodes, close codes).
"""

from __future__ import annotations

import enum

from .errors import LocalProtocolError, ProtocolViolation


class Opcode(enum.IntEnum):
    CONTINUATION = 0x0
    TEXT = 0x1
    BINARY = 0x2
    CLOSE = 0x8
    PING = 0x9
    PONG = 0xA


class CloseCode(enum.IntEnum):
    """Registered close codes (RFC 6455 section 7.4.1 and the IANA registry)."""

    NORMAL_CLOSURE = 1000
    GOING_AWAY = 1001
    PROTOCOL_ERROR = 1002
    UNSUPPORTED_DATA = 1003
    NO_STATUS_RCVD = 1005  # never on the wire: "the close frame had no code"
    ABNORMAL_CLOSURE = 1006  # never on the wire: "no close frame at all"
    INVALID_FRAME_PAYLOAD_DATA = 1007
    POLICY_VIOLATION = 1008
    MESSAGE_TOO_BIG = 1009
    MANDATORY_EXTENSION = 1010
    INTERNAL_ERROR = 1011
    SERVICE_RESTART = 1012
    TRY_AGAIN_LATER = 1013
    BAD_GATEWAY = 1014
    TLS_HANDSHAKE = 1015  # never on the wire


MAX_CONTROL_PAYLOAD = 125
DATA_OPCODES = frozenset({Opcode.CONTINUATION, Opcode.TEXT, Opcode.BINARY})
KNOWN_OPCODES = frozenset(int(op) for op in Opcode)


def is_sendable_close_code(code: int) -> bool:
    """True for the codes an endpoint may put in a close frame.

    1004 is reserved, 1005/1006/1015 are reserved for reporting and must not
    be sent, 1016-2999 belong to future RFCs, 3000-3999 are registered for
    libraries and 4000-4999 are private. Both directions use the same rule:
    what we refuse to send we also refuse to receive.
    """
    return 1000 <= code <= 1003 or 1007 <= code <= 1014 or 3000 <= code <= 4999


def parse_close_payload(payload: bytes) -> tuple[int, str]:
    """Decode a received close payload into (code, reason).

    An empty payload means "no status code" and is reported as 1005.
    """
    if not payload:
        return CloseCode.NO_STATUS_RCVD, ""
    if len(payload) == 1:
        raise ProtocolViolation(CloseCode.PROTOCOL_ERROR, "close frame with a 1-byte payload")
    code = int.from_bytes(payload[:2], "big")
    if not is_sendable_close_code(code):
        raise ProtocolViolation(CloseCode.PROTOCOL_ERROR, f"invalid close code {code}")
    try:
        reason = payload[2:].decode("utf-8")
    except UnicodeDecodeError:
        raise ProtocolViolation(
            CloseCode.INVALID_FRAME_PAYLOAD_DATA, "close reason is not valid UTF-8"
        ) from None
    return code, reason


def build_close_payload(code: int | None, reason: str) -> bytes:
    """Encode a close payload we send, refusing what the RFC forbids."""
    if code is None:
        if reason:
            raise LocalProtocolError("a close reason needs a close code")
        return b""
    if not is_sendable_close_code(code):
        raise LocalProtocolError(f"close code {code} may not be sent")
    payload = code.to_bytes(2, "big") + reason.encode("utf-8")
    if len(payload) > MAX_CONTROL_PAYLOAD:
        raise LocalProtocolError("close reason is longer than 123 bytes once encoded as UTF-8")
    return payload
