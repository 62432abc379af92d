"""What the three chat servers share besides the room: settings, the page,
the Origin policy, the server options, and the fan-out."""

from __future__ import annotations

import logging
from collections.abc import Iterable
from dataclasses import dataclass
from importlib import resources
from typing import Protocol

from wsproto_core import HandshakeRequest, HttpRequest, PerMessageDeflate, PreparedMessage

from .._common import ConnectionClosed, HttpResponse, ServerOptions

logger = logging.getLogger("wschat")

WS_PATH = "/ws"
CHANNEL = "wschat:room"
HISTORY_KEY = "wschat:history"
TICK = 1.0  # seconds between the room's ticks (presence)
# The frame for a broadcast is compressed once and shared, which needs no
# context takeover on what the server sends.
COMPRESSION = PerMessageDeflate(no_context_takeover=True)

_PAGE_FILES = {
    "/": ("chat.html", "text/html; charset=utf-8"),
    "/chat.js": ("chat.js", "text/javascript; charset=utf-8"),
    "/chat.css": ("chat.css", "text/css; charset=utf-8"),
}
_SECURITY_HEADERS = [
    # Only our own files; the socket back to the same host. Even if text
    # were inserted as HTML, an inline handler would not run.
    (
        "Content-Security-Policy",
        "default-src 'self'; connect-src 'self' ws: wss:; img-src 'self'",
    ),
    ("X-Content-Type-Options", "nosniff"),
    ("Referrer-Policy", "no-referrer"),
]


@dataclass(frozen=True, slots=True, kw_only=True)
class ChatSettings:
    backend: str = "asyncio"
    host: str = "127.0.0.1"
    port: int = 8000
    history: int = 50
    origins: tuple[str, ...] | None = None  # None: the page's own origin
    redis: str | None = None
    workers: int = 1
    max_message_size: int = 16 * 1024
    rate: float = 2.0
    burst: int = 10
    max_connections_per_ip: int = 20
    client_buffer: int = 1 << 20  # bytes waiting for a client before it is dropped
    worker: str = "w0"


class Peer(Protocol):
    """What the fan-out needs of a connection, in every backend."""

    def send_prepared(self, message: PreparedMessage) -> int: ...


def fan_out(text: str, peers: Iterable[tuple[int, Peer]], limit: int) -> list[int]:
    """Frame `text` once and queue it for every peer, without waiting.

    Returns the clients that now have more than `limit` bytes waiting:
    they cannot keep up, and the caller closes them (1013) rather than
    buffer for them without bound or slow the others down.
    """
    message = PreparedMessage(text)
    slow = []
    for client, peer in peers:
        try:
            waiting = peer.send_prepared(message)
        except ConnectionClosed:
            continue  # it is going; its handler removes it
        if waiting > limit:
            slow.append(client)
    return slow


def page(request: HttpRequest) -> HttpResponse:
    """GET / and its two files, from the package; 404 for anything else."""
    found = _PAGE_FILES.get(request.path)
    if request.method not in ("GET", "HEAD") or found is None:
        return HttpResponse(status=404, headers=[("Content-Type", "text/plain")], body=b"no\n")
    name, kind = found
    body = resources.files(__package__).joinpath(name).read_bytes()
    headers = [("Content-Type", kind), ("Cache-Control", "no-cache"), *_SECURITY_HEADERS]
    return HttpResponse(status=200, headers=headers, body=body)


def same_origin(request: HandshakeRequest) -> bool:
    """The default Origin policy: the page's own origin, or no Origin at all
    (not a browser; a browser always sends one, which is what stops another
    site's page from talking to the chat in its visitors' name)."""
    origin = request.origin
    return origin is None or origin in (f"http://{request.host}", f"https://{request.host}")


def server_options(settings: ChatSettings) -> ServerOptions:
    origins = settings.origins
    return {
        "max_message_size": settings.max_message_size,
        "max_connections_per_ip": settings.max_connections_per_ip,
        "origins": same_origin if origins is None else origins,
        "http_handler": page,
        "compression": COMPRESSION,
        "reuse_port": settings.workers > 1,
    }


def page_url(settings: ChatSettings, port: int) -> str:
    host = f"[{settings.host}]" if ":" in settings.host else settings.host
    return f"http://{host}:{port}/"


def describe(settings: ChatSettings, port: int) -> str:
    hub = "in-memory hub" if settings.redis is None else f"Redis {settings.redis}"
    return f"wschat ({settings.backend}, {hub}): open {page_url(settings, port)}"
