"""The exceptions every backend raises, the same classes in all of them.

Import them from `adapters` (or from any backend module, which re-exports
them): `from adapters import ConnectionClosed, HandshakeError`.
"""

from __future__ import annotations

from wsproto_core.frames import CloseCode

__all__ = [
    "ConcurrencyError",
    "ConnectionClosed",
    "ConnectionClosedError",
    "ConnectionClosedOK",
    "HandshakeError",
    "InvalidURI",
    "WebSocketAdapterError",
]


class WebSocketAdapterError(Exception):
    """Base of the exceptions the adapters raise."""


class ConnectionClosed(WebSocketAdapterError):  # noqa: N818 - the name users know from peers
    """The connection is closed; `code` and `reason` say how it ended.

    Raised by `recv`, `send`, `ping` once the connection is over. 1006 means
    no close frame was exchanged (the peer vanished or a timeout fired).
    """

    def __init__(self, code: int | None, reason: str) -> None:
        code_text = "no status" if code is None else str(code)
        super().__init__(f"connection closed: {code_text} {reason}".rstrip())
        self.code = code
        self.reason = reason


class ConnectionClosedOK(ConnectionClosed):
    """A clean close: 1000, 1001, or a close frame without a code (1005)."""


class ConnectionClosedError(ConnectionClosed):
    """Any other ending: a protocol error, a timeout, a vanished peer."""


class HandshakeError(WebSocketAdapterError):
    """The opening handshake did not succeed (client side).

    `status` is the HTTP status the server answered (None if it did not
    answer validly); `body` is the server's bounded response body.
    """

    def __init__(self, status: int | None, reason: str, body: bytes = b"") -> None:
        super().__init__(reason if status is None else f"HTTP {status}: {reason}")
        self.status = status
        self.reason = reason
        self.body = body


class InvalidURI(WebSocketAdapterError, ValueError):  # noqa: N818 - a ValueError by nature
    pass


class ConcurrencyError(WebSocketAdapterError, RuntimeError):
    """Two tasks or threads called recv() on one connection at once."""


def closed_error(code: int | None, reason: str) -> ConnectionClosed:
    clean = code in (CloseCode.NORMAL_CLOSURE, CloseCode.GOING_AWAY, CloseCode.NO_STATUS_RCVD)
    return (ConnectionClosedOK if clean else ConnectionClosedError)(code, reason)
