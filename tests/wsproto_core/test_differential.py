"""Differential tests: the same bytes to our core, to websockets' sans-IO
protocol and to wsproto, in both roles, with and without permessage-deflate.

Three implementations written apart rarely share a misreading of RFC 6455,
so where two of them agree and we do not, we are probably wrong; where we
differ on purpose, the difference is written down in `INTENDED` with the
RFC section that decides it. Anything else that differs fails the test with
the bytes that show it (`TABLE` joins the frame rows of `INTENDED` and the
handshake rows of `INTENDED_HANDSHAKES`), and every row must be hit by its own
explicit example, so that a row whose case no longer differs is noticed.

Frames: `differential/streams.py` generates the streams, `peers.py` drives
each implementation, `outcome.py` is the normalized form compared.
Handshakes: `differential/handshakes.py`.
"""

from __future__ import annotations

import random
import zlib
from collections.abc import Callable
from dataclasses import dataclass
from functools import cached_property

import pytest
from hypothesis import given, settings

from .differential import handshakes as hs
from .differential.outcome import Outcome
from .differential.peers import LIMIT, PEERS, Config, run_ours
from .differential.streams import (
    BINARY,
    CLOSE,
    CONT,
    PING,
    RSV1,
    TEXT,
    Case,
    Frame,
    cases,
    failing_frame,
)
from .wire import MASK
from .wire import frame as build_frame


@dataclass
class Difference:
    """One stream on which a peer's outcome is not ours."""

    case: Case
    peer: str
    ours: Outcome
    theirs: Outcome

    @cached_property
    def our_stop(self) -> Frame | None:
        return failing_frame(self.case, run_ours)

    @cached_property
    def their_stop(self) -> Frame | None:
        return failing_frame(self.case, PEERS[self.peer])

    def we_stop_at(self, tag: str) -> bool:
        return self.our_stop is not None and tag in self.our_stop.tags

    def they_stop_at(self, tag: str) -> bool:
        return self.their_stop is not None and tag in self.their_stop.tags

    def agree_through_first(self, tag: str) -> bool:
        """Both agree on the stream up to and including the first frame
        tagged `tag`, and neither has failed by then: whatever differs comes
        after it."""
        frames = self.case.frames
        index = next((i for i, f in enumerate(frames) if tag in f.tags), None)
        if index is None:
            return False
        prefix = [b"".join(f.data for f in frames[: index + 1])]
        ours = run_ours(self.case.config, prefix)
        return ours.failed is None and ours == PEERS[self.peer](self.case.config, prefix)

    def report(self) -> str:
        return (
            f"{self.peer} differs from wsproto_core, and no row of INTENDED explains it\n"
            f"{self.case.describe()}\n  ours:   {self.ours}\n  theirs: {self.theirs}"
        )


def _bytes_after_final_block(frame: Frame | None) -> bool:
    """Whether `frame`'s payload is a whole deflate stream with bytes after
    it (other than the 4-byte tail a receiver appends)."""
    if frame is None:
        return False
    stream = zlib.decompressobj(-15)
    try:
        stream.decompress(frame.payload + b"\x00\x00\xff\xff")
    except zlib.error:
        return False
    return stream.eof and stream.unused_data not in (b"", b"\x00\x00\xff\xff")


def _they_only_fail_on_close(d: Difference, code: int) -> bool:
    """The peer failed with `code` on the close frame that we took (and
    answered) as a clean close: all else is the same."""
    return (
        d.ours.failed is None
        and d.theirs.failed == code
        and bool(d.ours.events)
        and d.ours.events[-1][0] == "close"
        and d.theirs.events == d.ours.events[:-1]
        and d.theirs.sent[:-1] == d.ours.sent[:-1]
        and d.theirs.sent[-1:] == (("close", code),)
    )


# -- explicit examples, one per row ----------------------------------------


def _case(config: Config, *frames: tuple[bytes, str] | tuple[bytes, str, bytes]) -> Case:
    return Case(
        config, [Frame(f[0], frozenset({f[1]}), "", f[2] if len(f) > 2 else b"") for f in frames]
    )


def _f(config: Config, opcode: int, payload: bytes, **options: object) -> bytes:
    return build_frame(opcode, payload, mask=MASK if config.masked else None, **options)  # type: ignore[arg-type]


