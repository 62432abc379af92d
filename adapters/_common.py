"""What the three adapters share, with no I/O: options, URLs, the server's
handshake policy, errors, and message reassembly.

Each adapter only moves bytes, sleeps until the core's deadline and waits
for room; every decision that is the same on blocking sockets, asyncio and
trio is made here once, so the three cannot drift apart.
"""

from __future__ import annotations

import ssl as ssl_module
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TypedDict
from urllib.parse import urlsplit

from wsproto_core import (
    BytesFragment,
    ClientConnection,
    Connection,
    HandshakeRequest,
    HttpRequest,
    PerMessageDeflate,
    ServerConnection,
    State,
    TextFragment,
)
from wsproto_core.frames import CloseCode

from ._admission import Admission

Message = str | bytes
Fragment = TextFragment | BytesFragment

DEFAULT_MAX_MESSAGE_SIZE = 1 << 20
DEFAULT_COMPRESSION = PerMessageDeflate()  # immutable, so one instance serves all
READ_SIZE = 64 * 1024


# -- errors ------------------------------------------------------------------


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


class ConnectionView:
    """The read-only face of a connection, the same in every adapter.

    Each adapter says only how it knows its transport is gone."""

    _core: Connection
    _local_close: tuple[int, str] | None
    # Called once, just before the transport is closed (a server frees the
    # connection's per-address slot there, before the peer can come back).
    _on_transport_closing: Callable[[], None] | None = None

    def _transport_closing(self) -> None:
        release, self._on_transport_closing = self._on_transport_closing, None
        if release is not None:
            release()

    def _transport_gone(self) -> bool:
        raise NotImplementedError  # pragma: no cover - each adapter implements it

    @property
    def subprotocol(self) -> str | None:
        return self._core.subprotocol

    @property
    def state(self) -> State:
        return self._core.state

    @property
    def extensions(self) -> tuple[str, ...]:
        """The extensions in effect, as the server's response spelled them
        (such as "permessage-deflate; server_max_window_bits=12")."""
        return tuple(str(extension) for extension in self._core.extensions)

    @property
    def close_code(self) -> int | None:
        """How the connection ended: the peer's close code, ours if it
        failed, 1006 if no close frame was exchanged; None while open."""
        if self._core.close_code is None and self._transport_gone():
            return 1006
        return self._core.close_code

    @property
    def close_reason(self) -> str:
        return self._core.close_reason

    def _is_over(self) -> bool:
        return self._core.state is State.CLOSED or self._transport_gone()

    def _closed_error(self) -> ConnectionClosed:
        if self.close_code is None and self._local_close is not None:
            return closed_error(*self._local_close)  # we are closing
        return closed_error(self.close_code, self.close_reason)


# -- options -----------------------------------------------------------------


@dataclass(frozen=True, slots=True, kw_only=True)
class HttpResponse:
    """What an `http_handler` returns for a plain (non-WebSocket) request."""

    status: int = 200
    headers: Sequence[tuple[str, str]] = ()
    body: bytes = b""


HttpHandler = Callable[[HttpRequest], HttpResponse]
OriginCheck = Callable[[HandshakeRequest], bool]


class CommonOptions(TypedDict, total=False):
    """Options with the same names and defaults in every adapter, both roles."""

    subprotocols: Sequence[str]
    max_message_size: int | None
    ping_interval: float | None
    ping_timeout: float | None
    open_timeout: float | None
    close_timeout: float | None
    max_queue: int  # received fragments buffered before reading pauses
    write_limit: int  # bytes buffered for writing before send() waits
    ssl: ssl_module.SSLContext | None
    compression: PerMessageDeflate | None  # None turns permessage-deflate off


class ServerOptions(CommonOptions, total=False):
    # None: any Origin; a list (include None to allow none); or a function
    # of the request, for a policy such as "the page's own origin"
    origins: Sequence[str | None] | OriginCheck | None
    max_connections: int | None
    max_connections_per_ip: int | None
    http_handler: HttpHandler | None
    reuse_port: bool  # SO_REUSEPORT: several processes share the port


class ClientOptions(CommonOptions, total=False):
    origin: str | None
    extra_headers: Sequence[tuple[str, str]]


@dataclass(frozen=True, slots=True, kw_only=True)
class Settings:
    """Every option resolved to its default, for both roles."""

    subprotocols: tuple[str, ...] = ()
    max_message_size: int | None = DEFAULT_MAX_MESSAGE_SIZE
    ping_interval: float | None = 20.0
    ping_timeout: float | None = 20.0
    open_timeout: float | None = 10.0
    close_timeout: float | None = 10.0
    max_queue: int = 16
    write_limit: int = 64 * 1024
    ssl: ssl_module.SSLContext | None = None
    compression: PerMessageDeflate | None = DEFAULT_COMPRESSION
    origins: tuple[str | None, ...] | OriginCheck | None = None
    max_connections: int | None = None
    max_connections_per_ip: int | None = None
    http_handler: HttpHandler | None = None
    reuse_port: bool = False
    origin: str | None = None
    extra_headers: tuple[tuple[str, str], ...] = ()

    @classmethod
    def of(cls, options: ServerOptions | ClientOptions) -> Settings:
        if options.get("max_queue", 1) < 1 or options.get("write_limit", 1) < 1:
            raise ValueError("max_queue and write_limit must be at least 1")
        given: dict[str, object] = dict(options)
        for name in ("subprotocols", "origins", "extra_headers"):
            value = given.get(name)
            if value is not None and not callable(value):
                given[name] = tuple(value)  # type: ignore[arg-type]
        return cls(**given)  # type: ignore[arg-type]

    def core_options(self) -> dict[str, object]:
        return {
            "max_message_size": self.max_message_size,
            "streaming": True,
            "open_timeout": self.open_timeout,
            "ping_interval": self.ping_interval,
            "ping_timeout": self.ping_timeout,
            "close_timeout": self.close_timeout,
            "compression": self.compression,
        }

    def new_server_core(self) -> ServerConnection:
        return ServerConnection(**self.core_options())  # type: ignore[arg-type]


