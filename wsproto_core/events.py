"""Everything the core reports, as a closed union of immutable records.

Events are frozen so an application can hand them between tasks without
copying, slotted because thousands are made per second on the hot path, and
keyword-only so adding a field never silently shifts a positional argument.
`Event` is the union: a `match` over it is checked exhaustive by mypy.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TypeVar

from .extensions import ExtensionOffer
from .http import Headers

_T = TypeVar("_T")


@dataclass(frozen=True, slots=True, kw_only=True)
class HandshakeRequest:
    """(server) A valid WebSocket upgrade request; answer with accept() or reject()."""

    target: str
    path: str
    query: str
    headers: Headers
    host: str
    origin: str | None
    subprotocols: tuple[str, ...]
    extensions: tuple[ExtensionOffer, ...]


@dataclass(frozen=True, slots=True, kw_only=True)
class HttpRequest:
    """(server) A plain HTTP request, not an upgrade; answer with respond()."""

    method: str
    target: str
    path: str
    query: str
    headers: Headers
    body: bytes


@dataclass(frozen=True, slots=True, kw_only=True)
class HandshakeAccepted:
    """(client) The server switched protocols; the connection is open."""

    subprotocol: str | None
    extensions: tuple[ExtensionOffer, ...]
    headers: Headers


@dataclass(frozen=True, slots=True, kw_only=True)
class HandshakeRejected:
    """(client) The server answered with something other than 101.

    `body` is cut at the configured limit, so a hostile server cannot make
    the client buffer without bound.
    """

    status: int
    headers: Headers
    body: bytes


@dataclass(frozen=True, slots=True, kw_only=True)
class HandshakeFailed:
    """The opening handshake could not complete; the transport should close.

    Server side: the request was malformed (`status` is what we answered) or
    the handshake timed out (`status` is None). Client side: the 101
    response was invalid, or it timed out.
    """

    status: int | None
    reason: str


@dataclass(frozen=True, slots=True, kw_only=True)
class TextMessage:
    data: str


@dataclass(frozen=True, slots=True, kw_only=True)
class BytesMessage:
    data: bytes


@dataclass(frozen=True, slots=True, kw_only=True)
class TextFragment:
    """(streaming mode) Part of a text message; `data` always holds whole characters.

    Pieces follow the payload as it arrives, not the peer's frames: what one
    `receive_data` call brings of a message comes as at most one piece (cut
    only where a control frame sits between fragments), so a peer fragmenting
    finely cannot make one event per frame. `final` marks the message's end.
    """

    data: str
    final: bool


@dataclass(frozen=True, slots=True, kw_only=True)
class BytesFragment:
    """(streaming mode) Part of a binary message, cut as for `TextFragment`."""

    data: bytes
    final: bool


@dataclass(frozen=True, slots=True, kw_only=True)
class Ping:
    """The core has already queued the Pong; this is for the application's information."""

    payload: bytes


@dataclass(frozen=True, slots=True, kw_only=True)
class Pong:
    payload: bytes


@dataclass(frozen=True, slots=True, kw_only=True)
class CloseReceived:
    """The peer sent a close frame (1005 if it carried no code).

    If we had not sent one yet, the core has queued the reply already.
    """

    code: int
    reason: str


@dataclass(frozen=True, slots=True, kw_only=True)
class ConnectionFailed:
    """The open connection ended without a clean close handshake.

    `code` is the close code we sent (1002, 1007, 1009, 1011, ...), or 1006
    when no close frame could be exchanged (the peer vanished, the close
    handshake timed out). The transport should be closed.
    """

    code: int
    reason: str


def python_constructor(cls: type[_T], *fields: str) -> Callable[..., _T]:
    """A positional constructor for a hot event type, for the reader only.

    Setting slots through their descriptors skips the frozen dataclass's
    `__init__`, which goes through `object.__setattr__` once per field:
    more than the rest of what a received message costs. The object is
    identical to one built by the public constructor (same type, equality,
    hash, still frozen). `_speedups.Constructor` does the same in C.
    """
    new = cls.__new__
    setters = [getattr(cls, name).__set__ for name in fields]
    if len(setters) == 1:
        [set_first] = setters

        def make_one(value: object) -> _T:
            event = new(cls)
            set_first(event, value)
            return event

        return make_one

    def make(*values: object) -> _T:
        if len(values) != len(setters):
            raise TypeError(f"{cls.__name__} constructor takes {len(setters)} positional arguments")
        event = new(cls)
        for setter, value in zip(setters, values, strict=True):
            setter(event, value)
        return event

    return make


# (getattr: a _speedups built from an older source, as an editable checkout
# pulled forward keeps it, has no Constructor; then the Python one serves.)
c_constructor: Callable[..., Callable[..., Any]] | None
try:
    from . import _speedups

    c_constructor = getattr(_speedups, "Constructor", None)
except ImportError:  # pragma: no cover - depends on whether a compiler was available
    c_constructor = None


def _constructor(cls: type[_T], *fields: str) -> Callable[..., Any]:
    """The fastest constructor there is for `cls`, given all its fields in
    order (either one leaves out a field it is not given)."""
    if fields != tuple(field.name for field in dataclasses.fields(cls)):  # type: ignore[arg-type]
        raise TypeError(f"{cls.__name__}'s fields are not {fields}")
    if c_constructor is None or os.environ.get("WSPROTO_CORE_PURE_PYTHON"):
        return python_constructor(cls, *fields)
    return c_constructor(cls, *fields)  # pragma: no cover - the compiled pass runs it


new_text_message: Callable[[str], TextMessage] = _constructor(TextMessage, "data")
new_bytes_message: Callable[[bytes], BytesMessage] = _constructor(BytesMessage, "data")
new_text_fragment: Callable[[str, bool], TextFragment] = _constructor(TextFragment, "data", "final")
new_bytes_fragment: Callable[[bytes, bool], BytesFragment] = _constructor(
    BytesFragment, "data", "final"
)

Event = (
    HandshakeRequest
    | HttpRequest
    | HandshakeAccepted
    | HandshakeRejected
    | HandshakeFailed
    | TextMessage
    | BytesMessage
    | TextFragment
    | BytesFragment
    | Ping
    | Pong
    | CloseReceived
    | ConnectionFailed
)
