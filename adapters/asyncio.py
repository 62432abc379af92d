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
import os
import socket
import ssl as ssl_module
from collections import deque
from collections.abc import AsyncIterable, AsyncIterator, Awaitable, Callable, Generator, Iterable
from types import TracebackType
from typing import Any, Unpack, cast

from wsproto_core import (
    BytesFragment,
    ClientConnection,
    CloseReceived,
    Connection,
    ConnectionFailed,
    HandshakeAccepted,
    HandshakeFailed,
    HandshakeRejected,
    HandshakeRequest,
    HttpRequest,
    Pong,
    PreparedMessage,
    ServerConnection,
    State,
    TextFragment,
)
from wsproto_core.events import Event

from ._admission import AcceptFailures, Admission, let_in
from ._common import (
    ClientOptions,
    ConcurrencyError,
    ConnectionClosed,
    ConnectionClosedOK,
    ConnectionView,
    Fragment,
    HandshakeError,
    Message,
    Reassembly,
    ServerOptions,
    Settings,
    answer_handshake,
    answer_http,
    new_client_core,
    parse_uri,
)

__all__ = ["Server", "WebSocket", "connect", "serve"]

logger = logging.getLogger(__name__)
Handler = Callable[["WebSocket"], Awaitable[None]]


class WebSocket(ConnectionView):
    """One WebSocket connection, either role.

    `recv()` / `async for` return whole messages; `recv_streaming()` yields
    a message piece by piece; `send()` and `send_fragments()` mirror them.
    """

    def __init__(
        self,
        core: Connection,
        settings: Settings,
        *,
        server: Server | None = None,
    ) -> None:
        self._core = core
        self._settings = settings
        self._server = server
        self._loop = asyncio.get_running_loop()
        self._transport: asyncio.Transport | None = None
        self._fragments: deque[Fragment] = deque()
        self._assembly = Reassembly()
        self._recv_waiter: asyncio.Future[None] | None = None
        self._recv_busy = False
        self._reading_paused = False
        self._writing_paused = False
        self._drain_waiters: list[asyncio.Future[None]] = []
        self._send_lock = asyncio.Lock()  # held while a message is sent in fragments
        self._pings: dict[bytes, tuple[asyncio.Future[float], float]] = {}
        self._opened: asyncio.Future[None] = self._loop.create_future()
        # Only a waiting connect() cares why a handshake failed; a server
        # connection that served plain HTTP must not log "never retrieved".
        self._opened.add_done_callback(_retrieve)
        self._closed: asyncio.Future[None] = self._loop.create_future()
        self._timer: asyncio.TimerHandle | None = None
        self._timer_at: float | None = None
        self._flush_scheduled = False
        self._unflushed = 0  # bytes sent since the last write, for _flush_soon
        self._closing = False
        self._pong_paused = False  # reading paused for pongs we cannot write
        self._local_close: tuple[int, str] | None = None
        self.request: HandshakeRequest | None = None
        self.remote_address: Any = None
        self.handler_task: asyncio.Task[None] | None = None

    # -- what the application sees ------------------------------------------

    def _transport_gone(self) -> bool:
        return self._closed.done()

    async def recv(self) -> Message:
        """The next whole message: str for text, bytes for binary."""
        fragments = self._fragments
        if fragments and fragments[0].final and not self._assembly.parts and not self._recv_busy:
            # The common case, without the layers below: one whole message waiting.
            whole = fragments.popleft().data
            if self._reading_paused:
                self._maybe_resume_reading()
            return whole
        if self._recv_busy:
            raise ConcurrencyError("recv() is already running in another task")
        self._recv_busy = True
        try:
            while True:
                fragment = await self._next_fragment()
                message = self._assembly.add(fragment)
                if message is not None:
                    return message
        finally:
            self._recv_busy = False

    async def recv_streaming(self) -> AsyncIterator[Message]:
        """Yield the next message in pieces as they arrive (bounded memory
        for messages of any size)."""
        if self._recv_busy:
            raise ConcurrencyError("recv() is already running in another task")
        self._recv_busy = True
        try:
            for part in self._assembly.parts:  # left by a cancelled recv()
                yield part
            self._assembly.parts = []
            while True:
                fragment = await self._next_fragment()
                yield fragment.data
                if fragment.final:
                    return
        finally:
            self._recv_busy = False

    async def _next_fragment(self) -> Fragment:
        fragments = self._fragments
        while not fragments:
            if self._core.failure_pending:  # the application has had its messages
                self._process(self._core.receive_data(b""))
                self._flush()
            if self._is_over():
                raise self._closed_error()
            waiter = self._loop.create_future()
            self._recv_waiter = waiter
            try:
                await waiter
            finally:
                self._recv_waiter = None
        fragment = fragments.popleft()
        if self._reading_paused:
            self._maybe_resume_reading()
        return fragment

    def _maybe_resume_reading(self) -> None:
        if len(self._fragments) <= self._settings.max_queue // 2:
            self._reading_paused = False
            if self._transport is not None and not self._pong_paused:
                self._transport.resume_reading()

    def __aiter__(self) -> AsyncIterator[Message]:
        return self

    async def __anext__(self) -> Message:
        try:
            return await self.recv()
        except ConnectionClosedOK:
            raise StopAsyncIteration from None

    async def send(self, message: Message, *, compress: bool | None = None) -> None:
        """Send one message; waits while the write buffer is over `write_limit`.

        `compress` (when permessage-deflate is on): None compresses from
        the settings' `min_size` up, True always, False never."""
        if self._send_lock.locked():  # a fragmented message is being sent
            async with self._send_lock:
                self._send_now(message, compress)
        else:
            self._send_now(message, compress)
        if self._writing_paused:
            await self._drain()

    def _send_now(self, message: Message, compress: bool | None) -> None:
        core = self._core
        if core.state is not State.OPEN:
            raise self._closed_error()
        if isinstance(message, str):
            core.send_text(message, compress=compress)
        elif isinstance(message, bytes | bytearray | memoryview):
            core.send_bytes(message, compress=compress)
        else:
            raise TypeError(f"send() takes str or bytes, not {type(message).__name__}")
        self._flush_soon(len(message))

    def send_prepared(self, message: PreparedMessage) -> int:
        """Queue a message framed once for many connections, without waiting:
        a broadcast must never wait for its slowest peer. Returns the bytes
        now waiting to reach this peer, by which the caller can judge it too
        slow. Written at the end of this loop iteration, with whatever else
        was queued for this peer in it."""
        core = self._core
        if core.state is not State.OPEN:
            raise self._closed_error()
        size = core.send_prepared(message)
        transport = self._transport
        if self._writing_paused and transport is not None:
            # Over the high-water mark the core holds output back; a frame
            # for a broadcast goes to the transport, where it is counted.
            transport.writelines(core.chunks_to_send())
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
        async with self._send_lock:
            previous: Message | None = None
            async for fragment in _aiter(fragments):
                if previous is not None:
                    self._send_fragment(previous, final=False, compress=compress)
                    if self._writing_paused:
                        await self._drain()
                previous = fragment
            self._send_fragment(
                b"" if previous is None else previous, final=True, compress=compress
            )
        if self._writing_paused:
            await self._drain()

    def _send_fragment(self, fragment: Message, *, final: bool, compress: bool | None) -> None:
        if self._core.state is not State.OPEN:
            raise self._closed_error()
        if isinstance(fragment, str):
            self._core.send_text(fragment, final=final, compress=compress)
        else:
            self._core.send_bytes(fragment, final=final, compress=compress)
        self._flush()

    async def _drain(self) -> None:
        while self._writing_paused:
            if self._closed.done():
                raise self._closed_error()
            waiter = self._loop.create_future()
            self._drain_waiters.append(waiter)
            await waiter

    async def ping(self, data: bytes | None = None) -> float:
        """Send a ping and wait for its pong; returns the round trip in seconds."""
        payload = os.urandom(4) if data is None else bytes(data)
        if payload in self._pings:
            raise ConcurrencyError("already waiting for a pong to this payload")
        if self._core.state is not State.OPEN:
            raise self._closed_error()
        self._core.send_ping(payload)
        waiter: asyncio.Future[float] = self._loop.create_future()
        self._pings[payload] = (waiter, self._loop.time())
        self._flush()
        return await waiter

    async def close(self, code: int = 1000, reason: str = "") -> None:
        """Start the close handshake (if not started) and wait for the end.

        Bounded by `close_timeout`: the core gives up on a silent peer.
        """
        self.close_nowait(code, reason)
        await asyncio.shield(self._closed)

    def close_nowait(self, code: int = 1000, reason: str = "") -> None:
        if self._core.state is State.OPEN:
            self._local_close = (code, reason)
            self._core.close(code, reason)
            self._flush()
        elif self._core.state is State.CONNECTING and self._transport is not None:
            self._transport.close()

    async def wait_closed(self) -> None:
        await asyncio.shield(self._closed)

    # -- driving the core ----------------------------------------------------

    def _flush(self) -> None:
        """Write what the core queued, close if it says so, re-arm the timer."""
        self._flush_scheduled = False
        self._unflushed = 0
        core = self._core
        transport = self._transport
        if transport is None:
            core.chunks_to_send()  # nowhere to write: drop
            return
        if not self._writing_paused or core.should_close_transport:
            chunks = core.chunks_to_send()
            if chunks:
                transport.writelines(chunks)
        elif core.unsent_pong_bytes > self._settings.write_limit and not self._pong_paused:
            # Over write_limit, output waits in the core; a peer that keeps
            # pinging without reading would grow it, so stop reading it.
            self._pong_paused = True
            transport.pause_reading()
        if core.should_close_transport and not self._closing:
            self._closing = True
            self._transport_closing()
            transport.close()
            # close() waits for the buffer to drain; a peer that stopped
            # reading would keep the connection forever.
            self._loop.call_later(self._settings.close_timeout or 10.0, transport.abort)
        deadline = core.next_deadline(self._loop.time())
        if deadline != self._timer_at:
            if self._timer is not None:
                self._timer.cancel()
            self._timer_at = deadline
            self._timer = None if deadline is None else self._loop.call_at(deadline, self._on_timer)

    def _on_timer(self) -> None:
        due = self._timer_at or 0.0
        self._timer = self._timer_at = None
        self._process(self._core.handle_timeout(max(self._loop.time(), due)))
        self._flush()

    def _process(self, events: list[Event]) -> None:
        fragments = self._fragments
        for event in events:
            kind = type(event)
            if kind is TextFragment or kind is BytesFragment:
                fragments.append(event)  # type: ignore[arg-type]
            elif kind is Pong:
                self._pong(event.payload)  # type: ignore[union-attr]
            elif kind is CloseReceived or kind is ConnectionFailed:
                self._wake_receiver()
            elif kind is HandshakeRequest:
                self._handshake_request(event)  # type: ignore[arg-type]
            elif kind is HttpRequest:
                assert self._server is not None
                assert isinstance(self._core, ServerConnection)
                answer_http(self._core, event, self._settings)  # type: ignore[arg-type]
            elif kind is HandshakeAccepted:
                self._opened.set_result(None)
            elif kind is HandshakeRejected:
                status, body = event.status, event.body  # type: ignore[union-attr]
                self._opened.set_exception(HandshakeError(status, "server rejected", body))
            elif kind is HandshakeFailed and not self._opened.done():
                status, reason = event.status, event.reason  # type: ignore[union-attr]
                self._opened.set_exception(HandshakeError(status, reason))
        if fragments:
            self._wake_receiver()
            if len(fragments) >= self._settings.max_queue and not self._reading_paused:
                self._reading_paused = True
                if self._transport is not None:
                    self._transport.pause_reading()

    def _wake_receiver(self) -> None:
        waiter = self._recv_waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    def _pong(self, payload: bytes) -> None:
        if payload not in self._pings:
            return
        now = self._loop.time()
        # A pong answers its ping and every earlier one (RFC 6455 section 5.5.3).
        while self._pings:
            key, (waiter, sent) = next(iter(self._pings.items()))
            del self._pings[key]
            if not waiter.done():
                waiter.set_result(now - sent)
            if key == payload:
                break

    def _handshake_request(self, request: HandshakeRequest) -> None:
        server = self._server
        assert server is not None
        assert isinstance(self._core, ServerConnection)
        self.request = request
        ip = _ip_of(self.remote_address)
        if not answer_handshake(self, self._core, request, self._settings, server.admission, ip):
            return
        self._opened.set_result(None)
        self.handler_task = self._loop.create_task(server.run_handler(self))
        server.handler_tasks.add(self.handler_task)
        self.handler_task.add_done_callback(server.handler_tasks.discard)
        self._process(self._core.receive_data(b""))  # frames the client sent early

    # -- transport callbacks (through _Protocol) -----------------------------

    def _connection_made(self, transport: asyncio.Transport) -> None:
        self._transport = transport
        self.remote_address = transport.get_extra_info("peername")
        transport.set_write_buffer_limits(high=self._settings.write_limit)
        self._flush()  # the client's request; the open timer on both sides

    def _data_received(self, data: bytes) -> None:
        self._process(self._core.receive_data(data))
        self._flush()

    def _eof_received(self) -> None:
        self._process(self._core.receive_eof())
        self._flush()

    def _connection_lost(self, exc: Exception | None) -> None:
        if self._core.state is not State.CLOSED:
            self._process(self._core.receive_eof())
        if self._timer is not None:
            self._timer.cancel()
        self._timer = None
        self._transport = None
        if not self._opened.done():
            self._opened.set_exception(HandshakeError(None, "connection lost during the handshake"))
        if not self._closed.done():
            self._closed.set_result(None)
        self._wake_receiver()
        error = self._closed_error()
        for waiter, _ in self._pings.values():
            if not waiter.done():
                waiter.set_exception(error)
        self._pings.clear()
        for drain in self._drain_waiters:
            if not drain.done():
                drain.set_result(None)
        self._writing_paused = False
        if self._server is not None:
            self._server.forget(self)

    def _pause_writing(self) -> None:
        self._writing_paused = True

    def _resume_writing(self) -> None:
        self._writing_paused = False
        self._flush()  # what waited in the core while we were over the limit
        if self._pong_paused:
            self._pong_paused = False
            if not self._reading_paused and self._transport is not None:
                self._transport.resume_reading()
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


