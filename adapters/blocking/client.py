"""The blocking client: `connect`."""

from __future__ import annotations

import socket
import ssl
from typing import Unpack

from .._common import ClientOptions, Settings, new_client_core, parse_uri
from .._listening import no_delay
from ..errors import HandshakeError
from .connection import WebSocket
from .tls import TLSWire


def connect(url: str, **options: Unpack[ClientOptions]) -> WebSocket:
    """Open a client connection; raises HandshakeError if refused."""
    uri = parse_uri(url)
    settings = Settings.of(options)
    try:
        sock = socket.create_connection(
            (uri.host, uri.port),
            timeout=settings.open_timeout,
            source_address=settings.local_address,
        )
    except TimeoutError:
        raise HandshakeError(None, "opening handshake timed out") from None
    tls = None
    try:
        no_delay(sock)
        sock.settimeout(None)
        if uri.secure:
            context = settings.ssl or ssl.create_default_context()
            tls = TLSWire(context, server_side=False, server_hostname=uri.host)
            tls.handshake(sock, settings.open_timeout)
    except TimeoutError:
        sock.close()
        raise HandshakeError(None, "opening handshake timed out") from None
    except OSError:  # (ssl.SSLError too: an untrusted certificate, say)
        sock.close()
        raise
    ws = WebSocket(sock, new_client_core(uri, settings), settings, tls=tls)
    if not ws._handshake():
        raise ws._driver.outcome or HandshakeError(None, "connection closed during the handshake")
    return ws