def _deflate(payload: bytes, *, finish: bool = False) -> bytes:
    compressor = zlib.compressobj(wbits=-15)
    if finish:
        return compressor.compress(payload) + compressor.flush(zlib.Z_FINISH)
    return (compressor.compress(payload) + compressor.flush(zlib.Z_SYNC_FLUSH))[:-4]


def _example_ws_utf8() -> Case:
    c = Config("server", "off")
    return _case(
        c,
        (_f(c, TEXT, b"ok"), "valid"),
        (_f(c, TEXT, b"\xff", fin=False), "invalid-utf8"),
        (_f(c, PING, b"p"), "in-fragmented"),
        (_f(c, CONT, b"x"), "invalid-utf8"),
    )


def _example_wsproto_utf8_later() -> Case:
    c = Config("client", "off")
    return _case(
        c,
        (_f(c, TEXT, b"\xed", fin=False), "invalid-utf8"),
        (_f(c, CONT, b"\xa0", fin=False), "invalid-utf8"),
        (_f(c, PING, b"p"), "in-fragmented"),
        (_f(c, CONT, b"\x80"), "invalid-utf8"),
    )


def _example_ws_close_in_fragmented() -> Case:
    c = Config("client", "off")
    return _case(
        c,
        (_f(c, BINARY, b"part", fin=False), "open-message"),
        (_f(c, CLOSE, b"\x03\xe8"), "close-in-fragmented"),
    )


def _example_ws_bad_deflate() -> Case:
    c = Config("server", "takeover")
    return _case(c, (_f(c, BINARY, b"\xff\xff\xff", rsv=RSV1), "bad-deflate"))


def _example_ws_length_msb() -> Case:
    c = Config("client", "off")
    return _case(c, (_f(c, BINARY, b"", length_bytes=8, length=1 << 63), "length-msb"))


def _example_ws_non_minimal() -> Case:
    c = Config("server", "off")
    return _case(
        c, (_f(c, BINARY, b"abc", length_bytes=2), "non-minimal"), (_f(c, PING, b""), "valid")
    )


def _example_ws_compressed_frame_size() -> Case:
    c = Config("server", "reset")
    payload = random.Random(0).randbytes(LIMIT)
    return _case(c, (_f(c, BINARY, _deflate(payload), rsv=RSV1), "near-limit"))


def _example_ws_limit_bypassed_at_zero_budget() -> Case:
    """A compressed message's first fragment inflates to exactly the limit
    (zlib holds the rest of its output back), and the last, empty fragment
    is then inflated with a budget of 0, which zlib reads as no limit. The
    deflate bytes are the ones hypothesis found."""
    c = Config("server", "takeover")
    bomb = bytes.fromhex("ecc101010000008220ffaf6e4840010000000706")
    tags = frozenset({"compressed", "too-big"})
    return Case(
        c,
        [
            Frame(_f(c, BINARY, bomb, fin=False, rsv=RSV1), tags, "", b""),
            Frame(_f(c, CONT, b""), tags, "", b""),
        ],
    )


def _example_wsproto_no_limit() -> Case:
    c = Config("client", "off")
    return _case(c, (_f(c, BINARY, bytes(LIMIT + 1)), "too-big"), (_f(c, PING, b"after"), "valid"))


def _example_wsproto_1014() -> Case:
    c = Config("server", "off")
    return _case(c, (_f(c, CLOSE, (1014).to_bytes(2, "big")), "close-1014"))


def _example_wsproto_control_in_compressed() -> Case:
    c = Config("server", "takeover")
    body = _deflate(b"hello, hello, hello")
    return _case(
        c,
        (_f(c, TEXT, body[:3], fin=False, rsv=RSV1), "compressed"),
        (_f(c, PING, b"between"), "in-compressed-fragmented"),
        (_f(c, CONT, body[3:]), "compressed"),
    )


def _example_after_final_block(peer: str) -> Callable[[], Case]:
    def example() -> Case:
        c = Config("server", "reset")
        payload = _deflate(b"", finish=True) + b"\x00\x00"
        return _case(c, (_f(c, BINARY, payload, rsv=RSV1), "after-final-block", payload))

    return example


