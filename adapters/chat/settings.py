"""The chat server's settings (what `wschat` takes), the names it uses on
the wire and in Redis, and what the settings mean for the WebSocket server
(`server_options`)."""

from __future__ import annotations

from dataclasses import dataclass

from wsproto_core import PerMessageDeflate

from .. import ServerOptions
from .origin import origin_policy
from .page import page

WS_PATH = "/ws"  # where the page opens its WebSocket
CHANNEL = "wschat:room"  # the Redis channel of the room's events
HISTORY_KEY = "wschat:history"  # the Redis list of the shared history
TICK = 1.0  # seconds between the room's ticks (presence)
# A nickname held across workers: one key per `nick_keys` key, whose value
# names its holder (NICK_KEY + "f:ann" -> "host:pid:run:client"). Each
# expires NICK_TTL seconds after its last refresh (every
# `room.NICK_REFRESH`, 2 s), so a worker killed outright lets go of its
# people's nicknames within NICK_TTL, and a few missed refreshes (a short
# stall of Redis) lose nothing.
NICK_KEY = "wschat:nick:"
NICK_TTL = 8.0
# The frame for a broadcast is compressed once and shared, which needs no
# context takeover on what the server sends.
COMPRESSION = PerMessageDeflate(no_context_takeover=True)


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
    drain: float = 0.0  # seconds of serving on, with /healthz at 503, after SIGTERM
    trusted_proxies: tuple[str, ...] = ()  # whose X-Forwarded-For names the client


def server_options(settings: ChatSettings) -> ServerOptions:
    """The WebSocket server's options, the same on every backend."""
    origins = settings.origins
    return {
        "max_message_size": settings.max_message_size,
        "max_connections_per_ip": settings.max_connections_per_ip,
        "origins": origin_policy(settings.host) if origins is None else origins,
        "http_handler": page,
        "compression": COMPRESSION,
        "reuse_port": settings.workers > 1,
        "trusted_proxies": settings.trusted_proxies,
    }
