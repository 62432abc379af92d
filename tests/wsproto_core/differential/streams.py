"""Hypothesis strategies for byte streams a peer might send: valid messages
(fragmented, compressed, with control frames between the fragments) mixed
with frames that break one rule each.

Every frame carries tags naming what is special about it, so that the
table of intended differences can ask which frame made an implementation
stop (see `failing_frame`) rather than guess from the bytes.
"""

from __future__ import annotations

import zlib
from collections.abc import Callable
from dataclasses import dataclass, field

from hypothesis import strategies as st

from ..wire import frame as build_frame
from .outcome import Outcome
from .peers import LIMIT, Config

TEXT, BINARY, CONT, CLOSE, PING, PONG = 0x1, 0x2, 0x0, 0x8, 0x9, 0xA
RSV1, RSV2, RSV3 = 0x40, 0x20, 0x10

VALID_CLOSE_CODES = (1000, 1001, 1002, 1003, 1007, 1008, 1009, 1010, 1011, 1012, 1013)
INVALID_CLOSE_CODES = st.sampled_from((0, 999, 1004, 1005, 1006, 1015, 1016, 2999, 5000, 65535))


@dataclass(frozen=True, slots=True)
class Frame:
    """One frame of a stream, with its bytes and what is special about it."""

    data: bytes
    tags: frozenset[str] = frozenset()
    note: str = ""
    payload: bytes = b""  # unmasked, as the frame carries it


@dataclass(slots=True)
class Case:
    config: Config
    frames: list[Frame]
    cuts: list[int] = field(default_factory=list)

    @property
    def data(self) -> bytes:
        return b"".join(f.data for f in self.frames)

    @property
    def chunks(self) -> list[bytes]:
        data = self.data
        marks = sorted({min(c, len(data)) for c in self.cuts})
        return [data[a:b] for a, b in zip([0, *marks], [*marks, len(data)], strict=True)]

    def has(self, tag: str) -> bool:
        return any(tag in f.tags for f in self.frames)

    def describe(self) -> str:
        lines = [f"config={self.config}, chunks at {sorted(set(self.cuts))}"]
        for i, f in enumerate(self.frames):
            shown = (
                f.data.hex()
                if len(f.data) <= 48
                else f"{f.data[:48].hex()}... ({len(f.data)} bytes)"
            )
            lines.append(f"  frame {i}: {shown}  {sorted(f.tags)} {f.note}")
        data = self.data
        if len(data) <= 1024:
            lines.append(f"  whole stream: {data.hex()}")
        return "\n".join(lines)


def failing_frame(case: Case, run: Callable[[Config, list[bytes]], Outcome]) -> Frame | None:
    """The frame at which `run`'s implementation failed the connection
    (fed whole prefixes of the stream), or None if it did not fail."""
    frames = case.frames
    if run(case.config, [case.data]).failed is None:
        return None
    low, high = 0, len(frames)  # fails with frames[:high], not with frames[:low]
    while high - low > 1:
        middle = (low + high) // 2
        if run(case.config, [b"".join(f.data for f in frames[:middle])]).failed is None:
            low = middle
        else:
            high = middle
    return frames[high - 1]


