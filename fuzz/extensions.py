"""Fuzz the Sec-WebSocket-Extensions parser and the permessage-deflate
negotiation of both roles.

The input (see `_common`): mode byte (bits 0-2 pick the PerMessageDeflate
settings from `SETTINGS`), two bytes unused here, then header values
separated by newlines, read as latin-1 as the HTTP parser reads them.

Invariants: `parse_extensions` raises nothing but HandshakeViolation(400);
what it returns is made of tokens and formats back to text that parses to
the same offers; `server_agreement` never raises, and its response is a
valid permessage-deflate response that names only what the RFC allows for
the offer it took, within our settings; `client_agreement` raises only
HandshakeViolation (status 101) and agrees on windows of 8-15 bits.
"""

from __future__ import annotations

import re

from _common import main, split_input

from wsproto_core import ExtensionOffer, PerMessageDeflate
from wsproto_core.deflate import client_agreement, client_offers, server_agreement
from wsproto_core.errors import HandshakeViolation
from wsproto_core.extensions import format_extension, parse_extensions

_TOKEN = re.compile(r"[!#$%&'*+\-.^_`|~0-9A-Za-z]+")

SETTINGS = (
    PerMessageDeflate(),
    PerMessageDeflate(window_bits=15, peer_window_bits=None),
    PerMessageDeflate(window_bits=9, peer_window_bits=9, no_context_takeover=True),
    PerMessageDeflate(peer_no_context_takeover=True),
    PerMessageDeflate(window_bits=15, peer_window_bits=15, peer_no_context_takeover=True),
    PerMessageDeflate(no_context_takeover=True, peer_window_bits=None),
    PerMessageDeflate(window_bits=10, peer_window_bits=11),
    PerMessageDeflate(window_bits=14, peer_window_bits=13, no_context_takeover=True),
)


def _check_offer(offer: ExtensionOffer) -> None:
    assert _TOKEN.fullmatch(offer.name), offer
    for key, value in offer.params:
        assert _TOKEN.fullmatch(key), offer
        assert value is None or _TOKEN.fullmatch(value), offer


def _check_server(offers: tuple[ExtensionOffer, ...], settings: PerMessageDeflate) -> None:
    result = server_agreement(offers, settings)
    if result is None:
        return
    response, agreement = result
    assert response.name == "permessage-deflate"
    # The offer taken is the first one that is valid: the response fits it.
    params = dict(response.params)
    assert len(params) == len(response.params), "a parameter repeated in our response"
    taken = next(o for o in offers if o.name == "permessage-deflate" and _valid_offer(o))
    asked = dict(taken.params)
    if "client_max_window_bits" in params:
        assert "client_max_window_bits" in asked, "limited a client that cannot be limited"
    assert 8 <= agreement.send_window_bits <= settings.window_bits
    if asked.get("server_max_window_bits"):
        assert agreement.send_window_bits <= int(asked["server_max_window_bits"] or 15)
    assert 8 <= agreement.receive_window_bits <= 15
    assert agreement.reset_send == ("server_no_context_takeover" in params)
    assert agreement.reset_receive == ("client_no_context_takeover" in params)
    if settings.no_context_takeover or "server_no_context_takeover" in asked:
        assert agreement.reset_send
    # The response passes a client's own checks (RFC 7692 section 7.1).
    client = client_agreement((response,), PerMessageDeflate(peer_window_bits=None))
    assert client is not None
    assert client.receive_window_bits == agreement.send_window_bits
    assert client.reset_receive == agreement.reset_send


def _valid_offer(offer: ExtensionOffer) -> bool:
    seen = set()
    for key, value in offer.params:
        if key in seen:
            return False
        seen.add(key)
        if key in ("server_no_context_takeover", "client_no_context_takeover"):
            if value is not None:
                return False
        elif key in ("server_max_window_bits", "client_max_window_bits"):
            if value is None:
                if key == "server_max_window_bits":
                    return False
                continue
            if not (value.isascii() and value.isdigit() and value[0] != "0"):
                return False
            if not 8 <= int(value) <= 15:
                return False
        else:
            return False
    return True


def _check_client(offers: tuple[ExtensionOffer, ...], settings: PerMessageDeflate) -> None:
    try:
        agreement = client_agreement(offers, settings)
    except HandshakeViolation as error:
        assert error.status == 101, error  # noqa: PT017 - a harness, not a pytest test
        return
    if agreement is None:
        assert all(o.name != "permessage-deflate" for o in offers)
        return
    assert 8 <= agreement.send_window_bits <= settings.window_bits
    assert 8 <= agreement.receive_window_bits <= 15
    if settings.no_context_takeover:
        assert agreement.reset_send
    if settings.peer_no_context_takeover:
        assert agreement.reset_receive


def TestOneInput(data: bytes) -> None:  # noqa: N802 - the name atheris and libFuzzer use
    given = split_input(data)
    settings = SETTINGS[given.mode & 7]
    values = given.payload.decode("latin-1").split("\n")
    try:
        offers = parse_extensions(values)
    except HandshakeViolation as error:
        assert error.status == 400, error  # noqa: PT017 - a harness, not a pytest test
        return
    for offer in offers:
        _check_offer(offer)
        assert str(offer) == format_extension(offer)
    text = ", ".join(format_extension(o) for o in offers)
    assert parse_extensions([text]) == offers, (text, offers)
    _check_server(offers, settings)
    _check_client(offers, settings)
    # Our own offers always parse back to themselves and a server takes the first.
    own = client_offers(settings)
    assert parse_extensions([", ".join(map(str, own))]) == own


if __name__ == "__main__":
    main(TestOneInput)
