"""The one thread per process that does what a connection's own threads
cannot wait for (see `Housekeeper`), and how threads are started.
"""

from __future__ import annotations

import contextlib
import heapq
import itertools
import logging
import math
import os
import select
import socket
import threading
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, TypeVar

if TYPE_CHECKING:
    from .connection import WebSocket
    from .writing import Writing

logger = logging.getLogger(__name__)
_now = time.monotonic
_T = TypeVar("_T")


class _Housekeeper:
    """One thread for the whole process that does what a connection's own
    threads cannot wait for:

    - finishing the writes that `send_prepared` and `close_nowait` could
      not complete without blocking: it waits until such sockets can take
      more and writes again, never blocking either;
    - the close timer of a close started by another thread: the reader
      sleeps until the deadline it saw when it went to sleep, which the
      close moved earlier.

    A thread per connection would do the same at the cost of a thread per
    peer of every broadcast; this one is started on first use."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._new: list[tuple[int, Writing]] = []
        self._timers: list[tuple[float, int, WebSocket]] = []  # a heap
        self._order = itertools.count()  # (so that the heap never compares sockets)
        self._thread: threading.Thread | None = None
        self._wake_r, self._wake_w = socket.socketpair()
        self._wake_r.setblocking(False)
        self._wake_w.setblocking(False)

    def watch(self, ws: Writing) -> None:
        """Finish writing for `ws` once its socket can take more."""
        fd = ws._sock.fileno()
        if fd >= 0:
            self._submit(ws, lambda: self._new.append((fd, ws)))

    def wake_at(self, when: float, ws: WebSocket) -> None:
        """Run `ws`'s timers at `when` (on the `_now` clock)."""
        self._submit(ws, lambda: heapq.heappush(self._timers, (when, next(self._order), ws)))

    def _submit(self, ws: Writing, add: Callable[[], None]) -> None:
        with self._lock:
            if self._thread is None:
                self._thread = _start_thread(self._run, "ws-housekeeper")
                if self._thread is None:  # no thread now: the next call tries again
                    ws._abort()
                    return
            add()
        with contextlib.suppress(OSError):  # full: a wake-up is pending anyway
            self._wake_w.send(b"\0")

    def _run(self) -> None:
        poller = select.poll()
        poller.register(self._wake_r, select.POLLIN)
        watched: dict[int, Writing] = {}
        while True:
            with self._lock:
                first = self._timers[0][0] if self._timers else None
            timeout = None if first is None else max(0, math.ceil((first - _now()) * 1000))
            for fd, _ in poller.poll(timeout):
                if fd == self._wake_r.fileno():
                    with contextlib.suppress(OSError):
                        self._wake_r.recv(4096)
                    with self._lock:
                        new, self._new = self._new, []
                    for new_fd, ws in new:
                        watched[new_fd] = ws  # (a reused descriptor: the newer wins)
                        poller.register(new_fd, select.POLLOUT)
                    continue
                ws_or_none = watched.get(fd)
                if ws_or_none is None or _guarded(ws_or_none._flush_for_housekeeper, True):
                    watched.pop(fd, None)
                    with contextlib.suppress(KeyError, ValueError):
                        poller.unregister(fd)
            now = _now()
            while True:
                with self._lock:
                    if not self._timers or self._timers[0][0] > now:
                        break
                    _, _, ws = heapq.heappop(self._timers)
                _guarded(ws._run_timers, None)


def _start_thread(target: Callable[[], None], name: str) -> threading.Thread | None:
    """A daemon thread, started; None if the process cannot start one now
    (a thread limit is an episode to survive, not an exception to raise)."""
    thread = threading.Thread(target=target, daemon=True, name=name)
    try:
        thread.start()
    except RuntimeError:  # can't start new thread
        return None
    return thread


def _guarded(step: Callable[[], _T], fallback: _T) -> _T:
    """One connection's failure must not end the thread that serves all."""
    try:
        return step()
    except Exception:
        logger.exception("connection housekeeping failed")
        return fallback


_HOUSEKEEPER = _Housekeeper()


def current() -> _Housekeeper:
    """The process's housekeeper (a forked child gets its own)."""
    return _HOUSEKEEPER


def _new_housekeeper_in_child() -> None:
    """A forked child has none of its parent's threads."""
    global _HOUSEKEEPER
    _HOUSEKEEPER = _Housekeeper()


os.register_at_fork(after_in_child=_new_housekeeper_in_child)
