"""Handshake helpers: the RFC's accept-key example, key generation, the exact
heads we build and the exact reason of each refusal."""

from __future__ import annotations

import base64

import pytest

from wsproto_core import HandshakeRequest, ServerConnection
from wsproto_core.errors import HandshakeViolation
from wsproto_core.extensions import ExtensionOffer
from wsproto_core.handshake import (
    ClientOffer,
    accept_token,
    build_accept,
    build_client_request,
    check_accept_response,
    check_upgrade_request,
    make_key,
)
from wsproto_core.http import parse_request_head, parse_response_head

from .wire import RFC_ACCEPT, RFC_KEY, upgrade_request


def test_rfc_accept_token() -> None:
    assert accept_token(RFC_KEY) == RFC_ACCEPT


def test_keys_are_16_random_bytes() -> None:
    keys = [make_key() for _ in range(50)]
    assert all(len(base64.b64decode(k, validate=True)) == 16 for k in keys)
    assert len(set(keys)) == 50


def test_extension_headers_in_both_builders_and_offered_extension_accepted() -> None:
    offered = (ExtensionOffer(name="x-a", params=(("p", "1"),)), ExtensionOffer(name="x-b"))
    offer = ClientOffer(key=RFC_KEY, subprotocols=(), extensions=offered)
    request = build_client_request(host="h", target="/", offer=offer, origin=None, extra_headers=())
    assert b"Sec-WebSocket-Extensions: x-a; p=1, x-b\r\n" in request
    [event] = ServerConnection().receive_data(request)
    assert isinstance(event, HandshakeRequest)
    assert event.extensions == offered
    response = build_accept(event, subprotocol=None, extensions=offered[1:], extra_headers=())
    assert b"Sec-WebSocket-Extensions: x-b\r\n" in response
    head = parse_response_head(response.split(b"\r\n\r\n")[0], max_header_count=10)
    assert check_accept_response(head, offer) == (None, offered[1:])


# -- the exact bytes we send, and the exact reason of each refusal --


def field_lines(message: bytes) -> list[bytes]:
    """The header lines of a message head, in any order."""
    return sorted(message.split(b"\r\n\r\n")[0].split(b"\r\n")[1:])


def test_request_fields_are_spelled_as_in_the_rfc() -> None:
    offer = ClientOffer(
        key=RFC_KEY,
        subprotocols=("chat", "superchat"),
        extensions=(ExtensionOffer(name="x-a", params=(("p", "1"),)), ExtensionOffer(name="x-b")),
    )
    request = build_client_request(
        host="server.example.com",
        target="/chat",
        offer=offer,
        origin="http://example.com",
        extra_headers=(("X-Extra", "1"),),
    )
    assert request.startswith(b"GET /chat HTTP/1.1\r\n")
    assert field_lines(request) == sorted(
        [
            b"Host: server.example.com",
            b"Upgrade: websocket",
            b"Connection: Upgrade",
            b"Sec-WebSocket-Key: " + RFC_KEY.encode(),
            b"Sec-WebSocket-Version: 13",
            b"Origin: http://example.com",
            b"Sec-WebSocket-Protocol: chat, superchat",
            b"Sec-WebSocket-Extensions: x-a; p=1, x-b",
            b"X-Extra: 1",
        ]
    )


def test_accept_fields_are_spelled_as_in_the_rfc() -> None:
    request = check_upgrade_request(
        parse_request_head(upgrade_request().split(b"\r\n\r\n")[0], max_header_count=10)
    )
    extensions = (ExtensionOffer(name="x-a", params=(("p", "1"),)), ExtensionOffer(name="x-b"))
    response = build_accept(
        request, subprotocol="chat", extensions=extensions, extra_headers=(("X-Extra", "1"),)
    )
    assert response.startswith(b"HTTP/1.1 101 Switching Protocols\r\n")
    assert field_lines(response) == sorted(
        [
            b"Upgrade: websocket",
            b"Connection: Upgrade",
            b"Sec-WebSocket-Accept: " + RFC_ACCEPT.encode(),
            b"Sec-WebSocket-Protocol: chat",
            b"Sec-WebSocket-Extensions: x-a; p=1, x-b",
            b"X-Extra: 1",
        ]
    )