def _example_final_block(peer: str) -> Callable[[], Case]:
    def example() -> Case:
        c = Config("client", "takeover")
        return _case(
            c,
            (_f(c, TEXT, _deflate(b"first", finish=True), rsv=RSV1), "final-block"),
            (_f(c, TEXT, _deflate(b"second"), rsv=RSV1), "compressed"),
        )

    return example


# -- the table ---------------------------------------------------------------


@dataclass(frozen=True)
class Intended:
    """A known difference: `peer` does `what`; `rfc` decides who is right;
    `matches` recognizes it (and nothing broader); `example` shows it."""

    name: str
    peer: str
    what: str
    rfc: str
    matches: Callable[[Difference], bool]
    example: Callable[[], Case]


INTENDED: tuple[Intended, ...] = (
    Intended(
        "websockets-utf8-unchecked",
        "websockets",
        "its sans-IO protocol never checks text for UTF-8 (its asyncio/sync layer decodes at "
        "recv(), raising UnicodeDecodeError without failing the connection); we fail with 1007 "
        "at the first invalid byte, even mid-message",
        "RFC 6455 §8.1: an endpoint that finds a text byte stream is not UTF-8 MUST fail the "
        "connection (1007, §7.4.1)",
        lambda d: (
            (
                # (or bytes meant as bad deflate that inflate to bad text: `c1 01 3a` is \xc0)
                d.we_stop_at("invalid-utf8") or any(e[0] == "text-invalid" for e in d.theirs.events)
            )
            and d.ours.stops_early_with(d.theirs, 1007)
        ),
        _example_ws_utf8,
    ),
    Intended(
        "wsproto-utf8-noticed-later",
        "wsproto",
        "notices some invalid sequences only at their last byte (CPython's incremental "
        "decoder holds a surrogate's \\xed\\xa0, or \\xf4\\x90 past U+10FFFF, as "
        "incomplete), so it still answers control frames between those fragments; we fail at "
        "the first byte no valid sequence can continue with",
        "RFC 6455 §8.1 requires failing on invalid UTF-8 but not when; §5.4 lets a fragment end "
        "inside a character, so both timings conform",
        lambda d: (
            d.we_stop_at("invalid-utf8")
            and d.theirs.failed == 1007
            and d.ours.stops_early_with(d.theirs, 1007)
            and all(item[0] in ("ping", "pong") for item in d.theirs.events[len(d.ours.events) :])
        ),
        _example_wsproto_utf8_later,
    ),
    Intended(
        "websockets-close-inside-fragmented-message",
        "websockets",
        "fails with 1002 on a close frame that arrives between the fragments of a message; we "
        "take it as the peer's close (the unfinished message is dropped) and echo it",
        "RFC 6455 §5.4: control frames MAY be injected in the middle of a fragmented message; "
        "§5.5.1 and §7.1.5 make a received close frame the close handshake",
        lambda d: d.they_stop_at("close-in-fragmented") and _they_only_fail_on_close(d, 1002),
        _example_ws_close_in_fragmented,
    ),
    Intended(
        "websockets-bad-deflate-code",
        "websockets",
        "fails invalid deflate data with 1002; we (and wsproto) use 1007",
        "RFC 7692 §6.2 says only to fail the connection; RFC 6455 §7.4.1 defines 1007 for data "
        "inconsistent with the message",
        lambda d: d.we_stop_at("bad-deflate") and d.ours.same_but_code(d.theirs, 1007, 1002),
        _example_ws_bad_deflate,
    ),
    Intended(
        "websockets-64-bit-length-msb",
        "websockets",
        "does not check the most significant bit of a 64-bit length, so its size limit "
        "answers 1009 where we answer 1002",
        "RFC 6455 §5.2: the most significant bit of the 64-bit length MUST be 0",
        lambda d: d.we_stop_at("length-msb") and d.ours.same_but_code(d.theirs, 1002, 1009),
        _example_ws_length_msb,
    ),
    Intended(
        "websockets-non-minimal-length",
        "websockets",
        "accepts a length in 2 or 8 bytes that fits in fewer; we fail with 1002",
        "RFC 6455 §5.2: the minimal number of bytes MUST be used to encode the length",
        lambda d: d.we_stop_at("non-minimal") and d.ours.stops_early_with(d.theirs, 1002),
        _example_ws_non_minimal,
    ),
    Intended(
        "websockets-limit-on-compressed-frame",
        "websockets",
        "applies max_size to a compressed frame's length too, so a message just under the "
        "limit whose deflate output is a little longer fails with 1009; we bound the "
        "inflated size only",
        "RFC 6455 §10.4: size limits are the implementation's own choice",
        lambda d: d.they_stop_at("near-limit") and d.theirs.stops_early_with(d.ours, 1009),
        _example_ws_compressed_frame_size,
    ),
    Intended(
        "websockets-limit-bypassed-at-zero-budget",
        "websockets",
        "a bug of websockets: once the fragments of a compressed message have inflated to "
        "exactly max_size, the next fragment is inflated with a remaining budget of 0, which "
        "zlib takes as no limit, so the message passes max_size (a deflate bomb gets through); "
        "we fail with 1009",
        "RFC 6455 §10.4: implementations should limit the total message size after "
        "reassembly from multiple frames, which is the limit websockets means to apply",
        lambda d: (
            d.we_stop_at("too-big")
            and any("compressed" in frame.tags for frame in d.case.frames)
            and d.theirs.failed is None
            and any(len(event[1]) > LIMIT for event in d.theirs.events if len(event) > 1)
            and d.ours.stops_early_with(d.theirs, 1009)
        ),
        _example_ws_limit_bypassed_at_zero_budget,
    ),
    Intended(
        "wsproto-no-size-limit",
        "wsproto",
        "has no message size limit; we fail with 1009 past max_message_size (websockets too)",
        "RFC 6455 §10.4: size limits are the implementation's own choice",
        lambda d: (
            (d.we_stop_at("too-big") or d.we_stop_at("huge-length"))
            and d.ours.stops_early_with(d.theirs, 1009)
        ),
        _example_wsproto_no_limit,
    ),
    Intended(
        "wsproto-close-code-1014",
        "wsproto",
        "fails with 1002 on close code 1014 (Bad Gateway); we (and websockets) accept it",
        "RFC 6455 §7.4.2: 1000-2999 are defined by the RFC and the IANA registry of §11.7, "
        "which registers 1014",
        lambda d: d.they_stop_at("close-1014") and _they_only_fail_on_close(d, 1002),
        _example_wsproto_1014,
    ),
    Intended(
        "wsproto-control-frame-in-compressed-message",
        "wsproto",
        "a bug of wsproto: a control frame between the fragments of a compressed message "
        "resets its 'compressed' flag, so the rest of the message is delivered still "
        "deflated (or fails as bad UTF-8)",
        "RFC 7692 §6.1: RSV1 on the first frame marks the whole message compressed; RFC 6455 "
        "§5.4 allows control frames between fragments",
        lambda d: d.agree_through_first("in-compressed-fragmented"),
        _example_wsproto_control_in_compressed,
    ),
    *(
        Intended(
            f"{peer}-message-after-final-block",
            peer,
            f"a bug of {peer}: after a compressed message that ended with a BFINAL block, its "
            "decompressor is finished, and with context takeover the next compressed "
            "messages are delivered empty; we start a new deflate stream for them",
            "RFC 7692 §7.2.3.4: a sender may end a message with a DEFLATE block with BFINAL "
            "set to 1",
            lambda d: d.agree_through_first("final-block"),
            _example_final_block(peer),
        )
        for peer in ("websockets", "wsproto")
    ),
    *(
        Intended(
            f"{peer}-bytes-after-final-block",
            peer,
            "ignores bytes that follow a compressed message's BFINAL block (zlib keeps them "
            "aside as unused data); we fail with 1007",
            "RFC 7692 §7.2.2: the payload with 0x00 0x00 0xff 0xff appended is decompressed as "
            "DEFLATE data, and bytes after the final block are not part of any",
            lambda d: (
                _bytes_after_final_block(d.our_stop) and d.ours.stops_early_with(d.theirs, 1007)
            ),
            _example_after_final_block(peer),
        )
        for peer in ("websockets", "wsproto")
    ),
)