class _Builder:
    """Draws frames one item at a time, keeping the compressor whose window
    the receiver shares when context takeover was agreed."""

    def __init__(self, draw: st.DrawFn, config: Config) -> None:
        self.draw = draw
        self.config = config
        self.frames: list[Frame] = []
        self._shared: zlib._Compress | None = None

    def mask(self, *, wrong: bool = False) -> bytes | None:
        masked = self.config.masked != wrong
        return self.draw(st.binary(min_size=4, max_size=4)) if masked else None

    def add(
        self,
        opcode: int,
        payload: bytes,
        *tags: str,
        fin: bool = True,
        rsv: int = 0,
        note: str = "",
        **options: int | None,
    ) -> None:
        data = build_frame(opcode, payload, fin=fin, rsv=rsv, mask=self.mask(), **options)  # type: ignore[arg-type]
        self.frames.append(Frame(data, frozenset(tags), note, payload))

    def compress(self, payload: bytes) -> bytes:
        """RFC 7692 section 7.2.1: deflate, sync flush, drop the 4-byte tail."""
        if self.config.deflate == "takeover":
            if self._shared is None:
                self._shared = zlib.compressobj(wbits=-15)
            compressor = self._shared
        else:
            compressor = zlib.compressobj(wbits=-15)
        data = compressor.compress(payload) + compressor.flush(zlib.Z_SYNC_FLUSH)
        assert data.endswith(b"\x00\x00\xff\xff")
        return data[:-4]

    def split(self, data: bytes, most: int = 4) -> list[bytes]:
        points = self.draw(st.lists(st.integers(0, len(data)), max_size=most))
        marks = sorted(points)
        return [data[a:b] for a, b in zip([0, *marks], [*marks, len(data)], strict=True)]

    def control(self, *tags: str) -> None:
        """A valid ping or pong (what may come between fragments)."""
        opcode = self.draw(st.sampled_from((PING, PONG)))
        self.add(opcode, self.draw(st.binary(max_size=125)), "control", *tags)

    def message(
        self,
        opcode: int,
        payload: bytes,
        *tags: str,
        compress: bool | None = None,
        interleave: bool = True,
        finish: bool = True,
    ) -> None:
        """A message, maybe compressed, maybe fragmented with control frames
        between its fragments; `finish=False` leaves it open."""
        if compress is None:
            compress = self.config.deflate != "off" and self.draw(st.booleans())
        body = self.compress(payload) if compress else payload
        pieces = self.split(body)
        kind = "compressed" if compress else "plain"
        for i, piece in enumerate(pieces):
            last = i == len(pieces) - 1
            frame_tags = {*tags, kind}
            if len(pieces) > 1:
                frame_tags.add("fragment")
            self.add(
                opcode if i == 0 else CONT,
                piece,
                *frame_tags,
                fin=last and finish,
                rsv=RSV1 if compress and i == 0 else 0,
            )
            if not last and interleave and self.draw(st.integers(0, 3)) == 0:
                self.control("in-fragmented", f"in-{kind}-fragmented")


texts = st.text(max_size=60)
binaries = st.binary(max_size=150)
INVALID_UTF8 = st.sampled_from(
    (
        b"\xff",
        b"\xc0\xaf",
        b"\xed\xa0\x80",
        b"\xf4\x90\x80\x80",
        b"\xe2\x82",
        b"\x80",
        b"\xf8\x88\x80\x80\x80",
    )
)


def _valid_message(b: _Builder) -> None:
    if b.draw(st.booleans()):
        b.message(TEXT, b.draw(texts).encode("utf-8"), "valid")
    else:
        b.message(BINARY, b.draw(binaries), "valid")


def _valid_control(b: _Builder) -> None:
    kind = b.draw(st.sampled_from(("ping", "close")))
    if kind == "ping":
        b.control("valid")
        return
    if b.draw(st.booleans()):
        b.add(CLOSE, b"", "close", "valid")
        return
    code = b.draw(st.sampled_from(VALID_CLOSE_CODES) | st.integers(3000, 4999))
    reason = b.draw(st.text(max_size=20)).encode("utf-8")[:123]
    reason = reason.decode("utf-8", "ignore").encode("utf-8")
    b.add(CLOSE, code.to_bytes(2, "big") + reason, "close", "valid")


def _invalid(b: _Builder) -> None:
    """One frame (or message) that breaks one rule."""
    flaw = b.draw(st.sampled_from(FLAWS))
    flaw(b)


def _reserved_bits(b: _Builder) -> None:
    bits = b.draw(st.sampled_from((RSV2, RSV3, RSV1 | RSV2)))
    opcode = b.draw(st.sampled_from((TEXT, BINARY, PING)))
    b.add(opcode, b"x", "reserved-bits", rsv=bits)


