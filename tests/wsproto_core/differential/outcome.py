"""The normalized form in which the three implementations are compared.

Each library reports in its own shape (websockets hands out frames, wsproto
per-chunk message pieces and a CloseConnection that means either a close
frame or a parse failure, we hand out whole messages); what they must agree
on is what an application and the peer would see, so that is all an
`Outcome` keeps: whole messages and control frames in arrival order, whether
and with which code the connection was failed, and the frames sent back.
"""

from __future__ import annotations

from dataclasses import dataclass

# One thing delivered to the application:
#   ("text", str) / ("bytes", bytes)            a whole message
#   ("text-invalid", bytes)                     a text message that is not UTF-8
#   ("ping", bytes) / ("pong", bytes)           a control frame
#   ("close", code, reason)                     the peer's close frame
Item = tuple[object, ...]
# One frame sent back: ("pong", payload) or ("close", code or None).
Sent = tuple[str, bytes | int | None]


@dataclass(frozen=True, slots=True)
class Outcome:
    """What one implementation did with one byte stream."""

    events: tuple[Item, ...]
    failed: int | None  # the close code it failed the connection with, if it did
    sent: tuple[Sent, ...]

    def stops_early_with(self, other: Outcome, code: int) -> bool:
        """True if this outcome is `other` cut short by a failure with `code`:
        everything delivered and sent before the failure is a prefix of what
        `other` delivered and sent, and the failure's close frame is the
        last thing sent. This is how a stricter reading of one rule shows."""
        return (
            self.failed == code
            and self.events == other.events[: len(self.events)]
            and bool(self.sent)
            and self.sent[-1] == ("close", code)
            and self.sent[:-1] == other.sent[: len(self.sent) - 1]
        )

    def same_but_code(self, other: Outcome, mine: int, theirs: int) -> bool:
        """True if both failed at the same point and differ only in the code."""
        return (
            self.failed == mine
            and other.failed == theirs
            and self.events == other.events
            and self.sent[:-1] == other.sent[:-1]
            and self.sent[-1:] == (("close", mine),)
            and other.sent[-1:] == (("close", theirs),)
        )


def parse_sent(data: bytes, *, masked: bool) -> tuple[Sent, ...]:
    """Read back the control frames an implementation wrote, with a parser of
    our own (the writers are trusted to frame well; what is checked is what
    they chose to send). Only pongs and closes can be sent in these tests."""
    sent: list[Sent] = []
    pos = 0
    while pos < len(data):
        opcode = data[pos] & 0x0F
        length = data[pos + 1] & 0x7F
        assert data[pos + 1] & 0x80 == (0x80 if masked else 0), "sent with the wrong masking"
        assert length <= 125, "a control frame we sent is too long"
        start = pos + 2 + (4 if masked else 0)
        payload = data[start : start + length]
        if masked:
            key = data[pos + 2 : pos + 6]
            payload = bytes(b ^ key[i % 4] for i, b in enumerate(payload))
        pos = start + length
        if opcode == 0xA:
            sent.append(("pong", payload))
        elif opcode == 0x8:
            sent.append(("close", int.from_bytes(payload[:2], "big") if payload else None))
        else:
            raise AssertionError(f"unexpected frame sent back: opcode {opcode:#x}")
    return tuple(sent)
