"""WebSocket server and client on asyncio, driving wsproto_core.

Built on `asyncio.Protocol` rather than streams: bytes go straight from
`data_received` into the core, and what the core queues goes out with one
`writelines`. Backpressure both ways comes from the transport: a full
receive queue pauses reading, a full write buffer makes `send` wait.

    async def echo(ws):
        async for message in ws:
            await ws.send(message)

    async with serve(echo, "127.0.0.1", 8765):
        ...
"""

from __future__ import annotations

import asyncio
import logging
import socket
import ssl as ssl_module
from collections.abc import AsyncIterable, AsyncIterator, Awaitable, Callable, Generator, Iterable
from typing import Any, Unpack, cast

from wsproto_core import (
    ClientConnection,
    Connection,
    HandshakeRequest,
    PreparedMessage,
)
from wsproto_core.events import Event

from ._admission import AcceptFailures, Admission, let_in
from ._common import (
    ClientOptions,
    Message,
    ServerOptions,
    Settings,
    amark_final,
    new_client_core,
    parse_uri,
)
from ._driver import (
    CloseStep,
    ConnectionView,
    Driver,
    Wake,
    answer_handshake,
    close_after_handler,
)
from ._listening import bind_all
from .errors import (
    ConcurrencyError,
    ConnectionClosed,
    ConnectionClosedError,
    ConnectionClosedOK,
    HandshakeError,
    InvalidURI,
    WebSocketAdapterError,
)

__all__ = [  # the exceptions too: each backend module is the whole API
    "ConcurrencyError",
    "ConnectionClosed",
    "ConnectionClosedError",
    "ConnectionClosedOK",
    "HandshakeError",
    "InvalidURI",
    "Server",
    "WebSocket",
    "WebSocketAdapterError",
    "connect",
    "serve",
]

logger = logging.getLogger(__name__)
Handler = Callable[["WebSocket"], Awaitable[None]]


