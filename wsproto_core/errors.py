"""The two ways things go wrong, kept apart on purpose.

A peer that sends garbage is not an exception in *our* program: the core
turns it into a close code and an event, so `receive_data` never raises.
Misuse by the local program is a bug the caller must see at once, so it
raises `LocalProtocolError`.
"""

from __future__ import annotations


class WebSocketError(Exception):
    """Base of every exception this package raises."""


class LocalProtocolError(WebSocketError):
    """The local program asked for something the protocol or the state forbids.

    Examples: sending before the handshake is done, sending after close,
    an invalid close code, a control payload over 125 bytes.
    """


class ProtocolViolation(WebSocketError):  # noqa: N818 - it is a verdict, not a crash
    """The peer broke the protocol; carries the close code the RFC asks for.

    Raised inside the parsers and caught by the connection, which turns it
    into a close frame and a `ConnectionFailed` event. It never escapes
    `Connection.receive_data`.
    """

    def __init__(self, code: int, reason: str) -> None:
        super().__init__(f"{reason} (close code {code})")
        self.code = code
        self.reason = reason


class HandshakeViolation(WebSocketError):  # noqa: N818 - same reasoning as above
    """The opening handshake from the peer is unacceptable.

    On the server side `status` is the HTTP status to answer with (400, 426,
    431, ...); on the client side it is the status the server sent.
    """

    def __init__(self, status: int, reason: str, headers: tuple[tuple[str, str], ...] = ()) -> None:
        super().__init__(f"{reason} (HTTP {status})")
        self.status = status
        self.reason = reason
        self.headers = headers