# -- handshakes ----------------------------------------------------------------


@dataclass(frozen=True)
class HandshakeDifference:
    """One request (to the servers) or response (to the clients) on which a
    peer's verdict is not ours."""

    kind: str  # "request" or "response"
    head: hs.Head
    peer: str
    ours: hs.Verdict
    theirs: hs.Verdict

    def report(self) -> str:
        return (
            f"{self.peer} judges this {self.kind} differently, and no row of INTENDED explains "
            f"it\n  {self.head.describe()}\n  ours: {self.ours}  theirs: {self.theirs}"
        )


def _verdicts(
    kind: str, ours: str, theirs: str, *triggers: str
) -> Callable[[Difference | HandshakeDifference], bool]:
    """A predicate: a `kind` head carrying one of the `triggers` (a note of
    what was varied, by prefix), which we judge `ours` and the peer `theirs`
    ("accept", "reject" or "error")."""

    def matches(d: Difference | HandshakeDifference) -> bool:
        return (
            isinstance(d, HandshakeDifference)
            and d.kind == kind
            and d.ours[0] == ours
            and d.theirs[0] == theirs
            and any(note.startswith(triggers) for note in d.head.notes)
        )

    return matches


def _head(
    first: str, *changes: tuple[str, str | None], defaults: dict[str, str], note: str
) -> hs.Head:
    """The default head with fields replaced (None drops one) or repeated."""
    fields = list(defaults.items())
    for name, value in changes:
        if value is None:
            fields = [f for f in fields if f[0] != name]
        elif value == "twice":
            fields.append((name, defaults[name]))
        else:
            fields = [(n, value if n == name else v) for n, v in fields]
    return hs.Head(first, tuple(fields), frozenset({note}))