# -- URLs --------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class WebSocketURI:
    secure: bool
    host: str
    port: int
    target: str

    @property
    def host_header(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        default = 443 if self.secure else 80
        return host if self.port == default else f"{host}:{self.port}"


def parse_uri(url: str) -> WebSocketURI:
    parts = urlsplit(url)
    if parts.scheme not in ("ws", "wss"):
        raise InvalidURI(f"{url!r} is not a ws:// or wss:// URL")
    if not parts.hostname:
        raise InvalidURI(f"{url!r} has no host")
    if parts.username is not None or parts.password is not None:
        raise InvalidURI("credentials in the URL are not supported; use extra_headers")
    try:
        port = parts.port or (443 if parts.scheme == "wss" else 80)
    except ValueError:
        raise InvalidURI(f"{url!r} has an invalid port") from None
    target = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
    return WebSocketURI(parts.scheme == "wss", parts.hostname, port, target)


def new_client_core(uri: WebSocketURI, settings: Settings) -> ClientConnection:
    return ClientConnection(
        uri.host_header,
        uri.target,
        subprotocols=settings.subprotocols,
        origin=settings.origin,
        extra_headers=settings.extra_headers,
        **settings.core_options(),  # type: ignore[arg-type]
    )


# -- the server's side of the handshake --------------------------------------


def answer_handshake(
    view: ConnectionView,
    core: ServerConnection,
    request: HandshakeRequest,
    settings: Settings,
    admission: Admission,
    ip: str,
) -> bool:
    """Accept or reject `request` by the server's policy; True if accepted,
    and then `ip` was counted by `admission` until `view` closes its
    transport."""
    origins = settings.origins
    if origins is not None and not (
        origins(request) if callable(origins) else request.origin in origins
    ):
        core.reject(403, body=b"origin not allowed\n")
        return False
    crowded = admission.admit(ip)
    if crowded is not None:
        core.reject(503, headers=[("Retry-After", "5")], body=crowded.encode() + b"\n")
        return False
    view._on_transport_closing = lambda: admission.release(ip)
    chosen = next((p for p in settings.subprotocols if p in request.subprotocols), None)
    core.accept(subprotocol=chosen)
    return True


def answer_http(core: ServerConnection, request: HttpRequest, settings: Settings) -> None:
    """Answer a plain HTTP request with the application's hook, or 426."""
    response: HttpResponse
    if settings.http_handler is None:
        response = HttpResponse(
            status=426,
            headers=[("Upgrade", "websocket"), ("Content-Type", "text/plain")],
            body=b"this is a WebSocket endpoint\n",
        )
    else:
        try:
            response = settings.http_handler(request)
        except Exception:  # the hook's bug must not kill the server
            response = HttpResponse(status=500, body=b"internal server error\n")
    core.respond(response.status, headers=response.headers, body=response.body)


# -- receiving ---------------------------------------------------------------


class Reassembly:
    """Joins the fragments of one message for recv().

    A message in assembly costs about its size however finely the peer cut
    it: small fragments are merged as they come, pairwise and geometrically,
    instead of being kept as one object each (some 50 bytes apiece, which
    a million one-byte fragments turn into 50 MiB). Fragments of at least
    `SETTLED` characters or bytes are kept as they are and copied once, by
    the final join. `parts` stays a plain list of str or bytes, which is
    what a cancelled recv() leaves for recv_streaming to hand out first.
    """

    __slots__ = ("parts",)

    SETTLED = 16 * 1024

    def __init__(self) -> None:
        self.parts: list[Message] = []

    def add(self, fragment: Fragment) -> Message | None:
        """Take one fragment; the whole message once `fragment` is its last."""
        parts = self.parts
        if fragment.final and not parts:
            return fragment.data  # the common case: one fragment, nothing to join
        parts.append(fragment.data)
        if not fragment.final:
            settled = self.SETTLED
            # A merged byte is copied O(log SETTLED) times at most; a piece
            # of SETTLED or more is never merged.
            while (
                len(parts) > 1
                and len(parts[-1]) < settled
                and len(parts[-2]) < settled
                and len(parts[-2]) <= 2 * len(parts[-1])
            ):
                last = parts.pop()
                parts[-1] += last  # type: ignore[operator]  # all str or all bytes
            return None
        self.parts = []
        if isinstance(fragment, TextFragment):
            return "".join(parts)  # type: ignore[arg-type]
        return b"".join(parts)  # type: ignore[arg-type]


def answer_pings(pings: dict[bytes, list[float]], payload: bytes, now: float) -> bool:
    """Record the round trip on the ping `payload` answers and on every
    earlier one (a pong may answer several, RFC 6455 section 5.5.3).

    `pings` maps payloads to [send time], in send order; answered records
    get their round trip appended and leave the dict. False if no ping of
    ours had this payload (an unsolicited pong, or the core's keepalive).
    """
    if payload not in pings:
        return False
    while pings:
        key = next(iter(pings))
        record = pings.pop(key)
        record.append(now - record[0])
        if key == payload:
            break
    return True
