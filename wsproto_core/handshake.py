"""The opening handshake of RFC 6455 section 4, both roles, as pure functions.

Parsing bytes into heads is `http.py`'s job; this module decides whether a
head is an acceptable WebSocket request or response and builds ours. The
checks follow section 4.2.1 (server) and 4.1 (client) one by one, each with
its own message, so a rejected peer learns exactly which rule it broke.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import os
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from .errors import HandshakeViolation
from .events import HandshakeRequest
from .extensions import ExtensionOffer, format_extension, parse_extensions
from .http import (
    Headers,
    RequestHead,
    ResponseHead,
    build_request,
    build_response,
    token_list,
    value_list,
)

GUID = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"
SUPPORTED_VERSION = "13"
# A subprotocol name is an HTTP token (RFC 6455, section 4.3 and 11.5).
_SUBPROTOCOL = re.compile(r"[!#$%&'*+\-.^_`|~0-9A-Za-z]+")


def accept_token(key: str) -> str:
    """Sec-WebSocket-Accept for a Sec-WebSocket-Key (section 4.2.2, step 5.4)."""
    digest = hashlib.sha1((key + GUID).encode("ascii")).digest()  # noqa: S324 - the RFC's choice
    return base64.b64encode(digest).decode("ascii")


def make_key() -> str:
    return base64.b64encode(os.urandom(16)).decode("ascii")


def is_upgrade_request(head: RequestHead) -> bool:
    """Whether the client asked for WebSocket at all (else it is plain HTTP)."""
    return "websocket" in token_list(head.headers, "Upgrade")


def _single(headers: Headers, name: str, status: int = 400) -> str:
    values = headers.get_all(name)
    if len(values) != 1:
        problem = "missing" if not values else "repeated"
        raise HandshakeViolation(status, f"{name} header is {problem}")
    return values[0]


def check_upgrade_request(head: RequestHead) -> HandshakeRequest:
    """Validate a WebSocket upgrade request (section 4.2.1)."""
    headers = head.headers
    if head.method != "GET":
        raise HandshakeViolation(400, "a WebSocket handshake must use GET")
    if head.version < (1, 1):
        raise HandshakeViolation(400, "a WebSocket handshake needs HTTP/1.1")
    if not head.target.startswith("/"):
        raise HandshakeViolation(400, "request target must be an absolute path")
    host = _single(headers, "Host")
    if not host:
        raise HandshakeViolation(400, "Host header is empty")
    if "upgrade" not in token_list(headers, "Connection"):
        raise HandshakeViolation(400, "Connection header does not contain 'upgrade'")
    version = headers.get_all("Sec-WebSocket-Version")
    if version != [SUPPORTED_VERSION]:
        raise HandshakeViolation(
            426,
            "unsupported Sec-WebSocket-Version",
            (("Sec-WebSocket-Version", SUPPORTED_VERSION),),
        )
    key = _single(headers, "Sec-WebSocket-Key")
    try:
        raw_key = base64.b64decode(key.encode("ascii"), validate=True)
    except (binascii.Error, UnicodeEncodeError):
        raw_key = b""
    if len(raw_key) != 16:
        raise HandshakeViolation(400, "Sec-WebSocket-Key is not 16 bytes in base64")
    if headers.count("Origin") > 1:
        raise HandshakeViolation(400, "Origin header is repeated")
    subprotocols = tuple(value_list(headers, "Sec-WebSocket-Protocol"))
    if not all(_SUBPROTOCOL.fullmatch(name) for name in subprotocols):
        # (1#token, section 4.1: a name that is not one could be chosen by
        # the application, and then no client would take the answer)
        raise HandshakeViolation(400, "Sec-WebSocket-Protocol is not a list of tokens")
    path, _, query = head.target.partition("?")
    return HandshakeRequest(
        target=head.target,
        path=path,
        query=query,
        headers=headers,
        host=host,
        origin=headers.get("Origin"),
        subprotocols=subprotocols,
        extensions=parse_extensions(headers.get_all("Sec-WebSocket-Extensions")),
    )


def build_accept(
    request: HandshakeRequest,
    *,
    subprotocol: str | None,
    extensions: Sequence[ExtensionOffer],
    extra_headers: Iterable[tuple[str, str]],
) -> bytes:
    key = request.headers.get("Sec-WebSocket-Key")
    assert key is not None  # check_upgrade_request made sure
    fields = [
        ("Upgrade", "websocket"),
        ("Connection", "Upgrade"),
        ("Sec-WebSocket-Accept", accept_token(key)),
    ]
    if subprotocol is not None:
        fields.append(("Sec-WebSocket-Protocol", subprotocol))
    if extensions:
        fields.append(
            ("Sec-WebSocket-Extensions", ", ".join(format_extension(e) for e in extensions))
        )
    fields.extend(extra_headers)
    return build_response(101, fields)


@dataclass(frozen=True, slots=True, kw_only=True)
class ClientOffer:
    """What a client put in its request, kept to validate the response against."""

    key: str
    subprotocols: tuple[str, ...]
    extensions: tuple[ExtensionOffer, ...]


def build_client_request(
    *,
    host: str,
    target: str,
    offer: ClientOffer,
    origin: str | None,
    extra_headers: Iterable[tuple[str, str]],
) -> bytes:
    fields = [
        ("Host", host),
        ("Upgrade", "websocket"),
        ("Connection", "Upgrade"),
        ("Sec-WebSocket-Key", offer.key),
        ("Sec-WebSocket-Version", SUPPORTED_VERSION),
    ]
    if origin is not None:
        fields.append(("Origin", origin))
    if offer.subprotocols:
        fields.append(("Sec-WebSocket-Protocol", ", ".join(offer.subprotocols)))
    if offer.extensions:
        fields.append(
            ("Sec-WebSocket-Extensions", ", ".join(format_extension(e) for e in offer.extensions))
        )
    fields.extend(extra_headers)
    return build_request("GET", target, fields)


def check_accept_response(
    head: ResponseHead, offer: ClientOffer
) -> tuple[str | None, tuple[ExtensionOffer, ...]]:
    """Validate a 101 response (section 4.1, the client's steps 1-6).

    Returns the chosen subprotocol and the accepted extensions.
    """
    headers = head.headers
    if token_list(headers, "Upgrade") != ["websocket"]:
        raise HandshakeViolation(101, "response Upgrade header is not 'websocket'")
    if "upgrade" not in token_list(headers, "Connection"):
        raise HandshakeViolation(101, "response Connection header does not contain 'upgrade'")
    accept = headers.get_all("Sec-WebSocket-Accept")
    if accept != [accept_token(offer.key)]:
        raise HandshakeViolation(101, "wrong Sec-WebSocket-Accept")
    subprotocol = _chosen_subprotocol(headers)
    if subprotocol is not None and subprotocol not in offer.subprotocols:
        raise HandshakeViolation(101, f"server chose subprotocol {subprotocol!r}, not offered")
    try:
        accepted = parse_extensions(headers.get_all("Sec-WebSocket-Extensions"))
    except HandshakeViolation as error:
        raise HandshakeViolation(101, error.reason) from None
    offered_names = {e.name for e in offer.extensions}
    for extension in accepted:
        if extension.name not in offered_names:
            raise HandshakeViolation(
                101, f"server accepted extension {extension.name!r}, not offered"
            )
    return subprotocol, accepted


def _chosen_subprotocol(headers: Headers) -> str | None:
    """The server's Sec-WebSocket-Protocol: absent, or exactly one token
    (section 4.1, step 6, and the field's grammar in section 4.3). An empty
    value names nothing the client offered, so it fails like any other."""
    fields = headers.get_all("Sec-WebSocket-Protocol")
    if not fields:
        return None
    if len(fields) > 1 or len(value_list(headers, "Sec-WebSocket-Protocol")) > 1:
        raise HandshakeViolation(101, "server chose more than one subprotocol")
    chosen = fields[0].strip(" \t")
    if not _SUBPROTOCOL.fullmatch(chosen):
        raise HandshakeViolation(101, "server's Sec-WebSocket-Protocol is not a subprotocol name")
    return chosen