def _request(
    *changes: tuple[str, str | None], first: str = "GET /chat HTTP/1.1", note: str
) -> Callable[[], hs.Head]:
    return lambda: _head(first, *changes, defaults=hs.REQUEST_DEFAULTS, note=note)


def _response(*changes: tuple[str, str | None], note: str) -> Callable[[], hs.Head]:
    return lambda: _head(
        "HTTP/1.1 101 Switching Protocols", *changes, defaults=hs.RESPONSE_DEFAULTS, note=note
    )


@dataclass(frozen=True)
class IntendedHandshake:
    """As `Intended`, for an opening handshake; `kind` says which role reads it."""

    name: str
    peer: str
    kind: str
    what: str
    rfc: str
    matches: Callable[[Difference | HandshakeDifference], bool]
    example: Callable[[], hs.Head]


INTENDED_HANDSHAKES: tuple[IntendedHandshake, ...] = (
    IntendedHandshake(
        "websockets-host-unchecked",
        "websockets",
        "request",
        "accepts an upgrade request without a Host header or with two; we answer 400",
        "RFC 6455 §4.2.1 item 2 (the request has a Host header) and RFC 7230 §5.4 (a server "
        "MUST answer 400 to an HTTP/1.1 request without Host or with more than one)",
        _verdicts("request", "reject", "accept", "Host:missing", "Host:twice", "Host:odd="),
        _request(("Host", None), note="Host:missing"),
    ),
    IntendedHandshake(
        "websockets-repeated-upgrade",
        "websockets",
        "request",
        "refuses 'Upgrade: websocket' sent twice; we read repeated fields as one list, which "
        "contains websocket",
        "RFC 7230 §3.2.2: repeated fields equal one comma-joined field; RFC 6455 §4.2.1 item 3 "
        "asks only that Upgrade contain 'websocket'",
        _verdicts("request", "accept", "reject", "Upgrade:twice"),
        _request(("Upgrade", "twice"), note="Upgrade:twice"),
    ),
    IntendedHandshake(
        "wsproto-empty-host",
        "wsproto",
        "request",
        "accepts an empty Host header (found by the deep profile); we answer 400",
        "RFC 6455 §4.2.1 item 2: the Host header contains the server's authority",
        _verdicts("request", "reject", "accept", "Host:odd="),
        _request(("Host", ""), note="Host:odd="),
    ),
    IntendedHandshake(
        "wsproto-http-1.0",
        "wsproto",
        "request",
        "accepts an upgrade over HTTP/1.0; we answer 400",
        "RFC 6455 §4.1 and §4.2.1 item 1: the request is HTTP/1.1 or higher",
        _verdicts("request", "reject", "accept", "GET HTTP/1.0"),
        _request(first="GET /chat HTTP/1.0", note="GET HTTP/1.0"),
    ),
    IntendedHandshake(
        "wsproto-key-unchecked",
        "wsproto",
        "request",
        "accepts any Sec-WebSocket-Key (not base64, not 16 bytes, repeated); we answer 400",
        "RFC 6455 §4.2.1 item 4 (base64 of 16 bytes) and §11.3.1 (MUST NOT appear more than once)",
        _verdicts("request", "reject", "accept", "Sec-WebSocket-Key:"),
        _request(("Sec-WebSocket-Key", "not base64 at all!"), note="Sec-WebSocket-Key:odd"),
    ),
    IntendedHandshake(
        "wsproto-version-repeated",
        "wsproto",
        "request",
        "accepts Sec-WebSocket-Version: 13 sent twice; we answer 426",
        "RFC 6455 §11.3.5: Sec-WebSocket-Version MUST NOT appear more than once in a request",
        _verdicts("request", "reject", "accept", "Sec-WebSocket-Version:twice"),
        _request(("Sec-WebSocket-Version", "twice"), note="Sec-WebSocket-Version:twice"),
    ),
    IntendedHandshake(
        "wsproto-crash-on-window-value",
        "wsproto",
        "request",
        "a bug of wsproto: AcceptConnection with PerMessageDeflate raises ValueError on an "
        "offer with client_max_window_bits=abc, or with a quoted value; we decline the bad "
        "offer (and accept the quoted one)",
        "RFC 7692 §5 (decline an offer with an invalid parameter value) and RFC 6455 §9.1 "
        "(a parameter value may be a quoted-string)",
        lambda d: (
            _verdicts("request", "accept", "error", "Sec-WebSocket-Extensions:odd")(d)
            or _verdicts("request", "reject", "error", "Sec-WebSocket-Extensions:odd")(d)
        ),
        _request(
            ("Sec-WebSocket-Extensions", "permessage-deflate; client_max_window_bits=abc"),
            note="Sec-WebSocket-Extensions:odd",
        ),
    ),
    IntendedHandshake(
        "wsproto-client-repeated-fields",
        "wsproto",
        "response",
        "its client accepts a 101 with Upgrade, Sec-WebSocket-Accept, Sec-WebSocket-Protocol "
        "or Sec-WebSocket-Extensions repeated; we fail the handshake",
        "RFC 6455 §11.3.3 (Sec-WebSocket-Accept MUST NOT appear more than once), §4.1 client "
        "step 6 and §11.3.4 (the server selects one subprotocol), RFC 7692 §7 (the extension "
        "accepted once)",
        _verdicts(
            "response",
            "reject",
            "accept",
            "Upgrade:twice",
            "Sec-WebSocket-Accept:twice",
            "Sec-WebSocket-Protocol:twice",
            "Sec-WebSocket-Extensions:twice",
            "Sec-WebSocket-Extensions:odd=permessage-deflate, permessage-deflate",
        ),
        _response(("Sec-WebSocket-Accept", "twice"), note="Sec-WebSocket-Accept:twice"),
    ),
    IntendedHandshake(
        "wsproto-client-unknown-deflate-parameter",
        "wsproto",
        "response",
        "its client accepts permessage-deflate answered with an unknown parameter; we fail "
        "the handshake",
        "RFC 7692 §7.1: a client MUST fail the connection on a response with an extension "
        "parameter not defined for the extension",
        _verdicts(
            "response", "reject", "accept", "Sec-WebSocket-Extensions:odd=permessage-deflate; bogus"
        ),
        _response(
            ("Sec-WebSocket-Extensions", "permessage-deflate; bogus"),
            note="Sec-WebSocket-Extensions:odd=permessage-deflate; bogus",
        ),
    ),
    IntendedHandshake(
        "wsproto-client-crash-on-bare-window-bits",
        "wsproto",
        "response",
        "a bug of wsproto: its client raises IndexError on a response with a bare "
        "client_max_window_bits; we fail the handshake",
        "RFC 7692 §7.1.2.2: in a response client_max_window_bits has a value",
        _verdicts(
            "response",
            "reject",
            "error",
            "Sec-WebSocket-Extensions:odd=permessage-deflate; client_max_window_bits",
        ),
        _response(
            ("Sec-WebSocket-Extensions", "permessage-deflate; client_max_window_bits"),
            note="Sec-WebSocket-Extensions:odd=permessage-deflate; client_max_window_bits",
        ),
    ),
)

