"""Who gets in: the server's connection limits, and what a failed `accept()`
means. No I/O here; each backend's accept loop asks these questions.

The rules every backend follows, because the operating system is as hostile
as any peer:

- A failure of `accept()`, `getpeername()`, a TLS handshake or a thread
  start concerns one connection. It closes that connection and never ends
  the accept loop, the server or its task group.
- Running out of descriptors, threads or memory is an *episode*: logged
  once when it starts and once when it ends, never once per connection.
  While it lasts the accept loop sleeps a little between attempts (the
  pending connections wait in the kernel's backlog) and resumes by itself
  when resources come back.
- Only a WebSocket connection that completed its handshake counts against
  the per-address limit: sockets that never finish a handshake cannot lock
  their address out (the open timeout ends them), while every accepted
  socket counts against the total, which is what costs descriptors.
"""

from __future__ import annotations

import contextlib
import errno
import logging
import math
import os
import resource
import socket
import threading
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field

from wsproto_core.http import build_response

from ._stats import ServerStats

# The peer went away between the kernel's accept and ours: that
# connection's news, not the server's (as trio and asyncio treat them).
_CONNECTION_ERRNOS = frozenset(
    getattr(errno, name)
    for name in (
        "ECONNABORTED",
        "ECONNRESET",
        "ENOTCONN",
        "EPROTO",
        "EPERM",
        "ETIMEDOUT",
        "EHOSTUNREACH",
        "ENETUNREACH",
        "ENETDOWN",
        "EHOSTDOWN",
        "ENONET",
        "EAGAIN",
        "EINTR",
    )
    if hasattr(errno, name)
)

FIRST_DELAY = 0.02  # seconds between accept attempts while out of resources
MAX_DELAY = 0.25  # short: a client must get in soon after resources return
RESERVED_DESCRIPTORS = 32  # listeners, log files, Redis, DNS, a TLS context...

OVERLOADED = build_response(
    503,
    [("Content-Type", "text/plain"), ("Retry-After", "5"), ("Connection", "close")],
    b"too many connections\n",
)


def refuse_overloaded(fd: int, stats: ServerStats | None) -> None:
    """Answer 503 on a freshly accepted socket, without reading the request
    or spending a task or thread on it; the caller closes the socket.

    A fresh socket's send buffer takes the whole answer at once, so this
    never blocks. What the client already sent is read and dropped, so that
    closing sends FIN rather than RST (an RST can destroy the answer)."""
    if stats is not None:
        stats.refused(503)
    sock = socket.socket(fileno=fd)  # a view of the caller's socket: detached below
    try:
        for step in (
            lambda: sock.send(OVERLOADED, socket.MSG_DONTWAIT),
            lambda: sock.recv(65536, socket.MSG_DONTWAIT),
            lambda: sock.shutdown(socket.SHUT_WR),
        ):
            with contextlib.suppress(OSError):
                step()
    finally:
        sock.detach()


def let_in(admission: Admission, failures: AcceptFailures, fd: int) -> bool:
    """Count a freshly accepted socket in; or, one over `max_connections`,
    answer it 503 at once (the caller then closes it) and note the episode."""
    if admission.arrive():
        return True
    failures.refused(admission.max_connections)
    refuse_overloaded(fd, admission.stats)
    return False


def is_connection_error(error: BaseException) -> bool:
    """True if `error` from accept() concerns only the connection being accepted."""
    return isinstance(error, OSError) and error.errno in _CONNECTION_ERRNOS


class AcceptFailures:
    """Turns accept() failures into delays, and logs resource episodes once.

    `failed(error)` returns how long to sleep before the next attempt (0 for
    a connection that vanished); `refused(limit)` notes a connection turned
    away at `max_connections`; `accepted()` notes a connection let in.

    An episode lasts until the limit has not been hit for `QUIET` seconds:
    under a steady attack, accepts and failures alternate as descriptors
    come and go, and a log line per flip would be the flood this avoids.
    The end is logged with the next connection let in after that."""

    __slots__ = ("_clock", "_delay", "_hits", "_last_hit", "_logger", "_starts", "in_episode")

    QUIET = 10.0

    def __init__(self, logger: logging.Logger, clock: Callable[[], float] = time.monotonic) -> None:
        self._logger = logger
        self._clock = clock
        self._delay = FIRST_DELAY
        self._starts = 0
        self._hits = 0
        self._last_hit = -math.inf
        self.in_episode = False

    @property
    def episodes(self) -> int:
        """How many resource episodes began (each was logged once)."""
        return self._starts

    def failed(self, error: BaseException) -> float:
        if is_connection_error(error):
            return 0.0
        if self._hit(f"{_describe(error)}; new connections wait until it passes"):
            self._delay = FIRST_DELAY
        delay, self._delay = self._delay, min(self._delay * 2, MAX_DELAY)
        return delay

    def refused(self, limit: int | None) -> None:
        """A connection was answered 503 for being over `max_connections`."""
        self._hit(f"{limit} connections; the excess is answered 503")

    def accepted(self) -> None:
        self._delay = FIRST_DELAY
        if self.in_episode and self._clock() - self._last_hit >= self.QUIET:
            self.in_episode = False
            self._logger.warning(
                "server accepting connections again (%d refused or delayed meanwhile)",
                self._hits,
            )

    def _hit(self, what: str) -> bool:
        """Count one hit of a limit; True if it starts an episode (logged)."""
        self._last_hit = self._clock()
        self._hits += 1
        if self.in_episode:
            return False
        self.in_episode = True
        self._starts += 1
        self._hits = 1
        self._logger.warning("server at a resource limit (%s)", what)
        return True


