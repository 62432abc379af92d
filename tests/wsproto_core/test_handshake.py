"""Handshake helpers: the RFC's accept-key example and key generation."""

from __future__ import annotations

import base64

from wsproto_core import HandshakeRequest, ServerConnection
from wsproto_core.extensions import ExtensionOffer
from wsproto_core.handshake import (
    ClientOffer,
    accept_token,
    build_accept,
    build_client_request,
    check_accept_response,
    make_key,
)
from wsproto_core.http import parse_response_head

from .wire import RFC_ACCEPT, RFC_KEY


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
