"""One connection on trio: a reader task and a writer task beside the
application's handler. What it does is the driver's (`adapters._driver`);
this module only waits with `trio.Event`s and writes with `send_all`.
"""

from __future__ import annotations

import math
from collections.abc import AsyncIterable, Iterable
from contextlib import suppress
from typing import Any

import trio

from wsproto_core import Connection, PreparedMessage, State

from .._common import READ_SIZE, Message, Settings, amark_final
from .._driver import CloseStep, Driver, RequestPolicy, Wake
from .._view import AsyncConnectionView


class WebSocket(AsyncConnectionView):
    """One WebSocket connection, either role. What it does is decided by
    its `Driver`; this class waits with `trio.Event`s and writes with
    `send_all`, from a reader task and a writer task beside the handler."""

    def __init__(
        self,
        stream: trio.abc.Stream,
        core: Connection,
        settings: Settings,
        *,
        on_request: RequestPolicy | None = None,
    ) -> None:
        self._driver = Driver(core, settings, on_request=on_request)
        self._stream = stream
        self._settings = settings
        self._arrived = trio.Event()  # Wake.MESSAGES
        self._room = trio.Event()  # Wake.ROOM
        self._pong_arrived = trio.Event()  # Wake.PONGS
        self._send_lock = trio.Lock()  # one writer at a time, bytes in core order
        self._fragment_lock = trio.Lock()  # held while a message goes out in fragments
        self._closed = trio.Event()
        self._handshake_scope: trio.CancelScope | None = None
        self._read_scope: trio.CancelScope | None = None
        self._writer_scope: trio.CancelScope | None = None
        self._wake_writer = trio.Event()
        self._unflushed = 0  # bytes sent since the last write
        self._in_flight = 0  # bytes in the write under way
        self._write_cut = False  # a write was cancelled halfway
        self.remote_address: Any = None
        socket_stream = stream.transport_stream if isinstance(stream, trio.SSLStream) else stream
        if isinstance(socket_stream, trio.SocketStream):
            with suppress(OSError):
                self.remote_address = socket_stream.socket.getpeername()

    # -- receiving -----------------------------------------------------------

    def _reading_resumed(self) -> None:
        self._driver.resumed = False
        self._room.set()

    async def _wait_for_messages(self) -> None:
        driver = self._driver
        if driver.has_output:  # (a held failure, applied now, say)
            # The writer task writes it: a receiver that wrote could sit
            # behind a peer that is itself waiting for us to read, or be
            # cancelled halfway through a frame.
            self._wake_writer.set()
        # What was taken may have made room for the reader: let it read on,
        # even when it is over (the peer's TCP close is still to be read).
        self._room.set()
        if driver.is_over():
            raise driver.closed_error()
        if self._arrived.is_set():
            self._arrived = trio.Event()
        await self._arrived.wait()

    # -- sending -------------------------------------------------------------

    async def send(self, message: Message, *, compress: bool | None = None) -> None:
        """Send one message; waits while the peer is not reading."""
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
        """Send one message made of `fragments` (all str or all bytes)."""
        async with self._fragment_lock:
            async for fragment, final in amark_final(fragments):
                await self._send_frame(fragment, final=final, compress=compress)

    async def _send_frame(self, message: Message, *, final: bool, compress: bool | None) -> None:
        self._unflushed += self._driver.queue_send(message, final=final, compress=compress)
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
        self._unflushed += self._driver.queue_prepared(message)
        if self._writer_scope is not None:
            self._wake_writer.set()
        return self._unflushed + self._in_flight

    async def ping(self, data: bytes | None = None) -> float:
        """Send a ping and wait for its pong; returns the round trip in seconds."""
        driver = self._driver
        record = driver.queue_ping(data, trio.current_time())
        try:
            await self._flush()
            while (rtt := driver.ping_result(record)) is None:
                if self._pong_arrived.is_set():
                    self._pong_arrived = trio.Event()
                await self._pong_arrived.wait()
        except BaseException:
            driver.forget_ping(record)
            raise
        return rtt

    # -- closing -------------------------------------------------------------

    async def close(self, code: int = 1000, reason: str = "") -> None:
        """Close and wait for the end (bounded by `close_timeout` in the core)."""
        self.close_nowait(code, reason)
        await self._closed.wait()

    def close_nowait(self, code: int = 1000, reason: str = "") -> None:
        """Start the close handshake without waiting for anything: the
        writer task sends the close frame."""
        driver = self._driver
        step = driver.start_close(code, reason)
        if step is CloseStep.FLUSH:
            self._wake_writer.set()
            # The close timer runs from now, even while the write waits.
            deadline = driver.deadline(trio.current_time())
            if self._read_scope is not None and deadline is not None:
                self._read_scope.deadline = deadline
        elif step is CloseStep.ABORT and self._handshake_scope is not None:
            self._handshake_scope.cancel()

    async def wait_closed(self) -> None:
        await self._closed.wait()

    # -- driving the driver --------------------------------------------------

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
        driver = self._driver
        if not wait and self._send_lock.locked() and not driver.pong_backlog:
            return  # past write_limit of owed pongs, even the reader waits
        should_close = self._write_cut  # a frame was cut: nothing more can follow it
        async with self._send_lock:
            self._unflushed = 0
            while not should_close:
                chunks, close = driver.output()
                should_close = should_close or close
                if not chunks:
                    break
                data = chunks[0] if len(chunks) == 1 else b"".join(chunks)
                self._in_flight, self._unflushed = len(data), 0
                try:
                    await self._stream.send_all(data)
                except (trio.BrokenResourceError, trio.ClosedResourceError):
                    should_close = True
                    break
                except trio.Cancelled:
                    self._write_cut = True  # part of `data` may be gone: no more writes
                    self._wake_writer.set()  # whose next flush ends the connection
                    raise
                finally:
                    self._in_flight = 0
        if should_close:
            await self._abort()
            return
        if self._read_scope is not None:
            deadline = driver.deadline(trio.current_time())
            self._read_scope.deadline = math.inf if deadline is None else deadline

    async def _flush_from_reader(self) -> None:
        """The reader's write. Once the writer task runs, the reader leaves
        the writing to it and goes back to reading (and to the timers): a
        reader that wrote could end up writing the handler's large message
        to a peer that does not read, and no timer would fire again.

        Only pongs owed past `write_limit` (a peer pinging without reading)
        make the reader wait to write, and then with the timers running: a
        peer that reads nothing answers no keepalive ping either."""
        driver = self._driver
        if self._writer_scope is None:  # the handshake: nothing large to write
            await self._flush(wait=False)
            return
        if not driver.pong_backlog:
            if driver.has_output:
                self._wake_writer.set()
            return
        while True:
            deadline = driver.deadline(trio.current_time())
            with trio.move_on_at(math.inf if deadline is None else deadline) as waiting:
                await self._flush()
            if not waiting.cancelled_caught:
                return
            # (cancelled in a write, the stream is broken: it ends either way)
            self._wake(driver.timer(trio.current_time()))
            if driver.core.should_close_transport or self._write_cut:
                await self._abort()
                return

    async def _abort(self) -> None:
        with trio.CancelScope(shield=True):
            await trio.aclose_forcefully(self._stream)

    def _wake(self, wake: int) -> None:
        if wake & Wake.MESSAGES:
            self._arrived.set()
        if wake & Wake.PONGS:
            self._pong_arrived.set()
        if wake & Wake.ROOM:
            self._room.set()

    async def _read_some(self) -> bool:
        """Read once (or run a due timer); False when the connection is over."""
        driver = self._driver
        deadline = driver.deadline(trio.current_time())
        data: bytes | bytearray = b""
        with trio.CancelScope(deadline=math.inf if deadline is None else deadline) as scope:
            self._read_scope = scope
            try:
                data = await self._stream.receive_some(READ_SIZE)
            except (trio.BrokenResourceError, trio.ClosedResourceError):
                data = b""
        self._read_scope = None
        now = trio.current_time()
        if scope.cancelled_caught:
            self._wake(driver.timer(now))
        elif data:
            self._wake(driver.received(data, now))
        else:
            self._wake(driver.eof(now))
        await self._flush_from_reader()
        return not driver.core.should_close_transport and bool(data or scope.cancelled_caught)

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
        """Backpressure: stop reading while the driver says so (timers still run)."""
        driver = self._driver
        while (
            not driver.wants_data
            and not self._closed.is_set()
            and not driver.core.should_close_transport  # (a timer ended it while we waited)
        ):
            self._room = trio.Event()
            deadline = driver.deadline(trio.current_time())
            # As the read scope: a close started meanwhile moves its deadline.
            with trio.move_on_at(math.inf if deadline is None else deadline) as scope:
                self._read_scope = scope
                await self._room.wait()
            self._read_scope = None
            if not scope.cancelled_caught:
                continue
            self._wake(driver.timer(trio.current_time()))
            await self._flush_from_reader()

    async def _run_reader(self) -> None:
        driver = self._driver
        try:
            while not driver.core.should_close_transport:
                await self._wait_for_room()
                if driver.unfed and driver.wants_data:
                    # Compressed input read before the pause comes first.
                    self._wake(driver.received(b"", trio.current_time()))
                    await self._flush_from_reader()
                elif not await self._read_some():
                    break
        finally:
            if driver.core.state is not State.CLOSED:
                self._wake(driver.eof(trio.current_time()))
            # The last flush waits (a sender may hold the lock with our close
            # reply still to write), but never longer than the final write bound.
            with trio.CancelScope(shield=True) as final:
                final.deadline = trio.current_time() + self._settings.final_write_bound
                await self._flush()
            await self._abort()
            # Only now: cancelled in the middle of a write, the writer would
            # lose bytes it had already taken from the core (a close reply).
            if self._writer_scope is not None:
                self._writer_scope.cancel()
            self._wake(driver.transport_lost(trio.current_time()))
            self._closed.set()

    async def _handshake(self) -> bool:
        """Run the opening handshake; True once open (a server's answer is
        written by the driver's policy as the request arrives)."""
        driver = self._driver
        with trio.CancelScope() as self._handshake_scope:
            await self._flush()  # the client's request
            while driver.core.state is State.CONNECTING and not driver.core.should_close_transport:
                if not await self._read_some():
                    break
        self._handshake_scope = None
        if not driver.opened:  # (it may be closed already: that is recv's news)
            await self._abort()
            self._wake(driver.transport_lost(trio.current_time()))
            self._closed.set()
            return False
        return True
