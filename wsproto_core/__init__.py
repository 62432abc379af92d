"""A sans-IO WebSocket (RFC 6455) connection for both roles.

Bytes in, events out; commands in, bytes out. Nothing here touches a socket
or a clock: see README.md for the loop an adapter runs around it.
"""

__version__ = "0.1.0"  # the package's version (pyproject.toml reads it from here)

from pathlib import Path as _Path

from . import _build

# Decided before any other module is imported: see _build.py.
COMPILED, BUILD = _build.choose(_Path(__file__).parent)
"""Whether the mypyc-compiled build runs, and a sentence saying why."""
_build.load_modules(_Path(__file__).parent, compiled=COMPILED)

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
    "BUILD",
    "COMPILED",
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
    "__version__",
]