class WebSocket(ConnectionView):
    """One WebSocket connection, either role.

    `recv()` / `async for` return whole messages; `recv_streaming()` yields
    a message piece by piece; `send()` and `send_fragments()` mirror them.
    What the connection does is decided by its `Driver`; this class waits
    with futures and writes with `writelines`.
    """

    def __init__(
        self, core: Connection, settings: Settings, *, server: Server | None = None
    ) -> None:
        self._driver = Driver(
            core, settings, on_request=None if server is None else self._on_request
        )
        self._settings = settings
        self._server = server
        self._loop = asyncio.get_running_loop()
        self._transport: asyncio.Transport | None = None
        self._reading = True  # the transport's reading state, steered by the driver
        self._recv_waiter: asyncio.Future[None] | None = None
        self._pong_waiter: asyncio.Future[None] | None = None
        self._drain_waiters: list[asyncio.Future[None]] = []
        self._send_lock = asyncio.Lock()  # held while a message is sent in fragments
        self._opened: asyncio.Future[None] = self._loop.create_future()
        # Only a waiting connect() cares why a handshake failed; a server
        # connection that served plain HTTP must not log "never retrieved".
        self._opened.add_done_callback(_retrieve)
        self._closed: asyncio.Future[None] = self._loop.create_future()
        self._timer: asyncio.TimerHandle | None = None
        self._timer_at: float | None = None
        self._flush_scheduled = False
        self._unflushed = 0  # bytes sent since the last write, for _flush_soon
        self.remote_address: Any = None
        self.handler_task: asyncio.Task[None] | None = None

    # -- receiving -----------------------------------------------------------

    async def recv(self) -> Message:
        """The next whole message: str for text, bytes for binary."""
        driver = self._driver
        if not driver.receiving:
            message = driver.take_message()  # the common case: one waiting
            if message is not None:
                if not self._reading:
                    self._steer_reading()
                return message
        driver.begin_receive()
        try:
            while (message := driver.take_message()) is None:
                await self._wait_for_messages()
            if not self._reading:
                self._steer_reading()
            return message
        finally:
            driver.end_receive()

    async def recv_streaming(self) -> AsyncIterator[Message]:
        """Yield the next message in pieces as they arrive (bounded memory
        for messages of any size)."""
        driver = self._driver
        driver.begin_receive()
        try:
            for part in driver.take_leftover():  # left by a cancelled recv()
                yield part
            while True:
                while (fragment := driver.take_fragment()) is None:
                    await self._wait_for_messages()
                if not self._reading:
                    self._steer_reading()
                yield fragment.data
                if fragment.final:
                    return
        finally:
            driver.end_receive()

    async def _wait_for_messages(self) -> None:
        driver = self._driver
        if driver.has_output:  # a held failure, applied now
            self._flush()
        if driver.is_over():
            raise driver.closed_error()
        if not self._reading:  # what was taken may have made room
            self._steer_reading()
        waiter = self._recv_waiter = self._loop.create_future()
        try:
            await waiter
        finally:
            self._recv_waiter = None

    def _steer_reading(self) -> None:
        wanted = self._driver.wants_data
        if wanted != self._reading and self._transport is not None:
            self._reading = wanted
            if wanted:
                self._transport.resume_reading()
            else:
                self._transport.pause_reading()

    def __aiter__(self) -> AsyncIterator[Message]:
        return self

    async def __anext__(self) -> Message:
        try:
            return await self.recv()
        except ConnectionClosedOK:
            raise StopAsyncIteration from None

    # -- sending -------------------------------------------------------------

    async def send(self, message: Message, *, compress: bool | None = None) -> None:
        """Send one message; waits while the write buffer is over `write_limit`.

        `compress` (when permessage-deflate is on): None compresses from
        the settings' `min_size` up, True always, False never."""
        driver = self._driver
        if self._send_lock.locked():  # a fragmented message is being sent
            async with self._send_lock:
                self._flush_soon(driver.queue_send(message, compress=compress))
        else:
            self._flush_soon(driver.queue_send(message, compress=compress))
        if driver.writes_blocked:
            await self._drain()

    def send_prepared(self, message: PreparedMessage) -> int:
        """Queue a message framed once for many connections, without waiting:
        a broadcast must never wait for its slowest peer. Returns the bytes
        now waiting to reach this peer, by which the caller can judge it too
        slow. Written at the end of this loop iteration, with whatever else
        was queued for this peer in it."""
        driver = self._driver
        size = driver.queue_prepared(message)
        transport = self._transport
        if driver.writes_blocked and transport is not None:
            # Over the high-water mark the core holds output back; a frame
            # for a broadcast goes to the transport, where it is counted.
            transport.writelines(driver.output()[0])
            return transport.get_write_buffer_size()
        self._flush_soon(size)
        waiting = self._unflushed
        return waiting if transport is None else waiting + transport.get_write_buffer_size()

    def _flush_soon(self, size: int) -> None:
        """Write at the end of this loop iteration, so that a batch of sends
        (an echo of 64 pipelined messages) costs one system call, not 64;
        at once past `write_limit`, so a loop of sends that never yields
        cannot buffer without bound."""
        self._unflushed += size
        if self._unflushed > self._settings.write_limit:
            self._flush()
        elif not self._flush_scheduled:
            self._flush_scheduled = True
            self._loop.call_soon(self._flush)

    async def send_fragments(
        self,
        fragments: Iterable[Message] | AsyncIterable[Message],
        *,
        compress: bool | None = None,
    ) -> None:
        """Send one message made of `fragments` (all str or all bytes), one
        frame each, without holding the whole message in memory."""
        driver = self._driver
        async with self._send_lock:
            async for fragment, final in amark_final(fragments):
                driver.queue_send(fragment, final=final, compress=compress)
                self._flush()
                if driver.writes_blocked:
                    await self._drain()

    async def _drain(self) -> None:
        driver = self._driver
        while driver.writes_blocked:
            if self._closed.done():
                raise driver.closed_error()
            waiter = self._loop.create_future()
            self._drain_waiters.append(waiter)
            await waiter

    async def ping(self, data: bytes | None = None) -> float:
        """Send a ping and wait for its pong; returns the round trip in seconds."""
        driver = self._driver
        record = driver.queue_ping(data, self._loop.time())
        self._flush()
        try:
            while (rtt := driver.ping_result(record)) is None:
                if self._pong_waiter is None:
                    self._pong_waiter = self._loop.create_future()
                await asyncio.shield(self._pong_waiter)
        except asyncio.CancelledError:
            driver.forget_ping(record)
            raise
        return rtt

    # -- closing -------------------------------------------------------------

    async def close(self, code: int = 1000, reason: str = "") -> None:
        """Start the close handshake (if not started) and wait for the end.

        Bounded by `close_timeout`: the core gives up on a silent peer.
        """
        self.close_nowait(code, reason)
        await asyncio.shield(self._closed)

    def close_nowait(self, code: int = 1000, reason: str = "") -> None:
        """Start the close handshake without waiting for anything."""
        step = self._driver.start_close(code, reason)
        if step is CloseStep.FLUSH:
            self._flush()
        elif step is CloseStep.ABORT:
            self._abort()

    async def wait_closed(self) -> None:
        await asyncio.shield(self._closed)

    def _abort(self) -> None:
        if self._transport is not None:
            self._transport.abort()

    # -- driving the driver --------------------------------------------------

    def _flush(self) -> None:
        """Write what the core queued, close if it says so, re-arm the timer."""
        self._flush_scheduled = False
        self._unflushed = 0
        driver = self._driver
        transport = self._transport
        if transport is None:
            driver.output()  # nowhere to write: drop
            return
        if not driver.writes_blocked or driver.core.should_close_transport:
            chunks, close = driver.output()
            if chunks:
                transport.writelines(chunks)
            if close:
                transport.close()
                # close() waits for the buffer to drain; a peer that stopped
                # reading would keep the connection forever.
                self._loop.call_later(self._settings.final_write_bound, transport.abort)
        elif driver.pong_backlog:
            self._steer_reading()  # output waits in the core: stop reading
        deadline = driver.deadline(self._loop.time())
        if deadline != self._timer_at:
            if self._timer is not None:
                self._timer.cancel()
            self._timer_at = deadline
            self._timer = None if deadline is None else self._loop.call_at(deadline, self._on_timer)

    def _on_timer(self) -> None:
        due = self._timer_at or 0.0
        self._timer = self._timer_at = None
        self._wake(self._driver.timer(max(self._loop.time(), due)))
        self._flush()

    def _wake(self, wake: int) -> None:
        if wake & Wake.MESSAGES:
            waiter = self._recv_waiter
            if waiter is not None and not waiter.done():
                waiter.set_result(None)
        if wake & Wake.PONGS and self._pong_waiter is not None:
            self._pong_waiter.set_result(None)
            self._pong_waiter = None
        if wake & Wake.OPENED and not self._opened.done():
            outcome = self._driver.outcome
            if self._driver.opened:
                self._opened.set_result(None)
            elif outcome is not None:
                self._opened.set_exception(outcome)

    def _on_request(self, driver: Driver, request: HandshakeRequest) -> list[Event] | None:
        """The server's policy, asked by the driver; the handler starts here."""
        server = self._server
        assert server is not None
        early = answer_handshake(driver, request, server.admission, _ip_of(self.remote_address))
        if early is not None:
            task = self.handler_task = self._loop.create_task(server.run_handler(self))
            server.handler_tasks.add(task)
            task.add_done_callback(server.handler_tasks.discard)
        return early

    # -- transport callbacks (through _Protocol) -----------------------------

    def _connection_made(self, transport: asyncio.Transport) -> None:
        self._transport = transport
        self.remote_address = transport.get_extra_info("peername")
        transport.set_write_buffer_limits(high=self._settings.write_limit)
        self._flush()  # the client's request; the open timer on both sides

    def _data_received(self, data: bytes) -> None:
        driver = self._driver
        wake = driver.received(data, self._loop.time())
        if wake:
            self._wake(wake)
            if not driver.wants_data:
                self._steer_reading()
        self._flush()

    def _eof_received(self) -> None:
        self._wake(self._driver.eof(self._loop.time()))
        self._flush()

    def _connection_lost(self, exc: Exception | None) -> None:
        driver = self._driver
        driver.output()  # nowhere to write any more
        wake = driver.transport_lost(self._loop.time())
        if self._timer is not None:
            self._timer.cancel()
        self._timer = None
        self._transport = None
        if not self._closed.done():
            self._closed.set_result(None)
        self._wake(wake)
        driver.writes_blocked = False
        for drain in self._drain_waiters:
            if not drain.done():
                drain.set_result(None)
        if self._server is not None:
            self._server.forget(self)

    def _pause_writing(self) -> None:
        self._driver.writes_blocked = True

    def _resume_writing(self) -> None:
        self._driver.writes_blocked = False
        self._flush()  # what waited in the core while we were over the limit
        if not self._reading:
            self._steer_reading()
        waiters, self._drain_waiters = self._drain_waiters, []
        for waiter in waiters:
            if not waiter.done():
                waiter.set_result(None)