# The one table of intended differences, frames first, then handshakes.
TABLE: tuple[Intended | IntendedHandshake, ...] = (*INTENDED, *INTENDED_HANDSHAKES)

ROLES = {"request": (hs.server_ours, hs.SERVERS), "response": (hs.client_ours, hs.CLIENTS)}


def _unexplained_handshake(kind: str, head: hs.Head) -> list[str]:
    ours_of, peers = ROLES[kind]
    ours = ours_of(head)
    problems = []
    for peer, run in peers.items():
        theirs = run(head)
        if theirs == ours:
            continue
        difference = HandshakeDifference(kind, head, peer, ours, theirs)
        if not any(row.peer == peer and row.matches(difference) for row in INTENDED_HANDSHAKES):
            problems.append(difference.report())
    return problems


@given(hs.requests())
def test_requests_judged_as_websockets_and_wsproto_do(head: hs.Head) -> None:
    problems = _unexplained_handshake("request", head)
    assert not problems, "\n\n".join(problems)


@given(hs.responses())
def test_responses_judged_as_websockets_and_wsproto_do(head: hs.Head) -> None:
    problems = _unexplained_handshake("response", head)
    assert not problems, "\n\n".join(problems)


@pytest.mark.parametrize("row", INTENDED_HANDSHAKES, ids=lambda row: row.name)
def test_each_intended_handshake_difference_is_exercised(row: IntendedHandshake) -> None:
    head = row.example()
    ours_of, peers = ROLES[row.kind]
    ours, theirs = ours_of(head), peers[row.peer](head)
    difference = HandshakeDifference(row.kind, head, row.peer, ours, theirs)
    assert theirs != ours, f"{row.name}: the example no longer differs\n{head.describe()}"
    assert row.matches(difference), difference.report()