async def _aiter(items: Iterable[Message] | AsyncIterable[Message]) -> AsyncIterator[Message]:
    if isinstance(items, AsyncIterable):
        async for item in items:
            yield item
    else:
        for item in items:
            yield item


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
        self._closing = False
        # Handlers outlive their connection's entry in `connections` (a
        # peer that left); close() must still cancel them.
        self.handler_tasks: set[asyncio.Task[None]] = set()

    def track(self, ws: WebSocket) -> None:
        self.connections.add(ws)

    def forget(self, ws: WebSocket) -> None:
        if ws in self.connections:
            self.connections.discard(ws)
            ws._transport_closing()
            self.admission.depart()

    async def run_handler(self, ws: WebSocket) -> None:
        try:
            await self.handler(ws)
        except ConnectionClosed:
            pass
        except Exception:
            logger.exception("connection handler failed")
            await ws.close(1011, "internal error")
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
        (at most `close_timeout`, then cancel what is left)."""
        for task in self._accept_tasks:
            task.cancel()
        for listener in self._listeners:
            listener.close()
        self._closing = True
        connections = list(self.connections)
        for ws in connections:
            ws.close_nowait(code, reason)
        waits = [asyncio.ensure_future(ws.wait_closed()) for ws in connections]
        handlers = list(self.handler_tasks)
        if waits:
            await asyncio.wait(waits, timeout=self.settings.close_timeout)
            for wait in waits:
                wait.cancel()
        for ws in connections:
            if ws._transport is not None:
                ws._transport.abort()
        for task in handlers:
            task.cancel()
        if handlers:
            await asyncio.wait(handlers, timeout=self.settings.close_timeout)
        if self._stopped is not None and not self._stopped.done():
            self._stopped.set_result(None)

    async def __aenter__(self) -> Server:
        return self

    async def __aexit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()


async def _listen(host: str | None, port: int, *, reuse_port: bool) -> list[socket.socket]:
    """Listening sockets for every address `host` names (all interfaces
    for None or ""), as `loop.create_server` would bind them."""
    infos = await asyncio.get_running_loop().getaddrinfo(
        host or None, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE
    )
    listeners: list[socket.socket] = []
    seen = set()
    try:
        for family, kind, proto, _, address in infos:
            if (family, address) in seen:
                continue
            seen.add((family, address))
            try:
                sock = socket.socket(family, kind, proto)
            except OSError:
                if len(infos) > 1:
                    continue  # a family this host lacks (IPv6 disabled), as create_server does
                raise
            listeners.append(sock)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            if reuse_port:
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
            if family == socket.AF_INET6:
                sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
            sock.bind(address)
            sock.listen(socket.SOMAXCONN)
            sock.setblocking(False)
    except OSError:
        for sock in listeners:
            sock.close()
        raise
    if not listeners:
        raise OSError(f"could not listen on {host!r} port {port}")
    return listeners


class _CountingProtocol(_Protocol):
    """Tracks the connection from the moment its transport is made."""

    def __init__(self, ws: WebSocket, server: Server) -> None:
        super().__init__(ws)
        self.server = server

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        super().connection_made(transport)
        self.server.track(self.ws)


async def serve(
    handler: Handler, host: str | None, port: int, **options: Unpack[ServerOptions]
) -> Server:
    """Start a server; use as `async with await serve(...)` or call close()."""
    server = Server(handler, Settings.of(options))
    await server.start(host, port)
    return server


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

    async def __aexit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if self.ws is not None:
            await self.ws.close()
