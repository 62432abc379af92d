"""The class uvicorn takes with `--ws adapters.asgi:WebSocketProtocol`.

uvicorn's HTTP protocol reads the upgrade request, makes one of these with
its config and shared state, hands it the transport and the request's
bytes, and from then on the transport talks to it. This module is only
that glue: uvicorn's settings turned into ours, the connection counted in
the server's state (its graceful shutdown waits for the set to empty) and
its `shutdown()` passed on. The ASGI conversation is `session.py`'s.
"""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING, Any

from wsproto_core import ServerConnection

from .._common import DEFAULT_COMPRESSION, Settings
from ..asyncio.connection import _Protocol
from .session import AsgiWebSocket

if TYPE_CHECKING:
    from uvicorn.config import Config
    from uvicorn.server import ServerState

# uvicorn's HTTP parser has read the request head before it reaches us, so
# the core's own bounds on it only need to be as generous as uvicorn's
# (which has none for headers with httptools); these still bound the
# frames a client sends before the application answers.
MAX_HANDSHAKE_SIZE = 64 * 1024
MAX_HEADER_COUNT = 256
# uvicorn's own classes wait this long for the client's close frame.
CLOSE_TIMEOUT = 10.0


def settings_of(config: Config) -> Settings:
    """uvicorn's `--ws-*` options as ours; 0 or None turns a timer off."""
    interval = config.ws_ping_interval
    timeout = config.ws_ping_timeout
    return Settings(
        max_message_size=config.ws_max_size if config.ws_max_size > 0 else None,
        max_queue=max(1, config.ws_max_queue),
        ping_interval=interval if interval else None,
        ping_timeout=timeout if timeout else None,
        open_timeout=None,  # the app takes the time it needs to answer
        close_timeout=CLOSE_TIMEOUT,
        compression=DEFAULT_COMPRESSION if config.ws_per_message_deflate else None,
    )


class WebSocketProtocol(_Protocol):
    """A WebSocket connection for uvicorn, on wsproto_core.

        uvicorn app:app --ws adapters.asgi:WebSocketProtocol
        uvicorn.run(app, ws=WebSocketProtocol)

    Constructed by uvicorn exactly as its own classes are."""

    ws: AsgiWebSocket

    def __init__(
        self,
        config: Config,
        server_state: ServerState,
        app_state: dict[str, Any],
        _loop: asyncio.AbstractEventLoop | None = None,
    ) -> None:
        if not config.loaded:
            config.load()
        settings = settings_of(config)
        core = ServerConnection(
            **settings.core_options(),  # type: ignore[arg-type]
            max_handshake_size=MAX_HANDSHAKE_SIZE,
            max_header_count=MAX_HEADER_COUNT,
        )
        super().__init__(
            AsgiWebSocket(
                core, settings, config=config, server_state=server_state, app_state=app_state
            )
        )
        self.connections = server_state.connections

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.connections.add(self)  # type: ignore[arg-type]  # (uvicorn types the set with its classes)
        super().connection_made(transport)
        self.ws.trace("connection made")

    def connection_lost(self, exc: Exception | None) -> None:
        self.connections.discard(self)
        super().connection_lost(exc)
        self.ws.trace("connection lost")

    def shutdown(self) -> None:
        """uvicorn is shutting down (see `AsgiWebSocket.shutdown`)."""
        self.ws.shutdown()