def _rsv1_misplaced(b: _Builder) -> None:
    where = b.draw(st.sampled_from(("control", "continuation", "no-extension")))
    if where == "control":
        b.add(PING, b"p", "rsv1-control", rsv=RSV1)
    elif where == "continuation":
        b.message(TEXT, b"ab", "rsv1-continuation", compress=False, interleave=False, finish=False)
        b.add(CONT, b"c", "rsv1-continuation", rsv=RSV1)
    elif b.config.deflate == "off":
        b.add(BINARY, b"data", "rsv1-no-extension", rsv=RSV1)
    else:
        b.add(BINARY, b"data", "rsv1-no-extension", rsv=RSV2)


def _reserved_opcode(b: _Builder) -> None:
    opcode = b.draw(st.sampled_from((3, 4, 5, 6, 7, 0xB, 0xC, 0xD, 0xE, 0xF)))
    b.add(opcode, b.draw(st.binary(max_size=10)), "reserved-opcode")


def _non_minimal(b: _Builder) -> None:
    if b.draw(st.booleans()):
        payload = b.draw(st.binary(max_size=125))
        b.add(BINARY, payload, "non-minimal", length_bytes=2)
    else:
        payload = b.draw(st.binary(min_size=126, max_size=300))
        b.add(BINARY, payload, "non-minimal", length_bytes=8)


def _length_msb(b: _Builder) -> None:
    length = (1 << 63) | b.draw(st.integers(0, 1 << 20))
    b.add(BINARY, b"", "length-msb", length_bytes=8, length=length)


def _huge_length(b: _Builder) -> None:
    """A header that announces more than the limit (no payload follows:
    whatever comes next is read as its payload)."""
    length = b.draw(st.integers(LIMIT + 1, (1 << 40)))
    opcode = b.draw(st.sampled_from((TEXT, BINARY)))
    b.add(opcode, b"", "huge-length", length_bytes=2 if length < 0x10000 else 8, length=length)


def _control_too_long(b: _Builder) -> None:
    opcode = b.draw(st.sampled_from((PING, PONG, CLOSE)))
    payload = b.draw(st.binary(min_size=126, max_size=140))
    if opcode == CLOSE:
        payload = (1000).to_bytes(2, "big") + b"r" * (len(payload) - 2)
    b.add(opcode, payload, "control-too-long")


def _fragmented_control(b: _Builder) -> None:
    opcode = b.draw(st.sampled_from((PING, PONG, CLOSE)))
    b.add(opcode, b"", "fragmented-control", fin=False)


def _bad_close(b: _Builder) -> None:
    kind = b.draw(st.sampled_from(("one-byte", "code", "reason", "1014")))
    if kind == "one-byte":
        b.add(CLOSE, b.draw(st.binary(min_size=1, max_size=1)), "close-one-byte")
    elif kind == "code":
        code = b.draw(INVALID_CLOSE_CODES)
        b.add(CLOSE, code.to_bytes(2, "big"), "close-bad-code")
    elif kind == "reason":
        b.add(CLOSE, b"\x03\xe8" + b.draw(INVALID_UTF8), "close-bad-reason")
    else:
        b.add(CLOSE, (1014).to_bytes(2, "big"), "close-1014", "close")


def _wrong_mask(b: _Builder) -> None:
    data = build_frame(BINARY, b"abc", mask=b.mask(wrong=True))
    b.frames.append(Frame(data, frozenset({"wrong-mask"})))


def _orphan_continuation(b: _Builder) -> None:
    b.add(CONT, b"orphan", "orphan-continuation", fin=b.draw(st.booleans()))


def _message_in_message(b: _Builder) -> None:
    b.message(TEXT, b"first", "nested-message", compress=False, interleave=False, finish=False)
    b.add(BINARY, b"second", "nested-message")


def _invalid_utf8(b: _Builder) -> None:
    before = b.draw(st.text(max_size=10)).encode("utf-8")
    after = b.draw(st.text(max_size=10)).encode("utf-8")
    b.message(TEXT, before + b.draw(INVALID_UTF8) + after, "invalid-utf8")


