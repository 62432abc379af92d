"""The chat's link to Redis, all but its I/O: what the three backends'
`RedisLink` classes (in `run_asyncio.py`, `run_trio.py`, `run_blocking.py`)
share.

A link keeps two connections to Redis (one subscribed to the room's
channel, one for commands) driven by one `RedisSession` at a time
(`redis_session.py` decides what is said on them), and a new pair with a
new session, after a backoff, whenever a session ends. Here, once for the
three backends: where Redis is, the current session and how many there have
been, queueing the chat's commands and history requests, what to do with
what a connection reads, with its end and with the session's deadline, the
guarded delivery to the room, the backoff, and what gets logged.

A backend adds its sockets and its way of waiting. It opens both
connections (`_connect`, failing with `_no_connection()` when that takes
longer than `CONNECT_TIMEOUT`), calls `_start_session`, then until
something fails: writes what the session gives it (calling `sent` once
written), passes what it reads to `_on_data` and the end of a connection to
`_on_eof`, and calls `_on_deadline` at the session's `next_deadline()`.
Each of those raises SessionError once the session has failed; the backend
then calls `_end_session`, closes both connections, and waits what `_lost`
says before the next pair. For asyncio and trio, `AsyncRedisLinkBase` also
runs that loop of sessions, the timer, the writers' wake-ups and the wait
for the history: what is left to them is their streams.

While Redis is away commands are refused and history requests answered
with None: the chat carries on with this process's clients alone.
`request` (a command whose reply the chat needs: the nickname claims) is
refused likewise, and a request in flight when its session ends is
answered with `LOST`; callbacks are called outside the link's lock, like
the deliveries to the room.
"""

from __future__ import annotations

import contextlib
from collections.abc import Awaitable, Callable
from contextlib import AbstractContextManager
from typing import Generic, Protocol, TypeVar

from .log import LogThrottle, logger
from .redis_session import LOST, Conn, OnReply, RedisSession, SessionError
from .resp import Reply, parse_redis_url
from .settings import CHANNEL, HISTORY_KEY

FIRST_DELAY = 0.25  # seconds before the first reconnection attempt
MAX_DELAY = 10.0
CONNECT_TIMEOUT = 5.0  # seconds for each TCP connection to Redis
HISTORY_TIMEOUT = 1.0  # a newcomer waits this long for the shared history, at most
READ_SIZE = 65536  # bytes read from a connection at a time


class Event(Protocol):
    """What a backend's event (asyncio, trio, threading) has in common."""

    def set(self) -> None: ...


E = TypeVar("E", bound=Event)


class Waiter(Generic[E]):
    """A newcomer waiting for the shared history: `reply` is set (None: no
    usable answer), then `done`, the backend's event, which the newcomer
    waits on for at most `HISTORY_TIMEOUT`."""

    __slots__ = ("done", "reply")

    def __init__(self, done: E) -> None:
        self.done = done
        self.reply: list[str] | None = None

    def answer(self, reply: list[str] | None) -> None:
        self.reply = reply
        self.done.set()