def _describe(error: BaseException) -> str:
    if isinstance(error, OSError) and error.errno is not None:
        name = errno.errorcode.get(error.errno, str(error.errno))
        return f"{name}: {os.strerror(error.errno)}"
    return str(error) or type(error).__name__


@dataclass
class Admission:
    """Counts connections: `total` from accept to close (what costs
    descriptors and threads), `per_ip` from an admitted WebSocket handshake
    until the connection starts closing its transport (what the
    per-address limit is about)."""

    max_connections: int | None = None
    max_connections_per_ip: int | None = None
    stats: ServerStats | None = None  # the server's, if the application gave one
    total: int = 0
    per_ip: Counter[str] = field(default_factory=Counter)
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def arrive(self) -> bool:
        """A socket was accepted; False if it is one too many (answer it
        with `OVERLOADED` and close it without reading from it)."""
        with self._lock:
            if self.max_connections is not None and self.total >= self.max_connections:
                return False
            self.total += 1
            return True

    def admit(self, ip: str) -> str | None:
        """A handshake is about to be accepted: None, and the connection is
        counted for `ip`, or the reason it is refused."""
        with self._lock:
            limit = self.max_connections_per_ip
            if limit is not None and self.per_ip[ip] >= limit:
                return "too many connections from your address"
            self.per_ip[ip] += 1
            return None

    def release(self, ip: str) -> None:
        """The connection `admit` counted for `ip` is closing: its slot is
        free before the peer can see the close and come back."""
        with self._lock:
            self.per_ip[ip] -= 1
            if self.per_ip[ip] <= 0:
                del self.per_ip[ip]

    def depart(self) -> None:
        """A socket that `arrive` let in is closed."""
        with self._lock:
            self.total -= 1


def default_connection_cap(threads_per_connection: int) -> int:
    """The most connections this process can hold by its own limits, for
    the blocking backend, whose connections each cost one descriptor and
    `threads_per_connection` threads: past it, a connection would fail
    in ways that are harder to answer (EMFILE, a thread that cannot start).
    """
    soft_files, _ = resource.getrlimit(resource.RLIMIT_NOFILE)
    caps = []
    if soft_files != resource.RLIM_INFINITY:
        caps.append(soft_files - RESERVED_DESCRIPTORS)
    threads = _thread_budget()
    if threads is not None:
        caps.append(threads // threads_per_connection)
    return max(1, min(caps, default=10_000))


def _thread_budget() -> int | None:
    """Threads this process may still start, as far as its limits say."""
    budgets = []
    if os.geteuid() != 0:  # root is exempt from RLIMIT_NPROC
        soft_procs, _ = resource.getrlimit(resource.RLIMIT_NPROC)
        if soft_procs != resource.RLIM_INFINITY:
            budgets.append(soft_procs - 64)  # counted per user: leave some
    soft_memory, _ = resource.getrlimit(resource.RLIMIT_AS)
    if soft_memory != resource.RLIM_INFINITY:
        stack = threading.stack_size() or _default_stack_size()
        # glibc gives threads malloc arenas of 64 MiB of address space each,
        # up to 8 per core: reserve them first.
        arenas = 8 * (os.cpu_count() or 1) * (64 << 20)
        free = soft_memory - _virtual_memory_used() - arenas
        budgets.append(free // (stack + (64 << 10)))
    try:
        with open("/proc/sys/kernel/threads-max") as limit:
            budgets.append(int(limit.read()) // 4)
    except (OSError, ValueError):
        pass
    return None if not budgets else max(0, min(budgets))


def _default_stack_size() -> int:
    """A new thread's stack: glibc takes RLIMIT_STACK, or 8 MiB if unlimited."""
    soft_stack, _ = resource.getrlimit(resource.RLIMIT_STACK)
    return 8 << 20 if soft_stack == resource.RLIM_INFINITY else int(soft_stack)


def _virtual_memory_used() -> int:
    try:
        with open("/proc/self/statm") as statm:
            return int(statm.read().split()[0]) * os.sysconf("SC_PAGE_SIZE")
    except (OSError, ValueError, IndexError):
        return 0
