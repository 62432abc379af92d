"""One connection on trio: a reader task beside the application's handler.
What it does is the driver's (`adapters._driver`); this module only waits
(a receiver parked by hand, `trio.Event`s made when first waited for) and
writes.

Writing does not need a task of its own. What the core queues is written
at once, without waiting, as far as the socket takes it (a plain TCP
socket on a POSIX system: `os.write` on its non-blocking descriptor, which
is what trio's own `send_all` does first); what is sent again in the same
scheduler step waits for the step's end and goes out with the rest of it
(`_batch.py`). Only what the socket does not take, and everything on a TLS
stream, goes to a writer task, started for that backlog and gone once it
is written. An idle connection is then two tasks (its handler and its
reader), and a broadcast is a write per peer within the broadcasting task,
not a task switch per peer.
"""

from __future__ import annotations

import logging
import math
import os
from collections.abc import AsyncIterable, Iterable
from contextlib import suppress
from typing import Any

import trio

from wsproto_core import Connection, PreparedMessage, State

from .._common import READ_SIZE, Message, Settings, amark_final
from .._driver import CloseStep, Driver, RequestPolicy, Wake
from .._view import AsyncConnectionView
from ._batch import end_of_step

logger = logging.getLogger(__name__)
# Tasks' names, given: trio would otherwise format one per task, some 90
# bytes each connection keeps.
READER = "websocket reader"
WRITER = "websocket writer"


def _writable_socket(stream: trio.abc.Stream) -> trio.socket.SocketType | None:
    """The socket to write to without waiting, when there is one to write
    to directly: a plain TCP stream on a POSIX system (not TLS, whose bytes
    only the `SSLStream` may produce)."""
    if os.name == "posix" and isinstance(stream, trio.SocketStream):
        return stream.socket
    return None