BAD_REQUESTS = [
    (upgrade_request(method="POST"), 400, "a WebSocket handshake must use GET"),
    (upgrade_request(version="HTTP/1.0"), 400, "a WebSocket handshake needs HTTP/1.1"),
    (upgrade_request(target="*"), 400, "request target must be an absolute path"),
    (upgrade_request(replace={"Host": ""}), 400, "Host header is empty"),
    (
        upgrade_request(replace={"Connection": "keep-alive"}),
        400,
        "Connection header does not contain 'upgrade'",
    ),
    (
        upgrade_request(replace={"Sec-WebSocket-Key": "c2hvcnQ="}),
        400,
        "Sec-WebSocket-Key is not 16 bytes in base64",
    ),
    # (16 bytes once the characters outside base64 are skipped: still refused)
    (
        upgrade_request(replace={"Sec-WebSocket-Key": RFC_KEY[:8] + "." + RFC_KEY[8:]}),
        400,
        "Sec-WebSocket-Key is not 16 bytes in base64",
    ),
    (
        upgrade_request(replace={"Sec-WebSocket-Key": RFC_KEY[:8] + " " + RFC_KEY[8:]}),
        400,
        "Sec-WebSocket-Key is not 16 bytes in base64",
    ),
    (upgrade_request(extra=(("Origin", "http://evil"),)), 400, "Origin header is repeated"),
    (
        upgrade_request(extra=(("Sec-WebSocket-Protocol", "chat v2"),)),
        400,
        "Sec-WebSocket-Protocol is not a list of tokens",
    ),
]


@pytest.mark.parametrize(("data", "status", "reason"), BAD_REQUESTS)
def test_a_bad_upgrade_request_is_refused_with_its_exact_reason(
    data: bytes, status: int, reason: str
) -> None:
    head = parse_request_head(data.split(b"\r\n\r\n")[0], max_header_count=20)
    with pytest.raises(HandshakeViolation) as caught:
        check_upgrade_request(head)
    assert (caught.value.status, caught.value.reason, caught.value.headers) == (status, reason, ())


def test_a_wrong_version_is_refused_426_naming_the_supported_one() -> None:
    data = upgrade_request(replace={"Sec-WebSocket-Version": "8"})
    head = parse_request_head(data.split(b"\r\n\r\n")[0], max_header_count=20)
    with pytest.raises(HandshakeViolation) as caught:
        check_upgrade_request(head)
    assert (caught.value.status, caught.value.reason) == (426, "unsupported Sec-WebSocket-Version")
    assert caught.value.headers == (("Sec-WebSocket-Version", "13"),)


def accept_response(*fields: tuple[str, str]) -> bytes:
    lines = [b"HTTP/1.1 101 Switching Protocols"]
    lines += [f"{name}: {value}".encode("latin-1") for name, value in fields]
    return b"\r\n".join(lines)


GOOD_ACCEPT = (
    ("Upgrade", "websocket"),
    ("Connection", "Upgrade"),
    ("Sec-WebSocket-Accept", RFC_ACCEPT),
)

BAD_RESPONSES = [
    (
        (("Upgrade", "h2c"), *GOOD_ACCEPT[1:]),
        "response Upgrade header is not 'websocket'",
    ),
    (
        (GOOD_ACCEPT[0], ("Connection", "keep-alive"), GOOD_ACCEPT[2]),
        "response Connection header does not contain 'upgrade'",
    ),
    ((*GOOD_ACCEPT[:2], ("Sec-WebSocket-Accept", "x")), "wrong Sec-WebSocket-Accept"),
    (
        (*GOOD_ACCEPT, ("Sec-WebSocket-Protocol", "chat, X-chat")),
        "server chose more than one subprotocol",
    ),
    # (two fields, even if one of them is empty)
    (
        (*GOOD_ACCEPT, ("Sec-WebSocket-Protocol", "chat"), ("Sec-WebSocket-Protocol", "")),
        "server chose more than one subprotocol",
    ),
    (
        (*GOOD_ACCEPT, ("Sec-WebSocket-Protocol", "chat v2")),
        "server's Sec-WebSocket-Protocol is not a subprotocol name",
    ),
    # (only spaces and tabs surround a name: a no-break space is part of it)
    (
        (*GOOD_ACCEPT, ("Sec-WebSocket-Protocol", "chat\xa0")),
        "server's Sec-WebSocket-Protocol is not a subprotocol name",
    ),
]


@pytest.mark.parametrize(("fields", "reason"), BAD_RESPONSES)
def test_a_bad_101_is_refused_with_its_exact_reason(
    fields: tuple[tuple[str, str], ...], reason: str
) -> None:
    offer = ClientOffer(key=RFC_KEY, subprotocols=("chat", "X-chat"), extensions=())
    head = parse_response_head(accept_response(*fields), max_header_count=10)
    with pytest.raises(HandshakeViolation) as caught:
        check_accept_response(head, offer)
    assert (caught.value.status, caught.value.reason) == (101, reason)


def test_the_chosen_subprotocol_is_kept_whole() -> None:
    offer = ClientOffer(key=RFC_KEY, subprotocols=("chat", "X-chatX"), extensions=())
    response = accept_response(*GOOD_ACCEPT, ("Sec-WebSocket-Protocol", "X-chatX"))
    head = parse_response_head(response, max_header_count=10)
    assert check_accept_response(head, offer) == ("X-chatX", ())
