"""One connection on blocking sockets. What it does is the driver's
(`adapters._driver`); this module only waits with a condition and writes
with `sendall` (or without blocking), with the threads the package's
docstring describes.

Lock order (a thread holding one may take only those after it):

    _message_lock -> _write_lock -> _lock (the driver, the core) -> TLSWire's lock

The housekeeper's lock and the server's admission lock are leaves, taken
under none of these but `_lock` (admission, by the handshake policy). A
thread that must wait for the write lock while holding `_lock` releases
`_lock` first; the reader never waits for the write lock except for pongs
owed past `write_limit`, and then with the timers running.
"""

from __future__ import annotations

import contextlib
import logging
import math
import select
import socket
import ssl
import threading
import time
from collections.abc import Iterable, Iterator
from typing import Any

from wsproto_core import Connection, PreparedMessage, State

from .._common import READ_SIZE, Message, Settings, mark_final
from .._driver import CloseStep, Driver, RequestPolicy, Wake
from .._view import ConnectionView
from ..errors import ConnectionClosedOK
from . import housekeeper
from .housekeeper import _start_thread
from .tls import TLSWire
from .writing import Writing

logger = logging.getLogger(__name__)
_now = time.monotonic


def _poller(sock: socket.socket) -> select.poll:
    """Waits for the socket to be readable; unlike a selector, a poll
    object costs no descriptor, so a connection costs exactly one."""
    poller = select.poll()
    poller.register(sock, select.POLLIN)
    return poller