class WebSocket(AsyncConnectionView):
    """One WebSocket connection, either role. What it does is decided by
    its `Driver`; this class waits (see the module) and writes at once
    where it can, from a writer task where it must."""

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
        self._socket = _writable_socket(stream)
        self._settings = settings
        # The task parked in recv() for Wake.MESSAGES. Parked by hand, not on
        # a trio.Event: an idle connection's handler waits there for good,
        # and an Event (its set, its wait frames) costs it some 800 bytes.
        self._receiver: trio.lowlevel.Task | None = None
        # Made when first waited for: most connections never wait for room
        # or for a pong, and an idle connection's memory is its cost.
        self._room: trio.Event | None = None  # Wake.ROOM
        self._pong_arrived: trio.Event | None = None  # Wake.PONGS
        self._drained: trio.Event | None = None  # the writer task is done
        self._closed_event: trio.Event | None = None
        self._is_closed = False
        self._fragment_lock: trio.Lock | None = None  # a message going out in fragments
        self._nursery: trio.Nursery | None = None  # where the reader and writers run
        self._handshake_scope: trio.CancelScope | None = None
        self._read_scope: trio.CancelScope | None = None
        self._writer_scope: trio.CancelScope | None = None  # while a writer task runs
        self._leftover: bytes | memoryview = b""  # taken from the core, not yet written
        self._close_after_leftover = False
        self._unflushed = 0  # bytes queued in the core since the last write
        self._in_flight = 0  # bytes in the writer task's write under way
        self._write_cut = False  # a write was cancelled halfway
        # Wrote at once in this scheduler step: later writes in it wait for
        # its end (`_end_of_step`), to go out together.
        self._touched = False
        self._end_of_this_step = end_of_step()
        self._gone = False  # we closed the stream
        self.remote_address: Any = None
        socket_stream = stream.transport_stream if isinstance(stream, trio.SSLStream) else stream
        if isinstance(socket_stream, trio.SocketStream):
            with suppress(OSError):
                self.remote_address = socket_stream.socket.getpeername()

    # -- receiving -----------------------------------------------------------

    def _reading_resumed(self) -> None:
        self._driver.resumed = False
        if self._room is not None:
            self._room.set()

    async def _wait_for_messages(self) -> None:
        driver = self._driver
        if driver.has_output:  # (a held failure, applied now, say)
            self._write_now()
        # What was taken may have made room for the reader: let it read on,
        # even when it is over (the peer's TCP close is still to be read).
        if self._room is not None:
            self._room.set()
        if driver.is_over():
            raise driver.closed_error()
        # Until the next wake-up (one that came before is already taken:
        # the caller looked, and found nothing).
        self._receiver = trio.lowlevel.current_task()
        await trio.lowlevel.wait_task_rescheduled(self._unpark_receiver)

    def _unpark_receiver(self, _: object) -> trio.lowlevel.Abort:
        """A parked recv() is cancelled: it is no longer there to wake."""
        self._receiver = None
        return trio.lowlevel.Abort.SUCCEEDED

    # -- sending -------------------------------------------------------------

    async def send(self, message: Message, *, compress: bool | None = None) -> None:
        """Send one message; waits while more than `write_limit` bytes wait
        for a peer that is not reading."""
        lock = self._fragment_lock
        if lock is not None and lock.locked():
            async with lock:
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
        if self._fragment_lock is None:
            self._fragment_lock = trio.Lock()
        async with self._fragment_lock:
            async for fragment, final in amark_final(fragments):
                await self._send_frame(fragment, final=final, compress=compress)

    async def _send_frame(self, message: Message, *, final: bool, compress: bool | None) -> None:
        self._unflushed += self._driver.queue_send(message, final=final, compress=compress)
        self._write_now()
        if self._writer_scope is not None and self._backlog > self._settings.write_limit:
            await self._wait_drained()  # backpressure
        else:
            await trio.lowlevel.checkpoint_if_cancelled()

    def send_prepared(self, message: PreparedMessage) -> int:
        """Queue a message framed once for many connections and write it
        without waiting: a broadcast must never wait for its slowest peer.
        Returns the bytes still waiting to reach this peer, by which the
        caller can judge it too slow."""
        self._unflushed += self._driver.queue_prepared(message)
        self._write_now()
        return self._backlog

    @property
    def _backlog(self) -> int:
        return self._unflushed + self._in_flight + len(self._leftover)

    async def ping(self, data: bytes | None = None) -> float:
        """Send a ping and wait for its pong; returns the round trip in seconds."""
        driver = self._driver
        record = driver.queue_ping(data, trio.current_time())
        try:
            self._write_now()
            while (rtt := driver.ping_result(record)) is None:
                if self._pong_arrived is None or self._pong_arrived.is_set():
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
        await self.wait_closed()

    def close_nowait(self, code: int = 1000, reason: str = "") -> None:
        """Start the close handshake without waiting for anything."""
        driver = self._driver
        step = driver.start_close(code, reason)
        if step is CloseStep.FLUSH:
            self._write_now()
            self._follow_deadline()  # the close timer runs from now, even while a write waits
        elif step is CloseStep.ABORT and self._handshake_scope is not None:
            self._handshake_scope.cancel()

    async def wait_closed(self) -> None:
        if self._is_closed:
            await trio.lowlevel.checkpoint()
            return
        if self._closed_event is None:
            self._closed_event = trio.Event()
        await self._closed_event.wait()

    def _set_closed(self) -> None:
        self._is_closed = True
        if self._closed_event is not None:
            self._closed_event.set()

    # -- writing ---------------------------------------------------------------

    def _write_now(self) -> None:
        """Write what the core queued, as far as the socket takes it without
        waiting; the rest goes to a writer task (which, while it runs, writes
        whatever is queued after it too). Closes the transport if the core
        says so once its last bytes are out.

        The first write of a scheduler step goes at once; the ones after it
        in the same step wait for the step's end (`_end_of_step`) and go
        out together, unless more than `write_limit` bytes wait."""
        if self._writer_scope is not None or self._write_cut:
            return  # the writer task takes it (or nothing may follow a cut frame)
        driver = self._driver
        if not driver.has_output:
            return
        sock = self._socket
        if sock is None:  # TLS: only a task can write
            self._start_writer()
            return
        if (
            self._touched
            and self._unflushed <= self._settings.write_limit
            and not driver.core.should_close_transport
        ):
            return  # the end of this step writes it, with whatever else comes
        chunks, close = driver.output()
        self._unflushed = 0
        if chunks:
            data = chunks[0] if len(chunks) == 1 else b"".join(chunks)
            fd = sock.fileno()
            if fd < 0:  # closed already: there is no one to write to
                return
            try:
                written = os.write(fd, data)
            except BlockingIOError:
                written = 0
            except OSError:  # the peer is gone (a reset, a broken pipe)
                self._close_socket(sock)
                return
            if written < len(data):
                self._leftover = memoryview(data)[written:]
                self._close_after_leftover = close
                self._start_writer()
                return
        if close:
            self._close_socket(sock)
            return
        if not self._touched:
            self._touched = True
            self._end_of_this_step.add(self)
        self._follow_deadline()

    def _end_of_step(self) -> None:
        """The step in which this connection wrote is over: write what was
        queued after that, in one go."""
        self._touched = False
        self._write_now()

    def _close_socket(self, sock: trio.socket.SocketType) -> None:
        """Close at once, from whatever task: trio wakes a reader waiting
        for input (which then finds the end), and we wake one waiting for
        room to read."""
        sock.close()
        self._gone = True
        if self._room is not None:
            self._room.set()

    def _start_writer(self) -> None:
        """A writer task for what the socket would not take at once. Until
        it is done, the driver counts writes as blocked: a peer that pings
        without reading then stops being read (see `Driver.wants_data`)."""
        if self._nursery is None or self._writer_scope is not None:
            return  # (the handshake writes from its own task)
        self._writer_scope = trio.CancelScope()
        self._driver.writes_blocked = True
        self._nursery.start_soon(self._run_writer, self._writer_scope, name=WRITER)

    async def _run_writer(self, scope: trio.CancelScope) -> None:
        driver = self._driver
        close = False
        try:
            with scope:
                while True:
                    if self._leftover:
                        data, close = self._leftover, self._close_after_leftover
                        self._leftover = b""
                    else:
                        chunks, close = driver.output()
                        self._unflushed = 0
                        data = chunks[0] if len(chunks) == 1 else b"".join(chunks)
                    if data:
                        self._in_flight = len(data)
                        try:
                            await self._stream.send_all(data)
                        except (trio.BrokenResourceError, trio.ClosedResourceError):
                            close = True
                        except trio.Cancelled:
                            self._write_cut = True  # part of `data` may be gone
                            raise
                        finally:
                            self._in_flight = 0
                    if close or not data:
                        break
        except Exception:  # (never into the nursery: it is the server's)
            logger.exception("writing failed")
            close = True
        finally:
            self._writer_scope = None
            driver.writes_blocked = False
            if self._drained is not None:
                self._drained.set()
                self._drained = None
            if self._room is not None:
                self._room.set()
        if close or self._write_cut:
            await self._abort()
        else:
            self._follow_deadline()

    async def _wait_drained(self) -> None:
        """Wait until the writer task (if any) has written everything."""
        while self._writer_scope is not None:
            if self._drained is None:
                self._drained = trio.Event()
            await self._drained.wait()

    async def _handshake_write(self) -> None:
        """The handshake's writes, from its own task (no reader runs yet)."""
        chunks, close = self._driver.output()
        if chunks:
            try:
                await self._stream.send_all(b"".join(chunks))
            except (trio.BrokenResourceError, trio.ClosedResourceError):
                close = True
        if close:
            await self._abort()

    def _follow_deadline(self) -> None:
        """Move the reader's deadline to the core's next one."""
        if self._read_scope is not None:
            deadline = self._driver.deadline(trio.current_time())
            self._read_scope.deadline = math.inf if deadline is None else deadline

    async def _abort(self) -> None:
        with trio.CancelScope(shield=True):
            await trio.aclose_forcefully(self._stream)
        self._gone = True
        if self._room is not None:  # (a reader paused for room finds the end)
            self._room.set()

    # -- reading -------------------------------------------------------------

    def _wake(self, wake: int) -> None:
        if wake & Wake.MESSAGES:
            receiver = self._receiver
            if receiver is not None:
                self._receiver = None
                trio.lowlevel.reschedule(receiver)
        if wake & Wake.PONGS and self._pong_arrived is not None:
            self._pong_arrived.set()
        if wake & Wake.ROOM and self._room is not None:
            self._room.set()

    async def _after_input(self) -> None:
        """Write what reading owes the peer (pongs, a close reply, a refusal)."""
        if self._nursery is None:
            await self._handshake_write()
        else:
            self._write_now()

    def _read_now(self, sock: trio.socket.SocketType) -> bytes | None:
        """What the socket has (b"": the end), None if nothing after all
        (woken, but another read took it)."""
        try:
            return os.read(sock.fileno(), READ_SIZE)
        except BlockingIOError:
            return None
        except OSError:  # a reset (or closed meanwhile): the end, as trio's stream says
            return b""

    async def _read_some(self) -> bool:
        """Read once (or run a due timer); False when the connection is over."""
        driver = self._driver
        deadline = driver.deadline(trio.current_time())
        data: bytes | bytearray = b""
        with trio.CancelScope(deadline=math.inf if deadline is None else deadline) as scope:
            self._read_scope = scope
            try:
                sock = self._socket
                if sock is None:
                    data = await self._stream.receive_some(READ_SIZE)
                # A plain socket is read straight from its descriptor once
                # trio says it is readable: the reader parks in a few frames
                # instead of the dozen of trio's stream and socket layers,
                # and a parked reader is most of an idle connection.
                while sock is not None and sock.fileno() >= 0:
                    await trio.lowlevel.wait_readable(sock)
                    if (got := self._read_now(sock)) is not None:
                        data = got
                        break
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
        await self._after_input()
        return not driver.core.should_close_transport and bool(data or scope.cancelled_caught)

    async def _wait_for_room(self) -> None:
        """Backpressure: stop reading while the driver says so (timers still
        run): the application is behind, or the peer pings without reading."""
        driver = self._driver
        while (
            not driver.wants_data
            and not self._gone
            and not driver.core.should_close_transport  # (a timer ended it while we waited)
        ):
            self._room = room = trio.Event()
            deadline = driver.deadline(trio.current_time())
            # As the read scope: a close started meanwhile moves its deadline.
            with trio.move_on_at(math.inf if deadline is None else deadline) as scope:
                self._read_scope = scope
                await room.wait()
            self._read_scope = None
            if not scope.cancelled_caught:
                continue
            self._wake(driver.timer(trio.current_time()))
            self._write_now()

    def _start_reader(self, nursery: trio.Nursery) -> None:
        """Run the reader in `nursery`, where writer tasks start too."""
        self._nursery = nursery
        nursery.start_soon(self._run_reader, name=READER)

    async def _run_reader(self) -> None:
        driver = self._driver
        try:
            while not driver.core.should_close_transport:
                await self._wait_for_room()
                if driver.unfed and driver.wants_data:
                    # Compressed input read before the pause comes first.
                    self._wake(driver.received(b"", trio.current_time()))
                    self._write_now()
                elif not await self._read_some():
                    break
        except Exception:  # (never into the nursery: it may be the server's)
            logger.exception("reading failed")
        finally:
            if driver.core.state is not State.CLOSED:
                self._wake(driver.eof(trio.current_time()))
            # The last write may wait for a writer task (our close reply
            # behind a large message), but never longer than the final
            # write bound.
            with trio.CancelScope(shield=True) as final:
                final.deadline = trio.current_time() + self._settings.final_write_bound
                self._write_now()
                await self._wait_drained()
            await self._abort()
            # Only now: cancelled in the middle of a write, the writer would
            # lose bytes it had already taken from the core (a close reply).
            if self._writer_scope is not None:
                self._writer_scope.cancel()
            self._wake(driver.transport_lost(trio.current_time()))
            self._set_closed()

    async def _handshake(self) -> bool:
        """Run the opening handshake; True once open (a server's answer is
        written by the driver's policy as the request arrives)."""
        driver = self._driver
        with trio.CancelScope() as self._handshake_scope:
            await self._handshake_write()  # the client's request
            while driver.core.state is State.CONNECTING and not driver.core.should_close_transport:
                if not await self._read_some():
                    break
        self._handshake_scope = None
        if not driver.opened:  # (it may be closed already: that is recv's news)
            await self._abort()
            self._wake(driver.transport_lost(trio.current_time()))
            self._set_closed()
            return False
        return True
