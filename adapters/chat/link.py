"""What the three backends' Redis links share besides the session
(`redis_session.RedisSession`, which decides everything that is not I/O):
where Redis is, the current session, the backoff, the guarded delivery to
the room, and what gets logged. Each backend adds its sockets and its way
of waiting."""

from __future__ import annotations

from collections.abc import Callable
from typing import Generic, TypeVar

from .redis_session import LogThrottle, RedisSession, SessionError
from .resp import parse_redis_url
from .service import CHANNEL, HISTORY_KEY, logger

W = TypeVar("W")

FIRST_DELAY = 0.25  # seconds before the first reconnection attempt
MAX_DELAY = 10.0
CONNECT_TIMEOUT = 5.0  # seconds for each TCP connection to Redis
HISTORY_TIMEOUT = 1.0  # a newcomer waits this long for the shared history, at most


class LinkState(Generic[W]):
    """Two connections to Redis (one subscribed to the room's channel, one
    for commands), driven by one `RedisSession` at a time and kept up with
    backoff. `up` is true only while a session exists (its I/O is running:
    each backend sets `session` when its connections are open and clears it
    in a `finally`) and that session is up. While Redis is away commands are
    refused, and the chat carries on with this process's clients alone."""

    # What a link expects to go wrong with Redis (a backend adds its own);
    # anything else is a bug, logged with its traceback, and the link goes on.
    expected_errors: tuple[type[Exception], ...] = (OSError, SessionError)

    def __init__(self, url: str, history: int, deliver: Callable[[str], None]) -> None:
        self.host, self.port, self.db = parse_redis_url(url)
        self.history_length = history
        self.deliver = deliver
        self.delay = FIRST_DELAY
        self.session: RedisSession[W] | None = None
        self.sessions = 0  # sessions started so far: which one the room's history came from
        self.stopped = False  # the server is shutting down: no new session
        self._announced = False  # "redis connected" was logged for this session
        self._outage_logged = False  # "redis unavailable" was logged for this outage
        self._deliver_errors = LogThrottle()
        self._bugs = LogThrottle()

    @property
    def up(self) -> bool:
        session = self.session
        return session is not None and session.up

    def _start_session(self, now: float) -> RedisSession[W]:
        """Both connections are open: a new session speaks on them."""
        session: RedisSession[W] = RedisSession(
            now,
            channel=CHANNEL,
            history_key=HISTORY_KEY,
            history_length=self.history_length,
            db=self.db,
        )
        self.session = session
        self.sessions += 1
        self._announced = False
        return session

    def _end_session(self, reason: str) -> list[W]:
        """The connections are closing: `up` turns false at once. Returns
        the history waiters to wake (empty-handed)."""
        session, self.session = self.session, None
        if session is None:
            return []
        session.fail(reason)
        return session.take_waiters()

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

    def _check(self, session: RedisSession[W]) -> None:
        """After each input to the session: raise SessionError if it failed;
        log once that Redis is (back) up."""
        if session.failure is not None:
            raise SessionError(session.failure)
        if session.up and not self._announced:
            self._announced = True
            self._outage_logged = False
            self.delay = FIRST_DELAY
            logger.info("redis connected at %s:%d", self.host, self.port)

    def _lost(self, error: BaseException, now: float) -> float:
        """Log the loss (once per outage) and return how long to wait
        before the next attempt."""
        reason = _reason(error)
        if not isinstance(_leaf(error), self.expected_errors):
            self._bugs.warning(now, "redis link error: %s", reason, exc_info=error)
        if not self._outage_logged:
            logger.warning("redis unavailable (%s); retrying with backoff", reason)
            self._outage_logged = True
        delay, self.delay = self.delay, min(self.delay * 2, MAX_DELAY)
        return delay


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
    return str(leaf) or type(leaf).__name__