class WebSocket(ConnectionView, Writing):
    """One WebSocket connection, either role, safe to use from several threads."""

    def __init__(
        self,
        sock: socket.socket,
        core: Connection,
        settings: Settings,
        *,
        on_request: RequestPolicy | None = None,
        tls: TLSWire | None = None,
    ) -> None:
        self._driver = Driver(core, settings, on_request=on_request)
        self._sock = sock  # a plain socket, TLS or not (see tls.py)
        self._tls = tls
        self._core = core
        self._settings = settings
        self._lock = threading.Lock()  # guards the core and the queue
        self._changed = threading.Condition(self._lock)  # queue or state changed
        # Keeps bytes in the order the core made them. Re-entrant because
        # closing (_finish) may happen inside a write that decided to close.
        self._write_lock = threading.RLock()
        self._message_lock = threading.Lock()  # one message at a time, fragments included
        self._closed = threading.Event()
        self._reader: threading.Thread | None = None
        self._backlog = 0  # bytes of prepared frames queued and not yet taken
        self._in_flight = 0  # bytes being written by a blocking write
        # What a write without blocking left over; every writer sends it
        # before anything newer. Touched only under the write lock.
        self._unsent = bytearray()
        self._close_when_sent = False  # the core said close, with bytes still unsent
        self._finishing = False
        self._aborted = False  # the socket was shut down: readers stop waiting
        self.remote_address: Any = None
        with contextlib.suppress(OSError):
            self.remote_address = sock.getpeername()

    # -- what the application sees ------------------------------------------

    def recv(self, timeout: float | None = None) -> Message:
        """The next whole message; TimeoutError if none within `timeout` seconds."""
        deadline = None if timeout is None else _now() + timeout
        driver = self._driver
        with self._lock:
            driver.begin_receive()
            try:
                while (message := driver.take_message()) is None:
                    self._wait_for_messages(deadline)
                self._reading_resumed()
                return message
            finally:
                driver.end_receive()

    def recv_streaming(self, timeout: float | None = None) -> Iterator[Message]:
        """Yield the next message in pieces as they arrive."""
        deadline = None if timeout is None else _now() + timeout
        driver = self._driver
        with self._lock:
            driver.begin_receive()
        try:
            yield from driver.take_leftover()
            while True:
                with self._lock:
                    while (fragment := driver.take_fragment()) is None:
                        self._wait_for_messages(deadline)
                    self._reading_resumed()
                yield fragment.data
                if fragment.final:
                    return
        finally:
            with self._lock:
                driver.end_receive()

    def _reading_resumed(self) -> None:
        """If taking let the reader read again, wake it (the lock is held)."""
        if self._driver.resumed:
            self._driver.resumed = False
            self._changed.notify_all()

    def _wait_for_messages(self, deadline: float | None) -> None:
        """Wait for the next fragment (the caller holds the lock and looks again)."""
        driver = self._driver
        if driver.has_output:  # (a held failure, applied now, say)
            self._lock.release()  # writing takes the write lock, then this one
            try:
                self._write_soon()
            finally:
                self._lock.acquire()
            if driver.fragments:
                return
        if driver.is_over():
            raise driver.closed_error()
        remaining = None if deadline is None else deadline - _now()
        if remaining is not None and remaining <= 0:
            raise TimeoutError("no message within the timeout")
        self._changed.notify_all()  # what was taken may have made room for the reader
        self._changed.wait(remaining)

    def __iter__(self) -> Iterator[Message]:
        while True:
            try:
                yield self.recv()
            except ConnectionClosedOK:
                return

    def send(self, message: Message, *, compress: bool | None = None) -> None:
        """Send one message; blocks while the peer is not reading.

        `compress` (when permessage-deflate is on): None compresses from
        the settings' `min_size` up, True always, False never."""
        with self._message_lock:
            self._send_frame(message, final=True, compress=compress)

    def send_fragments(self, fragments: Iterable[Message], *, compress: bool | None = None) -> None:
        """Send one message made of `fragments` (all str or all bytes).

        Other threads' messages wait until this one is complete; the write
        lock is only held per frame, so `fragments` may be a generator that
        waits for input (such as `recv_streaming()`)."""
        with self._message_lock:
            for fragment, final in mark_final(fragments):
                self._send_frame(fragment, final=final, compress=compress)

    def _send_frame(self, message: Message, *, final: bool, compress: bool | None) -> None:
        # The hot path, so spelled out: one write-lock section, one core-lock
        # section (queue the frame and take the bytes together), one write.
        driver = self._driver
        self._write_lock.acquire()
        try:
            with self._lock:
                driver.queue_send(message, final=final, compress=compress)
                chunks, should_close = driver.output()
                self._backlog = 0  # prepared frames go out with this write
            try:
                for chunk in self._wire(chunks):
                    self._sock.sendall(chunk)
            except OSError:
                should_close = True
            if should_close:
                self._abort()
        finally:
            self._release_writer()

    def send_prepared(self, message: PreparedMessage) -> int:
        """Queue a message framed once for many connections, without waiting:
        a broadcast must never wait for its slowest peer. Returns the bytes
        now waiting to reach this peer, by which the caller can judge it too
        slow.

        What the socket takes at once is written here, by the caller; the
        rest is finished by the process's housekeeping thread (`_Housekeeper`),
        so a broadcast to N peers costs no thread per peer."""
        with self._lock:
            self._backlog += self._driver.queue_prepared(message)
        self._write_soon()
        return self._backlog + len(self._unsent) + self._in_flight

    def ping(self, data: bytes | None = None, timeout: float | None = None) -> float:
        """Send a ping, wait for its pong; returns the round trip in seconds."""
        deadline = None if timeout is None else _now() + timeout
        driver = self._driver
        with self._writing():
            with self._lock:
                record = driver.queue_ping(data, _now())
            self._write_pending()
        with self._lock:
            while (rtt := driver.ping_result(record)) is None:
                remaining = None if deadline is None else deadline - _now()
                if remaining is not None and remaining <= 0:
                    driver.forget_ping(record)
                    raise TimeoutError("no pong within the timeout")
                self._changed.wait(remaining)
            return rtt

    def close(self, code: int = 1000, reason: str = "") -> None:
        """Close the connection and wait (at most `close_timeout`) for the end."""
        self.close_nowait(code, reason)
        if not self._closed.wait(self._settings.close_timeout):
            self._abort()
            self._closed.wait()

    def close_nowait(self, code: int = 1000, reason: str = "") -> None:
        """Start the close handshake without waiting for anything.

        If another thread is writing (maybe stuck on a peer that does not
        read), the close frame goes out after its write; the core's close
        timer ends the connection if it never does."""
        with self._lock:
            step = self._driver.start_close(code, reason)
            deadline = self._driver.deadline(_now())
        if step is CloseStep.ABORT:
            self._abort()  # (not under the lock: _abort may finish up, which takes it)
        if step is not CloseStep.FLUSH:
            return
        if deadline is not None:
            housekeeper.current().wake_at(deadline, self)
        self._write_soon()

    def _run_timers(self) -> None:
        """Run the core's due timers from outside the reader (see
        `_Housekeeper`); if that ends the connection, wake the reader."""
        with self._lock:
            if self._closed.is_set():
                return
            wake = self._wake_unless_owed(self._driver.timer(_now()))
            should_close = self._core.should_close_transport
        self._wake_answered(wake)
        self._write_soon()
        if should_close:
            self._abort()

    def wait_closed(self, timeout: float | None = None) -> bool:
        return self._closed.wait(timeout)

    def __enter__(self) -> WebSocket:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- driving the core ----------------------------------------------------

    def _flush_from_reader(self) -> None:
        """The reader's write: never wait behind a sender.

        If a sender holds the write lock, it writes what we queued (pongs,
        close replies) after its own frames, see `_release_writer`; waiting
        for it instead could leave both peers writing and neither reading.
        """
        if not self._write_lock.acquire(blocking=False):
            tls = self._tls
            owed_tls = tls is not None and tls.queued > self._settings.write_limit
            if not self._driver.pong_backlog and not owed_tls:
                return
            # Pongs (or TLS records: key update answers) we cannot write keep
            # piling up, a peer that makes us answer while it does not read:
            # stop reading until the sender's write gets through,
            # with the timers running: a peer that reads nothing answers no
            # keepalive ping either, and that must end the connection.
            while not self._write_lock.acquire(timeout=self._until_deadline()):
                with self._lock:
                    self._wake(self._driver.timer(_now()))
                    over = self._core.should_close_transport
                if over:
                    self._abort()  # the stuck sender's write fails, and it lets go
                    if not self._write_lock.acquire(timeout=self._settings.final_write_bound):
                        return
                    break
        self._write_pending()
        self._release_writer()

    def _until_deadline(self) -> float:
        """Seconds until the core's next timer, -1 (wait for ever) if none."""
        with self._lock:
            deadline = self._driver.deadline(_now())
        return -1 if deadline is None else max(0.0, deadline - _now())

    def _abort(self) -> None:
        """Shut the socket down: a thread blocked in recv or sendall on it
        wakes up, and the reader thread sees it and finishes up."""
        self._driver.transport_closing()
        self._aborted = True
        with contextlib.suppress(OSError):
            self._sock.shutdown(socket.SHUT_RDWR)
        if self._lock.acquire(blocking=False):  # (a caller may hold it: then it knows)
            self._changed.notify_all()  # a reader waiting for room: it is over
            self._lock.release()
        if self._reader is None:  # no reader to finish up: do it here
            self._finish()

    def _finish(self) -> None:
        with self._lock:  # once, whoever gets here first (reader, sender, abort)
            if self._finishing:
                return
            self._finishing = True
            clean = self._core.state is State.CLOSED and self._core.close_code != 1006
        # After a clean close, let a sender finish the write it is in (it may
        # carry the close reply the reader left to it), for close_timeout at
        # most. Otherwise nothing owed is left: wake any stuck writer now.
        wait = self._settings.final_write_bound if clean else 0.0
        writing = self._write_lock.acquire(timeout=wait)
        if not writing:
            self._discard_unsent()
            writing = self._write_lock.acquire(timeout=1.0)  # woken by the shutdown
        try:
            if writing:
                # The last write may meet a peer that stopped reading: bounded.
                with contextlib.suppress(OSError):
                    self._sock.settimeout(self._settings.final_write_bound)
                self._write_pending()
            with self._lock:
                self._driver.transport_lost(_now())
                self._closed.set()
                self._changed.notify_all()
        finally:
            if writing:
                self._write_lock.release()
        if not clean:
            self._discard_unsent()
        self._driver.transport_closing()
        self._sock.close()

    def _wake(self, wake: int) -> None:
        """Whoever waits looks again; the caller holds the lock."""
        if wake:
            self._changed.notify_all()

    def _wake_unless_owed(self, wake: int) -> int:
        """`_wake` (the caller holds the lock), unless the input or timer
        that made `wake` also left the core owing the peer bytes (a close
        reply, pongs, a failure's close frame): then return `wake`, for
        `_wake_answered` once the lock is released.

        The answer goes first because a woken thread (a handler in recv(),
        a ping waiting for its pong) competes with this one for the core
        lock, the write lock and the GIL (which a running thread keeps for
        up to the 5 ms switch interval): woken first, it made the answer
        wait for the application's turn while the peer's clock ran. (The
        Autobahn testsuite's deadline for a close reply is anywhere in
        (0, 1] s, its timer rounding down to whole seconds: every
        millisecond of delay is a chance in a thousand of an UNCLEAN close.)
        asyncio and trio write in the step that took the input, before any
        woken task runs; this is their order. Input that brings only
        messages, the hot path, still wakes at once, under this lock."""
        if not wake:
            return Wake.NONE
        if self._driver.has_output:
            return wake
        self._changed.notify_all()
        return Wake.NONE

    def _wake_answered(self, wake: int) -> None:
        """Hand what the core owes the peer to the kernel, then wake whoever
        waits for `wake` (see `_wake_unless_owed`); without the lock.

        The write never blocks, so a peer that does not read delays no
        wake-up (the messages that came with the answer are the
        application's at once): if a sender holds the write lock, it writes
        the answer after its own frames (`_release_writer`), and what the
        socket does not take at once is the caller's `_flush_from_reader`
        (or the housekeeper's) to finish, as before."""
        if wake:
            self._write_soon()
            with self._lock:
                self._changed.notify_all()

    def _wait_readable(self, poller: select.poll) -> bool:
        """Sleep until data or the core's next deadline; False on a deadline."""
        with self._lock:
            deadline = self._driver.deadline(_now())
        timeout = None if deadline is None else max(0, math.ceil((deadline - _now()) * 1000))
        if poller.poll(timeout):
            return True
        with self._lock:
            wake = self._wake_unless_owed(self._driver.timer(_now()))
        self._wake_answered(wake)
        self._flush_from_reader()
        return False

    def _read_once(self) -> bool:
        """Read and process one chunk; False once the connection is over."""
        try:
            data = self._sock.recv(READ_SIZE)
        except OSError:
            data = b""
        ended = not data
        if data and self._tls is not None:
            data, ended = self._decrypt(data)
            if not data and not ended and not self._tls.has_records:
                return True  # part of a record: read on
        return self._feed(data, ended)

    def _decrypt(self, data: bytes) -> tuple[bytes, bool]:
        assert self._tls is not None
        try:
            return self._tls.decrypt(data)
        except ssl.SSLError:  # a corrupt record: nothing more can be read
            return b"", True

    def _feed(self, data: bytes, ended: bool) -> bool:
        """Give the driver `data` (and the end), write what it answers,
        before waking whoever it concerns (see `_wake_unless_owed`);
        False once the connection is over."""
        with self._lock:
            driver = self._driver
            wake = Wake.NONE
            if data or driver.unfed:
                wake = driver.received(data, _now())
            if ended:
                wake |= driver.eof(_now())
            wake = self._wake_unless_owed(wake)
            done = self._core.should_close_transport or ended
        self._wake_answered(wake)
        self._flush_from_reader()
        return not done

    def _wait_for_room(self) -> None:
        """Backpressure: stop reading while the queue is full (timers still run)."""
        while True:
            with self._lock:
                if (
                    self._driver.wants_data
                    or self._closed.is_set()
                    or self._aborted
                    or self._core.should_close_transport  # (a timer run by the housekeeper)
                ):
                    return
                deadline = self._driver.deadline(_now())
                # At most a second: _abort's wake-up is skipped when another
                # thread holds the lock, and _aborted must still be seen.
                timeout = 1.0 if deadline is None else min(1.0, max(0.0, deadline - _now()))
                if self._changed.wait(timeout) or deadline is None or _now() < deadline:
                    continue
            with self._lock:
                wake = self._wake_unless_owed(self._driver.timer(_now()))
            self._wake_answered(wake)
            self._flush_from_reader()
            if self._core.should_close_transport:
                return

    def _run_reader(self) -> None:
        try:
            poller = _poller(self._sock)
            while not self._core.should_close_transport:
                self._wait_for_room()
                if self._core.should_close_transport:
                    break
                if self._driver.unfed and self._driver.wants_data:
                    # Compressed input read before the pause comes first.
                    if not self._feed(b"", False):
                        break
                elif self._wait_readable(poller) and not self._read_once():
                    break
        except (OSError, ValueError):
            pass  # the socket was closed under us
        finally:
            self._finish()

    def _start_reader(self) -> bool:
        """False if no thread could be started (the caller gives up the
        connection: a thread limit is the server's episode to log)."""
        self._reader = _start_thread(self._run_reader, "ws-reader")
        return self._reader is not None

    def _handshake(self) -> bool:
        """Run the opening handshake in this thread; True once open (a
        server's answer is written by the driver's policy as the request
        arrives)."""
        poller = _poller(self._sock)
        with self._writing():
            self._write_pending()  # the client's request
        if self._tls is not None:  # what came with the TLS handshake's last flight
            early, ended = self._decrypt(b"")
            if early or ended:
                self._feed(early, ended)
        core = self._core
        while not core.should_close_transport and core.state is State.CONNECTING:
            if self._wait_readable(poller):
                self._read_once()
        if not self._driver.opened or not self._start_reader():
            # (it may be closed already: that is recv's news)
            self._abort()
            return False
        return True