def test_empty_subprotocol_answer_is_refused() -> None:
    """A 101 whose Sec-WebSocket-Protocol is empty selects no subprotocol
    the client offered, and is not a token: websockets and wsproto both
    fail the handshake."""
    head = _response(("Sec-WebSocket-Protocol", ""), note="Sec-WebSocket-Protocol:odd=")()
    assert hs.client_websockets(head) == ("reject",)
    assert hs.client_wsproto(head) == ("reject",)
    assert hs.client_ours(head) == ("reject",)


def test_bytes_meant_as_bad_deflate_that_inflate_to_bad_text_are_the_utf8_row() -> None:
    """Found when the module ran from another path (another seed): a
    frame the generator tagged bad deflate inflates to b"\\xc0"."""
    case = Case(
        Config("client", "takeover"), [Frame(b"\xc1\x01:", frozenset({"bad-deflate"}), "", b":")]
    )
    assert run_ours(case.config, [case.frames[0].data]).failed == 1007
    assert _unexplained(case) == []


# -- frames: the tests --------------------------------------------------------


def _unexplained(case: Case) -> list[str]:
    """The differences of each peer from us on `case` that no row explains."""
    ours = run_ours(case.config, case.chunks)
    problems = []
    for peer, run in PEERS.items():
        theirs = run(case.config, case.chunks)
        if theirs == ours:
            continue
        difference = Difference(case, peer, ours, theirs)
        if not any(row.peer == peer and row.matches(difference) for row in INTENDED):
            problems.append(difference.report())
    return problems


@settings(max_examples=10 * settings.default.max_examples)
@given(cases())
def test_frames_agree_with_websockets_and_wsproto(case: Case) -> None:
    """Any stream, valid or not, chunked anyhow: whatever a peer does
    differently from us must be a row of INTENDED."""
    problems = _unexplained(case)
    assert not problems, "\n\n".join(problems)


@pytest.mark.parametrize("row", INTENDED, ids=lambda row: row.name)
def test_each_intended_difference_is_exercised(row: Intended) -> None:
    """A row's example must still differ, for that peer, and be matched by
    the row: otherwise the row is stale (the peer changed, or we did)."""
    case = row.example()
    ours = run_ours(case.config, case.chunks)
    theirs = PEERS[row.peer](case.config, case.chunks)
    assert theirs != ours, f"{row.name}: the example no longer differs\n{case.describe()}"
    difference = Difference(case, row.peer, ours, theirs)
    assert row.matches(difference), difference.report()
