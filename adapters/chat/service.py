"""What the three chat servers share besides the room: settings, the page,
the Origin policy, the server options, and the fan-out."""

from __future__ import annotations

import ipaddress
import logging
from collections.abc import Iterable
from dataclasses import dataclass
from importlib import resources
from typing import Protocol

from wsproto_core import HandshakeRequest, HttpRequest, PerMessageDeflate, PreparedMessage

from .._common import ConnectionClosed, HttpResponse, OriginCheck, ServerOptions

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
    # Room for any text of MAX_TEXT characters however it is escaped: a
    # character outside the BMP as JSON's \uXXXX\uXXXX is 12 bytes.
    max_message_size: int = 32 * 1024
    rate: float = 2.0
    burst: int = 10
    max_connections_per_ip: int = 20
    client_buffer: int = 1 << 20  # bytes waiting for a client before it is dropped
    worker: str = "w0"


class Peer(Protocol):
    """What the chat needs of a connection, in every backend."""

    @property
    def remote_address(self) -> object:
        """The peer's address: a (host, port, ...) tuple for TCP, something
        else (or None) when the backend could not tell."""
        ...

    def send_prepared(self, message: PreparedMessage) -> int: ...


SLOW = (1013, "too slow: messages piled up")
BROKEN = (1011, "internal error")


def fan_out(
    text: str, peers: Iterable[tuple[int, Peer]], limit: int
) -> list[tuple[int, tuple[int, str]]]:
    """Frame `text` once and queue it for every peer, without waiting.

    Returns the clients to close, each with its close code and reason:
    those that now have more than `limit` bytes waiting (they cannot keep
    up, and are closed with 1013 rather than buffered for without bound
    or allowed to slow the others down), and those whose connection
    failed in an unexpected way (1011: one broken connection must not
    keep the message from the others).
    """
    message = PreparedMessage(text)
    drop = []
    for client, peer in peers:
        try:
            waiting = peer.send_prepared(message)
        except ConnectionClosed:
            continue  # it is going; its handler removes it
        except Exception:
            logger.debug("queueing for client %d failed", client, exc_info=True)
            drop.append((client, BROKEN))
            continue
        if waiting > limit:
            drop.append((client, SLOW))
    return drop


def page(request: HttpRequest) -> HttpResponse:
    """GET / and its two files, from the package; 404 for anything else."""
    found = _PAGE_FILES.get(request.path)
    if request.method not in ("GET", "HEAD") or found is None:
        return HttpResponse(status=404, headers=[("Content-Type", "text/plain")], body=b"no\n")
    name, kind = found
    body = resources.files(__package__).joinpath(name).read_bytes()
    headers = [("Content-Type", kind), ("Cache-Control", "no-cache"), *_SECURITY_HEADERS]
    return HttpResponse(status=200, headers=headers, body=body)


def origin_policy(settings: ChatSettings) -> OriginCheck:
    """The default Origin policy (without --origins), for this server.

    A browser always sends an Origin, which is what stops another site's
    page from talking to the chat in its visitors' name; a request without
    one is not from a browser and is let in (such a client could send any
    Origin anyway).

    With an Origin, two things must hold:

    1. the Origin is http:// or https:// followed by exactly the Host the
       browser connected to (same scheme-less authority, port included):
       the page that opened the socket came from this very server, or
       from whatever forwards to it on that host and port;
    2. the Host's name is one that cannot be DNS rebinding: an IP literal,
       `localhost` (browsers resolve it to loopback themselves), or the
       name given as --host. Rebinding needs a name the attacker controls
       (a page at evil.example whose DNS then points at 127.0.0.1 sends
       `Origin: http://evil.example:8000` with `Host: evil.example:8000`,
       which passes the first rule but not this one).

    The port is not compared with the one bound: the first rule already
    pins it to the port the browser reached, which also keeps --port 0 and
    forwarded ports (containers, SSH tunnels) working. A server reached by
    a DNS name other than --host (`--host 0.0.0.0` behind chat.example)
    lists its origins with --origins.
    """
    named = _hostname(settings.host)

    def check(request: HandshakeRequest) -> bool:
        origin = request.origin
        if origin is None:
            return True
        host = request.host.strip().lower()
        if origin.lower() not in (f"http://{host}", f"https://{host}"):
            return False
        name = _authority_name(host)
        return name is not None and (name in ("localhost", named) or _is_ip(name))

    return check


def _hostname(host: str) -> str | None:
    """--host as a name to allow, or None for a wildcard ("", 0.0.0.0, ::)
    or an IP (IPs are allowed anyway)."""
    name = host.strip().strip("[]").lower()
    if not name or _is_ip(name):
        return None
    return name


def _authority_name(authority: str) -> str | None:
    """The host name of a Host header value ("name", "name:port",
    "[v6]:port"), or None if it is not one."""
    if authority.startswith("["):
        name, bracket, rest = authority[1:].partition("]")
        if not bracket or (rest and not (rest[:1] == ":" and rest[1:].isdigit())):
            return None
        return name if _is_ip(name) else None
    name, colon, port = authority.partition(":")
    if colon and not port.isdigit():
        return None
    return name or None


def _is_ip(name: str) -> bool:
    try:
        ipaddress.ip_address(name)
    except ValueError:
        return False
    return True


def server_options(settings: ChatSettings) -> ServerOptions:
    origins = settings.origins
    return {
        "max_message_size": settings.max_message_size,
        "max_connections_per_ip": settings.max_connections_per_ip,
        "origins": origin_policy(settings) if origins is None else origins,
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
