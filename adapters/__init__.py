"""Thin drivers of wsproto_core over blocking sockets, asyncio and trio.

Each backend module (`adapters.blocking`, `adapters.asyncio`,
`adapters.trio`) offers `serve(handler, host, port, **options)` and
`connect(url, **options)` with the same option names, defaults and
exceptions (see the README's table for what differs and why). What a
connection does is decided once, in `adapters._driver`.
"""

from ._common import ClientOptions, HttpResponse, ServerOptions
from ._stats import ServerStats
from .errors import (
    ConcurrencyError,
    ConnectionClosed,
    ConnectionClosedError,
    ConnectionClosedOK,
    HandshakeError,
    InvalidURI,
    WebSocketAdapterError,
)

__all__ = [
    "ClientOptions",
    "ConcurrencyError",
    "ConnectionClosed",
    "ConnectionClosedError",
    "ConnectionClosedOK",
    "HandshakeError",
    "HttpResponse",
    "InvalidURI",
    "ServerOptions",
    "ServerStats",
    "WebSocketAdapterError",
]
