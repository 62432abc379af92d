"""The options every backend takes (same names, same defaults), resolved
once into `Settings`, and ws:// URLs. What a connection does with them is
in `_driver.py`."""

from __future__ import annotations

import ssl as ssl_module
from collections.abc import AsyncIterable, AsyncIterator, Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from typing import TypedDict
from urllib.parse import urlsplit

from wsproto_core import (
    BytesFragment,
    ClientConnection,
    HandshakeRequest,
    HttpRequest,
    PerMessageDeflate,
    ServerConnection,
    TextFragment,
)

from ._forwarded import Network, trusted_networks
from ._stats import ServerStats
from .errors import InvalidURI

Message = str | bytes
Fragment = TextFragment | BytesFragment

DEFAULT_MAX_MESSAGE_SIZE = 1 << 20
DEFAULT_COMPRESSION = PerMessageDeflate()  # immutable, so one instance serves all
READ_SIZE = 64 * 1024
# The bound on the last write after a close when `close_timeout` is None: a
# peer that stopped reading must never hold a finished connection open.
FINAL_WRITE_BOUND = 10.0


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
    stats: ServerStats | None  # counts the handshakes it refuses, by status
    # Reverse proxies (addresses or networks) whose X-Forwarded-For is
    # believed for max_connections_per_ip (see `adapters._forwarded`).
    trusted_proxies: Sequence[str]


class ClientOptions(CommonOptions, total=False):
    origin: str | None
    extra_headers: Sequence[tuple[str, str]]
    # (host, port) to bind the socket to before connecting, as a source
    # address: on Linux every 127.x.y.z is local, so a load generator can
    # spread its clients over many addresses and stay under a server's
    # per-address limits. Port 0 picks a free one; trio binds the host
    # only, so it refuses any other port (ValueError).
    local_address: tuple[str, int] | None


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
    stats: ServerStats | None = None
    trusted_proxies: tuple[Network, ...] = ()
    origin: str | None = None
    extra_headers: tuple[tuple[str, str], ...] = ()
    local_address: tuple[str, int] | None = None

    @classmethod
    def of(cls, options: ServerOptions | ClientOptions) -> Settings:
        if options.get("max_queue", 1) < 1 or options.get("write_limit", 1) < 1:
            raise ValueError("max_queue and write_limit must be at least 1")
        given: dict[str, object] = dict(options)
        proxies = given.get("trusted_proxies")
        if proxies is not None:  # (addresses and networks, each checked now)
            given["trusted_proxies"] = trusted_networks(proxies)  # type: ignore[arg-type]
        for name in ("subprotocols", "origins", "extra_headers"):
            value = given.get(name)
            if value is not None and not callable(value):
                given[name] = tuple(value)  # type: ignore[arg-type]
        return cls(**given)  # type: ignore[arg-type]

    @property
    def shutdown_wait(self) -> float | None:
        """How long a server's shutdown waits for its connections to close
        before it drops them: `close_timeout`; None waits for as long as the
        close handshakes take (each still ends on its own terms: the core's
        close timer is off too, so a silent peer is waited for)."""
        return self.close_timeout

    @property
    def final_write_bound(self) -> float:
        """How long the last write after a close may take: `close_timeout`,
        or `FINAL_WRITE_BOUND` when it is None."""
        return FINAL_WRITE_BOUND if self.close_timeout is None else self.close_timeout

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


# -- messages sent in fragments --------------------------------------------------


def mark_final(fragments: Iterable[Message]) -> Iterator[tuple[Message, bool]]:
    """Each fragment of a message with whether it is the last, looking one
    ahead; no fragments at all make one empty message."""
    previous: Message | None = None
    for fragment in fragments:
        if previous is not None:
            yield previous, False
        previous = fragment
    yield (b"" if previous is None else previous), True


async def amark_final(
    fragments: Iterable[Message] | AsyncIterable[Message],
) -> AsyncIterator[tuple[Message, bool]]:
    """`mark_final` for an iterable or an async iterable."""
    if not isinstance(fragments, AsyncIterable):
        for marked in mark_final(fragments):
            yield marked
        return
    previous: Message | None = None
    async for fragment in fragments:
        if previous is not None:
            yield previous, False
        previous = fragment
    yield (b"" if previous is None else previous), True
