"""permessage-deflate (RFC 7692): the settings and the negotiation.

The RFC names its four parameters after the two directions (client_* and
server_*), so what a parameter means flips with the role. The settings here
are named from our side instead (`window_bits` is always the window we
compress with, `peer_window_bits` always the one we ask the other side to
stay within), and the negotiation maps them onto the RFC names for the role:

| setting | as a client (offer) | as a server (response) |
|---|---|---|
| `window_bits` | `client_max_window_bits=N` | `server_max_window_bits=N` |
| `peer_window_bits` | `server_max_window_bits=N` | `client_max_window_bits=N`, if offered |
| `no_context_takeover` | `client_no_context_takeover` | `server_no_context_takeover` |
| `peer_no_context_takeover` | `server_no_context_takeover` | `client_no_context_takeover` |

A server declines an offer it cannot honour (RFC 7692 section 5: unknown or
repeated parameter, bad value) and tries the next one; a client fails the
handshake on a response that does not fit what it offered (section 5.1).
Neither raises on what the peer sent.
"""

from __future__ import annotations

from dataclasses import dataclass

from .errors import HandshakeViolation
from .extensions import ExtensionOffer

EXTENSION_NAME = "permessage-deflate"
MIN_WINDOW_BITS = 8  # what the RFC allows on the wire
MAX_WINDOW_BITS = 15
ZLIB_MIN_WINDOW_BITS = 9  # zlib cannot compress with a 256-byte window

_WINDOW_PARAMS = ("server_max_window_bits", "client_max_window_bits")
_FLAG_PARAMS = ("server_no_context_takeover", "client_no_context_takeover")


@dataclass(frozen=True, slots=True, kw_only=True)
class PerMessageDeflate:
    """What this endpoint asks for and uses, for permessage-deflate.

    The defaults keep memory per connection small (measured in
    benchmarks/deflate_bench.py): a 4 KiB window each way and `mem_level` 4
    cost about 41 KiB of zlib state per connection once both directions
    have carried a compressed message, and nothing before, since the zlib
    streams are made on first use. Each step of window bits doubles the
    window's share; long repetitive text compresses a little better.

    - `window_bits` (9-15): the LZ77 window we compress with, at most; the
      peer may ask for less. zlib cannot compress with 8: if the peer asks
      for that, our messages go out uncompressed (allowed per message).
    - `peer_window_bits` (9-15 or None): the window we ask the peer to keep
      to, which bounds the memory of our decompressor. A client that asks
      adds a second offer without it, for servers that would decline. 8 is
      valid in the RFC but not asked for: zlib-based peers cannot honour it.
    - `no_context_takeover`: start every message we send from an empty
      window (worse ratio; lets one compressed frame go to many peers).
    - `peer_no_context_takeover`: ask the peer to do the same.
    - `level` (0-9) and `mem_level` (1-9): zlib's speed/ratio and memory knobs.
    - `min_size`: messages shorter than this (in bytes, after UTF-8
      encoding) are sent uncompressed unless the send asks otherwise;
      deflate cannot shrink a few bytes, and skipping them saves the time.
    """

    window_bits: int = 12
    peer_window_bits: int | None = 12
    no_context_takeover: bool = False
    peer_no_context_takeover: bool = False
    level: int = 6
    mem_level: int = 4
    min_size: int = 32

    def __post_init__(self) -> None:
        if not ZLIB_MIN_WINDOW_BITS <= self.window_bits <= MAX_WINDOW_BITS:
            raise ValueError(f"window_bits must be 9-15, not {self.window_bits!r}")
        peer = self.peer_window_bits
        if peer is not None and not ZLIB_MIN_WINDOW_BITS <= peer <= MAX_WINDOW_BITS:
            raise ValueError(f"peer_window_bits must be 9-15 or None, not {peer!r}")
        if not 0 <= self.level <= 9:
            raise ValueError(f"level must be 0-9, not {self.level!r}")
        if not 1 <= self.mem_level <= 9:
            raise ValueError(f"mem_level must be 1-9, not {self.mem_level!r}")
        if self.min_size < 0:
            raise ValueError(f"min_size must be 0 or more, not {self.min_size!r}")


@dataclass(frozen=True, slots=True, kw_only=True)
class Agreement:
    """What both sides settled on, from our side of the connection.

    `send_window_bits` is the largest window our messages may use (8 means
    we cannot compress at all with zlib); `receive_window_bits` the largest
    the peer's may use.
    """

    send_window_bits: int
    receive_window_bits: int
    reset_send: bool
    reset_receive: bool


# -- the client's side ------------------------------------------------------


def client_offers(settings: PerMessageDeflate) -> tuple[ExtensionOffer, ...]:
    """The offers a client sends, preferred first."""
    own: list[tuple[str, str | None]] = [("client_max_window_bits", str(settings.window_bits))]
    if settings.no_context_takeover:
        own.append(("client_no_context_takeover", None))
    asks: list[tuple[str, str | None]] = []
    if settings.peer_window_bits is not None:
        asks.append(("server_max_window_bits", str(settings.peer_window_bits)))
    if settings.peer_no_context_takeover:
        asks.append(("server_no_context_takeover", None))
    offers = [ExtensionOffer(name=EXTENSION_NAME, params=(*asks, *own))]
    if settings.peer_window_bits is not None:
        # A server that cannot limit its window must decline the whole offer
        # (section 7.1.2.1); this one lets it accept compression anyway.
        rest = tuple(p for p in asks if p[0] != "server_max_window_bits")
        offers.append(ExtensionOffer(name=EXTENSION_NAME, params=(*rest, *own)))
    return tuple(offers)


