"""A sans-IO WebSocket (RFC 6455) connection for both roles.

Bytes in, events out; commands in, bytes out. Nothing here touches a socket
or a clock: see README.md for the loop an adapter runs around it.
"""

from .broadcast import PreparedMessage
from .client import ClientConnection
from .connection import Connection, ConnectionOptions, State
from .deflate import PerMessageDeflate
from .errors import LocalProtocolError, WebSocketError
from .events import (
    BytesFragment,
    BytesMessage,
    CloseReceived,
    ConnectionFailed,
    Event,
    HandshakeAccepted,
    HandshakeFailed,
    HandshakeRejected,
    HandshakeRequest,
    HttpRequest,
    Ping,
    Pong,
    TextFragment,
    TextMessage,
)
from .extensions import ExtensionOffer
from .frames import CloseCode, Opcode
from .http import Headers
from .server import ServerConnection

__all__ = [
    "BytesFragment",
    "BytesMessage",
    "ClientConnection",
    "CloseCode",
    "CloseReceived",
    "Connection",
    "ConnectionFailed",
    "ConnectionOptions",
    "Event",
    "ExtensionOffer",
    "HandshakeAccepted",
    "HandshakeFailed",
    "HandshakeRejected",
    "HandshakeRequest",
    "Headers",
    "HttpRequest",
    "LocalProtocolError",
    "Opcode",
    "PerMessageDeflate",
    "Ping",
    "Pong",
    "PreparedMessage",
    "ServerConnection",
    "State",
    "TextFragment",
    "TextMessage",
    "WebSocketError",
]
