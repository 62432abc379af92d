"""How a blocking connection writes: with `sendall` under the write lock
(a sender, the peer's reading pace being the backpressure), or without
blocking (a broadcast, a close from another thread: what the socket does
not take at once is the housekeeper's to finish). Bytes go out in the
order the core made them, whoever writes them; see the lock order at the
top of `connection.py`."""

from __future__ import annotations

import contextlib
import socket
import struct
import threading
from collections.abc import Iterator
from contextlib import contextmanager

from .._driver import Driver
from . import housekeeper
from .tls import TLSWire

_LINGER_RESET = struct.pack("ii", 1, 0)  # SO_LINGER on, 0 s: close() resets


class Writing:
    """The writing half of `connection.WebSocket` (a mixin: it shares the
    connection's state, declared here)."""

    _sock: socket.socket
    _tls: TLSWire | None
    _driver: Driver
    _lock: threading.Lock
    _write_lock: threading.RLock
    _closed: threading.Event
    _unsent: bytearray  # what a write without blocking left over; under the write lock
    _close_when_sent: bool  # the core said close, with bytes still unsent
    _backlog: int  # bytes of prepared frames queued and not yet taken
    _in_flight: int  # bytes being written by a blocking write

    def _abort(self) -> None:
        raise NotImplementedError  # pragma: no cover - the connection's

    def _write_nonblocking(self) -> bool:
        """Send what is owed without blocking (the caller holds the write
        lock); keep the rest for later. True if nothing is left."""
        with self._lock:
            chunks, should_close = self._driver.output()
            self._backlog = 0
        # The close waits for what is unsent, whoever finishes sending it.
        self._close_when_sent = should_close = should_close or self._close_when_sent
        unsent = self._unsent
        try:
            if self._tls is not None:
                chunks = self._tls.encrypt(chunks)
            if not unsent and len(chunks) == 1:  # a broadcast's one frame: no copy
                chunk = chunks[0]
                try:
                    sent = self._sock.send(chunk, socket.MSG_DONTWAIT)
                except (BlockingIOError, InterruptedError):
                    sent = 0
                if sent < len(chunk):
                    unsent += memoryview(chunk)[sent:]
                    return False  # the socket is full: the housekeeper waits for room
                chunks = []
            for chunk in chunks:
                unsent += chunk
            while unsent:
                try:
                    sent = self._sock.send(unsent, socket.MSG_DONTWAIT)
                except (BlockingIOError, InterruptedError):
                    return False
                del unsent[:sent]
        except OSError:  # (ssl.SSLError too: TLS broken by a corrupt record)
            unsent.clear()
            self._abort()
            return True
        if should_close:
            self._abort()
        return True

    def _release_nonblocking(self, done: bool) -> None:
        """Release the write lock after `_write_nonblocking`, then pick up
        what others queued meanwhile, never blocking; what is left is the
        housekeeper's."""
        while True:
            self._write_lock.release()
            if not done:
                housekeeper.current().watch(self)
                return
            if not self._owes_bytes():
                return
            if not self._write_lock.acquire(blocking=False):
                return
            done = self._write_nonblocking()

    def _flush_for_housekeeper(self) -> bool:
        """The housekeeper's turn: True when it need not watch us any more."""
        if self._closed.is_set():
            return True
        if not self._write_lock.acquire(blocking=False):
            return True  # the writer in there sends what is unsent first
        done = self._write_nonblocking()
        # True: pick up what others queued meanwhile, but do not watch
        # again (the caller goes on watching while `done` is False).
        self._release_nonblocking(True)
        return done

    def _write_soon(self) -> None:
        """Start writing what the core queued without blocking the caller
        (a broadcaster holding its room's lock, say): what the socket does
        not take at once is left to the housekeeper, and to the writer in
        there if there is one."""
        if self._write_lock.acquire(blocking=False):
            self._release_nonblocking(self._write_nonblocking())

    def _write_pending(self) -> None:
        """Write what the core queued; the caller holds the write lock."""
        with self._lock:
            # (output() frees the connection's address slot before the last
            # bytes go out: before the peer can see the end and come back)
            chunks, should_close = self._driver.output()
            self._in_flight, self._backlog = self._backlog, 0
        try:
            for chunk in self._wire(chunks):
                self._sock.sendall(chunk)
        except OSError:
            self._abort()
        finally:
            self._in_flight = 0
        if should_close or self._close_when_sent:
            self._abort()

    def _wire(self, chunks: list[bytes]) -> list[bytes]:
        """What goes on the socket for `chunks`, in order: the bytes a write
        without blocking left over, then `chunks` (as TLS records on a TLS
        connection). The caller holds the write lock."""
        if self._tls is not None:
            chunks = self._tls.encrypt(chunks)
        if self._unsent:
            chunks.insert(0, bytes(self._unsent))
            self._unsent.clear()
        return chunks

    def _owes_bytes(self) -> bool:
        """Whether anything waits to be written (read without the write lock)."""
        tls = self._tls
        return bool(
            self._driver.core.has_data_to_send
            or self._unsent
            or (tls is not None and tls.has_records)
        )

    @contextmanager
    def _writing(self) -> Iterator[None]:
        """Hold the write lock as a sender (waiting for it), then release it
        the way every writer must: see `_release_writer`."""
        self._write_lock.acquire()
        try:
            yield
        finally:
            self._release_writer()

    def _release_writer(self) -> None:
        """Release the write lock, then pick up what a reader queued while
        we held it and could not wait for us."""
        while True:
            self._write_lock.release()
            # Unlocked read: the reader queues under the core lock *before*
            # trying the write lock, so anything it gave up on is visible here.
            # (_unsent too: the housekeeper leaves it to whoever holds the lock.)
            if not self._owes_bytes():
                return
            if not self._write_lock.acquire(blocking=False):
                return  # someone else writes now, and will look again when done
            self._write_pending()

    def _discard_unsent(self) -> None:
        """Reset rather than close gracefully: a peer that stopped reading
        would otherwise keep our unsent bytes in the kernel, and a writer
        blocked on it, long after we gave up on it."""
        with contextlib.suppress(OSError):
            self._sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, _LINGER_RESET)
        with contextlib.suppress(OSError):
            self._sock.shutdown(socket.SHUT_RDWR)