def client_agreement(
    accepted: tuple[ExtensionOffer, ...], settings: PerMessageDeflate
) -> Agreement | None:
    """Check the server's answer to `client_offers(settings)`.

    Returns None if the server did not accept permessage-deflate, and
    raises `HandshakeViolation` (status 101) if its answer is invalid or
    fits none of the offers.
    """
    answers = [e for e in accepted if e.name == EXTENSION_NAME]
    if not answers:
        return None
    if len(answers) > 1:
        raise HandshakeViolation(101, "server accepted permessage-deflate twice")
    params = _read_params(answers[0], "response")
    server_bits = params.get("server_max_window_bits")
    client_bits = params.get("client_max_window_bits")
    if settings.peer_no_context_takeover and "server_no_context_takeover" not in params:
        raise HandshakeViolation(101, "server ignored our server_no_context_takeover")
    # Any server_max_window_bits fits: our last offer did not limit it, and
    # a server may then name any value (section 7.1.2.1).
    return Agreement(
        send_window_bits=min(settings.window_bits, client_bits or MAX_WINDOW_BITS),
        receive_window_bits=server_bits or MAX_WINDOW_BITS,
        reset_send=settings.no_context_takeover or "client_no_context_takeover" in params,
        reset_receive="server_no_context_takeover" in params,
    )


# -- the server's side ------------------------------------------------------


def server_agreement(
    offers: tuple[ExtensionOffer, ...], settings: PerMessageDeflate
) -> tuple[ExtensionOffer, Agreement] | None:
    """Accept the first valid permessage-deflate offer, or none.

    Returns the response to send and what it commits us to.
    """
    for offer in offers:
        if offer.name != EXTENSION_NAME:
            continue
        try:
            params = _read_params(offer, "offer")
        except HandshakeViolation:
            continue  # section 5: decline this offer, consider the next
        return _answer(params, settings)
    return None


def _answer(
    params: dict[str, int | None], settings: PerMessageDeflate
) -> tuple[ExtensionOffer, Agreement]:
    response: list[tuple[str, str | None]] = []
    send_bits = settings.window_bits
    if "server_max_window_bits" in params:
        asked = params["server_max_window_bits"]
        send_bits = min(send_bits, asked or MAX_WINDOW_BITS)
    if send_bits < MAX_WINDOW_BITS or "server_max_window_bits" in params:
        response.append(("server_max_window_bits", str(send_bits)))
    receive_bits = MAX_WINDOW_BITS
    if "client_max_window_bits" in params:
        hinted = params["client_max_window_bits"] or MAX_WINDOW_BITS
        receive_bits = min(hinted, settings.peer_window_bits or MAX_WINDOW_BITS)
        if receive_bits < MAX_WINDOW_BITS:
            response.append(("client_max_window_bits", str(receive_bits)))
    reset_send = settings.no_context_takeover or "server_no_context_takeover" in params
    if reset_send:
        response.append(("server_no_context_takeover", None))
    # A client's client_no_context_takeover is only a hint (section
    # 7.1.1.2), and some clients do not keep to it unless the response says
    # it too; saying it costs such a client nothing and lets us drop our
    # decompressor's window between messages.
    reset_receive = settings.peer_no_context_takeover or "client_no_context_takeover" in params
    if reset_receive:
        response.append(("client_no_context_takeover", None))
    agreement = Agreement(
        send_window_bits=send_bits,
        receive_window_bits=receive_bits,
        reset_send=reset_send,
        reset_receive=reset_receive,
    )
    return ExtensionOffer(name=EXTENSION_NAME, params=tuple(response)), agreement


# -- shared -----------------------------------------------------------------


def _read_params(extension: ExtensionOffer, what: str) -> dict[str, int | None]:
    """Validate the parameters of one offer or response (RFC 7692 section 7.1).

    A window parameter maps to its value (None when given bare, which only
    client_max_window_bits may be, and only in an offer); a flag maps to None.
    """
    params: dict[str, int | None] = {}
    for key, value in extension.params:
        if key in params:
            raise HandshakeViolation(101, f"{key} repeated in the permessage-deflate {what}")
        if key in _FLAG_PARAMS:
            if value is not None:
                raise HandshakeViolation(101, f"{key} takes no value")
            params[key] = None
        elif key in _WINDOW_PARAMS:
            params[key] = _window_value(key, value, what)
        else:
            raise HandshakeViolation(101, f"unknown permessage-deflate parameter {key!r}")
    return params


def _window_value(key: str, value: str | None, what: str) -> int | None:
    if value is None:
        if key == "client_max_window_bits" and what == "offer":
            return None
        raise HandshakeViolation(101, f"{key} needs a value")
    if not (value.isascii() and value.isdigit() and value[0] != "0"):
        raise HandshakeViolation(101, f"{key}={value!r} is not a window size")
    bits = int(value)
    if not MIN_WINDOW_BITS <= bits <= MAX_WINDOW_BITS:
        raise HandshakeViolation(101, f"{key}={bits} is outside 8-15")
    return bits