def _too_big(b: _Builder) -> None:
    size = b.draw(st.integers(LIMIT + 1, LIMIT + 64))
    b.message(BINARY, bytes(size), "too-big")


def _near_limit(b: _Builder) -> None:
    """Random (incompressible) payload just under the limit: compressed,
    its frame is a little longer than the message it carries."""
    size = b.draw(st.integers(LIMIT - 16, LIMIT))
    payload = b.draw(st.randoms(use_true_random=False)).randbytes(size)
    b.message(BINARY, payload, "near-limit", interleave=False)


def _bad_deflate(b: _Builder) -> None:
    if b.config.deflate == "off":
        b.add(BINARY, b"\x00\x00", "rsv1-no-extension", rsv=RSV1)
        return
    garbage = b.draw(
        st.sampled_from((b"\xff\xff\xff", b"\x07", b"\x03\x00\x00\x00"))
        | st.binary(min_size=1, max_size=8)
    )
    opcode = b.draw(st.sampled_from((TEXT, BINARY)))
    b.add(opcode, garbage, "bad-deflate", rsv=RSV1)


def _final_block(b: _Builder) -> None:
    """A compressed message ended with a BFINAL block instead of a sync
    flush (RFC 7692 section 7.2.3.4 allows it); the sender's next message
    starts a new deflate stream, with an empty window."""
    if b.config.deflate == "off":
        b.add(BINARY, b"plain", "valid")
        return
    compressor = zlib.compressobj(wbits=-15)
    payload = b.draw(st.text(max_size=40)).encode("utf-8")
    body = compressor.compress(payload) + compressor.flush(zlib.Z_FINISH)
    b.add(TEXT, body, "final-block", rsv=RSV1)
    b._shared = None


def _after_final_block(b: _Builder) -> None:
    """A whole deflate stream (ending in a BFINAL block) with bytes after it."""
    if b.config.deflate == "off":
        b.add(BINARY, b"plain", "valid")
        return
    compressor = zlib.compressobj(wbits=-15)
    body = compressor.compress(b.draw(st.binary(max_size=20))) + compressor.flush(zlib.Z_FINISH)
    b.add(BINARY, body + b.draw(st.binary(min_size=1, max_size=4)), "after-final-block", rsv=RSV1)


def _close_in_fragmented(b: _Builder) -> None:
    b.message(
        BINARY,
        b.draw(st.binary(min_size=1, max_size=20)),
        "open-message",
        interleave=False,
        finish=False,
    )
    b.add(CLOSE, b"\x03\xe8", "close-in-fragmented", "close")


FLAWS: tuple[Callable[[_Builder], None], ...] = (
    _reserved_bits,
    _rsv1_misplaced,
    _reserved_opcode,
    _non_minimal,
    _length_msb,
    _huge_length,
    _control_too_long,
    _fragmented_control,
    _bad_close,
    _wrong_mask,
    _orphan_continuation,
    _message_in_message,
    _invalid_utf8,
    _too_big,
    _near_limit,
    _bad_deflate,
    _close_in_fragmented,
    _final_block,
    _after_final_block,
)

configs = st.builds(
    Config,
    role=st.sampled_from(("server", "client")),
    deflate=st.sampled_from(("off", "takeover", "reset")),
)


@st.composite
def cases(draw: st.DrawFn) -> Case:
    """A stream: a few valid messages and control frames, and usually one
    or two frames that break a rule, cut into chunks anywhere."""
    config = draw(configs)
    builder = _Builder(draw, config)
    steps = draw(
        st.lists(
            st.sampled_from((_valid_message, _valid_message, _valid_control, _invalid)),
            min_size=1,
            max_size=6,
        )
    )
    for step in steps:
        step(builder)
    case = Case(config, builder.frames)
    case.cuts = draw(st.lists(st.integers(0, len(case.data)), max_size=6))
    return case
