"""The trio client: `connect`."""

from __future__ import annotations

import math
import ssl as ssl_module
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Unpack

import trio

from .._common import ClientOptions, Settings, new_client_core, parse_uri
from ..errors import HandshakeError
from .connection import WebSocket


@asynccontextmanager
async def connect(url: str, **options: Unpack[ClientOptions]) -> AsyncIterator[WebSocket]:
    """`async with connect(url) as ws:` (the reader needs a nursery, so the
    context manager is the only form). Raises HandshakeError if refused."""
    uri = parse_uri(url)
    settings = Settings.of(options)
    local_host = None
    if settings.local_address is not None:
        local_host, local_port = settings.local_address
        if local_port:  # (trio binds port 0 with IP_BIND_ADDRESS_NO_PORT)
            raise ValueError("the trio client binds a local host only: its port must be 0")
    stream: trio.abc.Stream | None = None
    opened = False
    with trio.move_on_after(settings.open_timeout or math.inf) as opening:
        stream = await trio.open_tcp_stream(uri.host, uri.port, local_address=local_host)
        if uri.secure:
            context = settings.ssl or ssl_module.create_default_context()
            stream = trio.SSLStream(stream, context, server_hostname=uri.host)
        ws = WebSocket(stream, new_client_core(uri, settings), settings)
        opened = await ws._handshake()
    if opening.cancelled_caught:
        if stream is not None:  # connected, but the handshake ran out of time
            await trio.aclose_forcefully(stream)
        raise HandshakeError(None, "opening handshake timed out")
    if not opened:
        raise ws._driver.outcome or HandshakeError(None, "connection closed during the handshake")
    try:
        async with trio.open_nursery() as nursery:
            ws._start_reader(nursery)
            try:
                yield ws
            finally:
                with trio.CancelScope(shield=True):
                    await ws.close()
    except BaseExceptionGroup as group:
        # The reader's nursery wraps whatever the body raised; hand the
        # caller its own exception (a ConnectionClosed, say), not a group.
        if len(group.exceptions) == 1:
            raise group.exceptions[0] from None
        raise