class RedisLinkBase(Generic[E]):
    """See the module's docstring. `up` is true only while a session exists
    (its I/O is running) and that session is up. `E` is the backend's event
    type, which wakes a newcomer waiting for the history."""

    # What a link expects to go wrong with Redis (a backend adds its own);
    # anything else is a bug, logged with its traceback, and the link goes on.
    expected_errors: tuple[type[Exception], ...] = (OSError, SessionError)

    def __init__(self, url: str, history: int, deliver: Callable[[str], None]) -> None:
        self.address = parse_redis_url(url)
        self.host, self.port, self.db = self.address.host, self.address.port, self.address.db
        # rediss://: made once (the CLI has checked its files can be used).
        self.ssl_context = self.address.tls_context()
        self.history_length = history
        self.deliver = deliver
        self.delay = FIRST_DELAY
        self.session: RedisSession[Waiter[E]] | None = None
        self.sessions = 0  # sessions started so far: which one the room's history came from
        self.stopped = False  # the server is shutting down: no new session
        # Held around every call into the session and every change of it: a
        # lock where threads share it (blocking), nothing in an event loop.
        self._lock: AbstractContextManager[object] = contextlib.nullcontext()
        self._announced = False  # "redis connected" was logged for this session
        self._outage_logged = False  # "redis unavailable" was logged for this outage
        self._deliver_errors = LogThrottle()
        self._bugs = LogThrottle()

    # -- what each backend provides -------------------------------------------------

    def _now(self) -> float:
        """The backend's clock, the one its sleeps follow."""
        raise NotImplementedError

    def _new_event(self) -> E:
        raise NotImplementedError

    def _wake(self) -> None:
        """The session has something to write: wake what writes it."""
        raise NotImplementedError

    # -- what the chat asks ------------------------------------------------------------

    @property
    def up(self) -> bool:
        session = self.session
        return session is not None and session.up

    def send(self, *commands: bytes) -> bool:
        """Queue without waiting; False if Redis is away or not keeping up
        (the chat then delivers to this process's clients)."""
        with self._lock:
            session = self.session
            if session is None or not session.send(commands, self._now()):
                return False
        self._wake()
        return True

    def request(self, data: bytes, on_reply: OnReply) -> bool:
        """Queue one command without waiting; its reply goes to `on_reply`
        (`LOST` if the session ends first). False if Redis is away or not
        keeping up: `on_reply` is then never called."""
        with self._lock:
            session = self.session
            if session is None or not session.request(data, on_reply, self._now()):
                return False
        self._wake()
        return True

    def _request_history(self) -> Waiter[E] | None:
        """Ask for the shared history: the waiter to wait on for at most
        HISTORY_TIMEOUT, or None if Redis cannot give it now."""
        waiter = Waiter(self._new_event())
        with self._lock:
            session = self.session
            if session is None or not session.request_history(waiter, self._now()):
                return None
        self._wake()
        return waiter

    # -- a session's life ------------------------------------------------------------------

    def _no_connection(self) -> SessionError:
        """What a connection attempt that took CONNECT_TIMEOUT raises."""
        return SessionError(f"no connection to {self.host}:{self.port} in {CONNECT_TIMEOUT:g} s")

    def _start_session(self) -> RedisSession[Waiter[E]]:
        """Both connections are open: a new session speaks on them."""
        session: RedisSession[Waiter[E]] = RedisSession(
            self._now(),
            channel=CHANNEL,
            history_key=HISTORY_KEY,
            history_length=self.history_length,
            db=self.db,
            credentials=(
                None
                if self.address.password is None
                else (self.address.username, self.address.password)
            ),
        )
        with self._lock:
            self.session = session
            self.sessions += 1
        self._announced = False
        return session

    def _end_session(self, reason: str) -> None:
        """The connections are closing: `up` turns false at once, and the
        newcomers still waiting for the history go on without it."""
        with self._lock:
            session, self.session = self.session, None
            if session is None:
                return
            session.fail(reason)
            lost = session.take_requests()
            waiters = session.take_waiters()
        for waiter in waiters:
            waiter.answer(None)
        self._answer_all([(on_reply, LOST) for on_reply in lost], self._now())

    def _on_data(self, session: RedisSession[Waiter[E]], conn: Conn, data: bytes) -> None:
        """What was read on `conn`: its events go to the room (not under the
        lock), its history replies to their newcomers."""
        now = self._now()
        with self._lock:
            received = session.receive_data(conn, data, now)
        self._deliver_all(received.payloads, now)
        self._answer_all(received.replies, now)
        for waiter, reply in received.answers:
            waiter.answer(reply)
        self._check(session)

    def _on_eof(self, session: RedisSession[Waiter[E]], conn: Conn) -> None:
        with self._lock:
            session.receive_eof(conn)
        self._check(session)

    def _on_deadline(self, session: RedisSession[Waiter[E]]) -> None:
        """Time passed: a late reply ends the session; an idle connection
        gets a PING."""
        with self._lock:
            queued = session.handle_timeout(self._now())
        if queued:
            self._wake()
        self._check(session)

    def _deliver_all(self, payloads: list[str], now: float) -> None:
        """Hand the channel's events to the room. Whatever the room does
        with one, the link goes on: an exception is logged (at most one line
        every few seconds, so a hostile publisher cannot flood the log)."""
        for payload in payloads:
            try:
                self.deliver(payload)
            except Exception as error:
                self._deliver_errors.warning(
                    now,
                    "an event from redis was dropped: %s: %s",
                    type(error).__name__,
                    str(error)[:200],
                )

    def _answer_all(self, replies: list[tuple[OnReply, Reply]], now: float) -> None:
        """Hand requests their replies; a callback that fails is logged
        (throttled) and the link goes on."""
        for on_reply, reply in replies:
            try:
                on_reply(reply)
            except Exception as error:
                self._deliver_errors.warning(
                    now, "a reply from redis was dropped: %s: %s", type(error).__name__, error
                )

    def _check(self, session: RedisSession[Waiter[E]]) -> None:
        """After each input to the session: raise SessionError if it failed;
        log once that Redis is (back) up."""
        if session.failure is not None:
            raise SessionError(session.failure)
        if session.up and not self._announced:
            self._announced = True
            self._outage_logged = False
            self.delay = FIRST_DELAY
            logger.info("redis connected at %s:%d", self.host, self.port)

    def _lost(self, error: BaseException | None) -> float:
        """A session ended (`error`: what ended it, None if nothing did):
        log the loss (once per outage) and return how long to wait before
        the next attempt."""
        if error is None:
            error = SessionError("the session ended")
        reason = _reason(error)
        if not isinstance(_leaf(error), self.expected_errors):
            self._bugs.warning(self._now(), "redis link error: %s", reason, exc_info=error)
        if not self._outage_logged:
            logger.warning("redis unavailable (%s); retrying with backoff", reason)
            self._outage_logged = True
        delay, self.delay = self.delay, min(self.delay * 2, MAX_DELAY)
        return delay


