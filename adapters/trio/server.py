"""The trio server: its accept loop, a task per connection, and `serve`."""

from __future__ import annotations

import logging
import math
import socket
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from typing import Unpack

import trio

from .._admission import AcceptFailures, Admission, let_in
from .._common import ServerOptions, Settings
from .._driver import server_policy
from .._listening import bind_all
from .._view import run_handler
from .connection import WebSocket

logger = logging.getLogger(__name__)
Handler = Callable[[WebSocket], Awaitable[None]]
CONNECTION = "websocket connection"  # each task's name (see connection.READER)


class Server:
    """A running server; `close()` sends 1001 Going Away to every client."""

    def __init__(self, handler: Handler, settings: Settings) -> None:
        self.handler = handler
        self.settings = settings
        self.admission = Admission(
            settings.max_connections, settings.max_connections_per_ip, settings.stats
        )
        self.connections: set[WebSocket] = set()
        self.listeners: list[trio.SocketListener] = []
        self._nursery: trio.Nursery | None = None
        self._accepting = trio.CancelScope()
        self._accept_failures = AcceptFailures(logger)
        self._stopped = trio.Event()

    @property
    def port(self) -> int:
        return int(self.listeners[0].socket.getsockname()[1])

    async def _accept_loop(self, listener: trio.SocketListener) -> None:
        """Accept until cancelled; no failure of one connection, nor a lack
        of descriptors, ends it (see `adapters._admission`)."""
        assert self._nursery is not None
        failures = self._accept_failures
        with self._accepting:
            while True:
                try:
                    stream = await listener.accept()
                except (trio.ClosedResourceError, trio.BrokenResourceError):
                    return  # our own close()
                except OSError as error:
                    await trio.sleep(failures.failed(error))
                    continue
                if not let_in(self.admission, failures, stream.socket.fileno()):
                    stream.socket.close()
                    continue
                failures.accepted()
                self._nursery.start_soon(self._serve_one, stream, name=CONNECTION)

    async def _serve_one(self, socket_stream: trio.SocketStream) -> None:
        """One connection, from accept to close. Whatever happens here ends
        this connection only: nothing may escape into the server's nursery."""
        stream: trio.abc.Stream = socket_stream
        ws: WebSocket | None = None
        try:
            address = socket_stream.socket.getpeername()  # ENOTCONN if reset already
            ip = str(address[0])
            if self.settings.ssl is not None:
                stream = trio.SSLStream(socket_stream, self.settings.ssl, server_side=True)
            ws = WebSocket(
                stream,
                self.settings.new_server_core(),
                self.settings,
                on_request=server_policy(self.admission, ip),
            )
            ws.remote_address = address
            self.connections.add(ws)
            if await self._open(ws):
                # The reader (and any writer task) run in the server's own
                # nursery: a nursery per connection would cost memory each
                # idle connection pays for. They catch what they raise.
                assert self._nursery is not None
                ws._start_reader(self._nursery)
                await run_handler(self.handler, ws)
        except (OSError, trio.BrokenResourceError, trio.ClosedResourceError):
            pass  # the peer went away (or was never quite there)
        except Exception:
            logger.exception("connection failed")
        finally:
            if ws is None:
                with trio.CancelScope(shield=True):
                    await trio.aclose_forcefully(stream)
            else:  # (its tasks may never have run: an open timeout)
                ws._driver.transport_closing()  # its address slot: before the peer sees it
                await ws._abort()
                if ws._writer_scope is not None:  # (the handler was cancelled, say)
                    ws._writer_scope.cancel()
                ws._driver.transport_lost(trio.current_time())
                ws._set_closed()
                self.connections.discard(ws)
            self.admission.depart()

    async def _open(self, ws: WebSocket) -> bool:
        """The opening handshake, within `open_timeout` (its own frame: the
        timeout's scope is not kept for the connection's whole life)."""
        opened = False
        with trio.move_on_after(self.settings.open_timeout or math.inf) as opening:
            opened = await ws._handshake()
        stats = self.settings.stats
        if opening.cancelled_caught and stats is not None:
            stats.refused(stats.TIMED_OUT)  # (the core's own timer counts when it is first)
        return opened

    async def serve_forever(self) -> None:
        """Wait until the server is closed."""
        await self._stopped.wait()

    async def close(self, code: int = 1001, reason: str = "server shutting down") -> None:
        """Stop accepting, close every connection with `code`, wait for them
        (at most `close_timeout`; None: until they have closed), then drop
        what is left."""
        self._accepting.cancel()
        for listener in self.listeners:
            await listener.aclose()
        connections = list(self.connections)
        wait = self.settings.shutdown_wait
        with trio.move_on_after(math.inf if wait is None else wait):
            for ws in connections:
                ws.close_nowait(code, reason)
            for ws in connections:
                await ws.wait_closed()
        if self._nursery is not None:
            self._nursery.cancel_scope.cancel()
        self._stopped.set()

    async def aclose(self) -> None:
        """`close()` with its defaults, for trio's `AsyncResource` convention."""
        await self.close()


@asynccontextmanager
async def serve(
    handler: Handler, host: str | None, port: int, **options: Unpack[ServerOptions]
) -> AsyncIterator[Server]:
    """`async with serve(handler, host, port, **options) as server:` runs a
    server for the body (and closes it on the way out: 1001 to every
    client); `await server.serve_forever()` waits until it is closed."""
    server = Server(handler, Settings.of(options))
    infos = await trio.socket.getaddrinfo(
        host or None, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE
    )
    server.listeners = [
        trio.SocketListener(trio.socket.from_stdlib_socket(sock))
        for sock in bind_all(infos, reuse_port=server.settings.reuse_port)
    ]
    async with trio.open_nursery() as nursery:
        server._nursery = nursery
        for listener in server.listeners:
            nursery.start_soon(server._accept_loop, listener)
        try:
            yield server
        finally:
            with trio.CancelScope(shield=True):
                await server.close()