class _Protocol(asyncio.Protocol):
    """Forwards transport callbacks, keeping them off the public object."""

    def __init__(self, ws: WebSocket) -> None:
        self.ws = ws
        self.data_received = ws._data_received  # type: ignore[method-assign]

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # Not an isinstance check: uvloop's transports do not subclass asyncio's.
        self.ws._connection_made(cast(asyncio.Transport, transport))

    def eof_received(self) -> bool:
        self.ws._eof_received()
        return False

    def connection_lost(self, exc: Exception | None) -> None:
        self.ws._connection_lost(exc)

    def pause_writing(self) -> None:
        self.ws._pause_writing()

    def resume_writing(self) -> None:
        self.ws._resume_writing()


def _retrieve(future: asyncio.Future[None]) -> None:
    if not future.cancelled():
        future.exception()


def _ip_of(address: Any) -> str:
    return str(address[0]) if isinstance(address, tuple) and address else "unknown"


# -- server ------------------------------------------------------------------


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
        self.admission = Admission(settings.max_connections, settings.max_connections_per_ip)
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

    async def run_handler(self, ws: WebSocket) -> None:
        try:
            await self.handler(ws)
        except Exception as error:
            await ws.close(*close_after_handler(error))
        else:
            await ws.close()
        finally:
            await ws.wait_closed()

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


# -- client ------------------------------------------------------------------


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
                )
        except TimeoutError:
            raise HandshakeError(None, "opening handshake timed out") from None
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