class AsyncEvent(Event, Protocol):
    """asyncio's or trio's event."""

    def wait(self) -> Awaitable[object]: ...


A = TypeVar("A", bound=AsyncEvent)


class AsyncRedisLinkBase(RedisLinkBase[A]):
    """What the asyncio and the trio links share: the loop of sessions, a
    writer task per connection that waits for its wake-up event, and a
    timer task. A backend adds its sleep, its wait with a timeout, and its
    streams (`_serve`, which runs the tasks until one fails)."""

    def __init__(self, url: str, history: int, deliver: Callable[[str], None]) -> None:
        super().__init__(url, history, deliver)
        self._wake_writers: dict[Conn, A] = {}

    async def _sleep(self, seconds: float) -> None:
        raise NotImplementedError

    async def _wait(self, event: A, timeout: float) -> None:
        """Until `event` is set, or for `timeout` seconds at most."""
        raise NotImplementedError

    async def _serve(self) -> None:
        """One session on a new pair of connections, until it fails."""
        raise NotImplementedError

    async def run(self) -> None:
        """Keep a session going until cancelled (or `stopped`)."""
        while not self.stopped:
            error: BaseException | None = None
            try:
                await self._serve()
            except* Exception as group:  # a task group or nursery wraps what ended it
                error = group
            await self._sleep(self._lost(error))

    def _start_writers(self) -> None:
        self._wake_writers = {conn: self._new_event() for conn in Conn}

    def _wake(self) -> None:
        for event in self._wake_writers.values():
            event.set()

    async def _woken(self, conn: Conn) -> None:
        """Until the writer of `conn` has something to write (maybe)."""
        await self._wake_writers[conn].wait()
        self._wake_writers[conn] = self._new_event()

    async def _tick(self, session: RedisSession[Waiter[A]]) -> None:
        while True:
            await self._sleep(max(0.0, session.next_deadline() - self._now()))
            self._on_deadline(session)

    async def history(self) -> list[str] | None:
        """The shared history, or None if Redis cannot give it now."""
        waiter = self._request_history()
        if waiter is None:
            return None
        await self._wait(waiter.done, HISTORY_TIMEOUT)
        return waiter.reply


def _leaf(error: BaseException) -> BaseException:
    """The first exception inside (nested) exception groups: task groups
    and nurseries wrap the one that ended a session."""
    while isinstance(error, BaseExceptionGroup) and error.exceptions:
        error = error.exceptions[0]
    return error


def _reason(error: BaseException) -> str:
    leaf = _leaf(error)
    if isinstance(leaf, TimeoutError) and not str(leaf):
        return "timed out"
    if not str(leaf) and leaf.__cause__ is not None:  # (trio's wrapper of a TLS failure)
        return f"{type(leaf).__name__}: {_reason(leaf.__cause__)}"
    return str(leaf) or type(leaf).__name__
