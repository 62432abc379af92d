"""The asyncio server: its own accept loop (see `Server`) and `serve`."""

from __future__ import annotations

import asyncio
import logging
import socket
from collections.abc import Awaitable, Callable, Generator
from typing import Any, Unpack

from .._admission import AcceptFailures, Admission, let_in
from .._common import ServerOptions, Settings
from .._listening import bind_all
from .connection import WebSocket, _Protocol

logger = logging.getLogger(__name__)
Handler = Callable[[WebSocket], Awaitable[None]]


class Server:
    """A listening server. `close()` sends 1001 Going Away to every client.

    The accept loop is ours rather than `loop.create_server`'s so that it
    follows the rules of `adapters._admission` on asyncio and uvloop alike:
    a lack of descriptors is logged once per episode (asyncio's own loop
    logs every attempt), and the connections over `max_connections` are
    answered at once without a protocol or a task."""

    def __init__(self, handler: Handler, settings: Settings) -> None:
        self.handler = handler
        self.settings = settings
        self.admission = Admission(
            settings.max_connections, settings.max_connections_per_ip, settings.stats
        )
        self.connections: set[WebSocket] = set()
        self._listeners: list[socket.socket] = []
        self._accept_tasks: set[asyncio.Task[None]] = set()
        self._accept_failures = AcceptFailures(logger)
        self._stopped: asyncio.Future[None] | None = None
        # Handlers outlive their connection's entry in `connections` (a
        # peer that left); close() must still cancel them.
        self.handler_tasks: set[asyncio.Task[None]] = set()

    def track(self, ws: WebSocket) -> None:
        self.connections.add(ws)

    def forget(self, ws: WebSocket) -> None:
        if ws in self.connections:
            self.connections.discard(ws)
            self.admission.depart()

    @property
    def sockets(self) -> tuple[socket.socket, ...]:
        return tuple(self._listeners)

    @property
    def port(self) -> int:
        return int(self.sockets[0].getsockname()[1])

    async def start(self, host: str | None, port: int) -> None:
        loop = asyncio.get_running_loop()
        self._stopped = loop.create_future()
        self._listeners = await _listen(host, port, reuse_port=self.settings.reuse_port)
        for listener in self._listeners:
            task = loop.create_task(self._accept_loop(listener))
            self._accept_tasks.add(task)

    async def _accept_loop(self, listener: socket.socket) -> None:
        loop = asyncio.get_running_loop()
        failures = self._accept_failures
        while True:
            try:
                sock, _ = await loop.sock_accept(listener)
            except OSError as error:
                if listener.fileno() < 0:
                    return  # closed by close()
                await asyncio.sleep(failures.failed(error))
                continue
            if not let_in(self.admission, failures, sock.fileno()):
                sock.close()
                continue
            failures.accepted()
            task = loop.create_task(self._open(sock))
            self.handler_tasks.add(task)
            task.add_done_callback(self.handler_tasks.discard)

    async def _open(self, sock: socket.socket) -> None:
        """Give an accepted socket its transport (and TLS); a failure here
        is this connection's alone."""
        ws = WebSocket(self.settings.new_server_core(), self.settings, server=self)
        try:
            await asyncio.get_running_loop().connect_accepted_socket(
                lambda: _CountingProtocol(ws, self),
                sock,
                ssl=self.settings.ssl,
                ssl_handshake_timeout=self.settings.open_timeout if self.settings.ssl else None,
            )
        except Exception:  # TLS failures, a reset during it, a timeout: all alike
            if ws not in self.connections:  # never made: nothing else will count it out
                self.admission.depart()
                sock.close()

    async def serve_forever(self) -> None:
        assert self._stopped is not None
        await asyncio.shield(self._stopped)

    async def close(self, code: int = 1001, reason: str = "server shutting down") -> None:
        """Stop accepting, close every connection with `code`, wait for them
        (at most `close_timeout`; None: until they have closed), then drop
        what is left and cancel the handlers."""
        for task in self._accept_tasks:
            task.cancel()
        for listener in self._listeners:
            listener.close()
        connections = list(self.connections)
        for ws in connections:
            ws.close_nowait(code, reason)
        waits = [asyncio.ensure_future(ws.wait_closed()) for ws in connections]
        handlers = list(self.handler_tasks)
        if waits:
            await asyncio.wait(waits, timeout=self.settings.shutdown_wait)
            for wait in waits:
                wait.cancel()
        for ws in connections:
            ws._abort()
        for task in handlers:
            task.cancel()
        if handlers:
            await asyncio.wait(handlers, timeout=self.settings.final_write_bound)
        if self._stopped is not None and not self._stopped.done():
            self._stopped.set_result(None)

    async def __aenter__(self) -> Server:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()


async def _listen(host: str | None, port: int, *, reuse_port: bool) -> list[socket.socket]:
    infos = await asyncio.get_running_loop().getaddrinfo(
        host or None, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE
    )
    return bind_all(infos, reuse_port=reuse_port)


class _CountingProtocol(_Protocol):
    """Tracks the connection from the moment its transport is made."""

    def __init__(self, ws: WebSocket, server: Server) -> None:
        super().__init__(ws)
        self.server = server

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        super().connection_made(transport)
        self.server.track(self.ws)


class serve:  # noqa: N801 - used like a function
    """Start a server: `async with serve(handler, host, port) as server:`
    (closed on the way out), or `server = await serve(...)` and later
    `await server.close()`."""

    def __init__(
        self, handler: Handler, host: str | None, port: int, **options: Unpack[ServerOptions]
    ) -> None:
        self.server = Server(handler, Settings.of(options))
        self.host, self.port = host, port

    async def _start(self) -> Server:
        await self.server.start(self.host, self.port)
        return self.server

    def __await__(self) -> Generator[Any, None, Server]:
        return self._start().__await__()

    async def __aenter__(self) -> Server:
        return await self._start()

    async def __aexit__(self, *exc: object) -> None:
        await self.server.close()
