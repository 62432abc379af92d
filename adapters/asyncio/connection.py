"""One connection on asyncio: the `WebSocket` the application holds and
the `asyncio.Protocol` that feeds it. What it does is the driver's
(`adapters._driver`); this module only waits with futures and writes with
`writelines`.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterable, Iterable
from typing import TYPE_CHECKING, Any, cast

from wsproto_core import Connection, HandshakeRequest, PreparedMessage
from wsproto_core.events import Event

from .._common import Message, Settings, amark_final
from .._driver import CloseStep, Driver, Wake, answer_handshake
from .._view import AsyncConnectionView, run_handler
from ._batch import end_of_iteration

# Each handler task's name, given: asyncio would otherwise format one per
# task, which the connection keeps.
HANDLER_TASK = "websocket handler"

if TYPE_CHECKING:
    from .server import Server

logger = logging.getLogger(__name__)


class WebSocket(AsyncConnectionView):
    """One WebSocket connection, either role.

    `recv()` / `async for` return whole messages; `recv_streaming()` yields
    a message piece by piece; `send()` and `send_fragments()` mirror them.
    What the connection does is decided by its `Driver`; this class waits
    with futures and writes with `writelines`.
    """

    def __init__(
        self, core: Connection, settings: Settings, *, server: Server | None = None
    ) -> None:
        self._driver = Driver(core, settings, on_request=self._on_request)
        self._settings = settings
        self._server = server
        self._loop = asyncio.get_running_loop()
        self._transport: asyncio.Transport | None = None
        self._reading = True  # the transport's reading state, steered by the driver
        self._recv_waiter: asyncio.Future[None] | None = None
        self._pong_waiter: asyncio.Future[None] | None = None
        self._drain_waiters: list[asyncio.Future[None]] = []
        # Held while a message is sent in fragments; made by the first such
        # message (an idle connection's memory is its cost).
        self._send_lock: asyncio.Lock | None = None
        # What a waiting connect() learns of the handshake; a server's
        # connection has no one waiting for it, and no future.
        self._opened: asyncio.Future[None] | None = None
        if server is None:
            self._opened = self._loop.create_future()
            # Only a waiting connect() cares why a handshake failed.
            self._opened.add_done_callback(_retrieve)
        self._closed: asyncio.Future[None] = self._loop.create_future()
        self._timer: asyncio.TimerHandle | None = None
        self._timer_at: float | None = None
        # The batch's iteration in which this connection wrote last: later
        # sends in it wait for the batch (see `_flush_soon`).
        self._wrote_in = _NOT_YET
        self._in_batch = False  # `_deferred_flush` is due in the batch
        self._end_of_iteration = end_of_iteration(self._loop)
        self._unflushed = 0  # bytes sent since the last write, for _flush_soon
        self.remote_address: Any = None
        self.handler_task: asyncio.Task[None] | None = None

    # -- receiving -----------------------------------------------------------

    def _reading_resumed(self) -> None:
        self._driver.resumed = False
        self._steer_reading()

    async def _wait_for_messages(self) -> None:
        if self._ready_to_wait():
            waiter = self._recv_waiter = self._loop.create_future()
            try:
                await waiter
            finally:
                self._recv_waiter = None
        elif self._driver.is_over() and not self._driver.fragments:
            raise self._driver.closed_error()

    def _ready_to_wait(self) -> bool:
        """Before a receiver waits: write what is owed (a held failure,
        applied now) and read again if taking made room. False when there
        is news already (the end, or fragments that compressed input read
        before a pause brought): look again instead of waiting."""
        driver = self._driver
        if driver.has_output:
            self._flush()
        if not self._reading:
            # Even when it is over: the close may have come with fragments
            # that filled the queue, and the peer's TCP close is still to
            # be read, or close() would wait out its timer.
            self._steer_reading()
            if driver.fragments:
                return False
        return not driver.is_over()

    def _steer_reading(self) -> None:
        driver = self._driver
        if driver.unfed and driver.wants_data:
            # Compressed input read before a pause comes before any more
            # (which pauses reading again itself if it fills the queue).
            self._data_received(b"")
        wanted = driver.wants_data
        if wanted != self._reading and self._transport is not None:
            self._reading = wanted
            if wanted:
                self._transport.resume_reading()
            else:
                self._transport.pause_reading()

    # -- sending -------------------------------------------------------------

    async def send(self, message: Message, *, compress: bool | None = None) -> None:
        """Send one message; waits while the write buffer is over `write_limit`.

        `compress` (when permessage-deflate is on): None compresses from
        the settings' `min_size` up, True always, False never."""
        driver = self._driver
        lock = self._send_lock
        if lock is not None and lock.locked():  # a fragmented message is being sent
            async with lock:
                self._flush_soon(driver.queue_send(message, compress=compress))
        else:
            self._flush_soon(driver.queue_send(message, compress=compress))
        if driver.writes_blocked:
            await self._drain()

    def send_prepared(self, message: PreparedMessage) -> int:
        """Queue a message framed once for many connections, without waiting:
        a broadcast must never wait for its slowest peer. Returns the bytes
        now waiting to reach this peer, by which the caller can judge it too
        slow. The first message of a loop iteration is written at once, so
        that a broadcast reaches its first peers while it is still being
        queued for the others; the rest at the end of the iteration, with
        whatever else was queued for this peer in it."""
        driver = self._driver
        size = driver.queue_prepared(message)
        transport = self._transport
        if driver.writes_blocked and transport is not None:
            # Over the high-water mark the core holds output back; a frame
            # for a broadcast goes to the transport, where it is counted.
            _write(transport, driver.output()[0])
            return transport.get_write_buffer_size()
        batch = self._end_of_iteration
        if self._wrote_in != batch.iteration and transport is not None:
            # Only the write: a data frame starts no timer, and an open
            # connection has no close to act on. Later ones in this
            # iteration are batched (`_flush_soon`).
            self._wrote_in = batch.touch()
            chunks = driver.core.chunks_to_send()
            if len(chunks) == 1:
                transport.write(chunks[0])
            else:
                _write(transport, chunks)
            return transport.get_write_buffer_size()
        self._flush_soon(size)
        waiting = self._unflushed
        return waiting if transport is None else waiting + transport.get_write_buffer_size()

    def _flush_soon(self, size: int) -> None:
        """Write the first send of a loop iteration at once, so that a reply
        leaves without waiting for the loop to come round; batch the ones
        after it until the end of the iteration, so that an echo of 64
        pipelined messages costs two system calls, not 64; and write at
        once past `write_limit`, so a loop of sends that never yields cannot
        buffer without bound."""
        self._unflushed += size
        batch = self._end_of_iteration
        if self._wrote_in != batch.iteration:
            self._flush()
            self._wrote_in = batch.touch()
            return
        self._join_batch()
        if self._unflushed > self._settings.write_limit:
            self._flush()
            self._wrote_in = batch.iteration  # (still batched until the end of the iteration)

    def _join_batch(self) -> None:
        """Have `_deferred_flush` run at the end of this iteration, once."""
        if not self._in_batch:
            self._in_batch = True
            self._end_of_iteration.add(self._deferred_flush)

    async def send_fragments(
        self,
        fragments: Iterable[Message] | AsyncIterable[Message],
        *,
        compress: bool | None = None,
    ) -> None:
        """Send one message made of `fragments` (all str or all bytes), one
        frame each, without holding the whole message in memory."""
        driver = self._driver
        if self._send_lock is None:
            self._send_lock = asyncio.Lock()
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
        self._wrote_in = _NOT_YET
        self._unflushed = 0
        driver = self._driver
        transport = self._transport
        if transport is None:
            driver.output()  # nowhere to write: drop
            return
        if not driver.writes_blocked or driver.core.should_close_transport:
            chunks, close = driver.output()
            if chunks:
                _write(transport, chunks)
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

    def _deferred_flush(self) -> None:
        """The end of an iteration in which this connection sent: write what
        was queued since. Often nothing (a broadcast's one message went out
        at once): then there is no step to take the timer from either."""
        self._in_batch = False
        if self._driver.has_output:
            self._flush()
        else:
            self._unflushed = 0

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
        if wake & Wake.OPENED and self._opened is not None and not self._opened.done():
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
            handler = run_handler(server.handler, self)
            task = self.handler_task = self._loop.create_task(handler, name=HANDLER_TASK)
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


# A `_wrote_in` that no iteration has: the next send writes at once.
_NOT_YET = -1

# Chunks totalling up to this are joined into one write (see `_write`).
JOIN_BELOW = 256 * 1024


def _write(transport: asyncio.Transport, chunks: list[bytes]) -> None:
    """Write `chunks` in order. Small ones are joined first: uvloop keeps
    what the socket did not take chunk by chunk, at a cost far above a
    small chunk's bytes (a peer pinging without reading made thousands of
    two-byte pongs cost megabytes), and one write of a joined batch is
    cheaper for either loop. Large payloads keep `writelines`, so they
    reach the kernel without another copy."""
    if len(chunks) == 1:
        transport.write(chunks[0])
    elif sum(map(len, chunks)) <= JOIN_BELOW:
        transport.write(b"".join(chunks))
    else:
        transport.writelines(chunks)


def _retrieve(future: asyncio.Future[None]) -> None:
    if not future.cancelled():
        future.exception()


def _ip_of(address: Any) -> str:
    return str(address[0]) if isinstance(address, tuple) and address else "unknown"
