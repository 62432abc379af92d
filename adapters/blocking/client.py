"""The blocking client: `connect`."""

from __future__ import annotations

import socket
import ssl as ssl_module
from typing import Unpack

from .._common import (
    ClientOptions,
    Settings,
    new_client_core,
    parse_uri,
)
from .._listening import no_delay
from ..errors import (
    HandshakeError,
)
from .connection import WebSocket


def connect(url: str, **options: Unpack[ClientOptions]) -> WebSocket:
    """Open a client connection; raises HandshakeError if refused."""
    uri = parse_uri(url)
    settings = Settings.of(options)
    try:
        sock = socket.create_connection((uri.host, uri.port), timeout=settings.open_timeout)
    except TimeoutError:
        raise HandshakeError(None, "opening handshake timed out") from None
    try:
        no_delay(sock)
        if uri.secure:
            context = settings.ssl or ssl_module.create_default_context()
            sock = context.wrap_socket(sock, server_hostname=uri.host)
        sock.settimeout(None)
    except (OSError, ssl_module.SSLError):
        sock.close()
        raise
    ws = WebSocket(sock, new_client_core(uri, settings), settings)
    if not ws._handshake():
        raise ws._driver.outcome or HandshakeError(None, "connection closed during the handshake")
    return ws
