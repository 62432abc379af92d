"""WebSocket server and client on trio, driving wsproto_core.

Each connection runs a reader task beside the application's handler. The
reader waits for bytes with a cancel scope whose deadline is the core's
next deadline, so the core's timers need no task of their own; a full
receive queue makes the reader stop reading until the application catches
up, and `send` waits in `send_all` while the peer is not reading.

    async def echo(ws):
        async for message in ws:
            await ws.send(message)

    async with trio.open_nursery() as nursery:
        server = await nursery.start(serve, echo, "127.0.0.1", 8765)
"""

from __future__ import annotations

import logging
import math
import os
import socket
import ssl as ssl_module
from collections import deque
from collections.abc import AsyncIterable, AsyncIterator, Awaitable, Callable, Iterable
from contextlib import asynccontextmanager, suppress
from typing import Any, Unpack

import trio

from wsproto_core import (
    BytesFragment,
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
from ._legacy import (
    READ_SIZE,
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
    answer_pings,
    new_client_core,
    parse_uri,
)

__all__ = ["Server", "WebSocket", "connect", "serve"]

logger = logging.getLogger(__name__)
Handler = Callable[["WebSocket"], Awaitable[None]]


class WebSocket(ConnectionView):
    """One WebSocket connection, either role."""

    def __init__(self, stream: trio.abc.Stream, core: Connection, settings: Settings) -> None:
        self._stream = stream
        self._core = core
        self._settings = settings
        self._fragments: deque[Fragment] = deque()
        self._assembly = Reassembly()
        self._arrived = trio.Event()  # set when fragments arrive or the state changes
        self._room = trio.Event()  # set when recv() makes room in a full queue
        self._recv_busy = False
        self._send_lock = trio.Lock()  # one writer at a time, bytes in core order
        self._fragment_lock = trio.Lock()  # held while a message goes out in fragments
        self._pings: dict[bytes, list[float]] = {}
        self._pong_arrived = trio.Event()
        self._opened = trio.Event()
        self._closed = trio.Event()
        self._read_scope: trio.CancelScope | None = None
        self._writer_scope: trio.CancelScope | None = None
        self._wake_writer = trio.Event()
        self._unflushed = 0  # bytes sent since the last write
        self._in_flight = 0  # bytes in the write under way
        self._write_cut = False  # a write was cancelled halfway
        self._local_close: tuple[int, str] | None = None
        self._outcome: HandshakeError | None = None
        self.request: HandshakeRequest | None = None
        self.remote_address: Any = None
        socket_stream = stream.transport_stream if isinstance(stream, trio.SSLStream) else stream
        if isinstance(socket_stream, trio.SocketStream):
            with suppress(OSError):
                self.remote_address = socket_stream.socket.getpeername()

    # -- what the application sees ------------------------------------------

    def _transport_gone(self) -> bool:
        return self._closed.is_set()

    async def recv(self) -> Message:
        if self._recv_busy:
            raise ConcurrencyError("recv() is already running in another task")
        self._recv_busy = True
        try:
            while True:
                message = self._assembly.add(await self._next_fragment())
                if message is not None:
                    return message
        finally:
            self._recv_busy = False

    async def recv_streaming(self) -> AsyncIterator[Message]:
        if self._recv_busy:
            raise ConcurrencyError("recv() is already running in another task")
        self._recv_busy = True
        try:
            for part in self._assembly.parts:
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
        while not self._fragments:
            if self._core.failure_pending:  # the application has had its messages
                self._process(self._core.receive_data(b""))
                await self._flush()
            if self._is_over():
                raise self._closed_error()
            self._arrived = trio.Event()
            await self._arrived.wait()
        fragment = self._fragments.popleft()
        self._room.set()
        return fragment

    def __aiter__(self) -> AsyncIterator[Message]:
        return self

    async def __anext__(self) -> Message:
        try:
            return await self.recv()
        except ConnectionClosedOK:
            raise StopAsyncIteration from None

    async def send(self, message: Message, *, compress: bool | None = None) -> None:
        if self._fragment_lock.locked():
            async with self._fragment_lock:
                await self._send_frame(message, final=True, compress=compress)
        else:
            await self._send_frame(message, final=True, compress=compress)

    async def send_fragments(
        self,
        fragments: Iterable[Message] | AsyncIterable[Message],
        *,
        compress: bool | None = None,
    ) -> None:
        async with self._fragment_lock:
            previous: Message | None = None
            async for fragment in _aiter(fragments):
                if previous is not None:
                    await self._send_frame(previous, final=False, compress=compress)
                previous = fragment
            await self._send_frame(
                b"" if previous is None else previous, final=True, compress=compress
            )

    async def _send_frame(self, message: Message, *, final: bool, compress: bool | None) -> None:
        core = self._core
        if core.state is not State.OPEN:
            raise self._closed_error()
        if isinstance(message, str):
            core.send_text(message, final=final, compress=compress)
        elif isinstance(message, bytes | bytearray | memoryview):
            core.send_bytes(message, final=final, compress=compress)
        else:
            raise TypeError(f"send() takes str or bytes, not {type(message).__name__}")
        self._unflushed += len(message)
        if self._writer_scope is None or self._unflushed > self._settings.write_limit:
            await self._flush()  # no writer yet, or backpressure: write and wait
        else:
            # The writer task writes once this task yields, so a batch of
            # sends (an echo of pipelined messages) is one write, not many.
            self._wake_writer.set()
            await trio.lowlevel.checkpoint_if_cancelled()

    def send_prepared(self, message: PreparedMessage) -> int:
        """Queue a message framed once for many connections, without waiting:
        a broadcast must never wait for its slowest peer. The writer task
        sends it. Returns the bytes now waiting to reach this peer, by which
        the caller can judge it too slow."""
        core = self._core
        if core.state is not State.OPEN:
            raise self._closed_error()
        self._unflushed += core.send_prepared(message)
        if self._writer_scope is not None:
            self._wake_writer.set()
        return self._unflushed + self._in_flight

    async def ping(self, data: bytes | None = None) -> float:
        payload = os.urandom(4) if data is None else bytes(data)
        if payload in self._pings:
            raise ConcurrencyError("already waiting for a pong to this payload")
        if self._core.state is not State.OPEN:
            raise self._closed_error()
        self._core.send_ping(payload)
        record = self._pings[payload] = [trio.current_time()]
        await self._flush()
        while len(record) == 1:
            if self._is_over():
                self._pings.pop(payload, None)
                raise self._closed_error()
            self._pong_arrived = trio.Event()
            await self._pong_arrived.wait()
        return record[1]

    async def close(self, code: int = 1000, reason: str = "") -> None:
        """Close and wait for the end (bounded by `close_timeout` in the core)."""
        await self.close_nowait(code, reason)
        await self._closed.wait()

    async def close_nowait(self, code: int = 1000, reason: str = "") -> None:
        if self._core.state is State.OPEN:
            self._local_close = (code, reason)
            self._core.close(code, reason)
            await self._flush()
        elif self._core.state is State.CONNECTING:
            await self._abort()

    async def wait_closed(self) -> None:
        await self._closed.wait()

    # -- driving the core ----------------------------------------------------

    async def _flush(self, *, wait: bool = True) -> None:
        """Write what the core queued, close if it says so, move the reader's
        deadline to the core's next one.

        The reader flushes with wait=False: if a sender is writing, the
        sender's drain loop takes the reader's pongs and close replies too,
        and the reader goes back to reading. A reader that waited here could
        sit behind a large send to a peer that is itself waiting for us to
        read: both sides writing, neither reading.

        Whatever others queue while we write is written too, and the decision
        to close is taken with the last bytes in hand (no await in between).
        """
        if (
            not wait
            and self._send_lock.locked()
            and self._core.unsent_pong_bytes <= self._settings.write_limit
        ):
            return  # past write_limit of owed pongs, even the reader waits
        async with self._send_lock:
            self._unflushed = 0
            while True:
                data = self._core.data_to_send()
                should_close = self._core.should_close_transport
                if not data:
                    break
                self._in_flight, self._unflushed = len(data), 0
                try:
                    await self._stream.send_all(data)
                except (trio.BrokenResourceError, trio.ClosedResourceError):
                    should_close = True
                    break
                except trio.Cancelled:
                    self._write_cut = True  # part of `data` may be gone: no more writes
                    raise
                finally:
                    self._in_flight = 0
        if should_close:
            await self._abort()
            return
        if self._read_scope is not None:
            deadline = self._core.next_deadline(trio.current_time())
            self._read_scope.deadline = math.inf if deadline is None else deadline

    async def _flush_from_reader(self) -> None:
        """The reader's write. Once the writer task runs, the reader leaves
        the writing to it and goes back to reading (and to the timers): a
        reader that wrote could end up writing the handler's large message
        to a peer that does not read, and no timer would fire again.

        Only pongs owed past `write_limit` (a peer pinging without reading)
        make the reader wait to write, and then with the timers running: a
        peer that reads nothing answers no keepalive ping either."""
        core = self._core
        if self._writer_scope is None:  # the handshake: nothing large to write
            await self._flush(wait=False)
            return
        if core.unsent_pong_bytes <= self._settings.write_limit:
            if core.has_data_to_send or core.should_close_transport:
                self._wake_writer.set()
            return
        while True:
            deadline = core.next_deadline(trio.current_time())
            with trio.move_on_at(math.inf if deadline is None else deadline) as waiting:
                await self._flush()
            if not waiting.cancelled_caught:
                return
            # (cancelled in a write, the stream is broken: it ends either way)
            self._process(core.handle_timeout(trio.current_time()))
            if core.should_close_transport or self._write_cut:
                await self._abort()
                return

    async def _abort(self) -> None:
        self._transport_closing()
        with trio.CancelScope(shield=True):
            await trio.aclose_forcefully(self._stream)

    def _process(self, events: list[Event]) -> None:
        for event in events:
            kind = type(event)
            if kind is TextFragment or kind is BytesFragment:
                self._fragments.append(event)  # type: ignore[arg-type]
            elif kind is Pong:
                self._pong(event.payload)  # type: ignore[union-attr]
            elif kind is CloseReceived or kind is ConnectionFailed:
                pass  # waiters look at the state when woken below
            elif kind is HandshakeRequest:
                self.request = event  # type: ignore[assignment]
            elif kind is HttpRequest:
                answer_http(self._core, event, self._settings)  # type: ignore[arg-type]
            elif kind is HandshakeAccepted:
                self._opened.set()
            elif kind is HandshakeRejected:
                status, body = event.status, event.body  # type: ignore[union-attr]
                self._outcome = HandshakeError(status, "server rejected", body)
            elif kind is HandshakeFailed:
                status, reason = event.status, event.reason  # type: ignore[union-attr]
                self._outcome = HandshakeError(status, reason)
        self._arrived.set()

    def _pong(self, payload: bytes) -> None:
        if answer_pings(self._pings, payload, trio.current_time()):
            self._pong_arrived.set()

    async def _read_some(self) -> bool:
        """Read once (or run a due timer); False when the connection is over."""
        deadline = self._core.next_deadline(trio.current_time())
        data: bytes | bytearray = b""
        with trio.CancelScope(deadline=math.inf if deadline is None else deadline) as scope:
            self._read_scope = scope
            try:
                data = await self._stream.receive_some(READ_SIZE)
            except (trio.BrokenResourceError, trio.ClosedResourceError):
                data = b""
        self._read_scope = None
        if scope.cancelled_caught:
            self._process(self._core.handle_timeout(trio.current_time()))
        elif data:
            self._process(self._core.receive_data(data))
        else:
            self._process(self._core.receive_eof())
        await self._flush_from_reader()
        return not self._core.should_close_transport and bool(data or scope.cancelled_caught)

    async def _run_writer(
        self, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED
    ) -> None:
        """Write what senders queued, once they yield (see `_send_frame`)."""
        with trio.CancelScope() as scope:
            self._writer_scope = scope
            task_status.started()
            while True:
                await self._wake_writer.wait()
                self._wake_writer = trio.Event()
                await self._flush()
        self._writer_scope = None

    async def _wait_for_room(self) -> None:
        while (
            len(self._fragments) >= self._settings.max_queue
            and not self._closed.is_set()
            and not self._core.should_close_transport  # (a timer ended it while we waited)
        ):
            self._room = trio.Event()
            deadline = self._core.next_deadline(trio.current_time())
            # As the read scope: a close started meanwhile moves its deadline.
            with trio.move_on_at(math.inf if deadline is None else deadline) as scope:
                self._read_scope = scope
                await self._room.wait()
            self._read_scope = None
            if not scope.cancelled_caught:
                continue
            self._process(self._core.handle_timeout(trio.current_time()))
            await self._flush_from_reader()

    async def _run_reader(self) -> None:
        try:
            while not self._core.should_close_transport:
                await self._wait_for_room()
                if not await self._read_some():
                    break
        finally:
            if self._core.state is not State.CLOSED:
                self._process(self._core.receive_eof())
            # The last flush waits (a sender may hold the lock with our close
            # reply still to write), but never longer than close_timeout.
            with trio.CancelScope(shield=True) as final:
                final.deadline = trio.current_time() + (self._settings.close_timeout or 10.0)
                await self._flush()
            await self._abort()
            # Only now: cancelled in the middle of a write, the writer would
            # lose bytes it had already taken from the core (a close reply).
            if self._writer_scope is not None:
                self._writer_scope.cancel()
            self._closed.set()
            self._arrived.set()
            self._pong_arrived.set()
            self._room.set()

    async def _handshake(self, on_request: Callable[[HandshakeRequest], bool] | None) -> bool:
        await self._flush()  # the client's request
        answered = False
        while self._core.state is State.CONNECTING and not self._core.should_close_transport:
            if not await self._read_some():
                break
            if self.request is not None and on_request is not None and not answered:
                answered = True
                if on_request(self.request):
                    self._opened.set()
                    self._process(self._core.receive_data(b""))  # early frames
                await self._flush()
        if not self._opened.is_set():  # (it may be closed already: that is recv's news)
            await self._abort()
            self._closed.set()
            return False
        return True


def _aiter(items: Iterable[Message] | AsyncIterable[Message]) -> AsyncIterator[Message]:
    async def generate() -> AsyncIterator[Message]:
        if isinstance(items, AsyncIterable):
            async for item in items:
                yield item
        else:
            for item in items:
                yield item

    return generate()


# -- server ------------------------------------------------------------------


class Server:
    """A running server; `aclose()` sends 1001 Going Away to every client."""

    def __init__(self, handler: Handler, settings: Settings) -> None:
        self.handler = handler
        self.settings = settings
        self.admission = Admission(settings.max_connections, settings.max_connections_per_ip)
        self.connections: set[WebSocket] = set()
        self.listeners: list[trio.SocketListener] = []
        self._nursery: trio.Nursery | None = None
        self._accepting = trio.CancelScope()
        self._accept_failures = AcceptFailures(logger)

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
                    return  # our own aclose()
                except OSError as error:
                    await trio.sleep(failures.failed(error))
                    continue
                if not let_in(self.admission, failures, stream.socket.fileno()):
                    stream.socket.close()
                    continue
                failures.accepted()
                self._nursery.start_soon(self._serve_one, stream)

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
            ws = WebSocket(stream, self.settings.new_server_core(), self.settings)
            ws.remote_address = address
            self.connections.add(ws)
            core = ws._core
            assert isinstance(core, ServerConnection)
            opened = False
            with trio.move_on_after(self.settings.open_timeout or math.inf):
                opened = await ws._handshake(
                    lambda request: answer_handshake(
                        ws, core, request, self.settings, self.admission, ip
                    )
                )
            if opened:
                async with trio.open_nursery() as nursery:
                    await nursery.start(ws._run_writer)
                    nursery.start_soon(ws._run_reader)
                    await self._run_handler(ws)
        except (OSError, trio.BrokenResourceError, trio.ClosedResourceError):
            pass  # the peer went away (or was never quite there)
        except Exception:
            logger.exception("connection failed")
        finally:
            if ws is not None:
                ws._transport_closing()
                self.connections.discard(ws)
            with trio.CancelScope(shield=True):
                await trio.aclose_forcefully(stream)
            self.admission.depart()

    async def _run_handler(self, ws: WebSocket) -> None:
        try:
            await self.handler(ws)
        except ConnectionClosed:
            pass
        except Exception:
            logger.exception("connection handler failed")
            await ws.close(1011, "internal error")
        else:
            await ws.close()
        await ws.wait_closed()

    async def aclose(self, code: int = 1001, reason: str = "server shutting down") -> None:
        """Stop accepting, close every connection with `code`, wait for them
        (at most `close_timeout`), then cancel what is left."""
        self._accepting.cancel()
        for listener in self.listeners:
            await listener.aclose()
        connections = list(self.connections)
        with trio.move_on_after(self.settings.close_timeout or math.inf):
            for ws in connections:
                await ws.close_nowait(code, reason)
            for ws in connections:
                await ws.wait_closed()
        if self._nursery is not None:
            self._nursery.cancel_scope.cancel()


async def _reuse_port_listener(host: str | None, port: int) -> trio.SocketListener:
    """One listener with SO_REUSEPORT, which trio.open_tcp_listeners does
    not offer: each worker process binds the same port."""
    family = socket.AF_INET6 if host and ":" in host else socket.AF_INET
    sock = trio.socket.socket(family, socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        await sock.bind((host or "", port))
        sock.listen(128)
    except OSError:
        sock.close()
        raise
    return trio.SocketListener(sock)


async def serve(
    handler: Handler,
    host: str | None,
    port: int,
    *,
    task_status: trio.TaskStatus[Server] = trio.TASK_STATUS_IGNORED,
    **options: Unpack[ServerOptions],
) -> None:
    """Run a server until cancelled or `aclose()`d; start it with
    `server = await nursery.start(serve, handler, host, port)`."""
    server = Server(handler, Settings.of(options))
    if server.settings.reuse_port:
        server.listeners = [await _reuse_port_listener(host, port)]
    else:
        server.listeners = await trio.open_tcp_listeners(port, host=host)
    async with trio.open_nursery() as nursery:
        server._nursery = nursery
        for listener in server.listeners:
            nursery.start_soon(server._accept_loop, listener)
        task_status.started(server)


# -- client ------------------------------------------------------------------


@asynccontextmanager
async def connect(url: str, **options: Unpack[ClientOptions]) -> AsyncIterator[WebSocket]:
    """`async with connect(url) as ws:` (the reader needs a nursery, so the
    context manager is the only form). Raises HandshakeError if refused."""
    uri = parse_uri(url)
    settings = Settings.of(options)
    with trio.move_on_after(settings.open_timeout or math.inf) as opening:
        stream: trio.abc.Stream = await trio.open_tcp_stream(uri.host, uri.port)
        if uri.secure:
            context = settings.ssl or ssl_module.create_default_context()
            stream = trio.SSLStream(stream, context, server_hostname=uri.host)
        ws = WebSocket(stream, new_client_core(uri, settings), settings)
        opened = await ws._handshake(None)
    if opening.cancelled_caught:
        raise HandshakeError(None, "opening handshake timed out")
    if not opened:
        raise ws._outcome or HandshakeError(None, "connection closed during the handshake")
    try:
        async with trio.open_nursery() as nursery:
            await nursery.start(ws._run_writer)
            nursery.start_soon(ws._run_reader)
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
