"""The asyncio client: `connect`."""

from __future__ import annotations

import asyncio
import ssl as ssl_module
from collections.abc import Generator
from typing import Any, Unpack

from wsproto_core import ClientConnection

from .._common import ClientOptions, Settings, new_client_core, parse_uri
from ..errors import HandshakeError
from .connection import WebSocket, _Protocol


class connect:  # noqa: N801 - used like a function: `await connect(url)`
    """Open a client connection: `ws = await connect(url)` or
    `async with connect(url) as ws:`. Raises HandshakeError if refused."""

    def __init__(self, url: str, **options: Unpack[ClientOptions]) -> None:
        self.uri = parse_uri(url)
        self.settings = Settings.of(options)
        self.ws: WebSocket | None = None

    async def _open(self) -> WebSocket:
        settings, uri = self.settings, self.uri
        core: ClientConnection = new_client_core(uri, settings)
        ws = WebSocket(core, settings)
        context = settings.ssl
        if uri.secure and context is None:
            context = ssl_module.create_default_context()
        loop = asyncio.get_running_loop()
        try:
            async with asyncio.timeout(settings.open_timeout):
                await loop.create_connection(
                    lambda: _Protocol(ws),
                    uri.host,
                    uri.port,
                    ssl=context if uri.secure else None,
                    server_hostname=uri.host if uri.secure else None,
                    local_addr=settings.local_address,
                )
        except TimeoutError:
            raise HandshakeError(None, "opening handshake timed out") from None
        assert ws._opened is not None  # (a client's connection has one)
        await ws._opened
        return ws

    def __await__(self) -> Generator[Any, None, WebSocket]:
        return self._open().__await__()

    async def __aenter__(self) -> WebSocket:
        self.ws = await self._open()
        return self.ws

    async def __aexit__(self, *exc: object) -> None:
        if self.ws is not None:
            await self.ws.close()
